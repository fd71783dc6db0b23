"""Disk usage of directory trees, hard-link aware: what deleting a tree would give back.

Nouns:
- *allocated bytes* of an inode: ``st_blocks * 512`` (what ``du`` counts, not ``st_size``).
- *exclusive bytes* of a set of trees: the allocated bytes of every inode all of whose links
  (``st_nlink``) lie inside the set. Deleting the trees frees exactly these bytes.
- *shared bytes*: allocated bytes of inodes seen in the set that also have links elsewhere.

Guarantees: every ``(st_dev, st_ino)`` is counted once, however many links point at it; symlinks
are never followed; with ``one_filesystem`` a directory on another device (a mount point) is
neither counted nor entered. Entries that vanish during the walk are skipped. Limits: a
directory's own ``st_nlink`` is not compared (directories cannot be hard-linked).
Errors: a tree root that cannot be read raises :class:`crilink.errors.InputError`;
unreadable subdirectories are counted in ``Usage.errors``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from crilink.errors import InputError

__all__ = ["Usage", "tree_usage", "usage_of"]

BLOCK_SIZE = 512  # st_blocks unit on Linux, whatever the filesystem's block size


@dataclass(frozen=True, slots=True)
class Usage:
    """Allocated bytes of a set of trees, split by whether deleting them would free the bytes."""

    exclusive: int = 0
    shared: int = 0
    inodes: int = 0
    errors: int = 0

    @property
    def total(self) -> int:
        return self.exclusive + self.shared


class _Walk:
    """One walk's state: links seen per inode, and the inodes' sizes and link counts."""

    def __init__(self, one_filesystem: bool) -> None:
        self.one_filesystem = one_filesystem
        self.seen: dict[tuple[int, int], int] = {}
        self.info: dict[tuple[int, int], tuple[int, int]] = {}  # -> (bytes, nlink or 0 for dirs)
        self.errors = 0

    def add(self, st: os.stat_result, is_dir: bool) -> bool:
        key = (st.st_dev, st.st_ino)
        count = self.seen.get(key)
        self.seen[key] = (count or 0) + 1
        if count is None:
            self.info[key] = (st.st_blocks * BLOCK_SIZE, 0 if is_dir else st.st_nlink)
        return count is None

    def walk(self, path: str | bytes, dev: int) -> None:
        stack: list[str | bytes] = [path]
        while stack:
            top = stack.pop()
            try:
                it = os.scandir(top)
            except OSError:
                self.errors += 1
                continue
            with it:
                for entry in it:
                    self._entry(entry, dev, stack)

    def _entry(self, entry: os.DirEntry[str] | os.DirEntry[bytes], dev: int,
               stack: list[str | bytes]) -> None:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return
        except OSError:
            self.errors += 1
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir and self.one_filesystem and st.st_dev != dev:
            return
        if self.add(st, is_dir) and is_dir:
            stack.append(entry.path)

    def result(self) -> Usage:
        exclusive = shared = 0
        for key, (size, nlink) in self.info.items():
            if nlink == 0 or self.seen[key] >= nlink:
                exclusive += size
            else:
                shared += size
        return Usage(exclusive, shared, len(self.info), self.errors)


def usage_of(paths: Iterable[str | bytes | os.PathLike[str]], *,
             one_filesystem: bool = True, missing_ok: bool = True) -> Usage:
    """Usage of the union of ``paths`` (each a directory or file), every inode counted once.

    A path that does not exist counts nothing when ``missing_ok``, else raises ``InputError``.
    """
    walk = _Walk(one_filesystem)
    for p in paths:
        path = os.fspath(p)
        try:
            st = os.lstat(path)
        except FileNotFoundError as err:
            if missing_ok:
                continue
            raise InputError(f"measure {os.fsdecode(path)}: no such file or directory") from err
        except OSError as err:
            raise InputError(f"measure {os.fsdecode(path)}: {err.strerror}") from err
        is_dir = stat.S_ISDIR(st.st_mode)
        if walk.add(st, is_dir) and is_dir:
            walk.walk(path, st.st_dev)
    return walk.result()


def tree_usage(path: str | bytes | os.PathLike[str], *, one_filesystem: bool = True) -> Usage:
    """Usage of one tree (see :func:`usage_of`)."""
    return usage_of([path], one_filesystem=one_filesystem)
