"""Where an image's files come from: a layout directory or members of a tar archive.

A :class:`BlobSource` answers for *names* relative to the image's top (``index.json``,
``blobs/sha256/<hex>``, ``manifest.json``, ``<id>/layer.tar``). It only reads; nothing is
ever written or unpacked.

Guarantees: :meth:`BlobSource.read_small` returns at most :data:`~crilink.formats.oci.MAX_DOCUMENT`
bytes or raises; :meth:`BlobSource.open` returns a fresh reader positioned at the start.
Errors: a missing name raises :class:`MissingBlobError`; a name that is there but is not a
regular file (a symlink in a layout, a FIFO, a device, a directory) raises
:class:`crilink.errors.CorruptInputError`; other failures raise
:class:`crilink.errors.InputError` (permission, I/O) with the name in the message.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Protocol, cast

from crilink.errors import CorruptInputError, InputError
from crilink.formats.oci import MAX_DOCUMENT
from crilink.pathres.files import open_regular

__all__ = ["BlobSource", "DirSource", "MissingBlobError", "Reader", "pread_all", "read_limited"]


class MissingBlobError(CorruptInputError):
    """The image names a file (blob, manifest, layer tar) that is not there."""


class Reader(Protocol):
    """A read-only byte stream, usable in ``with``."""

    def read(self, n: int = -1, /) -> bytes: ...

    def close(self) -> None: ...

    def __enter__(self) -> Reader: ...

    def __exit__(self, *exc: object) -> None: ...


class BlobSource(Protocol):
    def read_small(self, name: str, what: str) -> bytes: ...

    def open(self, name: str) -> Reader: ...

    def exists(self, name: str) -> bool: ...

    def close(self) -> None: ...


_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def read_limited(stream: Reader, what: str) -> bytes:
    data = stream.read(MAX_DOCUMENT + 1)
    if len(data) > MAX_DOCUMENT:
        raise CorruptInputError(f"read {what}: larger than {MAX_DOCUMENT} bytes, refused")
    return data


class DirSource:
    """Files of an OCI image layout directory (names relative to the layout root).

    Every file is opened inside the layout, one component at a time from a descriptor of the
    layout's top, and no symlink is followed there: a blob, ``index.json`` or a ``blobs/...``
    directory that is a symlink (even to another file of the layout), a FIFO, a device or a
    socket is refused with :class:`crilink.errors.CorruptInputError`. OCI layouts hold blobs
    as regular files (umoci, skopeo, buildah, containerd write them so); following a link
    would let the image make crilink open any file or device node of the host, as root.
    """

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        try:  # the top as the operator named it (a symlink there is theirs to make)
            self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise InputError(f"read image layout {root}: {err.strerror or err}") from err

    def _split(self, name: str) -> list[str]:
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise CorruptInputError(f"read {name[:80]!r}: name leaves the image layout")
        return parts

    def _open_dir(self, parent: int, comp: str, name: str) -> int:
        try:
            return os.open(comp, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError as err:
            raise MissingBlobError(f"read {name}: missing from {self.root}") from err
        except OSError as err:
            if err.errno in (errno.ENOTDIR, errno.ELOOP):
                raise CorruptInputError(f"read {name}: {comp!r} is not a plain directory "
                                        f"inside {self.root} (a symlink or a file); not "
                                        "followed") from err
            raise InputError(f"read {name}: {err.strerror or err}") from err

    def open(self, name: str) -> Reader:
        *dirs, last = self._split(name)
        fd = self._fd
        try:
            for comp in dirs:
                new = self._open_dir(fd, comp, name)
                if fd != self._fd:
                    os.close(fd)
                fd = new
            try:
                return cast(Reader, open_regular(last, f"{name} in {self.root}", dir_fd=fd))
            except InputError as err:
                if isinstance(err.__cause__, FileNotFoundError):
                    raise MissingBlobError(f"read {name}: missing from {self.root}") from err
                raise
        finally:
            if fd != self._fd:
                os.close(fd)

    def exists(self, name: str) -> bool:
        try:
            self.open(name).close()
        except CorruptInputError:
            return False
        return True

    def read_small(self, name: str, what: str) -> bytes:
        with self.open(name) as stream:
            try:
                return read_limited(stream, what)
            except OSError as err:
                raise InputError(f"read {what}: {err.strerror or err}") from err

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def pread_all(fd: int, size: int, offset: int) -> bytes:
    """Read exactly ``size`` bytes at ``offset`` (shorter only at end of file)."""
    parts: list[bytes] = []
    while size > 0:
        data = os.pread(fd, size, offset)
        if not data:
            break
        parts.append(data)
        size -= len(data)
        offset += len(data)
    return b"".join(parts)
