"""The BoltDB reader on small synthetic files: valid shapes, then one hostile edit each.

The files are built here from the format facts (see crilink.formats.bolt_page), with a
small page size so that every structure is a few hundred bytes. Each hostile file must
give CorruptInputError naming the page, never another exception or a hang.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from crilink.errors import CorruptInputError, InputError
from crilink.formats.bolt import MAX_BUCKET_DEPTH, BoltDB, Bucket
from crilink.formats.bolt_page import fnv1a64

PS = 1024
LEAF, BRANCH, META = 0x02, 0x01, 0x04
BUCKET = 0x01


def page_bytes(pgid: int, flags: int, elems: list[tuple[int, bytes, bytes]],
               overflow: int = 0, size: int | None = None) -> bytes:
    """A branch or leaf page. Leaf elems: (flags, key, value); branch: (child, key, b"")."""
    head = struct.pack("<QHHI", pgid, flags, len(elems), overflow)
    table, data = b"", b""
    base = 16 + 16 * len(elems)
    for i, (num, key, value) in enumerate(elems):
        pos = base + len(data) - (16 + 16 * i)
        if flags == BRANCH:
            table += struct.pack("<IIQ", pos, len(key), num)
        else:
            table += struct.pack("<IIII", num, pos, len(key), len(value))
        data += key + value
    raw = head + table + data
    if size is not None:
        assert len(raw) <= size, "page content too large"
        raw = raw.ljust(size, b"\0")
    return raw


def leaf(pgid: int, elems: list[tuple[int, bytes, bytes]], overflow: int = 0) -> bytes:
    return page_bytes(pgid, LEAF, elems, overflow, PS * (overflow + 1))


def branch(pgid: int, children: list[tuple[bytes, int]]) -> bytes:
    return page_bytes(pgid, BRANCH, [(c, k, b"") for k, c in children], 0, PS)


def bucket_value(root: int, seq: int = 0, inline: list[tuple[int, bytes, bytes]] | None = None,
                 ) -> bytes:
    head = struct.pack("<QQ", root, seq)
    return head if inline is None else head + page_bytes(0, LEAF, inline)


def meta(pgid: int, root: int, high: int, txid: int, *, page_size: int = PS,
         root_seq: int = 0) -> bytes:
    body = struct.pack("<IIIIQQQQQ", 0xED0CDAED, 2, page_size, 0, root, root_seq,
                       0xFFFFFFFFFFFFFFFF, high, txid)
    return (struct.pack("<QHHI", pgid, META, 0, 0) + body
            + struct.pack("<Q", fnv1a64(body))).ljust(PS, b"\0")


def build(pages: dict[int, bytes], root: int = 2, txid: int = 5) -> bytes:
    """Meta pages 0 and 1 (txids txid-1, txid) followed by ``pages`` (pgid -> bytes)."""
    high = max(pgid + len(raw) // PS for pgid, raw in pages.items())
    out = bytearray(meta(0, root, high, txid - 1) + meta(1, root, high, txid))
    for pgid in sorted(pages):
        out[pgid * PS:pgid * PS] = b""
        out.extend(b"\0" * (pgid * PS - len(out)))
        out[pgid * PS:pgid * PS + len(pages[pgid])] = pages[pgid]
    return bytes(out)


def good_pages() -> dict[int, bytes]:
    """root -> {a: paged bucket with a branch, b: inline bucket with inline c, big: overflow}."""
    inline_c = bucket_value(0, 3, [(0, b"deep", b"value")])
    return {
        2: leaf(2, [(BUCKET, b"a", bucket_value(3, 42)),
                    (BUCKET, b"b", bucket_value(0, 7, [(BUCKET, b"c", inline_c),
                                                       (0, b"k1", b"v1")])),
                    (BUCKET, b"big", bucket_value(6))]),
        3: branch(3, [(b"a00", 4), (b"m00", 5)]),
        4: leaf(4, [(0, f"a{i:02}".encode(), f"v{i}".encode()) for i in range(20)]),
        5: leaf(5, [(0, f"m{i:02}".encode(), f"w{i}".encode()) for i in range(20)]
                + [(BUCKET, b"zsub", bucket_value(0, 1, []))]),
        6: leaf(6, [(0, b"blob", b"x" * (PS + 300))], overflow=1),
    }


def walk(bucket: Bucket) -> int:
    """Every key through iteration and through lookup, every bucket recursively."""
    n = 0
    for key, is_bucket in bucket:
        n += 1
        _ = bucket.bucket(key) if is_bucket else bucket.get(key)
    for _, sub in bucket.buckets():
        n += walk(sub)
    return n


def corrupt_msg(data: bytes) -> str:
    with pytest.raises(CorruptInputError) as info:
        walk(BoltDB.from_bytes(data, "t.db").root)
    return info.value.message


def test_valid_synthetic_file_reads_back() -> None:
    db = BoltDB.from_bytes(build(good_pages()), "t.db")
    assert (db.txid, db.page_size) == (5, PS)
    a = db.bucket(b"a")
    assert a is not None and a.sequence == 42
    assert [k for k, _ in a.items()] == [f"a{i:02}".encode() for i in range(20)] + \
        [f"m{i:02}".encode() for i in range(20)]
    for i in range(20):
        assert a.get(f"m{i:02}".encode()) == f"w{i}".encode()
        assert a.get(f"a{i:02}".encode()) == f"v{i}".encode()
    assert a.get(b"zsub") is None and a.bucket(b"zsub") is not None
    assert a.bucket(b"a01") is None and a.get(b"0") is None and a.get(b"zzz") is None
    assert list(a.keys())[-1] == (b"zsub", True)
    assert db.bucket(b"b", b"c") is not None
    assert db.bucket(b"b", b"c").get(b"deep") == b"value"  # type: ignore[union-attr]
    assert db.bucket(b"b").sequence == 7  # type: ignore[union-attr]
    assert [k for k, _ in db.root.buckets()] == [b"a", b"b", b"big"]
    assert db.bucket(b"big").get(b"blob") == b"x" * (PS + 300)  # type: ignore[union-attr]
    assert db.bucket(b"nope", b"x") is None
    assert walk(db.root) == 3 + 41 + 2 + 1 + 1
    for bucket in (db.root, a, db.bucket(b"b"), db.bucket(b"big")):
        assert bucket is not None
        for key, is_bucket in bucket:
            assert (bucket.bucket(key) if is_bucket else bucket.get(key)) is not None, key


def test_newest_valid_meta_wins() -> None:
    data = bytearray(build(good_pages()))
    assert BoltDB.from_bytes(bytes(data)).txid == 5
    data[PS + 16] ^= 0xFF  # meta 1's magic
    assert BoltDB.from_bytes(bytes(data)).txid == 4
    data[PS + 16] ^= 0xFF
    data[PS + 16 + 50] ^= 0x01  # meta 1's txid: checksum no longer matches
    assert BoltDB.from_bytes(bytes(data)).txid == 4


def test_meta_1_found_when_meta_0_is_gone() -> None:
    data = bytearray(build(good_pages()))
    data[0:PS] = b"\0" * PS
    assert BoltDB.from_bytes(bytes(data)).txid == 5


def test_both_metas_invalid() -> None:
    data = bytearray(build(good_pages()))
    data[16 + 4] = 9  # version of meta 0
    data[PS + 16 + 56] ^= 1  # checksum of meta 1
    with pytest.raises(CorruptInputError, match=r"t\.db: page 0 and page 1: no valid meta"):
        BoltDB.from_bytes(bytes(data), "t.db")


@pytest.mark.parametrize(("size", "page"), [(0, 0), (100, 0), (PS + 10, 2)])
def test_tiny_files(size: int, page: int) -> None:
    with pytest.raises(CorruptInputError, match=f"t.db: page {page}"):
        BoltDB.from_bytes(build(good_pages())[:size], "t.db")


def test_truncated_file_names_the_missing_page() -> None:
    msg = corrupt_msg(build(good_pages())[:4 * PS])
    assert re.search(r"t\.db: page [4-7]: beyond end of file \(4096 bytes; truncated\?\)", msg)


def test_branch_cycle() -> None:
    pages = good_pages()
    pages[3] = branch(3, [(b"a00", 4), (b"m00", 3)])
    assert "page 3: reached twice" in corrupt_msg(build(pages))


def test_bucket_root_pointing_at_an_ancestor() -> None:
    pages = good_pages()
    pages[5] = leaf(5, [(BUCKET, b"zloop", bucket_value(2))])
    assert "page 2: reached twice" in corrupt_msg(build(pages))


def test_two_buckets_sharing_a_page() -> None:
    pages = good_pages()
    pages[2] = leaf(2, [(BUCKET, b"a", bucket_value(4)), (BUCKET, b"b", bucket_value(4))])
    assert "page 4: reached twice" in corrupt_msg(build(pages))


@pytest.mark.parametrize(("root", "expect"), [
    (1, "page 1: a meta page"), (8, "page 8: beyond the high-water mark 8"),
    (7, "page 7: header names page"), (2**63, "beyond the high-water mark")])
def test_bad_bucket_roots(root: int, expect: str) -> None:
    pages = {2: leaf(2, [(BUCKET, b"a", struct.pack("<QQ", root, 0))]),
                 6: leaf(6, [(0, b"blob", b"x" * (PS + 300))], overflow=1)}
    assert expect in corrupt_msg(build(pages))


def test_header_names_another_page() -> None:
    pages = good_pages()
    pages[4] = leaf(9, [(0, b"k", b"v")])
    assert "page 4: header names page 9" in corrupt_msg(build(pages))


def test_overflow_past_end() -> None:
    pages = good_pages()
    pages[6] = leaf(6, [(0, b"blob", b"x")])[:8] + struct.pack("<HHI", LEAF, 1, 1000) \
        + leaf(6, [(0, b"blob", b"x")])[16:]
    assert "page 6: overflow 1000" in corrupt_msg(build(pages))


def test_element_past_page_end() -> None:
    raw = bytearray(leaf(4, [(0, b"k", b"v")]))
    raw[16 + 12:16 + 16] = struct.pack("<I", PS)  # vsize
    pages = good_pages()
    pages[4] = bytes(raw)
    assert "page 4: element 0 runs past the end of the page" in corrupt_msg(build(pages))


def test_count_larger_than_page() -> None:
    raw = bytearray(leaf(4, [(0, b"k", b"v")]))
    raw[10:12] = struct.pack("<H", 0xFFFF)
    pages = good_pages()
    pages[4] = bytes(raw)
    assert "page 4: 65535 elements do not fit" in corrupt_msg(build(pages))


def test_unknown_page_flags_and_empty_branch() -> None:
    pages = good_pages()
    pages[5] = page_bytes(5, 0x10, [], 0, PS)
    assert "page 5: not a branch or leaf page (flags 0x10)" in corrupt_msg(build(pages))
    pages[5] = page_bytes(5, BRANCH, [], 0, PS)
    assert "page 5: empty branch page" in corrupt_msg(build(pages))


def test_inline_bucket_shared_by_many_elements() -> None:
    """Elements pointing at one inline bucket would nest exponentially; refused at once."""
    inner = bucket_value(0, 0, [(0, b"x", b"y")])
    raw = bytearray(leaf(2, [(BUCKET, b"a", inner), (BUCKET, b"b", inner)]))
    # make element 1 point at element 0's key+value (same inline page), key still 1 byte
    pos0 = struct.unpack_from("<I", raw, 16 + 4)[0]
    raw[32 + 4:32 + 8] = struct.pack("<I", pos0 - 16)
    msg = corrupt_msg(build({2: bytes(raw)}))
    assert "inline page: at offset" in msg and "reached twice" in msg


def test_short_bucket_value_and_branch_inline_page() -> None:
    assert "shorter than a bucket header" in corrupt_msg(
        build({2: leaf(2, [(BUCKET, b"a", b"short")])}))
    bad_inline = struct.pack("<QQ", 0, 0) + page_bytes(0, BRANCH, [(4, b"k", b"")])
    assert "not a leaf page" in corrupt_msg(build({2: leaf(2, [(BUCKET, b"a", bad_inline)])}))


def test_nesting_limit() -> None:
    depth = MAX_BUCKET_DEPTH + 2
    pages = {2 + i: leaf(2 + i, [(BUCKET, b"n", bucket_value(3 + i))]) for i in range(depth)}
    pages[2 + depth] = leaf(2 + depth, [])
    assert f"nested deeper than {MAX_BUCKET_DEPTH}" in corrupt_msg(build(pages))


def test_open_reads_files_and_never_creates(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    data = build(good_pages())
    path.write_bytes(data)
    path.chmod(0o400)
    with BoltDB.open(path) as db:
        assert walk(db.root) == 48
    assert path.read_bytes() == data
    missing = tmp_path / "missing.db"
    with pytest.raises(InputError, match="no such file") as info:
        BoltDB.open(missing)
    assert not isinstance(info.value, CorruptInputError)
    assert not missing.exists()
    with pytest.raises(InputError, match="not a regular file"):
        BoltDB.open(tmp_path)
    path.write_bytes(data[:3 * PS])
    with BoltDB.open(path) as db, pytest.raises(CorruptInputError, match=r"t\.db: page 3"):
        walk(db.root)
