"""Exact decoding of Go's varints and binary times, and of the parents-index keys."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crilink.errors import CorruptInputError
from crilink.formats.containerd import parse_parent_key
from crilink.formats.gobinary import go_time, uvarint, varint

UNIX_TO_GO = 62135596800


def put_uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_uvarint_roundtrip(n: int) -> None:
    assert uvarint(put_uvarint(n) + b"tail") == (n, len(put_uvarint(n)))


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_varint_zigzag_roundtrip(n: int) -> None:
    zz = (n << 1) ^ (n >> 63)
    assert varint(put_uvarint(zz & (2**64 - 1)))[0] == n


def test_known_values_from_real_meta_db() -> None:
    assert varint(b"\x84\t") == (578, 2)  # content size 578 B (ctr content ls)
    assert varint(b"\x80\x88\x85\x02")[0] == 2138624
    assert uvarint(b"\x05") == (5, 1)


@pytest.mark.parametrize("bad", [b"", b"\x80", b"\xff" * 11])
def test_uvarint_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(CorruptInputError):
        uvarint(bad)


def test_go_time_v1_utc_from_real_lease() -> None:
    t = go_time(b"\x01\x00\x00\x00\x0e\xe2\xa3\xc1U\x08m_\xec\xff\xff")
    assert t.tzinfo is UTC
    assert t.replace(microsecond=0) == datetime(2026, 12, 3, 20, 0, 21, tzinfo=UTC)


def test_go_time_v1_and_v2_offsets() -> None:
    sec = UNIX_TO_GO + 1_700_000_000
    v1 = b"\x01" + struct.pack(">qih", sec, 123_456_789, 60)
    t1 = go_time(v1)
    assert t1.utcoffset() == timedelta(hours=1)
    assert t1.timestamp() == pytest.approx(1_700_000_000.123456)
    v2 = b"\x02" + struct.pack(">qih", sec, 0, 60) + b"\x1e"
    assert go_time(v2).utcoffset() == timedelta(hours=1, seconds=30)


@pytest.mark.parametrize("bad", [b"", b"\x03" + b"\0" * 14, b"\x01" + b"\0" * 10,
                                 b"\x01" + struct.pack(">qih", 0, 2_000_000_000, -1)])
def test_go_time_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(CorruptInputError):
        go_time(bad)


def test_parent_key() -> None:
    assert parse_parent_key(b"\x02\x00\x08") == (2, 8)
    assert parse_parent_key(put_uvarint(300) + b"\x00" + put_uvarint(70000)) == (300, 70000)
    for bad in (b"\x02\x01\x08", b"\x02", b"\x02\x00\x08\x00"):
        with pytest.raises(CorruptInputError):
            parse_parent_key(bad)


def test_a_damaged_timestamp_is_unknown_not_fatal() -> None:
    """One bad ``createdat``/``expireat`` must not make the whole store unreadable."""
    from crilink.formats import containerd as fmt  # noqa: PLC0415

    class Bucket:
        def __init__(self, values: dict[bytes, bytes]) -> None:
            self.values = values

        def get(self, key: bytes) -> bytes | None:
            return self.values.get(key)

    for bad in (b"\x02garbage", b"\x01", b"\xff" * 20):
        assert fmt._time(Bucket({b"createdat": bad}), b"createdat", "ns/leases/l") is None  # type: ignore[arg-type]
    assert fmt._time(Bucket({}), b"createdat", "x") is None  # type: ignore[arg-type]


def test_mounts_found_under_a_relocated_root(tmp_path: Path) -> None:
    """/var/lib/containerd -> /data/containerd: mountinfo names the real path."""
    from crilink.stores.containerd_disk import read_mountinfo  # noqa: PLC0415

    real = tmp_path / "data" / "containerd"
    real.mkdir(parents=True)
    link = tmp_path / "containerd"
    link.symlink_to(real)
    text = (f"36 35 0:44 /x {real}/tmpmounts/m\\040one rw - overlay overlay rw\n"
            f"37 35 0:45 / /elsewhere rw - tmpfs tmpfs rw\n")
    (m,) = read_mountinfo(link, text)
    assert m.path == "tmpmounts/m one" and m.fstype == "overlay"


@pytest.mark.parametrize(("text", "ok"), [
    ("2026-12-04T20:00:21Z", True), ("2026-12-04t20:00:21.5+02:00", True),
    ("2026-12-04T20:00:21.123456789Z", True),
    ("20200101T000000Z", False), ("2020-01-01", False), ("2020-01-01T00:00:00", False),
    ("2020-01-01 00:00:00Z", False), ("yesterday", False)])
def test_lease_expiry_parses_as_go_rfc3339_does(text: str, ok: bool) -> None:
    """containerd ignores a gc.expire label Go cannot parse: the lease then never expires."""
    from crilink.stores.containerd_model import parse_rfc3339  # noqa: PLC0415

    assert (parse_rfc3339(text) is not None) is ok
