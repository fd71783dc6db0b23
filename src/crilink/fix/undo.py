"""Undo a journal: revert its actions newest first, each only if the node is still as left.

For every entry with an intent (done, failed, or pending after a crash), newest first:

- the temporary name it may have left behind (a crash between creating it and the rename) is
  removed if it is still there;
- if the node is in the journal's "after" state, the inverse action is applied through
  :func:`crilink.fix.apply.apply_one` (so the undo run has its own journal; its records carry
  ``undoes``);
- if it is already in the "before" state (never applied, or undone earlier): ``already``;
- otherwise ``refused``, with what was found: someone changed it since; nothing is touched.

``purge_dir`` entries are ``irreversible``. Undo is idempotent: a second run finds every node in
its "before" state. Each root is checked to be the same directory (st_dev, st_ino) as when the
journal was written.
"""

from __future__ import annotations

import contextlib
import os
import stat
from contextlib import ExitStack

from crilink.errors import UnsafeTargetError
from crilink.fix.actions import TMP_PREFIX, ActionKind, State, StateType, inverse
from crilink.fix.apply import Hook, apply_one, observe_path
from crilink.fix.journal import Journal, JournalEntry, default_journal_path, read_journal
from crilink.fix.ops import Root, RootRef, open_parent, open_root
from crilink.fix.result import ApplyResult, Outcome, Status

__all__ = ["undo_journal"]

_UNDOABLE = (Status.DONE, Status.FAILED, Status.PENDING)


def undo_journal(path: str | os.PathLike[str], journal: str | os.PathLike[str] | None = None,
                 hook: Hook | None = None) -> ApplyResult:
    """Undo the journal at ``path``, journaling the undo to ``journal`` (default: a new file
    from :func:`default_journal_path`). Raises JournalError for an unreadable journal and
    UnsafeTargetError when a root is no longer the directory the journal names."""
    log = read_journal(path)
    out = journal if journal is not None else default_journal_path("undo")
    todo = [e for e in reversed(log.entries) if e.status in _UNDOABLE and e.before is not None]
    roots: dict[RootRef, Root] = {}
    with ExitStack() as stack:
        for ref in dict.fromkeys(e.root for e in todo):
            roots[ref] = stack.enter_context(open_root(ref.path, expect=ref))
        j = stack.enter_context(Journal.create(out, "undo"))
        outcomes = tuple(_undo_one(roots[e.root], j, seq, e, source=log.path, hook=hook)
                         for seq, e in enumerate(todo, 1))
    return ApplyResult(os.fspath(out), outcomes)


def _remove_tmp(root: Root, entry: JournalEntry) -> None:
    """Remove the temporary name a crash may have left next to ``entry``'s path."""
    if not entry.tmp.startswith(TMP_PREFIX) or "/" in entry.tmp:
        return
    tmp_path = entry.action.path.rsplit("/", 1)[0] + "/" + entry.tmp
    with contextlib.suppress(UnsafeTargetError, OSError), open_parent(root, tmp_path) as (fd, name):
        mode = os.lstat(name, dir_fd=fd).st_mode
        if stat.S_ISLNK(mode) or stat.S_ISREG(mode):
            os.unlink(name, dir_fd=fd)
            os.fsync(fd)


def _undo_one(root: Root, journal: Journal, seq: int, entry: JournalEntry, *,
              source: str, hook: Hook | None) -> Outcome:
    assert entry.before is not None  # filtered by undo_journal
    before, after = entry.before, entry.observed or entry.after or entry.before
    if entry.tmp:
        _remove_tmp(root, entry)
    inv = inverse(entry.action, before, after)
    if inv is None:
        return _note(journal, seq, entry, Status.IRREVERSIBLE,
                     f"{entry.action.kind} {entry.action.path} cannot be undone")
    try:
        if _is_original(root, entry, before):
            return _note(journal, seq, entry, Status.ALREADY, "already as before")
        now = observe_path(root, inv.path, content=after.type == StateType.FILE)
        if now.same_as(after):
            return apply_one(root, journal, seq, inv, hook=hook,
                             undoes={"journal": source, "seq": entry.seq})
    except UnsafeTargetError as err:
        return _note(journal, seq, entry, Status.REFUSED, err.message)
    return _note(journal, seq, entry, Status.REFUSED,
                 f"{inv.path} is now {now.describe()}, the journal left it as "
                 f"{after.describe()}; changed since, not reverting (fix it by hand)")


def _is_original(root: Root, entry: JournalEntry, before: State) -> bool:
    """Whether the entry's node is in its "before" state (never applied, or undone)."""
    now = observe_path(root, entry.action.path, content=before.type == StateType.FILE)
    if not now.same_as(before):
        return False
    if entry.action.kind == ActionKind.MOVE_DIR and entry.action.dest is not None:
        return observe_path(root, entry.action.dest).type == StateType.ABSENT
    return True


def _note(journal: Journal, seq: int, entry: JournalEntry, status: Status,
          reason: str) -> Outcome:
    journal.write({"rec": "end", "seq": seq, "status": str(status), "reason": reason,
                   "root": entry.root.to_json(), "action": entry.action.to_json(),
                   "undoes": {"seq": entry.seq}})
    return Outcome(seq, entry.action, status, reason)
