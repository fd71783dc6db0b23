"""A live directory as a :class:`~crilink.pathres.base.VFS`, addressed through a directory fd."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from crilink.errors import InputError, denied_hint
from crilink.pathres.base import Node, NodeType
from crilink.pathres.beneath import open_dir_beneath

__all__ = ["DirVFS", "node_type"]

_PATH_MAX = 4096  # bytes with the NUL: a longer path fails with ENAMETOOLONG
_SHORT = _PATH_MAX // 4  # chars: a str this short encodes to fewer than _PATH_MAX bytes

_TYPES = {
    stat.S_IFDIR: NodeType.DIR,
    stat.S_IFREG: NodeType.FILE,
    stat.S_IFLNK: NodeType.SYMLINK,
}


def node_type(mode: int) -> NodeType:
    """The :class:`NodeType` of an ``st_mode``."""
    return _TYPES.get(stat.S_IFMT(mode), NodeType.OTHER)


class DirVFS:
    """The tree under ``root`` (a host directory), seen as the container sees it.

    The root itself is opened once (following links in ``root``, so ``/proc/PID/root``
    works); every lookup is ``fstatat``/``readlinkat`` relative to that fd with
    ``AT_SYMLINK_NOFOLLOW``. Limit: the path's parents are resolved by the caller (the
    resolver); a tree changed concurrently could make a lookup see a swapped parent. Reading
    is harmless; writers must use :func:`crilink.pathres.open_in_root`, which re-checks.
    Names are ``os.fsdecode`` strs (surrogateescape), so any byte string works. Paths longer
    than PATH_MAX are looked up from their parent directory, opened piecewise.
    Errors: a missing node is ``None``; other failures raise ``InputError``.
    """

    def __init__(self, root: str, *, fd: int | None = None) -> None:
        self.root = root
        if fd is None:
            try:
                fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError as err:
                raise InputError(f"open {root}: no such directory") from err
            except NotADirectoryError as err:
                raise InputError(f"open {root}: not a directory") from err
            except OSError as err:
                hint = denied_hint() if isinstance(err, PermissionError) else ""
                raise InputError(f"open {root}: {err.strerror}{hint}") from err
            self._owned = True
        else:
            self._owned = False
        self.fd = fd

    @classmethod
    def from_fd(cls, fd: int, name: str = "<fd>") -> DirVFS:
        """A view of the directory open at ``fd`` (not closed by :meth:`close`)."""
        return cls(name, fd=fd)

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DirVFS:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def lstat(self, path: str) -> Node | None:
        try:
            with self._at(path) as (dir_fd, rel):
                st = os.lstat(rel, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            raise InputError(f"lstat {path} in {self.root}: {err.strerror}") from err
        return Node(_TYPES.get(stat.S_IFMT(st.st_mode), NodeType.OTHER), st.st_dev, st.st_ino)

    def readlink(self, path: str) -> str:
        try:
            with self._at(path) as (dir_fd, rel):
                return os.readlink(rel, dir_fd=dir_fd)
        except OSError as err:
            raise InputError(f"readlink {path} in {self.root}: {err.strerror}") from err

    @contextmanager
    def _at(self, path: str) -> Iterator[tuple[int, str]]:
        """(dir fd, relative name) to look up in-root ``path`` with: the root fd and the path,
        or, for a path too long for one syscall (a deep tree), its parent directory opened a
        piece at a time beneath the root (parents are link-free, see the class doc)."""
        rel = path[1:] or "."
        if len(rel) < _SHORT or len(os.fsencode(rel)) < _PATH_MAX or "/" not in rel:
            yield self.fd, rel
            return
        parent, name = rel.rsplit("/", 1)
        pfd = open_dir_beneath(self.fd, parent)
        try:
            yield pfd, name
        finally:
            os.close(pfd)
