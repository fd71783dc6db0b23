"""fd-safe opens for writers: a path is opened inside a root, never outside it.

``openat2(2)`` with ``RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`` (Linux >= 5.6) does it in
the kernel. Where the kernel lacks it (or a seccomp filter hides it), the fallback resolves
with the pure resolver over the root fd, then re-walks the result one component at a time
from the root fd with ``O_NOFOLLOW | O_DIRECTORY``: a directory swapped for a link meanwhile
fails the walk (``ELOOP``/``ENOTDIR``) and the lookup is retried, so the opened file is
always beneath the root (the walk only descends by name from the root fd, never ``..``).

Errors are ``OSError`` with the kernel's errno, exactly as ``os.open`` raises them
(``FileNotFoundError``, ``NotADirectoryError``, ``ELOOP`` ...), so callers can act on errno.
"""

from __future__ import annotations

import errno
import os

from crilink.pathres.base import NodeType
from crilink.pathres.dirvfs import DirVFS
from crilink.pathres.resolve import Resolver, split_path
from crilink.pathres.syscall import (
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    in_root_probe,
    openat2,
    openat2_available,
)

__all__ = ["in_root_probe", "open_dir_in_root", "open_in_root", "openat2", "openat2_available"]

_RETRIES = 16  # EAGAIN from the kernel, or a swap seen by the fallback walk


def open_in_root(root_fd: int, unsafe_path: str, flags: int, mode: int = 0o644) -> int:
    """Open ``unsafe_path`` inside the directory ``root_fd`` as the container would.

    Absolute paths, absolute link text and ``..`` stay inside the root; magic links
    (``/proc/PID/fd/N``) are refused. ``flags`` are ``os.open`` flags (``O_CLOEXEC`` is
    added; ``O_NOFOLLOW`` leaves a final link unfollowed). Returns a new fd.
    """
    if openat2_available():
        for _ in range(_RETRIES):
            try:
                return openat2(root_fd, unsafe_path, flags, mode,
                               RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
            except BlockingIOError:  # EAGAIN: a rename raced the lookup; the kernel asks to retry
                continue
        raise OSError(errno.EAGAIN, f"open {unsafe_path!r}: the tree keeps changing")
    return _fallback_open(root_fd, unsafe_path, flags, mode)


def open_dir_in_root(root_fd: int, unsafe_path: str) -> int:
    """Open the directory ``unsafe_path`` inside ``root_fd`` (``O_RDONLY|O_DIRECTORY``).

    The fd serves as ``dir_fd`` for ``*at`` calls and can be ``fsync``-ed.
    """
    return open_in_root(root_fd, unsafe_path, os.O_RDONLY | os.O_DIRECTORY)


def _fallback_open(root_fd: int, unsafe_path: str, flags: int, mode: int) -> int:
    last = OSError(errno.EAGAIN, f"open {unsafe_path!r}: the tree keeps changing")
    for _ in range(_RETRIES):
        target = _plan(root_fd, unsafe_path, flags)
        try:
            return _open_walk(root_fd, target, flags, mode)
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                raise
            last = err
    raise last


def _plan(root_fd: int, unsafe_path: str, flags: int) -> list[str]:
    """The components of the real (link-free) in-root path to open; raises like the kernel."""
    follow = not flags & os.O_NOFOLLOW
    res = Resolver(DirVFS.from_fd(root_fd)).walk("/", split_path(unsafe_path),
                                                 follow_last=follow, empty=not unsafe_path)
    if res.error is None:
        if flags & os.O_DIRECTORY and res.node is not None and res.node.type is not NodeType.DIR:
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), unsafe_path)
        return [c for c in res.resolved.split("/") if c]
    creatable = flags & os.O_CREAT and "/" not in res.remaining and res.remaining not in (
        "", ".", "..")
    if res.error == "missing" and creatable:
        return [*(c for c in res.resolved.split("/") if c), res.remaining]
    code = {"missing": errno.ENOENT, "not_a_directory": errno.ENOTDIR}.get(res.error,
                                                                            errno.ELOOP)
    raise OSError(code, os.strerror(code), unsafe_path)


def _open_walk(root_fd: int, comps: list[str], flags: int, mode: int) -> int:
    """Descend from ``root_fd`` by name with ``O_NOFOLLOW``; open the last with ``flags``."""
    if not comps:
        return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=root_fd)
    dfd = os.dup(root_fd)
    try:
        for name in comps[:-1]:
            nfd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        return os.open(comps[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
    finally:
        os.close(dfd)
