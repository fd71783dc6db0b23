"""Fuzz the BoltDB reader with damaged copies of the real containerd files.

Byte flips aimed at live pages (headers, element tables, keys and values) and at the
meta pages, page-id corruptions of branch children and bucket roots, and truncations.
Every outcome must be a full read or CorruptInputError: no other exception, no hang
(a work budget far above any valid file's key count catches runaway walks).
Run ``pytest tests/unit/test_bolt_fuzz.py --hypothesis-show-statistics`` to see how
often each outcome happened.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crilink.errors import CorruptInputError
from crilink.formats.bolt import BoltDB, Bucket
from crilink.formats.bolt_page import BUCKET_HEADER, ELEM_SIZE, LEAF_ELEM, PAGE_HEADER_SIZE

DEFAULT_FIXTURES = Path("/var/tmp/crilink-fixtures")
DB_FILES = ("io.containerd.metadata.v1.bolt/meta.db",
            "io.containerd.snapshotter.v1.overlayfs/metadata.db")
BULK_META = "containerd/bulk/root/io.containerd.metadata.v1.bolt/meta.db"


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class BudgetExceededError(AssertionError):
    """The walk did far more work than the file could describe: a runaway."""


@dataclass(frozen=True)
class Sample:
    """A real file plus where its live structures are, to aim mutations at."""

    name: str
    data: bytes
    regions: tuple[tuple[int, int], ...]  # (start, end) of interesting bytes of live pages
    pointers: tuple[int, ...]  # offsets of u64 page ids: branch children, bucket roots
    pgids: tuple[int, ...]
    page_size: int
    high_water: int


def fixtures_dir() -> Path:
    import os  # noqa: PLC0415 - only to honour the same variable as conftest.py

    return Path(os.environ.get("CRILINK_FIXTURES", str(DEFAULT_FIXTURES)))


def walk(bucket: Bucket, budget: list[int]) -> None:
    """Visit everything: keys, lookups, values and nested buckets; spend the budget."""
    for key, is_bucket in bucket:
        budget[0] -= 1
        if budget[0] < 0:
            raise BudgetExceededError("walk exceeded its budget")
        _ = bucket.bucket(key) if is_bucket else bucket.get(key)
    for _key, _value in bucket.items():
        budget[0] -= 1
    for _, sub in bucket.buckets():
        walk(sub, budget)


def read_all(data: bytes) -> None:
    """A full read of ``data`` or CorruptInputError; anything else fails the test."""
    budget = [max(len(data), 1 << 16)]
    try:
        walk(BoltDB.from_bytes(data, "fuzz.db").root, budget)
    except CorruptInputError as err:
        assert err.message.startswith("read fuzz.db: ")
        assert "page" in err.message
        event("CorruptInputError: " + re.sub(r"\d+", "N", err.message.split(": ", 2)[2])[:50])
    else:
        event("read whole")


@cache
def sample(rel: str) -> Sample:
    data = (fixtures_dir() / rel).read_bytes()
    db = BoltDB.from_bytes(data, rel)
    walk(db.root, [1 << 30])
    pager = db._pager  # the pages a full walk reached: where mutations hurt
    regions, pointers = [], []
    for pgid, (page, _) in sorted(pager._seen.items()):
        if pgid != page.pgid:
            continue  # an overflow page of an earlier page
        table_end = page.offset + PAGE_HEADER_SIZE + page.count * ELEM_SIZE
        regions.append((page.offset, min(page.end, table_end + 512)))
        for i in range(page.count):
            elem = page.offset + PAGE_HEADER_SIZE + i * ELEM_SIZE
            pointers.append(elem + 8 if not page.is_leaf else _bucket_root_at(data, elem))
    for offset, (page, _) in pager._inline_seen.items():
        regions.append((offset, page.end))
    regions.append((0, 16 + 64))  # meta page 0
    regions.append((db.page_size, db.page_size + 16 + 64))  # meta page 1
    return Sample(rel, data, tuple(regions), tuple(p for p in pointers if p >= 0),
                  tuple(sorted(pager._seen)), db.page_size, db.meta.high_water)


def _bucket_root_at(data: bytes, elem: int) -> int:
    flags, pos, ksize, _ = LEAF_ELEM.unpack_from(data, elem)
    if not flags & 0x01:
        return -1
    value = elem + pos + ksize
    root = BUCKET_HEADER.unpack_from(data, value)[0]
    return value if root else -1


@cache
def all_samples() -> tuple[Sample, ...]:
    base = fixtures_dir() / "containerd"
    if not base.is_dir():
        pytest.fail(f"real fixtures missing in {base.parent}: run scripts/test")
    rels = [str((root / f).relative_to(fixtures_dir())) for root in sorted(base.glob("*/root"))
            for f in DB_FILES if (root / f).is_file()]
    return tuple(sample(r) for r in rels)


@st.composite
def flipped(draw: st.DrawFn, samples: st.SearchStrategy[Sample]) -> bytes:
    s = draw(samples)
    data = bytearray(s.data)
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            start, end = draw(st.sampled_from(s.regions))
        else:
            start, end = 0, len(data)
        data[draw(st.integers(start, end - 1))] ^= draw(st.integers(1, 255))
    return bytes(data)


@st.composite
def repointed(draw: st.DrawFn, samples: st.SearchStrategy[Sample]) -> bytes:
    s = draw(samples)
    data = bytearray(s.data)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(s.pointers))
        pgid = draw(st.one_of(
            st.sampled_from(s.pgids), st.sampled_from([0, 1, 2, s.high_water - 1, s.high_water,
                                                       s.high_water + 1, 2**64 - 1]),
            st.integers(0, 2**64 - 1), st.integers(0, len(data) // s.page_size + 2)))
        struct.pack_into("<Q", data, where, pgid)
    return bytes(data)


@st.composite
def truncated(draw: st.DrawFn, samples: st.SearchStrategy[Sample]) -> bytes:
    s = draw(samples)
    pages = len(s.data) // s.page_size
    size = draw(st.one_of(st.integers(0, len(s.data) - 1),
                          st.integers(0, pages - 1).map(lambda n: n * s.page_size)))
    return s.data[:size]


def every_file() -> st.SearchStrategy[Sample]:
    return st.sampled_from(all_samples())


def bulk_meta() -> st.SearchStrategy[Sample]:
    return st.just(sample(BULK_META))


@fuzz(2000)
@given(data=st.deferred(lambda: flipped(every_file())))
def test_byte_flips(data: bytes) -> None:
    read_all(data)


@fuzz(800)
@given(data=st.deferred(lambda: repointed(every_file())))
def test_page_id_corruptions(data: bytes) -> None:
    read_all(data)


@fuzz(300)
@given(data=st.deferred(lambda: truncated(every_file())))
def test_truncations(data: bytes) -> None:
    read_all(data)


@fuzz(300)
@given(data=st.deferred(lambda: st.one_of(flipped(bulk_meta()), repointed(bulk_meta()))))
def test_bulk_branch_pages(data: bytes) -> None:
    read_all(data)


def test_samples_aim_at_live_structures() -> None:
    samples = all_samples()
    assert len(samples) == 11
    bulk = sample(BULK_META)
    assert len(bulk.pointers) > 250 and len(bulk.pgids) > 20
