"""Low-level BoltDB (bbolt) file layout: meta pages and bounds-checked page access.

The format facts this module relies on (bbolt file format version 2, little endian):

* The file is a sequence of pages of ``page_size`` bytes; page ``n`` starts at
  ``n * page_size``. A page starts with a 16-byte header: id u64, flags u16, count u16,
  overflow u32. A page with ``overflow = k`` spans ``k + 1`` consecutive pages.
* Pages 0 and 1 are meta pages. After the header comes: magic u32, version u32,
  page_size u32, flags u32, root bucket (root pgid u64, sequence u64), freelist pgid u64,
  pgid u64 (the high-water mark: no page at or above it is in use), txid u64 and
  checksum u64, the FNV-1a 64 hash of the 56 meta bytes before it. The valid meta with
  the highest txid is the current one.
* Branch pages hold ``count`` 16-byte elements (pos u32, ksize u32, pgid u64); leaf pages
  hold ``count`` 16-byte elements (flags u32, pos u32, ksize u32, vsize u32). ``pos`` is
  relative to the element's own offset; a leaf value follows its key.

:class:`Pager` hands out :class:`Page` records only after checking that the page lies
below the high-water mark and inside the file, that its header names the page asked
for, and that its elements fit. Each page may be reached from exactly one place (the
meta page, a branch element or a bucket's leaf element): a second, different referrer
means a cycle or a shared page and is reported as corruption, so no walk can loop.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from typing import Final

from crilink.errors import CorruptInputError

__all__ = [
    "BRANCH_ELEM",
    "BUCKET_HEADER",
    "ELEM_SIZE",
    "LEAF_ELEM",
    "LEAF_FLAG_BUCKET",
    "MAGIC",
    "META_REFERRER",
    "PAGE_FLAG_BRANCH",
    "PAGE_FLAG_LEAF",
    "PAGE_HEADER",
    "PAGE_HEADER_SIZE",
    "VERSION",
    "Buffer",
    "Meta",
    "Page",
    "Pager",
    "fnv1a64",
    "select_meta",
]

Buffer = bytes | mmap.mmap  # slicing either gives bytes

MAGIC: Final = 0xED0CDAED
VERSION: Final = 2

PAGE_HEADER: Final = struct.Struct("<QHHI")  # id, flags, count, overflow
PAGE_HEADER_SIZE: Final = PAGE_HEADER.size
PAGE_FLAG_BRANCH: Final = 0x01
PAGE_FLAG_LEAF: Final = 0x02
PAGE_FLAG_META: Final = 0x04
PAGE_FLAG_FREELIST: Final = 0x10

META_BODY: Final = struct.Struct("<IIIIQQQQQQ")
META_CHECKSUMMED_BYTES: Final = 56  # everything before the checksum field
META_SIZE: Final = META_BODY.size
META_PAGE_IDS: Final = (0, 1)

BRANCH_ELEM: Final = struct.Struct("<IIQ")  # pos, ksize, child pgid
LEAF_ELEM: Final = struct.Struct("<IIII")  # flags, pos, ksize, vsize
ELEM_SIZE: Final = 16
LEAF_FLAG_BUCKET: Final = 0x01

BUCKET_HEADER: Final = struct.Struct("<QQ")  # root pgid (0 = inline), sequence

MIN_PAGE_SIZE: Final = 512
MAX_PAGE_SIZE: Final = 1 << 20
# Page sizes to try for page 1 when page 0 is unreadable: the common ones first.
PAGE_SIZE_GUESSES: Final = (4096, 16384, 65536, 8192, 32768, 2048, 1024, 512)

META_REFERRER: Final = -1  # the referrer of the root bucket's page

FNV64_OFFSET: Final = 0xCBF29CE484222325
FNV64_PRIME: Final = 0x100000001B3
U64_MASK: Final = (1 << 64) - 1


def fnv1a64(data: Buffer) -> int:
    """The FNV-1a 64-bit hash of ``data``."""
    h = FNV64_OFFSET
    for byte in bytes(data):
        h = ((h ^ byte) * FNV64_PRIME) & U64_MASK
    return h


@dataclass(frozen=True, slots=True)
class Meta:
    """One decoded meta page."""

    page_id: int
    page_size: int
    flags: int
    root_pgid: int
    root_sequence: int
    freelist_pgid: int
    high_water: int  # bbolt's meta.pgid: pages at or above it are not in use
    txid: int


def _page_size_ok(size: int) -> bool:
    return MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE and size & (size - 1) == 0


def _read_meta(buf: Buffer, size: int, offset: int, page_id: int) -> Meta | str:
    """The meta page at ``offset``, or why it is not valid."""
    if offset + PAGE_HEADER_SIZE + META_SIZE > size:
        return "beyond end of file"
    body = offset + PAGE_HEADER_SIZE
    magic, version, page_size, flags, root, seq, freelist, high, txid, checksum = \
        META_BODY.unpack_from(buf, body)
    if magic != MAGIC:
        return f"bad magic {magic:#x}"
    if version != VERSION:
        return f"unsupported version {version}"
    if checksum != fnv1a64(buf[body:body + META_CHECKSUMMED_BYTES]):
        return "checksum mismatch"
    if not _page_size_ok(page_size):
        return f"implausible page size {page_size}"
    return Meta(page_id, page_size, flags, root, seq, freelist, high, txid)


def select_meta(buf: Buffer, size: int, name: str) -> Meta:
    """The valid meta page with the highest txid; CorruptInputError if neither is valid."""
    meta0 = _read_meta(buf, size, 0, 0)
    guesses = (meta0.page_size,) if isinstance(meta0, Meta) else PAGE_SIZE_GUESSES
    meta1: Meta | str = "beyond end of file"
    for guess in guesses:
        meta1 = _read_meta(buf, size, guess, 1)
        if isinstance(meta1, Meta) and meta1.page_size != guess:
            meta1 = f"page size {meta1.page_size} does not match its offset {guess}"
        if isinstance(meta1, Meta):
            break
    valid = [m for m in (meta0, meta1) if isinstance(m, Meta)]
    if not valid:
        raise CorruptInputError(
            f"read {name}: page 0 and page 1: no valid meta page ({meta0}; {meta1}); "
            "not a BoltDB file, or damaged beyond use")
    return max(valid, key=lambda m: m.txid)


@dataclass(frozen=True, slots=True)
class Page:
    """A checked branch or leaf page: elements start at ``offset + 16``, data ends at ``end``.

    ``pgid`` is 0 for a bucket's inline page (it lives inside its parent's leaf value).
    """

    pgid: int
    offset: int
    end: int
    flags: int
    count: int

    @property
    def is_leaf(self) -> bool:
        return bool(self.flags & PAGE_FLAG_LEAF)


class Pager:
    """Bounds-checked page access over one buffer; remembers who referred to each page."""

    __slots__ = ("_inline_seen", "_seen", "buf", "meta", "name", "page_size", "size")

    def __init__(self, buf: Buffer, size: int, name: str) -> None:
        self.buf = buf
        self.size = size
        self.name = name
        self.meta = select_meta(buf, size, name)
        self.page_size = self.meta.page_size
        self._seen: dict[int, tuple[Page, int]] = {}
        self._inline_seen: dict[int, tuple[Page, int]] = {}

    def corrupt(self, pgid: int, what: str) -> CorruptInputError:
        where = f"page {pgid}" if pgid else "inline page"
        return CorruptInputError(f"read {self.name}: {where}: {what}")

    def page(self, pgid: int, referrer: int) -> Page:
        """Page ``pgid`` as reached from the element at file offset ``referrer``."""
        seen = self._seen.get(pgid)
        if seen is not None:
            if seen[1] != referrer:
                raise self.corrupt(pgid, f"reached twice (from page {self._src(seen[1])} and "
                                   f"page {self._src(referrer)}): a cycle or a shared page")
            return seen[0]
        page = self._check(pgid)
        for covered in range(pgid, pgid + (page.end - page.offset) // self.page_size):
            self._seen[covered] = (page, referrer)
        return page

    def inline(self, offset: int, end: int, referrer: int) -> Page:
        """The inline page of a bucket whose value body spans ``[offset, end)``.

        Like a real page, an inline page may be reached from one element only: corrupt
        elements sharing one value could otherwise nest buckets exponentially.
        """
        seen = self._inline_seen.get(offset)
        if seen is not None and seen[1] != referrer:
            raise self.corrupt(0, f"at offset {offset}: reached twice (from page "
                               f"{self._src(seen[1])} and page {self._src(referrer)})")
        if end - offset < PAGE_HEADER_SIZE:
            raise self.corrupt(0, f"at offset {offset}: {end - offset} bytes, too short")
        _, flags, count, _ = PAGE_HEADER.unpack_from(self.buf, offset)
        page = self._checked_page(0, offset, end, flags, count)
        self._inline_seen[offset] = (page, referrer)
        return page

    def _src(self, referrer: int) -> str:
        return "meta" if referrer == META_REFERRER else str(referrer // self.page_size)

    def _check(self, pgid: int) -> Page:
        if pgid in META_PAGE_IDS:
            raise self.corrupt(pgid, "a meta page used as a data page")
        if pgid >= self.meta.high_water:
            raise self.corrupt(pgid, f"beyond the high-water mark {self.meta.high_water}")
        offset = pgid * self.page_size
        if offset + self.page_size > self.size:
            raise self.corrupt(pgid, f"beyond end of file ({self.size} bytes; truncated?)")
        header_id, flags, count, overflow = PAGE_HEADER.unpack_from(self.buf, offset)
        if header_id != pgid:
            raise self.corrupt(pgid, f"header names page {header_id}")
        if pgid + overflow >= self.meta.high_water:
            raise self.corrupt(pgid, f"overflow {overflow} runs past the high-water mark")
        end = offset + (overflow + 1) * self.page_size
        if end > self.size:
            raise self.corrupt(pgid, f"overflow {overflow} runs past end of file")
        return self._checked_page(pgid, offset, end, flags, count)

    def _checked_page(self, pgid: int, offset: int, end: int, flags: int, count: int) -> Page:
        if flags not in (PAGE_FLAG_BRANCH, PAGE_FLAG_LEAF):
            raise self.corrupt(pgid, f"not a branch or leaf page (flags {flags:#x})")
        if flags == PAGE_FLAG_BRANCH and count == 0:
            raise self.corrupt(pgid, "empty branch page")
        if offset + PAGE_HEADER_SIZE + count * ELEM_SIZE > end:
            raise self.corrupt(pgid, f"{count} elements do not fit in the page")
        return Page(pgid, offset, end, flags, count)
