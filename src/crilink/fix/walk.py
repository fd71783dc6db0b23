"""Walk a live directory tree through directory fds and list its symlinks (reads only)."""

from __future__ import annotations

import os
from collections.abc import Iterator

__all__ = ["iter_symlinks"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _join(path: str, name: str) -> str:
    return "/" + name if path == "/" else f"{path}/{name}"


def _walk(dir_fd: int, path: str, dev: int | None) -> Iterator[tuple[str, str]]:
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        child = _join(path, entry.name)
        if entry.is_symlink():
            yield child, os.fsdecode(os.readlink(entry.name, dir_fd=dir_fd))
        elif entry.is_dir(follow_symlinks=False):
            if dev is not None and entry.stat(follow_symlinks=False).st_dev != dev:
                continue  # another filesystem (proc, sys, a bind mount): not this root's
            try:
                fd = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue  # gone or swapped meanwhile, or unreadable: nothing to plan there
            try:
                yield from _walk(fd, child, dev)
            finally:
                os.close(fd)


def iter_symlinks(root_fd: int, one_filesystem: bool = True) -> Iterator[tuple[str, str]]:
    """(in-root path, link text) of every symlink below the directory open at ``root_fd``,
    depth first, names sorted; never follows a link; with ``one_filesystem`` stays on the
    root's filesystem. ``root_fd`` must be readable (not ``O_PATH``)."""
    dev = os.fstat(root_fd).st_dev if one_filesystem else None
    yield from _walk(root_fd, "/", dev)
