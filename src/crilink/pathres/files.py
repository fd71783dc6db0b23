"""Reading small regular files that an untrusted tree names (metadata, manifests, blobs).

A store or image can hold anything where a file is expected: a FIFO (reading blocks for
ever), a link to ``/dev/zero`` (reading never ends) or to a device whose ``open`` has side
effects, a directory. :func:`open_regular` opens with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO
opens at once, a final link is refused) and then insists on a regular file by ``fstat``;
:func:`read_regular` also caps what it reads. Links in the parent directories are followed:
callers that must stay inside a root resolve the parent first (:mod:`crilink.pathres`).

Errors: :class:`crilink.errors.InputError` for a missing or unreadable file,
:class:`crilink.errors.CorruptInputError` for something that is not a regular file or is
larger than the cap; messages name ``what`` and say what was found.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from typing import BinaryIO

from crilink.errors import CorruptInputError, InputError, denied_hint

__all__ = ["DEFAULT_LIMIT", "open_regular", "read_regular"]

DEFAULT_LIMIT = 64 << 20  # 64 MiB: far above any metadata file a runtime writes
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _open_fd(path: str | os.PathLike[str], what: str, dir_fd: int | None) -> int:
    try:
        fd = os.open(path, _FLAGS, dir_fd=dir_fd)
    except FileNotFoundError as err:
        raise InputError(f"read {what}: no such file") from err
    except PermissionError as err:
        raise InputError(f"read {what}: permission denied{denied_hint()}") from err
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CorruptInputError(f"read {what}: a symlink where a regular file belongs; "
                                    "not followed") from err
        if err.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing elsewhere
            raise CorruptInputError(f"read {what}: not a regular file") from err
        raise InputError(f"read {what}: {err.strerror or err}") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptInputError(f"read {what}: {_kind(st.st_mode)} where a regular file "
                                    "belongs; not read")
        fcntl.fcntl(fd, fcntl.F_SETFL, os.O_RDONLY)  # blocking reads again (a regular file)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: str | os.PathLike[str], what: str, *,
                 dir_fd: int | None = None) -> BinaryIO:
    """An open regular file (a final symlink, FIFO, device or directory is refused)."""
    return os.fdopen(_open_fd(path, what, dir_fd), "rb")


def read_regular(path: str | os.PathLike[str], what: str, *, limit: int = DEFAULT_LIMIT,
                 dir_fd: int | None = None) -> bytes:
    """The whole content of a regular file of at most ``limit`` bytes."""
    with open_regular(path, what, dir_fd=dir_fd) as f:
        try:
            data = f.read(limit + 1)
        except OSError as err:
            raise InputError(f"read {what}: {err.strerror or err}") from err
    if len(data) > limit:
        raise CorruptInputError(f"read {what}: larger than {limit} bytes; refused")
    return data
