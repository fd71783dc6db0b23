"""Primitive filesystem operations, all relative to a directory fd opened inside a root.

Guarantees: every operation first opens the parent directory of its in-root path by walking
from the root fd one component at a time with ``O_NOFOLLOW | O_DIRECTORY`` (no ``..``, no
symlink is ever followed), then acts with ``*at`` calls on that fd. A directory swapped for a
symlink (to anywhere) makes the walk fail, and the operation raises
:class:`~crilink.errors.UnsafeTargetError` instead of writing: nothing is ever written outside
the root through a path that changed under us. Replacements use a temporary name in the same
directory and ``rename``; directory entries are ``fsync``'d after each change.

Errors: :class:`UnsafeTargetError` when the tree is not what the caller expected (the caller
skips that item); ``OSError`` from the kernel otherwise (the caller records a failure).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crilink.errors import InputError, JournalError, UnsafeTargetError
from crilink.fix.actions import ABSENT, MAX_FILE_BYTES, State, StateType, check_in_root_path
from crilink.formats.mountinfo import mount_points

__all__ = [
    "MissingParentError",
    "Root",
    "RootRef",
    "dir_bytes",
    "observe",
    "open_parent",
    "open_root",
    "parent_of",
    "rename_noreplace",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1


class MissingParentError(UnsafeTargetError):
    """A directory on the way to an in-root path does not exist (so neither does the path)."""


@dataclass(frozen=True, slots=True)
class RootRef:
    """A root directory as the journal names it: host path and (st_dev, st_ino)."""

    path: str
    dev: int
    ino: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "dev": self.dev, "ino": self.ino}


@dataclass(frozen=True, slots=True)
class Root:
    """An open root directory: its fd (owned by :func:`open_root`) and its reference."""

    fd: int
    ref: RootRef


@contextmanager
def open_root(path: str, expect: RootRef | None = None) -> Iterator[Root]:
    """Open the root directory ``path`` (a trusted operator path; the root itself may be
    reached through links). With ``expect``, refuse a root whose (dev, ino) differ."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise InputError(f"open root {path}: {err.strerror}") from err
    try:
        st = os.fstat(fd)
        ref = RootRef(os.fspath(Path(path).absolute()), st.st_dev, st.st_ino)
        if expect is not None and (ref.dev, ref.ino) != (expect.dev, expect.ino):
            raise JournalError(  # undo only: this journal is not for this root
                f"root {path} is not the directory the journal was written for "
                f"(dev/ino {ref.dev}/{ref.ino}, journal says {expect.dev}/{expect.ino}); "
                "refusing to touch it")
        yield Root(fd, ref)
    finally:
        os.close(fd)


def parent_of(path: str) -> tuple[list[str], str]:
    """The directory components and the last name of an in-root path."""
    parts = check_in_root_path(path).split("/")[1:]
    return parts[:-1], parts[-1]


@contextmanager
def open_parent(root: Root, path: str) -> Iterator[tuple[int, str]]:
    """Yield (fd of the parent directory of ``path``, last name), never following a link."""
    dirs, name = parent_of(path)
    fd = os.dup(root.fd)
    try:
        for i, part in enumerate(dirs):
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                where = "/" + "/".join(dirs[: i + 1])
                if err.errno == errno.ENOENT:
                    raise MissingParentError(f"{where} does not exist (any more)") from err
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeTargetError(
                        f"{where} is no longer a directory ({err.strerror}); "
                        "the tree changed since the plan") from err
                raise
            os.close(fd)
            fd = nfd
        yield fd, name
    finally:
        os.close(fd)


def _read_file(dir_fd: int, name: str, st: os.stat_result) -> State:
    if st.st_size > MAX_FILE_BYTES:
        raise UnsafeTargetError(f"{name}: {st.st_size} bytes is too big to journal")
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    return State.file(data, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def observe(dir_fd: int, name: str, content: bool = False) -> State:
    """The state of ``name`` in ``dir_fd`` (lstat; never follows). ``content``: read a
    regular file's bytes into the state (else only type, mode and owner)."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return ABSENT
    if stat.S_ISLNK(st.st_mode):
        return State(StateType.SYMLINK, text=os.fsdecode(os.readlink(name, dir_fd=dir_fd)),
                     uid=st.st_uid, gid=st.st_gid)
    if stat.S_ISDIR(st.st_mode):
        return State(StateType.DIR, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                     dev=st.st_dev, ino=st.st_ino)
    if stat.S_ISREG(st.st_mode):
        if content:
            return _read_file(dir_fd, name, st)
        return State(StateType.FILE, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid)
    return State(StateType.OTHER)


def _libc_renameat2() -> Any:
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_RENAMEAT2 = _libc_renameat2()


def rename_noreplace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """rename(2) that fails with EEXIST instead of replacing ``dst`` (renameat2 NOREPLACE)."""
    if _RENAMEAT2 is None:  # old libc: check, then rename (a narrow race, same directory fds)
        if observe(dst_fd, dst) != ABSENT:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return
    if _RENAMEAT2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


def dir_bytes(dir_fd: int, name: str) -> int:
    """Disk bytes (st_blocks * 512) of the tree ``name``, each inode counted once; fd-based."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for _dirpath, dirnames, filenames, dfd in os.fwalk(name, dir_fd=dir_fd):
        for entry in (".", *dirnames, *filenames):
            try:
                st = os.lstat(entry, dir_fd=dfd)
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def mounts_below(dir_fd: int, name: str) -> list[str]:
    """Mount points at or below the directory ``name`` (opened without following a link):
    a leftover bind mount in a leaked snapshot dir would make a tree removal delete what the
    mount shows, somewhere else entirely. Judged from this process's mountinfo."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")  # noqa: PTH115 - the kernel names an open fd
    finally:
        os.close(fd)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            points = mount_points(f.read())
    except OSError:
        return []
    return [p for p in points if p == real or p.startswith(real.rstrip("/") + "/")]


def purge_tree(dir_fd: int, name: str) -> None:
    """Delete the tree ``name`` fd-relatively (symlinks inside are removed, never followed).
    Refuses (``UnsafeTargetError``) when a mount lies below it: the removal would cross it."""
    points = mounts_below(dir_fd, name)
    if points:
        raise UnsafeTargetError(f"a mount lies under it ({points[0]}); umount it first: "
                                "nothing removed")
    shutil.rmtree(name, dir_fd=dir_fd)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
