"""The journal's record schema: the one place where journal JSON becomes typed values.

A journal is input: it may be damaged, or edited by hand. Every record is checked here,
field by field, before anything acts on it: types (an ``int`` is never a bool or a float,
so ``Infinity`` and ``1.5`` are refused), ranges (uids and gids are 32-bit ids other than
-1, modes are permission bits, sequence numbers are positive), every in-root path passes
:func:`crilink.fix.actions.check_in_root_path` (normalised, root-relative, no ``.``/``..``),
file contents are strict base64 matching their sha256, and each action's states have the
types its kind implies. Unknown keys in states and actions are refused.

Errors: :class:`SchemaError` (a ``ValueError``) naming the field (``action.path: ...``);
:mod:`crilink.fix.journal` turns it into a ``JournalError`` with the line number.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from crilink.fix.actions import (
    QUARANTINE_DIRNAME,
    TMP_PREFIX,
    Action,
    ActionKind,
    State,
    StateType,
    check_in_root_path,
)
from crilink.fix.ops import RootRef
from crilink.fix.result import Status

__all__ = ["EndRecord", "IntentRecord", "SchemaError", "decode_end", "decode_header",
           "decode_intent", "decode_state"]

_ID_MAX = 2**32 - 2  # uid_t/gid_t; 2**32 - 1 is (uid_t)-1, "leave unchanged" to chown(2)
_U64_MAX = 2**64 - 1
_SEQ_MAX = 2**63 - 1
_TMP_RE = re.compile(re.escape(TMP_PREFIX) + r"[0-9a-f]{1,64}")
_SHA_RE = re.compile(r"[0-9a-f]{64}")

_S, _F, _D, _A, _O = (StateType.SYMLINK, StateType.FILE, StateType.DIR, StateType.ABSENT,
                      StateType.OTHER)
# the fields each state type may carry; "text" is required for symlinks
_STATE_FIELDS: dict[StateType, frozenset[str]] = {
    _A: frozenset(), _O: frozenset(),
    _S: frozenset({"text", "uid", "gid"}),
    _F: frozenset({"sha256", "content_b64", "mode", "uid", "gid"}),
    _D: frozenset({"mode", "uid", "gid", "dev", "ino"}),
}
# action kind -> (allowed "before" types, "after" type), as the factories in actions build them
_KIND_TYPES: dict[ActionKind, tuple[frozenset[StateType], StateType]] = {
    ActionKind.REPLACE_SYMLINK: (frozenset({_S}), _S),
    ActionKind.CREATE_SYMLINK: (frozenset({_A}), _S),
    ActionKind.REMOVE_SYMLINK: (frozenset({_S}), _A),
    ActionKind.WRITE_FILE: (frozenset(StateType), _F),  # before: whatever was there
    ActionKind.REMOVE_FILE: (frozenset(StateType), _A),
    ActionKind.MAKE_DIR: (frozenset({_A}), _D),
    ActionKind.REMOVE_DIR: (frozenset({_D}), _A),
    ActionKind.MOVE_DIR: (frozenset({_D}), _D),
    ActionKind.PURGE_DIR: (frozenset({_D}), _A),
}
_E = TypeVar("_E", bound=StrEnum)
_ACTION_KEYS = frozenset({"kind", "path", "before", "after", "dest", "reason"})


class SchemaError(ValueError):
    """A journal record that does not follow the schema; the message names the field."""


def _obj(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected an object, found {type(value).__name__}")
    return value


def _enum(enum: type[_E], value: object, where: str) -> _E:
    if not isinstance(value, str) or value not in {str(m) for m in enum}:
        raise SchemaError(f"{where}: {value!r} is not one of {', '.join(map(str, enum))}"[:240])
    return enum(value)


def _int(doc: Mapping[str, Any], key: str, where: str, lo: int, hi: int) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if type(value) is not int or not lo <= value <= hi:  # bool and float are refused too
        raise SchemaError(f"{where}.{key}: {value!r} is not an integer in [{lo}, {hi}]")
    return value


def _need_int(doc: Mapping[str, Any], key: str, where: str, lo: int, hi: int) -> int:
    value = _int(doc, key, where, lo, hi)
    if value is None:
        raise SchemaError(f"{where}.{key}: missing")
    return value


def _str(doc: Mapping[str, Any], key: str, where: str, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise SchemaError(f"{where}.{key}: expected a string, found {value!r}"[:200])
    if "\0" in value:
        raise SchemaError(f"{where}.{key}: contains a NUL byte")
    try:
        os.fsencode(value)
    except UnicodeEncodeError as err:
        raise SchemaError(f"{where}.{key}: not a file name ({err.reason})") from err
    return value


def _path(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = _str(doc, key, where, required=True)
    assert value is not None  # required=True never returns None
    try:
        return check_in_root_path(value)
    except ValueError as err:
        raise SchemaError(f"{where}.{key}: {err}") from err


def _content(doc: Mapping[str, Any], where: str) -> None:
    sha = _str(doc, "sha256", where)
    if sha is not None and not _SHA_RE.fullmatch(sha):
        raise SchemaError(f"{where}.sha256: not a sha256 hex digest")
    b64 = _str(doc, "content_b64", where)
    if b64 is None:
        return
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as err:
        raise SchemaError(f"{where}.content_b64: not base64 ({err})") from err
    if sha is None or hashlib.sha256(data).hexdigest() != sha:
        raise SchemaError(f"{where}.content_b64: does not match its sha256")


def decode_state(value: object, where: str) -> State:
    """A :class:`State` from its JSON form, every field checked."""
    doc = _obj(value, where)
    stype = _enum(StateType, doc.get("type"), f"{where}.type")
    extra = set(doc) - {"type"} - _STATE_FIELDS[stype]
    if extra:
        raise SchemaError(f"{where}: a {stype} state has no {', '.join(sorted(extra))}")
    text = _str(doc, "text", where, required=stype == _S)
    if text == "":
        raise SchemaError(f"{where}.text: empty link text")
    _content(doc, where)
    return State(stype, text=text, sha256=doc.get("sha256"), content_b64=doc.get("content_b64"),
                 mode=_int(doc, "mode", where, 0, 0o7777),
                 uid=_int(doc, "uid", where, 0, _ID_MAX), gid=_int(doc, "gid", where, 0, _ID_MAX),
                 dev=_int(doc, "dev", where, 0, _U64_MAX), ino=_int(doc, "ino", where, 0, _U64_MAX))


def _typed(state: State, kind: ActionKind, which: str, where: str) -> State:
    befores, after = _KIND_TYPES[kind]
    allowed = befores if which == "before" else frozenset({after})
    if state.type not in allowed:
        raise SchemaError(f"{where}.{which}: a {kind} cannot have a {state.type} {which} state")
    return state


def decode_action(value: object, where: str = "action") -> Action:
    """An :class:`Action` from its JSON form: kind, in-root path(s), typed states."""
    doc = _obj(value, where)
    extra = set(doc) - _ACTION_KEYS
    if extra:
        raise SchemaError(f"{where}: unknown keys {', '.join(sorted(extra))}")
    kind = _enum(ActionKind, doc.get("kind"), f"{where}.kind")
    path = _path(doc, "path", where)
    dest = _path(doc, "dest", where) if kind == ActionKind.MOVE_DIR else None
    if kind != ActionKind.MOVE_DIR and "dest" in doc:
        raise SchemaError(f"{where}.dest: only a move_dir has a dest")
    if kind == ActionKind.PURGE_DIR and QUARANTINE_DIRNAME not in path.split("/")[:-1]:
        raise SchemaError(f"{where}.path: a purge_dir must lie below a {QUARANTINE_DIRNAME} dir")
    before = doc.get("before")
    return Action(kind, path,
                  None if before is None else _typed(decode_state(before, f"{where}.before"),
                                                     kind, "before", where),
                  _typed(decode_state(doc.get("after"), f"{where}.after"), kind, "after", where),
                  dest=dest, reason=_str(doc, "reason", where) or "")


def decode_root(value: object, where: str = "root") -> RootRef:
    doc = _obj(value, where)
    path = _str(doc, "path", where, required=True)
    assert path is not None  # required=True never returns None
    if not path.startswith("/"):
        raise SchemaError(f"{where}.path: {path!r} is not an absolute host path")
    return RootRef(path, _need_int(doc, "dev", where, 0, _U64_MAX),
                   _need_int(doc, "ino", where, 0, _U64_MAX))


def decode_header(value: object) -> tuple[int, str]:
    """(version, command) of a header record."""
    doc = _obj(value, "header")
    if doc.get("rec") != "header":
        raise SchemaError("the first record is not a header; is this a crilink journal?")
    version = _need_int(doc, "version", "header", 0, _SEQ_MAX)
    return version, _str(doc, "command", "header") or ""


@dataclass(frozen=True, slots=True)
class IntentRecord:
    seq: int
    root: RootRef
    action: Action
    before: State
    after: State
    tmp: str


@dataclass(frozen=True, slots=True)
class EndRecord:
    seq: int
    status: Status
    reason: str
    observed: State | None
    bytes: int
    root: RootRef | None  # with action: an item skipped before any intent was written
    action: Action | None


def _seq(doc: Mapping[str, Any], where: str) -> int:
    return _need_int(doc, "seq", where, 1, _SEQ_MAX)


def _undoes(doc: Mapping[str, Any], where: str) -> None:
    if "undoes" in doc:
        undoes = _obj(doc["undoes"], f"{where}.undoes")
        _str(undoes, "journal", f"{where}.undoes")
        _int(undoes, "seq", f"{where}.undoes", 1, _SEQ_MAX)


def decode_intent(doc: Mapping[str, Any]) -> IntentRecord:
    """An intent record; its ``before``/``after`` states must fit its action's kind."""
    seq = _seq(doc, "intent")
    action = decode_action(doc.get("action"))
    tmp = _str(doc, "tmp", "intent") or ""
    if tmp and not _TMP_RE.fullmatch(tmp):
        raise SchemaError(f"intent.tmp: {tmp!r} is not a crilink temporary name"[:200])
    _undoes(doc, "intent")
    before = _typed(decode_state(doc.get("before"), "intent.before"), action.kind, "before",
                    "intent")
    after = _typed(decode_state(doc.get("after"), "intent.after"), action.kind, "after", "intent")
    return IntentRecord(seq, decode_root(doc.get("root")), action, before, after, tmp)


def decode_end(doc: Mapping[str, Any]) -> EndRecord:
    """An end record (``root`` and ``action`` come together or not at all)."""
    seq = _seq(doc, "end")
    status = _enum(Status, doc.get("status"), "end.status")
    if status == Status.PENDING:
        raise SchemaError("end.status: pending is not an end status")
    observed = doc.get("observed")
    _undoes(doc, "end")
    if ("root" in doc) != ("action" in doc):
        raise SchemaError("end: root and action come together")
    return EndRecord(seq, status, _str(doc, "reason", "end") or "",
                     None if observed is None else decode_state(observed, "end.observed"),
                     _int(doc, "bytes", "end", 0, _U64_MAX) or 0,
                     decode_root(doc["root"]) if "root" in doc else None,
                     decode_action(doc["action"]) if "action" in doc else None)
