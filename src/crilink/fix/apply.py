"""Apply a plan through the journal: observe, check, journal, act, re-check, record.

See :mod:`crilink.fix.journal` for the usage summary and the file format.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from crilink.errors import UnsafeTargetError
from crilink.fix.actions import ABSENT, TMP_PREFIX, Action, ActionKind, State, StateType
from crilink.fix.execute import run_step
from crilink.fix.journal import Journal
from crilink.fix.ops import MissingParentError, Root, observe, open_parent, open_root
from crilink.fix.result import ApplyResult, Outcome, Status

__all__ = ["Hook", "apply_one", "apply_plan", "ensure_not_linked", "observe_path"]

# Called as hook(seq, phase) with phase "intent" (journaled, not yet changed) or "changed"
# (changed, end record not yet written). Tests use it to crash at a precise point.
Hook = Callable[[int, str], None]

_CONTENT_KINDS = (ActionKind.WRITE_FILE, ActionKind.REMOVE_FILE)


def ensure_not_linked(root: str | os.PathLike[str], rel: str, verb: str) -> None:
    """Refuse (UnsafeTargetError) when ``root/rel`` is a symlink: crilink reads through a
    relocated driver dir but never writes through a link, in or out of the store."""
    path = Path(root) / rel
    if path.is_symlink():
        raise UnsafeTargetError(
            f"{verb}: {path} is a symlink (to {path.readlink()}); crilink reads through it "
            "but never writes through a link: repair with the runtime's own tools, or point "
            "the store at the real dir")


def observe_path(root: Root, path: str, content: bool = False) -> State:
    """The state of the in-root ``path`` (never following links; see ops.open_parent);
    absent when a directory on the way is missing; UnsafeTargetError when one is not a dir."""
    try:
        with open_parent(root, path) as (pfd, name):
            return observe(pfd, name, content=content)
    except MissingParentError:
        return ABSENT


def apply_plan(root: str, actions: Sequence[Action], journal: str | os.PathLike[str],
               command: str, hook: Hook | None = None) -> ApplyResult:
    """Apply ``actions`` in order under the root directory ``root``, journaling to ``journal``
    (a new file). Never raises for a single item: see each :class:`Outcome`. Raises
    InputError if the root cannot be opened, JournalError if the journal cannot be written."""
    with open_root(root) as r, Journal.create(journal, command) as j:
        outcomes = tuple(apply_one(r, j, seq, a, hook=hook) for seq, a in enumerate(actions, 1))
    return ApplyResult(os.fspath(journal), outcomes)


def _finalize(action: Action, before: State) -> State:
    """The exact ``after`` state: fills what the plan left to the moment of applying."""
    after = action.after
    if action.kind == ActionKind.WRITE_FILE:
        old = before if before.type == StateType.FILE else State(StateType.ABSENT)
        return State.file(after.content(),
                          _first(after.mode, old.mode, 0o644),
                          _first(after.uid, old.uid, os.geteuid()),
                          _first(after.gid, old.gid, os.getegid()))
    if action.kind == ActionKind.REPLACE_SYMLINK:  # the new link keeps the old one's owner
        return replace(after, uid=_first(after.uid, before.uid, os.geteuid()),
                       gid=_first(after.gid, before.gid, os.getegid()))
    if action.kind == ActionKind.MOVE_DIR:
        return before
    if action.kind == ActionKind.MAKE_DIR:
        return State(StateType.DIR, mode=after.mode, uid=after.uid, gid=after.gid)
    return after


def _first(*values: int | None) -> int:
    for v in values:
        if v is not None:
            return v
    raise AssertionError("_first: the last value is never None")


def _already(root: Root, action: Action, now: State) -> bool:
    if action.kind != ActionKind.MOVE_DIR:
        return now.same_as(action.after)
    assert action.dest is not None  # move_dir always has a dest
    return now.type == StateType.ABSENT and observe_path(root, action.dest).same_as(action.after)


def _end(journal: Journal, seq: int, status: Status, reason: str = "",
         **extra: Any) -> None:
    rec: dict[str, Any] = {"rec": "end", "seq": seq, "status": str(status)}
    if reason:
        rec["reason"] = reason
    rec.update({k: v for k, v in extra.items() if v is not None})
    journal.write(rec)


def _precheck(root: Root, action: Action) -> State | Outcome:
    """The observed ``before`` state, or the outcome that ends this item without a change."""
    content = action.kind in _CONTENT_KINDS
    try:
        now = observe_path(root, action.path, content=content)
        if _already(root, action, now):
            return Outcome(0, action, Status.ALREADY, "already in the wanted state")
    except UnsafeTargetError as err:
        return Outcome(0, action, Status.SKIPPED, err.message)
    if action.before is not None and not now.same_as(action.before):
        return Outcome(0, action, Status.SKIPPED, f"{action.path} changed since the plan: "
                       f"expected {action.before.describe()}, found {now.describe()}")
    return now


def apply_one(root: Root, journal: Journal, seq: int, action: Action, *,
              hook: Hook | None = None, undoes: dict[str, Any] | None = None) -> Outcome:
    """Apply one action (see the module docstring of :mod:`crilink.fix.journal`)."""
    checked = _precheck(root, action)
    if isinstance(checked, Outcome):
        _end(journal, seq, checked.status, checked.reason, root=root.ref.to_json(),
             action=action.to_json(), undoes=undoes)
        return Outcome(seq, action, checked.status, checked.reason)
    before, after = checked, _finalize(action, checked)
    tmp = f"{TMP_PREFIX}{secrets.token_hex(6)}"
    journal.write({"rec": "intent", "seq": seq, "root": root.ref.to_json(),
                   "action": action.to_json(), "before": before.to_json(),
                   "after": after.to_json(), "tmp": tmp, **({"undoes": undoes} if undoes else {})})
    if hook:
        hook(seq, "intent")
    try:
        freed, now = run_step(root, action, before, after, tmp)
    except UnsafeTargetError as err:
        _end(journal, seq, Status.SKIPPED, err.message)
        return Outcome(seq, action, Status.SKIPPED, err.message)
    except OSError as err:
        reason = f"{action.kind} {action.path}: {err.strerror or err}"
        _end(journal, seq, Status.FAILED, reason)
        return Outcome(seq, action, Status.FAILED, reason)
    if hook:
        hook(seq, "changed")
    return _recheck(journal, seq, action, after=after, now=now, freed=freed)


def _recheck(journal: Journal, seq: int, action: Action, *, after: State, now: State,
             freed: int) -> Outcome:
    """Record the end of an action whose step observed ``now`` (through its own dir fd)."""
    if not now.same_as(after):
        target = action.dest or action.path
        why = f"re-check of {target}: expected {after.describe()}, found {now.describe()}"
        _end(journal, seq, Status.FAILED, why)
        return Outcome(seq, action, Status.FAILED, why)
    observed = now.to_json() if now.type != StateType.FILE else None
    _end(journal, seq, Status.DONE, observed=observed, bytes=freed or None)
    return Outcome(seq, action, Status.DONE, bytes=freed)
