"""Open a directory below a root fd by a link-free relative path, following no link.

For walkers that saw ``rel`` as a real directory a moment ago and must not be led elsewhere
if it was swapped for a link since: ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)``, or,
where the kernel lacks it, a descent one name at a time with ``O_NOFOLLOW``. Either way a
swapped component fails with ``ELOOP``/``ENOTDIR``/``EXDEV`` instead of being followed.
Paths longer than PATH_MAX (deep trees) are opened a piece at a time, each beneath the last.
"""

from __future__ import annotations

import os
from functools import cache

from crilink.pathres.syscall import openat2, openat2_available

__all__ = ["open_dir_beneath"]

RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@cache
def _have_openat2() -> bool:
    return openat2_available()


_CHUNK = 3000  # bytes of path per open: PATH_MAX is 4096, deep trees are longer


def _chunks(rel: str) -> list[str]:
    """``rel`` cut at slashes into pieces shorter than :data:`_CHUNK` (a name stays whole)."""
    if len(rel) < _CHUNK:
        return [rel]
    out, cur = [], ""
    for name in rel.split("/"):
        if cur and len(cur) + len(name) + 1 >= _CHUNK:
            out.append(cur)
            cur = name
        else:
            cur = f"{cur}/{name}" if cur else name
    out.append(cur)
    return out


def open_dir_beneath(root_fd: int, rel: str) -> int:
    """Open directory ``rel`` (root-relative, link-free) below ``root_fd``, following no link.

    Paths longer than PATH_MAX are opened a piece at a time, each piece beneath the last.
    """
    fd = root_fd
    try:
        for piece in _chunks(rel):
            nfd = _open_piece(fd, piece)
            if fd != root_fd:
                os.close(fd)
            fd = nfd
    except BaseException:
        if fd != root_fd:
            os.close(fd)
        raise
    return fd


def _open_piece(dir_fd: int, rel: str) -> int:
    if _have_openat2():
        while True:
            try:
                return openat2(dir_fd, rel, _DIR_FLAGS, 0,
                               RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
            except BlockingIOError:
                continue  # EAGAIN: a rename raced the lookup
    fd = os.dup(dir_fd)
    try:
        for name in rel.split("/"):
            nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd
