"""Image archives read in place: oci-archive (a tar holding a layout) and docker-archive.

Members are located once (headers only) and then read by offset with ``pread``; nothing is
unpacked. Symbolic and hard-link members (skopeo writes ``<id>/layer.tar`` as a symlink to
``../<diff_id>.tar``) are followed inside the archive.

docker-archive's ``manifest.json`` (skopeo, ``docker save`` before and after 25.0) is a list
of ``{"Config", "RepoTags", "Layers"}``; :func:`parse_docker_manifest` turns it into
:class:`DockerImage` records.

Errors: not a tar, a compressed outer archive, or no image inside ->
:class:`crilink.errors.InputError`; a damaged archive (a tar header, then truncation or a
header Python's tarfile cannot read) or manifest -> :class:`crilink.errors.CorruptInputError`.
Nothing tarfile raises escapes as another exception.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from crilink.errors import CorruptInputError, InputError
from crilink.formats.blobstream import Compression, sniff_compression
from crilink.formats.oci import INDEX_FILE, LAYOUT_FILE, parse_json
from crilink.formats.source import MissingBlobError, Reader, pread_all, read_limited
from crilink.model import TargetKind

__all__ = [
    "DOCKER_MANIFEST",
    "ArchiveSource",
    "DockerImage",
    "parse_docker_manifest",
    "sniff_archive",
]

DOCKER_MANIFEST = "manifest.json"
K_CONFIG, K_REPO_TAGS, K_LAYERS = "Config", "RepoTags", "Layers"
MAX_LINK_HOPS = 8
READ_CHUNK = 1024 * 1024


def _norm(name: str) -> str:
    """An archive member name as a relative, normalised path (``""`` for the top)."""
    norm = posixpath.normpath("/" + name).lstrip("/")
    return "" if norm == "." else norm


class _MemberReader:
    """A read-only stream over one member's bytes (``pread``, so readers never interfere)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd, self._start, self._size, self._pos = fd, offset, size, 0

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        n = left if n < 0 else min(n, left)
        data = pread_all(self._fd, n, self._start + self._pos) if n > 0 else b""
        self._pos += len(data)
        return data

    def close(self) -> None:
        return None

    def __enter__(self) -> _MemberReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# what Python's tarfile raises on a damaged archive: its own errors, EOFError, and ValueError
# (int() of a bad GNU sparse or PAX number, UnicodeDecodeError of a name), OverflowError
_TAR_ERRORS = (tarfile.TarError, EOFError, ValueError, OverflowError)
USTAR_MAGIC = b"ustar"  # at offset 257 of a POSIX or GNU header block
USTAR_MAGIC_AT = 257
HEAD = 512


class _Damaged(Exception):
    """Internal: tarfile failed after ``count`` members (the cause is chained)."""

    def __init__(self, count: int, reason: str) -> None:
        super().__init__(reason)
        self.count, self.reason = count, reason


def _members(path: str) -> Iterator[tarfile.TarInfo]:
    count = 0
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                count += 1
                yield member
    except _TAR_ERRORS as err:
        raise _Damaged(count, str(err)[:120] or type(err).__name__) from err
    except OSError as err:
        raise InputError(f"read archive {path}: {err.strerror or err}") from err


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(HEAD)
    except OSError as err:
        raise InputError(f"scan {path}: {err.strerror or err}") from err


def _check_plain_tar(head: bytes, path: str) -> None:
    if sniff_compression(head) is not Compression.NONE:
        raise InputError(f"scan {path}: a compressed archive; decompress it first "
                         "(gunzip / zstd -d) and scan the .tar")


def _kind_of(path: str, names: Collection[str]) -> TargetKind:
    if LAYOUT_FILE in names and INDEX_FILE in names:
        return TargetKind.OCI_ARCHIVE
    if DOCKER_MANIFEST in names:
        return TargetKind.DOCKER_ARCHIVE
    raise InputError(f"scan {path}: a tar archive, but neither an oci-archive (no oci-layout, "
                     "index.json) nor a docker-archive (no manifest.json)")


def _index(path: str) -> dict[str, tarfile.TarInfo]:
    head = _head(path)
    _check_plain_tar(head, path)
    index: dict[str, tarfile.TarInfo] = {}
    try:
        for member in _members(path):
            index[_norm(member.name)] = member
    except _Damaged as err:
        if err.count or head[USTAR_MAGIC_AT:USTAR_MAGIC_AT + len(USTAR_MAGIC)] == USTAR_MAGIC:
            raise CorruptInputError(f"scan {path}: a tar archive, but truncated or corrupt "
                                    f"after {err.count} member headers ({err.reason}); not scanned"
                                    ) from err
        raise InputError(f"scan {path}: not a directory, image layout or image archive "
                         "(oci-archive or docker-archive tar)") from err
    return index


def sniff_archive(path: str) -> TargetKind:
    """OCI_ARCHIVE when the tar holds ``oci-layout`` and ``index.json``, DOCKER_ARCHIVE when it
    holds ``manifest.json``; InputError for anything else (not a tar, compressed, other)."""
    return _kind_of(path, _index(path))


class ArchiveSource:
    """Members of an image archive, by normalised name (see :class:`BlobSource`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._index = _index(path)
        self.kind = _kind_of(path, self._index)
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise InputError(f"read archive {path}: {err.strerror or err}") from err

    def _member(self, name: str) -> tarfile.TarInfo:
        norm = _norm(name)
        for _ in range(MAX_LINK_HOPS):
            member = self._index.get(norm)
            if member is None:
                raise MissingBlobError(f"read {name}: missing from archive {self.path}")
            if member.issym():
                norm = _norm(posixpath.join(posixpath.dirname(norm), member.linkname))
            elif member.islnk():
                norm = _norm(member.linkname)
            elif member.isfile() and not member.issparse():
                return member
            else:
                raise CorruptInputError(f"read {name}: not a regular file in {self.path}")
        raise CorruptInputError(f"read {name}: too many links in archive {self.path}")

    def exists(self, name: str) -> bool:
        try:
            self._member(name)
        except CorruptInputError:
            return False
        return True

    def open(self, name: str) -> Reader:
        member = self._member(name)
        return _MemberReader(self._fd, member.offset_data, member.size)

    def read_small(self, name: str, what: str) -> bytes:
        with self.open(name) as stream:
            return read_limited(stream, what)

    def close(self) -> None:
        os.close(self._fd)


@dataclass(frozen=True, slots=True)
class DockerImage:
    """One entry of a docker-archive ``manifest.json``."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def _strings(value: object, what: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CorruptInputError(f"read {what}: {key!r} is not a list of strings")
    return tuple(value)


def parse_docker_manifest(data: bytes, what: str = DOCKER_MANIFEST) -> tuple[DockerImage, ...]:
    raw = parse_json(data, what)
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise CorruptInputError(f"read {what}: expected a list of image entries")
    out = []
    for i, entry in enumerate(raw):
        config = entry.get(K_CONFIG)
        if not isinstance(config, str) or not config:
            raise CorruptInputError(f"read {what}: entry {i} has no {K_CONFIG!r}")
        out.append(DockerImage(config, _strings(entry.get(K_REPO_TAGS), what, K_REPO_TAGS),
                               _strings(entry.get(K_LAYERS), what, K_LAYERS)))
    if not out:
        raise CorruptInputError(f"read {what}: lists no image")
    return tuple(out)
