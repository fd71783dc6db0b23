"""Where an image's files come from: a layout directory or members of a tar archive.

A :class:`BlobSource` answers for *names* relative to the image's top (``index.json``,
``blobs/sha256/<hex>``, ``manifest.json``, ``<id>/layer.tar``). It only reads; nothing is
ever written or unpacked.

Guarantees: :meth:`BlobSource.read_small` returns at most :data:`~crilink.formats.oci.MAX_DOCUMENT`
bytes or raises; :meth:`BlobSource.open` returns a fresh reader positioned at the start.
Errors: a missing name raises :class:`MissingBlobError`; other failures raise
:class:`crilink.errors.InputError` (permission, I/O) with the name in the message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Protocol, cast

from crilink.errors import CorruptInputError, InputError
from crilink.formats.oci import MAX_DOCUMENT

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


def read_limited(stream: Reader, what: str) -> bytes:
    data = stream.read(MAX_DOCUMENT + 1)
    if len(data) > MAX_DOCUMENT:
        raise CorruptInputError(f"read {what}: larger than {MAX_DOCUMENT} bytes, refused")
    return data


class DirSource:
    """Files of an OCI image layout directory (names relative to the layout root)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise CorruptInputError(f"read {name[:80]!r}: name leaves the image layout")
        return self.root / name

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def open(self, name: str) -> Reader:
        path = self._path(name)
        try:
            stream: IO[bytes] = path.open("rb")
        except FileNotFoundError as err:
            raise MissingBlobError(f"read {name}: missing from {self.root}") from err
        except PermissionError as err:
            raise InputError(f"read {path}: permission denied (run as root?)") from err
        except IsADirectoryError as err:
            raise CorruptInputError(f"read {path}: a directory, expected a file") from err
        except OSError as err:
            raise InputError(f"read {path}: {err.strerror or err}") from err
        return cast(Reader, stream)

    def read_small(self, name: str, what: str) -> bytes:
        with self.open(name) as stream:
            try:
                return read_limited(stream, what)
            except OSError as err:
                raise InputError(f"read {what}: {err.strerror or err}") from err

    def close(self) -> None:
        return None


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
