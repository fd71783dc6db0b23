"""The ``openat2(2)`` system call through ctypes, and a probe for whether the kernel has it.

No other module of ``pathres`` is imported here, so every one of them may use it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Callable
from functools import cache

__all__ = ["RESOLVE_IN_ROOT", "RESOLVE_NO_MAGICLINKS", "in_root_probe", "openat2",
           "openat2_available"]

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "arm64": 437, "riscv64": 437, "ppc64le": 437,
                "s390x": 437}


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64))


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def openat2(dir_fd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """The raw ``openat2`` syscall; raises ``OSError`` (``ENOSYS`` where it does not exist)."""
    nr = _SYS_OPENAT2.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, "openat2: unknown syscall number on this machine")
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & (os.O_CREAT | os.O_TMPFILE) else 0,
                   resolve)
    fd = int(_libc().syscall(nr, dir_fd, os.fsencode(path), ctypes.byref(how),
                             ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"openat2 {path!r}: {os.strerror(err)}")
    return fd


def in_root_probe() -> Callable[[int, bytes], bool] | None:
    """A quick yes/no: does ``path`` (bytes, relative to root fd) resolve inside the root?

    One ``openat2(O_PATH, RESOLVE_IN_ROOT)`` with a prebuilt argument block, the fd closed
    at once: a few microseconds, for scans that judge millions of links. ``False`` means any
    failure (missing, not a directory, loop, EAGAIN, too long ...): ask the resolver then.
    ``None`` where the kernel has no ``openat2``.
    """
    nr = _SYS_OPENAT2.get(platform.machine())
    if nr is None or not openat2_available():
        return None
    syscall, close = _libc().syscall, os.close
    how = _OpenHow(os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    how_ref, how_size = ctypes.byref(how), ctypes.sizeof(how)

    def probe(root_fd: int, path: bytes) -> bool:
        fd = int(syscall(nr, root_fd, path, how_ref, how_size))
        if fd < 0:
            return False
        close(fd)
        return True

    return probe  # how_ref (a byref) keeps the argument block alive


@cache
def openat2_available() -> bool:
    """True when ``openat2`` with ``RESOLVE_IN_ROOT`` works here (probed once)."""
    try:
        root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.close(openat2(root, ".", os.O_PATH, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS))
    except OSError:
        return False
    finally:
        os.close(root)
    return True
