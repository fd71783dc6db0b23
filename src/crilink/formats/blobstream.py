"""Layer blobs as streams: compression sniffed from magic bytes, digests computed on the way.

A :class:`LayerStream` reads a blob (a bounded binary stream), detects gzip, zstd or plain
tar from its first bytes (never from the media type alone), and hands out the decompressed
bytes. While it reads it hashes both the blob as stored (the OCI descriptor digest) and the
decompressed bytes (the config's ``diff_id``), each with its own algorithm (a layout may store
blobs under sha512 while its diff_ids stay sha256). :meth:`LayerStream.drain` reads the rest so
that both digests cover every byte.

Limits: with ``limit`` (the size its descriptor gives) no more than ``limit`` bytes of the
blob are read, plus one byte by :meth:`LayerStream.longer_than_limit`, so a blob that is
longer than its descriptor says (or endless) is read no further. Decompression output per
step is bounded (gzip by ``max_length``, zstd by feeding 1 KiB at a time, at most 32 MiB
out), so a compression bomb costs time, not memory.
Errors: a truncated or corrupt compressed stream raises :class:`MalformedLayerError` with a
stable ``reason``; I/O errors of the underlying file raise it too (``reason`` ``read_error``).
"""

from __future__ import annotations

import contextlib
import hashlib
import zlib
from enum import StrEnum
from types import ModuleType
from typing import Protocol

import zstandard

from crilink.errors import CorruptInputError

__all__ = [
    "Compression",
    "LayerStream",
    "MalformedLayerError",
    "MalformedReason",
    "sniff_compression",
]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# a zstd skippable frame: magic 0x184D2A50..0x184D2A5F, then a 4-byte little-endian size and
# that many bytes of metadata (zstd:chunked puts its table of contents in one, at the end)
ZSTD_SKIPPABLE_TAIL = b"\x2a\x4d\x18"  # the magic's bytes 1..3; byte 0 is 0x50..0x5f
ZSTD_SKIPPABLE_HEAD = 8
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"
SNIFF_BYTES = 6
RAW_CHUNK = 256 * 1024
ZSTD_FEED = 1024
GZIP_MAX_OUT = 1024 * 1024
_inflate: ModuleType = zlib
with contextlib.suppress(ImportError):  # a platform without isal's wheels keeps zlib
    from isal import isal_zlib as _inflate  # ISA-L: zlib's API, about twice as fast inflating
_INFLATE_ERRORS = (zlib.error, _inflate.error)
GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer (CRC-32, size) checked by zlib


class Compression(StrEnum):
    GZIP = "gzip"
    ZSTD = "zstd"
    NONE = "none"
    UNKNOWN = "unknown"  # xz, bzip2 ...: not a layer compression runtimes accept


class MalformedReason(StrEnum):
    """Why a layer could not be read whole (``detail.reason`` of ``malformed_layer``)."""

    TRUNCATED = "truncated"
    MISSING_EOF = "missing_eof"
    DIGEST_MISMATCH = "digest_mismatch"
    DIFF_ID_MISMATCH = "diff_id_mismatch"
    UNKNOWN_COMPRESSION = "unknown_compression"
    CORRUPT_COMPRESSION = "corrupt_compression"
    BAD_HEADER = "bad_header"
    OVERSIZED_HEADER = "oversized_header"
    MISSING_BLOB = "missing_blob"
    NOT_A_FILE = "not_a_file"  # the blob is a symlink, FIFO, device ... where a file belongs
    READ_ERROR = "read_error"
    SIZE_MISMATCH = "size_mismatch"  # the blob is shorter or longer than its descriptor says
    LONE_ZERO_BLOCK = "lone_zero_block"  # one zero block, then more data: no proper end


class MalformedLayerError(CorruptInputError):
    """A layer's bytes are unusable from some offset on; ``reason`` says how."""

    def __init__(self, reason: MalformedReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sniff_compression(head: bytes) -> Compression:
    """The compression of a blob from its first bytes (at least :data:`SNIFF_BYTES`)."""
    if head.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(ZSTD_MAGIC) or _skippable_prefix(head[:ZSTD_SKIPPABLE_HEAD // 2]):
        return Compression.ZSTD
    if head.startswith((XZ_MAGIC, BZIP2_MAGIC)):
        return Compression.UNKNOWN
    return Compression.NONE


def _skippable_prefix(data: bytes) -> bool:
    """``data`` (up to 4 bytes, at least 1) begins a zstd skippable frame's magic."""
    if not data or data[0] & 0xF0 != 0x50:
        return False
    return ZSTD_SKIPPABLE_TAIL.startswith(data[1:4])


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


class _Decoder(Protocol):
    def feed(self, data: bytes) -> bytes: ...

    def take_pending(self) -> bytes:
        """Input the decoder holds back (to bound output, or after a stream's end)."""
        ...

    def finish(self) -> None: ...


class _Plain:
    def feed(self, data: bytes) -> bytes:
        return data

    def take_pending(self) -> bytes:
        return b""

    def finish(self) -> None:
        return None


class _Framed:
    """Concatenated gzip members or zstd frames; trailing zero bytes are tolerated.

    Output of a call is handed out before anything after a stream's end is looked at, so
    trailing garbage is reported only once every byte before it was read.
    """

    kind = "compressed"
    magic = b""

    def __init__(self) -> None:
        self._done = False  # a member ended; what follows is in _tail or still to come
        self._tail = b""
        self._new()

    def _new(self) -> None:
        raise NotImplementedError

    def _step(self, data: bytes) -> tuple[bytes, bool, bytes]:
        """Decode ``data``: (output, member ended, bytes after its end)."""
        raise NotImplementedError

    def feed(self, data: bytes) -> bytes:
        if self._done:
            rest = data.lstrip(b"\0")
            if not rest:
                return b""
            if self.magic and not rest.startswith(self.magic):
                raise MalformedLayerError(MalformedReason.CORRUPT_COMPRESSION,
                                          f"{self.kind} stream followed by other bytes")
            self._new()
            self._done = False
            data = rest
        out, ended, after = self._step(data)
        if ended:
            self._done, self._tail = True, after
        return out

    def take_pending(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail

    def finish(self) -> None:
        if not self._done:
            raise MalformedLayerError(MalformedReason.TRUNCATED,
                                      f"{self.kind} stream ends before its end marker")


class _Gzip(_Framed):
    kind, magic = "gzip", GZIP_MAGIC

    def _new(self) -> None:
        self._d = _inflate.decompressobj(GZIP_WBITS)

    def _step(self, data: bytes) -> tuple[bytes, bool, bytes]:
        try:
            out = self._d.decompress(data, GZIP_MAX_OUT)
        except _INFLATE_ERRORS as err:
            raise MalformedLayerError(MalformedReason.CORRUPT_COMPRESSION,
                                      f"gzip data corrupt: {err}") from err
        if self._d.eof:
            return out, True, self._d.unused_data
        return out, False, b""

    def take_pending(self) -> bytes:
        held = b"" if self._done else self._d.unconsumed_tail
        return held or super().take_pending()


class _Zstd(_Framed):
    """zstd frames, with skippable frames passed over wherever a frame may begin."""

    kind, magic = "zstd", ZSTD_MAGIC

    def __init__(self) -> None:
        self._started = False  # bytes of a real frame were decoded
        self._skip_left = 0  # bytes of a skippable frame still to pass over
        self._head = b""  # the start of what may be a skippable frame's header
        super().__init__()

    def _new(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj()

    def _skip(self, data: bytes) -> bytes:
        """Pass over skippable frames at a frame boundary; what is left of ``data``."""
        n = min(self._skip_left, len(data))
        self._skip_left, data = self._skip_left - n, data[n:]
        while data and (self._done or not self._started):
            data, self._head = self._head + data, b""
            if len(data) < ZSTD_SKIPPABLE_HEAD and _skippable_prefix(data[:4]):
                self._head = data
                return b""
            if not _skippable_prefix(data[:4]):
                break
            size = int.from_bytes(data[4:ZSTD_SKIPPABLE_HEAD], "little")
            data = data[ZSTD_SKIPPABLE_HEAD:]
            n = min(size, len(data))
            self._skip_left, data = size - n, data[n:]
        return data

    def feed(self, data: bytes) -> bytes:
        data = self._skip(data)
        if not data:
            return b""
        self._started = True
        return super().feed(data)

    def finish(self) -> None:
        if self._skip_left or self._head:
            raise MalformedLayerError(MalformedReason.TRUNCATED,
                                      "zstd skippable frame ends before its stated size")
        super().finish()

    def _step(self, data: bytes) -> tuple[bytes, bool, bytes]:
        try:
            out: bytes = self._d.decompress(data)
        except zstandard.ZstdError as err:
            raise MalformedLayerError(MalformedReason.CORRUPT_COMPRESSION,
                                      f"zstd data corrupt: {err}") from err
        if self._d.eof:
            return out, True, self._d.unused_data
        return out, False, b""


class LayerStream:
    """Decompressed bytes of one layer blob, with both digests computed as it goes."""

    def __init__(self, raw: _Readable, algorithm: str = "sha256",
                 limit: int | None = None, diff_algorithm: str | None = None) -> None:
        self._raw = raw
        self._limit = limit
        self.algorithm = algorithm
        self.diff_algorithm = diff_algorithm or algorithm  # a diff_id names its own
        self._blob_hash = hashlib.new(algorithm)
        self._diff_hash = hashlib.new(self.diff_algorithm)
        self.raw_bytes = 0
        self.size = 0  # decompressed bytes handed out so far
        head = self._read_raw(SNIFF_BYTES)
        self.compression = sniff_compression(head)
        decoders: dict[Compression, type[_Gzip | _Zstd | _Plain]] = {
            Compression.GZIP: _Gzip, Compression.ZSTD: _Zstd}
        self._decoder: _Decoder = decoders.get(self.compression, _Plain)()
        self._buf = memoryview(b"")
        self._pending = head
        self._raw_eof = False

    def _read_raw(self, n: int) -> bytes:
        if self._limit is not None:
            n = min(n, self._limit - self.raw_bytes)
            if n <= 0:
                return b""
        try:
            data = self._raw.read(n)
        except OSError as err:
            raise MalformedLayerError(MalformedReason.READ_ERROR,
                                      f"read layer blob: {err.strerror or err}") from err
        self._blob_hash.update(data)
        self.raw_bytes += len(data)
        return data

    def longer_than_limit(self) -> bool:
        """After :meth:`drain`: whether the blob goes on past ``limit`` (one byte is read to
        tell; never more). False without a limit, when fewer bytes were read, or when that
        byte cannot be read."""
        if self._limit is None or self.raw_bytes < self._limit:
            return False
        try:
            return bool(self._raw.read(1))
        except OSError:
            return False

    def _fill(self) -> bool:
        """Decode more output into the buffer; False at the end of the blob."""
        while not self._buf:
            held = self._decoder.take_pending()
            if held:
                out = self._decoder.feed(held)
            elif self._pending:
                step = ZSTD_FEED if self.compression is Compression.ZSTD else len(self._pending)
                chunk, self._pending = self._pending[:step], self._pending[step:]
                out = self._decoder.feed(chunk)
            elif self._raw_eof:
                self._decoder.finish()
                return False
            else:
                self._pending = self._read_raw(RAW_CHUNK)
                self._raw_eof = not self._pending
                continue
            self._buf = memoryview(out)
        return True

    def read(self, n: int) -> bytes:
        """Up to ``n`` decompressed bytes; ``b""`` only at the end of the blob."""
        if not self._buf and not self._fill():
            return b""
        data = bytes(self._buf[:n])
        self._buf = self._buf[len(data):]
        self._diff_hash.update(data)
        self.size += len(data)
        return data

    def skip(self, n: int) -> int:
        """Discard up to ``n`` decompressed bytes (hashed, not copied); how many."""
        done = 0
        while done < n and (self._buf or self._fill()):
            part = self._buf[:n - done]
            self._diff_hash.update(part)
            self._buf = self._buf[len(part):]
            done += len(part)
        self.size += done
        return done

    def drain(self) -> None:
        """Read to the end so that both digests cover the whole blob."""
        while self._buf or self._fill():
            self._diff_hash.update(self._buf)
            self.size += len(self._buf)
            self._buf = memoryview(b"")

    def blob_digest(self) -> str:
        return f"{self.algorithm}:{self._blob_hash.hexdigest()}"

    def diff_digest(self) -> str:
        return f"{self.diff_algorithm}:{self._diff_hash.hexdigest()}"
