"""Walk a live directory tree through directory fds and list its symlinks (reads only)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import NamedTuple

from crilink.pathres.beneath import open_dir_beneath

__all__ = ["LinkEntry", "SymlinkWalk", "iter_symlinks"]


class LinkEntry(NamedTuple):
    """A symlink the walk found: in-root path, text, and how many names its inode has."""

    path: str
    text: str
    nlink: int = 1

_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV, errno.EACCES, errno.EPERM)


def _join(path: str, name: str) -> str:
    return "/" + name if path == "/" else f"{path}/{name}"


class SymlinkWalk:
    """Every symlink below the directory open at ``root_fd``, depth first, names sorted;
    never follows a link; with ``one_filesystem`` stays on the root's filesystem.
    ``root_fd`` must be readable (not ``O_PATH``).

    The walk keeps paths, not open fds, and reopens each directory from the root with
    :func:`open_dir_beneath`: any depth (deeper than PATH_MAX too) with a few fds; a
    directory swapped for a link meanwhile, or one that cannot be opened, is skipped.

    Each directory (dev, ino) is walked once. One reached again (a bind mount inside the
    root) is recorded in :attr:`aliases` (walked path -> the other path), so that, after the
    walk, :meth:`alias_of` tells which links are reachable by more than one path.
    """

    def __init__(self, root_fd: int, one_filesystem: bool = True) -> None:
        self.root_fd = root_fd
        root_st = os.fstat(root_fd)
        self._dev = root_st.st_dev if one_filesystem else None
        self._dirs: dict[tuple[int, int], str] = {(root_st.st_dev, root_st.st_ino): "/"}
        self.aliases: dict[str, str] = {}

    def __iter__(self) -> Iterator[LinkEntry]:
        stack = ["/"]
        while stack:
            path = stack.pop()
            try:
                fd = self.root_fd if path == "/" else open_dir_beneath(self.root_fd, path[1:])
            except OSError as err:
                if err.errno in _GONE:
                    continue  # gone or swapped meanwhile, or unreadable: nothing to plan there
                raise
            try:
                links, subdirs = self._list(fd, path)
            finally:
                if fd != self.root_fd:
                    os.close(fd)
            yield from links
            stack.extend(reversed(subdirs))

    def alias_of(self, path: str) -> tuple[str, str] | None:
        """For the link at ``path`` (after the walk): (the nearest directory above it that is
        also reached by another path, that other path), or ``None``."""
        d = path
        while d != "/":
            d = d.rsplit("/", 1)[0] or "/"
            if d in self.aliases:
                return d, self.aliases[d]
        return None

    def _list(self, dir_fd: int, path: str) -> tuple[list[LinkEntry], list[str]]:
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
                    nlink = entry.stat(follow_symlinks=False).st_nlink
                    links.append(LinkEntry(child, text, nlink))
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            if self._dev is not None and st.st_dev != self._dev:
                continue  # another filesystem (proc, sys, a mount): not this root's
            ident = (st.st_dev, st.st_ino)
            if ident in self._dirs:  # reached again through a bind mount: walked once
                self.aliases.setdefault(self._dirs[ident], child)
                continue
            self._dirs[ident] = child
            subdirs.append(child)
        return links, subdirs


def iter_symlinks(root_fd: int, one_filesystem: bool = True) -> Iterator[LinkEntry]:
    """The links of :class:`SymlinkWalk` (when the aliases do not matter)."""
    return iter(SymlinkWalk(root_fd, one_filesystem))
