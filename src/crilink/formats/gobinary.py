"""Go's binary encodings that containerd stores in BoltDB values.

- ``encoding/binary`` unsigned varints (``PutUvarint``: 7 bits a byte, little end first,
  high bit = more) and signed varints (``PutVarint``: zigzag, then uvarint).
- ``time.Time.MarshalBinary``: version 1 is 15 bytes (version, seconds since 0001-01-01 UTC as
  int64 big-endian, nanoseconds int32, zone offset in minutes int16, ``-1`` = UTC); version 2
  adds one byte of offset seconds (16 bytes).

Every decoder rejects malformed input with :class:`crilink.errors.CorruptInputError`.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone

from crilink.errors import CorruptInputError

__all__ = ["GO_TIME_V1", "GO_TIME_V2", "go_time", "uvarint", "varint"]

MAX_VARINT_LEN = 10  # binary.MaxVarintLen64
GO_TIME_V1 = 1
GO_TIME_V2 = 2
_GO_TIME_LEN = {GO_TIME_V1: 15, GO_TIME_V2: 16}
_UTC_OFFSET = -1  # offset minutes meaning "UTC" in MarshalBinary
# seconds from 0001-01-01 (Go's internal epoch) to 1970-01-01
_UNIX_TO_INTERNAL = (1969 * 365 + 1969 // 4 - 1969 // 100 + 1969 // 400) * 86400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def uvarint(data: bytes, what: str = "uvarint") -> tuple[int, int]:
    """Decode an unsigned varint at the start of ``data``: (value, bytes used)."""
    value = shift = 0
    for i, byte in enumerate(data[:MAX_VARINT_LEN]):
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >= 1 << 64:
                break
            return value, i + 1
        shift += 7
    raise CorruptInputError(f"decode {what}: malformed varint {data[:MAX_VARINT_LEN].hex()}")


def varint(data: bytes, what: str = "varint") -> tuple[int, int]:
    """Decode a signed (zigzag) varint at the start of ``data``: (value, bytes used)."""
    raw, used = uvarint(data, what)
    value = raw >> 1
    if raw & 1:
        value = ~value
    return value, used


def go_time(data: bytes, what: str = "time") -> datetime:
    """Decode ``time.Time.MarshalBinary`` output into an aware :class:`datetime`.

    The zone offset is kept (UTC when the encoding says UTC). Go times outside Python's
    range (years 1..9999) raise ``CorruptInputError``.
    """
    if not data:
        raise CorruptInputError(f"decode {what}: empty time value")
    version = data[0]
    need = _GO_TIME_LEN.get(version)
    if need is None or len(data) != need:
        raise CorruptInputError(
            f"decode {what}: unsupported time encoding (version {version}, {len(data)} bytes)")
    sec, nsec, offset_min = struct.unpack_from(">qih", data, 1)
    offset_sec = offset_min * 60 + (data[15] if version == GO_TIME_V2 else 0)
    if not 0 <= nsec < 1_000_000_000:
        raise CorruptInputError(f"decode {what}: nanoseconds {nsec} out of range")
    tz = UTC if offset_min == _UTC_OFFSET else timezone(timedelta(seconds=offset_sec))
    try:
        moment = _EPOCH + timedelta(seconds=sec - _UNIX_TO_INTERNAL, microseconds=nsec // 1000)
    except OverflowError as err:
        raise CorruptInputError(f"decode {what}: seconds {sec} out of range") from err
    return moment.astimezone(tz)
