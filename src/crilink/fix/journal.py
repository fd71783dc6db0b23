"""The write-ahead journal: JSON lines, each one fsync'd before the change it announces.

Usage (for every command that changes a tree: fix, store repair, gc)::

    from crilink.fix import actions as A
    from crilink.fix.apply import apply_plan
    from crilink.fix.journal import default_journal_path
    from crilink.fix.undo import undo_journal

    plan = [A.replace_symlink("/bin/sh", "/bin/busybox", "busybox"),
            A.create_symlink("/overlay/l/ABC", "../0123/diff"),
            A.remove_symlink("/overlay/l/XYZ", "../gone/diff"),
            A.write_file("/overlay/0123/link", b"ABC", mode=0o644),
            *A.quarantine("/snapshots/42", stamp),      # make_dir(s) + move_dir
            A.purge_dir("/.crilink-quarantine/<stamp>/snapshots/42")]
    result = apply_plan("/var/lib/containers/storage", plan,
                        journal=default_journal_path("repair"), command="repair")
    result.ok, result.outcomes, result.journal, result.bytes_freed
    undo_journal(result.journal)        # reverses done actions, newest first

Paths in actions are in-root paths (``/a/b``) relative to the root given to ``apply_plan``.
Each action is re-checked against its ``before`` state just before it runs (skipped with a
reason if the node changed), journaled (intent record, fsync), carried out on the parent
directory's fd (opened from the root fd one component at a time with ``O_NOFOLLOW``, so a
directory swapped for a symlink makes the item ``skipped``, never a write elsewhere), then
re-checked against ``after`` through that same fd (end record: done / failed).
``apply_plan`` never raises for one item; read ``result.ok`` and ``result.outcomes``.
A crash leaves every node in its old or new state, plus at most one temporary
``.crilink-tmp-*`` name (undo removes it, as does a rerun of ``crilink fix``). Undo of a
crashed journal reverts exactly what was done; a rerun of the same plan converges because
nodes already in their ``after`` state are reported ``already``.

File format (version 1), one JSON object per line, key ``rec``:

- ``header``: ``{"rec": "header", "version": 1, "command", "created", "pid", "argv"}``
- ``intent``: ``{"rec": "intent", "seq", "root": {"path", "dev", "ino"}, "action": {...},
  "before": State, "after": State, "tmp": name, "undoes": {"journal", "seq"}?}``
- ``end``: ``{"rec": "end", "seq", "status", "reason"?, "observed": State?, "bytes"?}``;
  an item skipped before any change has an ``end`` with ``root`` and ``action`` and no intent.

A torn last line (a crash mid-write) is ignored; any other unreadable line, and any record
that does not follow the schema (:mod:`crilink.fix.journalschema`: types, ranges, normalised
in-root paths, states that fit the action), is a JournalError, and so is a journal file that
is not owned by root (or this user) or is group/world-writable: undo trusts the root a
journal names, so the journal must be as trusted as the one who runs undo.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crilink.errors import JournalError
from crilink.fix.actions import Action, State
from crilink.fix.journalschema import (
    EndRecord,
    IntentRecord,
    SchemaError,
    decode_end,
    decode_header,
    decode_intent,
)
from crilink.fix.ops import RootRef
from crilink.fix.result import Status

__all__ = [
    "JOURNAL_DIR",
    "JOURNAL_DIR_ENV",
    "JOURNAL_VERSION",
    "Journal",
    "JournalEntry",
    "JournalLog",
    "default_journal_path",
    "read_journal",
]

JOURNAL_VERSION = 1
JOURNAL_DIR = "/var/lib/crilink/journal"
JOURNAL_DIR_ENV = "CRILINK_JOURNAL_DIR"


def default_journal_path(command: str, directory: str | None = None) -> Path:
    """``<dir>/<UTC timestamp>-<command>.jsonl``; dir from ``directory``, $CRILINK_JOURNAL_DIR
    or /var/lib/crilink/journal. The file is not created here."""
    base = Path(directory or os.environ.get(JOURNAL_DIR_ENV) or JOURNAL_DIR)
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    return base / f"{stamp}-{command}.jsonl"


class Journal:
    """An open journal file, written append-only; every record is fsync'd."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def create(cls, path: str | os.PathLike[str], command: str) -> Journal:
        """Create a new journal (never overwrite one) and write its header."""
        p = Path(path)
        try:
            p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                         0o600)
        except FileExistsError as err:
            raise JournalError(f"create journal {p}: it exists; journals are never "
                               "overwritten, pick another --journal path") from err
        except OSError as err:
            raise JournalError(f"create journal {p}: {err.strerror}") from err
        _fsync_dir(p.parent)
        journal = cls(p, fd)
        journal.write({"rec": "header", "version": JOURNAL_VERSION, "command": command,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "pid": os.getpid(), "argv": [os.fsdecode(a) for a in sys.argv]})
        return journal

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"
        data = line.encode("ascii")
        try:
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError as err:
            raise JournalError(f"write journal {self.path}: {err.strerror}; "
                               "stop and run crilink undo on it") from err

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One action as the journal tells it (intent and end records merged)."""

    seq: int
    root: RootRef
    action: Action
    status: Status
    before: State | None = None
    after: State | None = None
    observed: State | None = None
    tmp: str = ""
    reason: str = ""
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class JournalLog:
    path: str
    command: str
    entries: tuple[JournalEntry, ...]
    torn: bool = False


def _open_trusted(path: str) -> int:
    """Open a journal to read it, refusing one that others could have written.

    A journal drives writes anywhere under the root it names, so it must be as trusted as
    the one who runs undo: owned by root (or by this user) and not group- or world-writable.
    The checks are on the open fd, the same one that is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as err:
        raise JournalError(f"read journal {path}: {err.strerror}") from err
    st = os.fstat(fd)
    problem = ""
    if not stat.S_ISREG(st.st_mode):
        problem = "not a regular file"
    elif st.st_uid not in (0, os.geteuid()):
        problem = f"owned by uid {st.st_uid}, not root"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o})"
    if problem:
        os.close(fd)
        raise JournalError(f"read journal {path}: {problem}; crilink writes journals root-only "
                           "(0600), so this one may have been edited by someone else: "
                           "refusing it (check its records, then chown root and chmod 0600 "
                           "to use it)")
    return fd


def _split_lines(path: str) -> tuple[list[bytes], bool]:
    fd = _open_trusted(path)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read()
    except OSError as err:
        raise JournalError(f"read journal {path}: {err.strerror}") from err
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" unless the last write was torn
    return [ln for ln in lines if ln.strip()], bool(tail.strip())


def _parse(path: str, lines: list[bytes], torn: bool) -> tuple[list[dict[str, Any]], bool]:
    """JSON objects of the lines; a last line that is not JSON is a torn write."""
    records: list[dict[str, Any]] = []
    for no, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise TypeError("not an object")
        except (ValueError, TypeError, RecursionError) as err:
            if no == len(lines) and not torn:
                return records, True  # a torn last record that happened to end in a newline
            raise JournalError(f"read journal {path}: line {no} is not a record ({err}); "
                               "the file is damaged beyond a torn last line") from err
        records.append(rec)
    return records, torn


def _entry(intent: IntentRecord | None, end: EndRecord | None) -> JournalEntry:
    if intent is None:
        if end is None or end.root is None or end.action is None:
            raise SchemaError("an end record without an intent must name its root and action")
        return JournalEntry(end.seq, end.root, end.action, end.status, reason=end.reason,
                            bytes=end.bytes)
    if end is not None and end.observed is not None and end.observed.type != intent.after.type:
        raise SchemaError(f"end.observed: a {end.observed.type} state, the intent's after "
                          f"state is a {intent.after.type}")
    return JournalEntry(
        seq=intent.seq, root=intent.root, action=intent.action,
        status=end.status if end else Status.PENDING, before=intent.before, after=intent.after,
        observed=end.observed if end else None, tmp=intent.tmp,
        reason=end.reason if end else "", bytes=end.bytes if end else 0)


def _records(records: list[dict[str, Any]]) -> tuple[dict[int, IntentRecord],
                                                     dict[int, EndRecord]]:
    """Intent and end records by seq (each record checked against the schema)."""
    intents: dict[int, IntentRecord] = {}
    ends: dict[int, EndRecord] = {}
    for no, rec in enumerate(records[1:], 2):
        try:
            kind = rec.get("rec")
            if kind == "intent":
                item: IntentRecord | EndRecord = decode_intent(rec)
                table: dict[int, Any] = intents
            elif kind == "end":
                item, table = decode_end(rec), ends
            else:
                raise SchemaError(f"rec: {kind!r} is not intent or end"[:200])
            if item.seq in table:
                raise SchemaError(f"a second {kind} record for seq {item.seq}")
        except SchemaError as err:
            raise SchemaError(f"line {no}: {err}") from err
        table[item.seq] = item
    return intents, ends


def read_journal(path: str | os.PathLike[str]) -> JournalLog:
    """Read a journal, tolerating a torn last line. Entries come in ``seq`` order.

    Every record is checked against the schema (:mod:`crilink.fix.journalschema`), and the
    file must be trusted (root-owned, not group/world-writable): else JournalError.
    """
    spath = os.fspath(path)
    records, torn = _parse(spath, *_split_lines(spath))
    try:
        if not records:
            raise SchemaError("no header; is this a crilink journal?")
        version, command = decode_header(records[0])
        if version != JOURNAL_VERSION:
            raise JournalError(f"read journal {spath}: version {version} is not "
                               f"{JOURNAL_VERSION}; use the crilink that wrote it")
        intents, ends = _records(records)
        entries = tuple(_entry(intents.get(s), ends.get(s)) for s in sorted({*intents, *ends}))
    except SchemaError as err:
        raise JournalError(f"read journal {spath}: {err}; the journal is damaged or was "
                           "edited: nothing was changed") from err
    return JournalLog(spath, command, entries, torn)
