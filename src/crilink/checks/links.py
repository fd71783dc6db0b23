"""Symlink verdicts shared by root filesystem and image scans (pure: no I/O of its own).

For one symlink at in-root ``path`` with link text ``text``, resolved in the root as the
container would (:class:`crilink.pathres.Resolver`), :func:`symlink_findings` returns:

- ``loop`` (error): a cycle, or more than 40 links; ``detail.cycle`` lists the cycle's links,
  ``detail.reason`` is ``cycle`` or ``too_many_links``;
- ``dangling`` (warning): resolution fails; ``detail.reason`` is ``missing`` or
  ``not_a_directory``; ``resolved`` says how far it got and ``remaining`` what was left;
- ``escapes_root`` (warning): relative text whose ``..`` climbs above the root from where the
  link sits (clamped inside the container; an escape for a tool following it from the host).
  Reported in addition to ``dangling`` when both hold;
- ``absolute`` (info): absolute text that resolves inside the root. ``detail.host`` (only
  when a ``host_check`` is given: a directory scanned from the host, not at ``/``) says what
  the same text reaches on the host: ``same`` file, a ``different`` file, or ``missing``.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from crilink.model import Finding, Severity
from crilink.pathres.base import Node, Resolution, ResolveError
from crilink.pathres.resolve import Resolver

__all__ = ["ABSOLUTE", "DANGLING", "ESCAPES_ROOT", "LOOP", "HostView", "findings_for",
           "symlink_findings"]

DANGLING = "dangling"
LOOP = "loop"
ESCAPES_ROOT = "escapes_root"
ABSOLUTE = "absolute"


class HostView(StrEnum):
    """What the host makes of an absolute link text (resolving from its own ``/``)."""

    SAME = "same"
    DIFFERENT = "different"
    MISSING = "missing"


# (text, in-root target node) -> what the host reaches with the same text
HostCheck = Callable[[str, Node | None], HostView]


def _loop(path: str, text: str, res: Resolution, layer: str | None) -> Finding:
    detail: dict[str, Any] = {"hops": res.hops}
    if res.cycle:
        detail.update(reason="cycle", cycle=list(res.cycle))
        message = "symlink cycle: " + " -> ".join(res.cycle)
    else:
        detail["reason"] = "too_many_links"
        message = "more than 40 links to follow"
    return Finding(LOOP, Severity.ERROR, path, message=message, link=text,
                   resolved=res.resolved, remaining=res.remaining or None, layer=layer,
                   detail=detail)


# What every OCI runtime (runc, crun) mounts or creates in a container when it starts: a link
# into these is dangling in a stopped root or an image, and fine in the running container.
_RUNTIME_TOPS = frozenset({"proc", "sys"})
_RUNTIME_DEV = frozenset({"null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
                          "fd", "stdin", "stdout", "stderr", "core", "pts", "shm", "mqueue"})


def runtime_provided(res: Resolution) -> str | None:
    """``"proc"``, ``"sys"`` or ``"dev"`` when a missing target lies where the runtime mounts
    or creates things at container start (``/proc/...``, ``/dev/null`` ...); else None."""
    if res.error is not ResolveError.MISSING:
        return None
    full = res.resolved.rstrip("/") + "/" + res.remaining if res.remaining else res.resolved
    parts = [p for p in full.split("/") if p]
    if parts and parts[0] in _RUNTIME_TOPS:
        return parts[0]
    if len(parts) >= 2 and parts[0] == "dev" and parts[1] in _RUNTIME_DEV:
        return "dev"
    return None


def _dangling(path: str, text: str, res: Resolution, layer: str | None) -> Finding:
    reason = str(res.error)
    what = "is missing" if res.error is ResolveError.MISSING else "is not a directory"
    rest = res.remaining or res.resolved
    detail: dict[str, Any] = {"reason": reason}
    severity, message = Severity.WARNING, \
        f"target not found in the root: {rest!s} {what} (from {res.resolved})"
    runtime = runtime_provided(res)
    if runtime is not None:  # legal: the runtime provides it when the container starts
        severity, detail["runtime"] = Severity.INFO, runtime
        message += f"; the container runtime provides /{runtime} at start"
    return Finding(DANGLING, severity, path, message=message, link=text,
                   resolved=res.resolved, remaining=res.remaining or None, layer=layer,
                   detail=detail)


def symlink_findings(resolver: Resolver, path: str, text: str, *, layer: str | None = None,
                     host_check: HostCheck | None = None) -> list[Finding]:
    """The findings for the symlink at ``path`` (its parent a resolved in-root dir)."""
    return findings_for(path, text, resolver.follow(path, text), layer=layer,
                        host_check=host_check)


def findings_for(path: str, text: str, res: Resolution, *, layer: str | None = None,
                 host_check: HostCheck | None = None) -> list[Finding]:
    """The findings for the symlink at ``path`` whose following gave ``res``.

    A relative link that resolves without climbing above the root gives none.
    """
    out: list[Finding] = []
    if res.error is ResolveError.LOOP:
        out.append(_loop(path, text, res, layer))
    elif res.error is not None:
        out.append(_dangling(path, text, res, layer))
    relative = not text.startswith("/")
    if relative and res.text_clamped:
        out.append(Finding(ESCAPES_ROOT, Severity.WARNING, path,
                           message="'..' climbs above the root: clamped in the container, "
                                   "an escape from the host",
                           link=text, resolved=res.resolved, layer=layer))
    if not relative and res.ok:
        detail: dict[str, Any] = {}
        message = "absolute link: resolves inside the root"
        if host_check is not None:
            view = host_check(text, res.node)
            detail["host"] = str(view)
            if view is not HostView.SAME:
                message += f"; from the host it reaches {_HOST_WORDS[view]}"
        out.append(Finding(ABSOLUTE, Severity.INFO, path, message=message, link=text,
                           resolved=res.resolved, layer=layer, detail=detail))
    return out


_HOST_WORDS = {HostView.DIFFERENT: "another file", HostView.MISSING: "nothing"}
