"""``crilink fix DIR``: plan absolute <-> relative link rewrites of a root filesystem, apply them
through the journal, and verify the result.

Planning only reads (a fd-based walk and in-root resolution over :class:`DirVFS`). Links that
dangle or loop are left as they are and listed with the reason; so is a link whose new text
would reach another node. A temporary ``.crilink-tmp-*`` link a crashed run left is removed,
so that a rerun converges.
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crilink.errors import InputError, denied_hint
from crilink.fix import actions as A
from crilink.fix.apply import Hook, apply_plan
from crilink.fix.links import Direction, LinkPlanItem, Verdict, plan_link, wants
from crilink.fix.result import ApplyResult
from crilink.fix.walk import LinkEntry, SymlinkWalk
from crilink.pathres import DirVFS, Resolver

__all__ = ["JOURNAL_COMMAND", "FixPlan", "apply_fix", "plan_fix", "plan_items", "verify_fix"]

JOURNAL_COMMAND = "fix"


@dataclass(frozen=True, slots=True)
class FixPlan:
    """Every link the plan looked at under ``target``, rewrites first."""

    target: str
    direction: Direction
    items: tuple[LinkPlanItem, ...]

    def actions(self) -> list[A.Action]:
        """The journal actions: one per ``rewrite`` and ``stale_temp`` item."""
        out = []
        for item in self.items:
            if item.verdict == Verdict.REWRITE and item.new is not None:
                out.append(A.replace_symlink(item.path, item.old, item.new, reason=str(
                    self.direction)))
            elif item.verdict == Verdict.STALE_TEMP:
                out.append(A.remove_symlink(item.path, item.old, reason=item.reason))
        return out

    def counts(self) -> dict[str, int]:
        by = Counter(str(i.verdict) for i in self.items)
        return {str(v): by.get(str(v), 0) for v in Verdict}

    def to_json(self) -> dict[str, Any]:
        return {"direction": str(self.direction), "counts": self.counts(),
                "items": [i.to_json() for i in self.items]}


def plan_items(resolver: Resolver, links: Iterable[LinkEntry],
               direction: Direction) -> list[LinkPlanItem]:
    """Plan items for the links found by a walk, in the order given.

    A symlink inode with several names (hard links to one symlink) is left as it is: a
    rewrite replaces one name with a new inode and would split the group, and the relative
    text for one name's directory is not the right one for another's.
    """
    items = []
    for path, text, nlink in links:
        if posixpath.basename(path).startswith(A.TMP_PREFIX):
            items.append(LinkPlanItem(path, text, Verdict.STALE_TEMP,
                                      reason="temporary link left by an interrupted run"))
            continue
        if nlink > 1 and wants(direction, text):
            items.append(LinkPlanItem(path, text, Verdict.HARDLINKED, reason=(
                f"this symlink has {nlink} names (hard links to one inode); rewriting one "
                "name would split them; left as it is")))
            continue
        item = plan_link(resolver, path, text, direction)
        if item is not None:
            items.append(item)
    return items


def _mark_aliased(items: list[LinkPlanItem], walk: SymlinkWalk) -> list[LinkPlanItem]:
    """Rewrites of links that the tree reaches by more than one path (a directory
    bind-mounted at a second place in the root) become ``aliased``: only absolute text means
    the same from every place, so a rewrite could change what the link means from one of them.
    """
    return [_aliased(item, walk.alias_of(item.path)) if item.verdict == Verdict.REWRITE
            else item for item in items]


def _aliased(item: LinkPlanItem, alias: tuple[str, str] | None) -> LinkPlanItem:
    if alias is None:
        return item
    return LinkPlanItem(item.path, item.old, Verdict.ALIASED, reason=(
        f"{alias[0]} is also reached as {alias[1]} (a bind mount): the link has two paths "
        "and a rewrite could change what it means from one of them; left as it is"))


def _open_dir(target: str) -> int:
    try:
        return os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise InputError(f"fix {target}: no such directory") from err
    except NotADirectoryError as err:
        raise InputError(f"fix {target}: not a directory (fix works on root filesystem "
                         "directories)") from err
    except OSError as err:
        hint = denied_hint() if isinstance(err, PermissionError) else ""
        raise InputError(f"fix {target}: {err.strerror}{hint}") from err


def plan_fix(target: str, direction: Direction = Direction.TO_RELATIVE,
             one_filesystem: bool = True) -> FixPlan:
    """Plan the rewrites for the root filesystem at ``target`` (reads only)."""
    fd = _open_dir(target)
    try:
        with DirVFS.from_fd(fd, target) as vfs:
            walk = SymlinkWalk(fd, one_filesystem)
            items = _mark_aliased(plan_items(Resolver(vfs), walk, direction), walk)
    except OSError as err:
        raise InputError(f"fix {target}: walk: {err.strerror} ({err.filename})") from err
    finally:
        os.close(fd)
    items.sort(key=lambda i: (i.verdict != Verdict.REWRITE, i.path))
    return FixPlan(target, direction, tuple(items))


def apply_fix(plan: FixPlan, journal: str | os.PathLike[str],
              hook: Hook | None = None) -> ApplyResult:
    """Apply ``plan`` through a new journal at ``journal``."""
    return apply_plan(plan.target, plan.actions(), journal, JOURNAL_COMMAND, hook=hook)


def verify_fix(plan: FixPlan) -> list[str]:
    """After apply: the rewritten links that do not reach their planned node (should be none)."""
    fd = _open_dir(plan.target)
    problems = []
    try:
        with DirVFS.from_fd(fd, plan.target) as vfs:
            resolver = Resolver(vfs)
            for item in plan.items:
                if item.verdict != Verdict.REWRITE:
                    continue
                text = vfs.readlink(item.path)
                res = resolver.follow(item.path, text)
                got = (res.node.dev, res.node.ino) if res.ok and res.node else None
                if got != item.node:
                    problems.append(f"{item.path} -> {text} reaches {res.resolved}, "
                                    "not the node planned")
    finally:
        os.close(fd)
    return problems
