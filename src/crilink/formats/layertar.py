"""A streaming tar reader for image layers: metadata only, tolerant where runtimes are.

Reads ustar, GNU (long names ``L``/``K``, base-256 numbers) and PAX (``path``, ``linkpath``,
``size``) headers from any object with ``read(n)``; file contents are skipped, never kept.

Tolerance, as containerd and podman read layers:
- a missing end-of-archive (the two zero blocks), and even missing padding after the last
  file's data (umoci 0.4.7 ``insert`` writes such layers) ends the layer normally; the reader
  records :attr:`MalformedReason.MISSING_EOF` in :attr:`TarReader.problem`;
- one zero block followed by a second one, by zeros cut short or by nothing is the end of
  the archive (any zero padding after it is not read).
A single zero block followed by other data is ``lone_zero_block``: Go's archive/tar refuses
such a layer, other readers skip the block and read on, so what is in the image depends on
the tool.
Not tolerated: a stream that ends inside a header or inside a file's data (``truncated``),
a header whose checksum is wrong (``bad_header``), a name or PAX record over
:data:`MAX_META` bytes (``oversized_header``). The reader stops there and says so in
:attr:`TarReader.problem`; it never raises for bad data.

Names are the raw bytes decoded with ``os.fsdecode`` (surrogateescape), unnormalised.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from crilink.formats.blobstream import MalformedLayerError, MalformedReason

__all__ = ["MAX_META", "EntryType", "TarEntry", "TarProblem", "TarReader"]

BLOCK = 512
MAX_META = 64 * 1024  # longest GNU long name or PAX header accepted
SKIP_CHUNK = 1024 * 1024
USTAR_POSIX_MAGIC = b"ustar\x00"
# field offsets in a header block: (start, end)
F_NAME, F_MODE, F_SIZE, F_CHKSUM = (0, 100), (100, 108), (124, 136), (148, 156)
F_TYPE, F_LINKNAME, F_MAGIC, F_PREFIX = 156, (157, 257), (257, 263), (345, 500)
CHKSUM_BLANK = b" " * 8
# type flags
T_FILES = frozenset(b"07\x00")
T_HARDLINK, T_SYMLINK, T_DIR = ord("1"), ord("2"), ord("5")
T_OTHER = frozenset(b"346")  # char device, block device, fifo
T_GNU_LONGNAME, T_GNU_LONGLINK = ord("L"), ord("K")
T_PAX_LOCAL, T_PAX_GLOBAL = ord("x"), ord("g")
T_SKIPPED = frozenset(b"VMN")  # volume label, multi-volume continuation, old GNU names
PAX_PATH, PAX_LINKPATH, PAX_SIZE = b"path", b"linkpath", b"size"


class EntryType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TarEntry:
    """One member: ``name`` and ``linkname`` as stored (fsdecoded), ``size`` of its data."""

    name: str
    type: EntryType
    size: int = 0
    linkname: str = ""
    offset: int = 0  # of its header in the decompressed stream


@dataclass(frozen=True, slots=True)
class TarProblem:
    reason: MalformedReason
    message: str
    offset: int


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...

    def skip(self, n: int, /) -> int:
        """Discard up to ``n`` bytes; how many were discarded (fewer only at the end)."""
        ...


class _Stop(Exception):
    """Internal: the archive cannot be read further (carries the problem)."""

    def __init__(self, reason: MalformedReason, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.offset = offset  # where the problem is, when not where reading stopped


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 when the high bit is set."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * len(field) - 8)) if field[0] == 0xFF else value
    text = field.split(b"\x00", 1)[0].strip(b" \x00")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError as err:
        raise _Stop(MalformedReason.BAD_HEADER, f"numeric field {text!r} is not octal") from err


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[F_CHKSUM[0]:F_CHKSUM[1]])
    blanked = block[:F_CHKSUM[0]] + CHKSUM_BLANK + block[F_CHKSUM[1]:]
    if stored == sum(blanked):
        return True
    return stored == sum(b - 256 if b > 127 else b for b in blanked)  # old signed-char tars


def _cstr(field: bytes) -> bytes:
    return field.split(b"\x00", 1)[0]


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    """PAX extended header records: ``"<len> <key>=<value>\\n"`` each."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] != b"\x00":
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError as err:
            raise _Stop(MalformedReason.BAD_HEADER, "PAX record length is not a number") from err
        record = data[space + 1:pos + length]
        if length <= 0 or space < 0 or not record.endswith(b"\n") or b"=" not in record:
            raise _Stop(MalformedReason.BAD_HEADER, "PAX record malformed")
        key, value = record[:-1].split(b"=", 1)
        out[key] = value
        pos += length
    return out


@dataclass(slots=True)
class _Pending:
    """Overrides from GNU long-name and PAX headers, for the next real member."""

    name: bytes | None = None
    linkname: bytes | None = None
    size: int | None = None


class TarReader:
    """Iterate a layer's entries; afterwards :attr:`problem` says how the archive ended.

    ``problem`` is None after a proper end-of-archive block, else a :class:`TarProblem`
    (``missing_eof`` alone means every entry was read).
    """

    def __init__(self, stream: _Readable) -> None:
        self._stream = stream
        self._offset = 0
        self.problem: TarProblem | None = None
        self.entries_read = 0

    def _read(self, n: int) -> bytes:
        parts: list[bytes] = []
        want = n
        while want:
            try:
                data = self._stream.read(min(want, SKIP_CHUNK))
            except MalformedLayerError as err:
                raise _Stop(err.reason, err.message) from err
            if not data:
                break
            parts.append(data)
            want -= len(data)
        out = b"".join(parts)
        self._offset += len(out)
        return out

    def _skip(self, n: int) -> int:
        try:
            done = self._stream.skip(n)
        except MalformedLayerError as err:
            raise _Stop(err.reason, err.message) from err
        self._offset += done
        return done

    def _skip_data(self, size: int, name: str) -> None:
        """Skip a member's data and padding; data cut short is truncation, padding is not."""
        got = self._skip(size)
        if got < size:
            raise _Stop(MalformedReason.TRUNCATED,
                        f"data of {name!r} cut short at {got} of {size} bytes")
        pad = -size % BLOCK
        if pad and self._skip(pad) < pad:
            raise _Stop(MalformedReason.MISSING_EOF, "archive ends inside the last padding")

    def _read_meta(self, size: int) -> bytes:
        if size > MAX_META:
            raise _Stop(MalformedReason.OVERSIZED_HEADER,
                        f"extended header of {size} bytes (limit {MAX_META})")
        data = self._read(size)
        if len(data) < size:
            raise _Stop(MalformedReason.TRUNCATED, "extended header cut short")
        pad = -size % BLOCK
        if pad and self._skip(pad) < pad:
            raise _Stop(MalformedReason.TRUNCATED, "extended header padding cut short")
        return data

    def __iter__(self) -> Iterator[TarEntry]:
        try:
            yield from self._entries()
        except _Stop as stop:
            offset = self._offset if stop.offset is None else stop.offset
            self.problem = TarProblem(stop.reason, str(stop), offset)

    def _header(self) -> bytes | None:
        """The next header block, or None at a proper end-of-archive block."""
        block = self._read(BLOCK)
        if not block:
            raise _Stop(MalformedReason.MISSING_EOF, "archive ends without end-of-archive blocks")
        if len(block) < BLOCK:
            raise _Stop(MalformedReason.TRUNCATED, f"header cut short at {len(block)} bytes")
        if block == bytes(BLOCK):
            self._check_end()
            return None
        if not _checksum_ok(block):
            raise _Stop(MalformedReason.BAD_HEADER,
                        f"header checksum wrong at offset {self._offset - BLOCK}")
        return block

    def _check_end(self) -> None:
        """After a zero block: the end when the next block is zeros too (or zeros cut short,
        or nothing: layers without a proper end are read whole). Data there means the zero
        block is no end: tools that stop at it and tools that go on see different files."""
        offset = self._offset - BLOCK
        block = self._read(BLOCK)
        if block.strip(b"\x00"):
            raise _Stop(MalformedReason.LONE_ZERO_BLOCK,
                        f"a single zero block at offset {offset} is followed by more data, "
                        "not by a second zero block: entries after it are hidden from "
                        "tools that stop there", offset)

    def _entries(self) -> Iterator[TarEntry]:
        pending = _Pending()
        while (block := self._header()) is not None:
            offset = self._offset - BLOCK
            typeflag = block[F_TYPE]
            size = _number(block[F_SIZE[0]:F_SIZE[1]])
            if size < 0:
                raise _Stop(MalformedReason.BAD_HEADER, f"negative size at {offset}")
            if self._take_meta(typeflag, size, pending):
                continue
            entry = self._entry(block, typeflag, size, pending, offset)
            pending = _Pending()
            self.entries_read += 1
            yield entry
            if entry.type is EntryType.FILE:  # only regular (and unknown) members carry data
                self._skip_data(entry.size, entry.name)

    def _take_meta(self, typeflag: int, size: int, pending: _Pending) -> bool:
        """Consume a long-name / PAX / skipped header; True when it was one."""
        if typeflag == T_GNU_LONGNAME:
            pending.name = _cstr(self._read_meta(size))
        elif typeflag == T_GNU_LONGLINK:
            pending.linkname = _cstr(self._read_meta(size))
        elif typeflag == T_PAX_LOCAL:
            self._apply_pax(_parse_pax(self._read_meta(size)), pending)
        elif typeflag == T_PAX_GLOBAL:
            self._read_meta(size)  # global defaults (mtime, charset): nothing we track
        elif typeflag in T_SKIPPED:
            self._skip_data(size, "(volume header)")
        else:
            return False
        return True

    @staticmethod
    def _apply_pax(records: dict[bytes, bytes], pending: _Pending) -> None:
        if PAX_PATH in records:
            pending.name = records[PAX_PATH]
        if PAX_LINKPATH in records:
            pending.linkname = records[PAX_LINKPATH]
        if PAX_SIZE in records:
            try:
                pending.size = int(records[PAX_SIZE])
            except ValueError as err:
                raise _Stop(MalformedReason.BAD_HEADER, "PAX size is not a number") from err
            if pending.size < 0:
                raise _Stop(MalformedReason.BAD_HEADER, "PAX size is negative")

    @staticmethod
    def _entry(block: bytes, typeflag: int, size: int, pending: _Pending,
               offset: int) -> TarEntry:
        name = pending.name
        if name is None:
            name = _cstr(block[F_NAME[0]:F_NAME[1]])
            prefix = _cstr(block[F_PREFIX[0]:F_PREFIX[1]])
            if block[F_MAGIC[0]:F_MAGIC[1]] == USTAR_POSIX_MAGIC and prefix:
                name = prefix + b"/" + name
        link = pending.linkname if pending.linkname is not None \
            else _cstr(block[F_LINKNAME[0]:F_LINKNAME[1]])
        size = pending.size if pending.size is not None else size
        etype = _TYPES.get(typeflag, EntryType.FILE)  # POSIX: unknown types read as files
        if etype is EntryType.FILE and name.endswith(b"/"):
            etype = EntryType.DIR  # pre-POSIX archives mark directories by a trailing slash
        if typeflag in T_OTHER:
            etype = EntryType.OTHER
        return TarEntry(os.fsdecode(name), etype, size, os.fsdecode(link), offset)


_TYPES: dict[int, EntryType] = {
    **dict.fromkeys(T_FILES, EntryType.FILE),
    T_HARDLINK: EntryType.HARDLINK,
    T_SYMLINK: EntryType.SYMLINK,
    T_DIR: EntryType.DIR,
}
