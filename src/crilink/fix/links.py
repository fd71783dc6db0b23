"""Absolute <-> relative link text with the same in-root meaning (pure: reads a VFS only).

The new text names the same in-root node as the old one *without* following the last
component: ``/bin/sh -> /bin/busybox`` becomes ``busybox`` even if ``/bin/busybox`` were itself
a link, so chains (``/etc/alternatives`` style) keep their shape. Every directory on the way
is resolved in-root first (links followed, ``..`` physical and clamped at the root), so the
relative text is computed between two link-free in-root paths and never climbs above the root.

Each candidate is verified: the link with its new text is resolved in-root and must reach
the same node (device, inode) as with its old text; otherwise the link is left alone.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crilink.pathres import Resolution, ResolveError, Resolver, parent_of

__all__ = ["MAX_LINK_TEXT", "Direction", "LinkPlanItem", "Verdict", "plan_link", "relative_text",
           "wants"]


MAX_LINK_TEXT = 4095  # bytes: PATH_MAX less the NUL; symlink(2) says ENAMETOOLONG past it


class Direction(StrEnum):
    TO_RELATIVE = "to_relative"
    TO_ABSOLUTE = "to_absolute"


class Verdict(StrEnum):
    """What the plan does with one link."""

    REWRITE = "rewrite"  # new text planned and verified
    DANGLING = "dangling"  # does not resolve in-root: left as it is
    LOOP = "loop"  # a cycle or too many links: left as it is
    MISMATCH = "mismatch"  # the new text would reach another node: left as it is
    TOO_LONG = "too_long"  # the new text is longer than a link can hold: left as it is
    STALE_TEMP = "stale_temp"  # a temporary link a crashed run left: removed
    HARDLINKED = "hardlinked"  # one symlink inode with several names: left as it is
    ALIASED = "aliased"  # reachable by two paths (a bind mount): left as it is


@dataclass(frozen=True, slots=True)
class LinkPlanItem:
    """One link the plan looked at: its in-root path, old text, new text (for ``rewrite``),
    and the (dev, ino) of the node both texts reach."""

    path: str
    old: str
    verdict: Verdict
    new: str | None = None
    reason: str = ""
    node: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "link": self.old, "verdict": str(self.verdict)}
        if self.new is not None:
            out["new_link"] = self.new
        if self.reason:
            out["reason"] = self.reason
        return out


def relative_text(link_path: str, target: str) -> str:
    """The relative text from the directory of ``link_path`` to ``target`` (both link-free
    in-root paths): ``("/bin/sh", "/bin/busybox") -> "busybox"``, ``("/a/b", "/") -> ".."``."""
    return posixpath.relpath(target, parent_of(link_path))


def _node(res: Resolution) -> tuple[int, int] | None:
    return (res.node.dev, res.node.ino) if res.ok and res.node is not None else None


def _left(path: str, text: str, res: Resolution) -> LinkPlanItem:
    if res.error is ResolveError.LOOP:
        cycle = " -> ".join(res.cycle)
        return LinkPlanItem(path, text, Verdict.LOOP,
                            reason=f"loop{': ' + cycle if cycle else ''}; left as it is")
    rest = f", {res.remaining} missing" if res.remaining else ""
    return LinkPlanItem(path, text, Verdict.DANGLING,
                        reason=f"dangling in-root (reached {res.resolved}{rest}); left as it is")


def wants(direction: Direction, text: str) -> bool:
    """Whether a link with ``text`` is a candidate for ``direction``."""
    return bool(text) and text.startswith("/") == (direction == Direction.TO_RELATIVE)


def plan_link(resolver: Resolver, path: str, text: str,
              direction: Direction) -> LinkPlanItem | None:
    """The plan for the link at in-root ``path`` with ``text`` (``None``: not a candidate).

    ``path``'s parent must be a link-free in-root directory (as a tree walk gives it).
    """
    if not wants(direction, text):
        return None
    meaning = resolver.follow(path, text)
    if not meaning.ok:
        return _left(path, text, meaning)
    spot = resolver.resolve(text, follow_last=False, start=parent_of(path))
    if not spot.ok:
        return _left(path, text, spot)
    new = relative_text(path, spot.resolved) if direction == Direction.TO_RELATIVE \
        else spot.resolved
    if len(os.fsencode(new)) > MAX_LINK_TEXT:
        return LinkPlanItem(path, text, Verdict.TOO_LONG, reason=(
            f"the new text would be {len(os.fsencode(new))} bytes, more than a symlink "
            f"holds ({MAX_LINK_TEXT}); left as it is"))
    check = resolver.follow(path, new)
    if _node(check) != _node(meaning):
        return LinkPlanItem(path, text, Verdict.MISMATCH, reason=(
            f"{new!r} would reach {check.resolved}, not {meaning.resolved}; left as it is"))
    return LinkPlanItem(path, text, Verdict.REWRITE, new=new, node=_node(meaning))
