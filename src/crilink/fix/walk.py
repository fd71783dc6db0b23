"""Walk a live directory tree through directory fds and list its symlinks (reads only)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import NamedTuple

from crilink.pathres.beneath import open_dir_beneath

__all__ = ["LinkEntry", "iter_symlinks"]


class LinkEntry(NamedTuple):
    """A symlink the walk found: in-root path, text, and how many names its inode has."""

    path: str
    text: str
    nlink: int = 1

_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV, errno.EACCES, errno.EPERM)


def _join(path: str, name: str) -> str:
    return "/" + name if path == "/" else f"{path}/{name}"


def _list(dir_fd: int, path: str, dev: int | None, seen: set[tuple[int, int]],
          ) -> tuple[list[LinkEntry], list[str]]:
    """The links and the subdirectories to walk of the directory at ``dir_fd``."""
    links: list[LinkEntry] = []
    subdirs: list[str] = []
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        child = _join(path, entry.name)
        try:
            if entry.is_symlink():
                text = os.fsdecode(os.readlink(entry.name, dir_fd=dir_fd))
                links.append(LinkEntry(child, text, entry.stat(follow_symlinks=False).st_nlink))
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile
        if dev is not None and st.st_dev != dev:
            continue  # another filesystem (proc, sys, a mount): not this root's
        if (st.st_dev, st.st_ino) in seen:
            continue  # reached again through a bind mount: walked once
        seen.add((st.st_dev, st.st_ino))
        subdirs.append(child)
    return links, subdirs


def iter_symlinks(root_fd: int, one_filesystem: bool = True) -> Iterator[LinkEntry]:
    """Every symlink below the directory open at ``root_fd``,
    depth first, names sorted; never follows a link; with ``one_filesystem`` stays on the
    root's filesystem. ``root_fd`` must be readable (not ``O_PATH``).

    The walk keeps paths, not open fds, and reopens each directory from the root with
    :func:`open_dir_beneath`: any depth (deeper than PATH_MAX too) with a few fds; a
    directory swapped for a link meanwhile, or one that cannot be opened, is skipped.
    """
    root_st = os.fstat(root_fd)
    dev = root_st.st_dev if one_filesystem else None
    seen = {(root_st.st_dev, root_st.st_ino)}
    stack = ["/"]
    while stack:
        path = stack.pop()
        try:
            fd = root_fd if path == "/" else open_dir_beneath(root_fd, path[1:])
        except OSError as err:
            if err.errno in _GONE:
                continue  # gone or swapped meanwhile, or unreadable: nothing to plan there
            raise
        try:
            links, subdirs = _list(fd, path, dev, seen)
        finally:
            if fd != root_fd:
                os.close(fd)
        yield from links
        stack.extend(reversed(subdirs))
