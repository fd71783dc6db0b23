"""Typed actions and node states: the vocabulary of plans and journals (pure, no I/O).

Nouns:
- *in-root path*: ``/a/b/c``, normalised (no ``.``/``..``/``//``), relative to a root directory
  (a root filesystem, or a store root such as ``/var/lib/containerd``). Every component but the
  last must be a real directory when the action runs; a symlink there makes the action skip.
- :class:`State`: what one path holds (absent, a symlink with its text, a small file with its
  content hash, a directory with its identity).
- :class:`Action`: one change of one path from ``before`` to ``after``. ``before`` is the state
  the plan saw (``None``: whatever is there; it is observed and journaled). ``after`` describes
  the node at ``dest`` for a move, else at ``path``.

Build actions with the factory functions (:func:`replace_symlink`, :func:`create_symlink`,
:func:`remove_symlink`, :func:`write_file`, :func:`remove_file`, :func:`make_dir`,
:func:`remove_dir`, :func:`move_dir`, :func:`purge_dir`, :func:`quarantine`);
:func:`inverse` gives the action that undoes a journaled one (``None`` for ``purge_dir``,
which is irreversible).
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

__all__ = [
    "ABSENT",
    "QUARANTINE_DIRNAME",
    "TMP_PREFIX",
    "Action",
    "ActionKind",
    "State",
    "StateType",
    "check_in_root_path",
    "create_symlink",
    "inverse",
    "make_dir",
    "move_dir",
    "purge_dir",
    "quarantine",
    "quarantine_path",
    "remove_dir",
    "remove_file",
    "remove_symlink",
    "replace_symlink",
    "write_file",
]

TMP_PREFIX = ".crilink-tmp-"  # temporary names in the directory being changed
QUARANTINE_DIRNAME = ".crilink-quarantine"  # purge_dir only deletes below a dir of this name
MAX_FILE_BYTES = 1 << 20  # write_file is for small files; old content is kept in the journal


class StateType(StrEnum):
    ABSENT = "absent"
    SYMLINK = "symlink"
    FILE = "file"
    DIR = "dir"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class State:
    """What one path holds. Fields that do not apply to ``type`` are ``None``.

    A symlink carries its text and owner (``uid``/``gid``): a rewrite keeps the owner, and
    undo puts it back.

    ``content_b64`` is carried for files whose content an action must be able to restore.
    ``dev``/``ino`` identify a directory (``None``: not known yet, matches any).
    """

    type: StateType
    text: str | None = None
    sha256: str | None = None
    content_b64: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    dev: int | None = None
    ino: int | None = None

    def same_as(self, other: State) -> bool:
        """Whether ``other`` is the same node state (identity fields; unknown ones match)."""
        if self.type != other.type:
            return False
        pairs = {
            StateType.SYMLINK: ((self.text, other.text), (self.uid, other.uid),
                                (self.gid, other.gid)),
            StateType.FILE: ((self.sha256, other.sha256), (self.mode, other.mode),
                             (self.uid, other.uid), (self.gid, other.gid)),
            StateType.DIR: ((self.dev, other.dev), (self.ino, other.ino)),
        }.get(self.type, ())
        return all(a is None or b is None or a == b for a, b in pairs)

    def content(self) -> bytes:
        """The file content carried by this state (``b""`` when none is carried)."""
        return base64.b64decode(self.content_b64) if self.content_b64 else b""

    def describe(self) -> str:
        """A short human phrase: ``symlink -> /bin/busybox``, ``file sha256 1a2b..``."""
        if self.type == StateType.SYMLINK:
            owner = f" (owner {self.uid}:{self.gid})" if self.uid is not None else ""
            return f"symlink -> {self.text}{owner}"
        if self.type == StateType.FILE:
            return f"file sha256 {(self.sha256 or '?')[:12]} mode {oct(self.mode or 0)}"
        if self.type == StateType.DIR and self.ino is not None:
            return f"dir (dev {self.dev} ino {self.ino})"
        return str(self.type)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": str(self.type)}
        for name in ("text", "sha256", "content_b64", "mode", "uid", "gid", "dev", "ino"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def file(cls, content: bytes, mode: int | None = None, uid: int | None = None,
             gid: int | None = None) -> State:
        """A file state carrying ``content`` (so it can be written or restored)."""
        return cls(StateType.FILE, sha256=hashlib.sha256(content).hexdigest(),
                   content_b64=base64.b64encode(content).decode("ascii"),
                   mode=mode, uid=uid, gid=gid)


ABSENT = State(StateType.ABSENT)


class ActionKind(StrEnum):
    REPLACE_SYMLINK = "replace_symlink"
    CREATE_SYMLINK = "create_symlink"
    REMOVE_SYMLINK = "remove_symlink"
    WRITE_FILE = "write_file"
    REMOVE_FILE = "remove_file"
    MAKE_DIR = "make_dir"
    REMOVE_DIR = "remove_dir"
    MOVE_DIR = "move_dir"
    PURGE_DIR = "purge_dir"


@dataclass(frozen=True, slots=True)
class Action:
    """One planned change; ``reason`` says why, for the plan's reader."""

    kind: ActionKind
    path: str
    before: State | None
    after: State
    dest: str | None = None
    reason: str = ""

    @property
    def reversible(self) -> bool:
        return self.kind != ActionKind.PURGE_DIR

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": str(self.kind), "path": self.path,
                               "after": self.after.to_json()}
        if self.before is not None:
            out["before"] = self.before.to_json()
        if self.dest is not None:
            out["dest"] = self.dest
        if self.reason:
            out["reason"] = self.reason
        return out


def check_in_root_path(path: str) -> str:
    """``path`` if it is a normalised in-root path other than ``/``; else ``ValueError``."""
    if not path.startswith("/") or path == "/" or "\0" in path:
        raise ValueError(f"not an in-root path: {path!r}")
    if posixpath.normpath(path) != path or path.startswith("//"):
        raise ValueError(f"in-root path not normalised: {path!r}")
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError(f"in-root path has . or ..: {path!r}")
    return path


def _symlink(text: str) -> State:
    return State(StateType.SYMLINK, text=text)


def replace_symlink(path: str, old: str, new: str, reason: str = "") -> Action:
    """Replace the symlink at ``path`` (text ``old``) by one with text ``new``, atomically."""
    return Action(ActionKind.REPLACE_SYMLINK, check_in_root_path(path), _symlink(old),
                  _symlink(new), reason=reason)


def create_symlink(path: str, text: str, reason: str = "") -> Action:
    """Create a symlink at ``path`` (which must be absent)."""
    return Action(ActionKind.CREATE_SYMLINK, check_in_root_path(path), ABSENT, _symlink(text),
                  reason=reason)


def remove_symlink(path: str, text: str, reason: str = "") -> Action:
    """Remove the symlink at ``path`` if its text is still ``text``."""
    return Action(ActionKind.REMOVE_SYMLINK, check_in_root_path(path), _symlink(text), ABSENT,
                  reason=reason)


def write_file(path: str, content: bytes, *, mode: int | None = None, uid: int | None = None,
               gid: int | None = None, expect: State | None = None, reason: str = "") -> Action:
    """Write a small file atomically. ``mode``/``uid``/``gid`` ``None``: keep the old file's
    (else 0o644 and this process's ids). ``expect``: the state the plan saw (``ABSENT``, or a
    file state; ``None`` accepts whatever is there). The old content goes into the journal.
    """
    if len(content) > MAX_FILE_BYTES:
        raise ValueError(f"write_file {path}: {len(content)} bytes is not a small file")
    return Action(ActionKind.WRITE_FILE, check_in_root_path(path), expect,
                  State.file(content, mode, uid, gid), reason=reason)


def remove_file(path: str, expect: State | None = None, reason: str = "") -> Action:
    """Remove a small regular file; its content goes into the journal so undo can restore it."""
    return Action(ActionKind.REMOVE_FILE, check_in_root_path(path), expect, ABSENT, reason=reason)


def make_dir(path: str, mode: int = 0o700, reason: str = "") -> Action:
    """Create a directory (a no-op when one is already there)."""
    return Action(ActionKind.MAKE_DIR, check_in_root_path(path), ABSENT,
                  State(StateType.DIR, mode=mode), reason=reason)


def remove_dir(path: str, reason: str = "") -> Action:
    """Remove an empty directory."""
    return Action(ActionKind.REMOVE_DIR, check_in_root_path(path), State(StateType.DIR), ABSENT,
                  reason=reason)


def move_dir(path: str, dest: str, reason: str = "") -> Action:
    """Rename a directory to ``dest`` (absent; same filesystem; parent must exist)."""
    state = State(StateType.DIR)
    return Action(ActionKind.MOVE_DIR, check_in_root_path(path), state, state,
                  dest=check_in_root_path(dest), reason=reason)


def purge_dir(path: str, reason: str = "") -> Action:
    """Delete a quarantined directory tree (irreversible). ``path`` must lie below a
    directory named :data:`QUARANTINE_DIRNAME`."""
    if QUARANTINE_DIRNAME not in check_in_root_path(path).split("/")[:-1]:
        raise ValueError(f"purge_dir {path}: only paths below a {QUARANTINE_DIRNAME} dir")
    return Action(ActionKind.PURGE_DIR, path, State(StateType.DIR), ABSENT, reason=reason)


def quarantine_path(path: str, stamp: str, under: str = "/") -> str:
    """Where :func:`quarantine` moves ``path``: ``<under>/.crilink-quarantine/<stamp>/<name>``,
    ``name`` being ``path`` without its leading ``/``, ``%`` as ``%25`` and ``/`` as ``%2F``."""
    name = check_in_root_path(path)[1:].replace("%", "%25").replace("/", "%2F")
    return posixpath.join(under, QUARANTINE_DIRNAME, stamp, name)


def quarantine(path: str, stamp: str, under: str = "/", reason: str = "") -> list[Action]:
    """Actions that move the directory ``path`` into the quarantine of run ``stamp`` (below
    ``under``, which must be on the same filesystem): two ``make_dir`` (no-ops when present)
    and a ``move_dir``. Follow with ``purge_dir(quarantine_path(path, stamp, under))`` to free
    the bytes (irreversible), or leave it for ``crilink undo``."""
    qdir = posixpath.join(under, QUARANTINE_DIRNAME)
    return [make_dir(qdir), make_dir(posixpath.join(qdir, stamp)),
            move_dir(path, quarantine_path(path, stamp, under), reason=reason)]


_KIND_FOR: dict[tuple[StateType, StateType], ActionKind] = {
    (StateType.SYMLINK, StateType.SYMLINK): ActionKind.REPLACE_SYMLINK,
    (StateType.ABSENT, StateType.SYMLINK): ActionKind.CREATE_SYMLINK,
    (StateType.SYMLINK, StateType.ABSENT): ActionKind.REMOVE_SYMLINK,
    (StateType.FILE, StateType.FILE): ActionKind.WRITE_FILE,
    (StateType.ABSENT, StateType.FILE): ActionKind.WRITE_FILE,
    (StateType.FILE, StateType.ABSENT): ActionKind.REMOVE_FILE,
    (StateType.ABSENT, StateType.DIR): ActionKind.MAKE_DIR,
    (StateType.DIR, StateType.ABSENT): ActionKind.REMOVE_DIR,
}


def inverse(action: Action, before: State, after: State) -> Action | None:
    """The action that takes the node back from ``after`` to ``before`` (the states the
    journal recorded), or ``None`` when ``action`` cannot be undone."""
    if action.kind == ActionKind.PURGE_DIR:
        return None
    if action.kind == ActionKind.MOVE_DIR:
        assert action.dest is not None  # move_dir always has a dest (see move_dir())
        return replace(action, path=action.dest, dest=action.path, before=after, after=before,
                       reason=f"undo {action.kind} {action.path}")
    kind = _KIND_FOR.get((after.type, before.type))
    if kind is None:
        return None
    return Action(kind, action.path, after, before, reason=f"undo {action.kind} {action.path}")
