"""A read-only reader for BoltDB (bbolt) files, as containerd writes them.

Nouns: a *database* is one bbolt file; a *bucket* is a B+tree of keys, each key holding
either a plain value or a nested bucket; the *root bucket* holds the top-level buckets.
A bucket small enough is stored *inline*, inside its parent's leaf value.

Guarantees:

* :meth:`BoltDB.open` opens the file ``O_RDONLY``; it never creates, locks or writes a
  file. The file is memory-mapped read-only and decoded lazily, page by page, as buckets
  are walked.
* Both meta pages are checked (magic, version, FNV-1a checksum); the valid one with the
  highest transaction id is used.
* Every page reference is bounds-checked and every page may be reached from only one
  place, so a corrupt or truncated file raises :class:`~crilink.errors.CorruptInputError`
  naming the page (``read meta.db: page 7: beyond end of file``), never another
  exception, a hang, or unbounded memory. Corruption is found when the page that holds
  it is read, so iterating may raise part-way.

Limits: no freelist is read and keys are not re-checked for order. Reading a file that a
live bbolt writer is changing can give a torn view: ask :func:`writer_lock_holder` first.
The database must not be used after :meth:`BoltDB.close`.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from crilink.errors import CorruptInputError, InputError, denied_hint
from crilink.formats.bolt_page import (
    BRANCH_ELEM,
    BUCKET_HEADER,
    ELEM_SIZE,
    LEAF_ELEM,
    LEAF_FLAG_BUCKET,
    META_REFERRER,
    PAGE_HEADER_SIZE,
    Buffer,
    Meta,
    Page,
    Pager,
)

__all__ = ["MAX_BUCKET_DEPTH", "BoltDB", "Bucket", "WriterLock", "writer_lock_holder"]

LEAF_KEY: Final = struct.Struct("<II")  # pos, ksize: the key's place in a leaf element
LEAF_KEY_OFFSET: Final = 4  # after the element's flags
MAX_BUCKET_DEPTH: Final = 128  # nesting deeper than this is treated as corruption
MIN_FILE_SIZE: Final = 2 * 512  # two meta pages of the smallest page size
PROC_LOCKS: Final = "/proc/locks"

# A leaf entry: (flags, key start, key end = value start, value end, element offset).
_Entry = tuple[int, int, int, int, int]
_INDEX_MAX = 64  # leaf buckets up to this many keys are indexed in a dict on first lookup


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket: plain keys and nested buckets, iterated in key order.

    ``sequence`` is the bucket's counter (bbolt's ``NextSequence``).
    """

    _pager: Pager
    _page: Page
    sequence: int
    _depth: int = 0
    # key -> entry of a bucket that is one leaf page (most records), filled on first lookup
    _index: dict[bytes, _Entry] = field(default_factory=dict, compare=False, repr=False)

    def get(self, key: bytes) -> bytes | None:
        """The plain value of ``key``; None when absent or when ``key`` is a bucket."""
        entry = self._find(key)
        if entry is None or entry[0] & LEAF_FLAG_BUCKET:
            return None
        return bytes(self._pager.buf[entry[2]:entry[3]])

    def bucket(self, name: bytes) -> Bucket | None:
        """The nested bucket ``name``; None when absent or when it is a plain value."""
        entry = self._find(name)
        if entry is None or not entry[0] & LEAF_FLAG_BUCKET:
            return None
        return self._child(entry)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every plain (key, value) pair, in key order."""
        buf = self._pager.buf
        for flags, start, kend, vend, _ in self._entries():
            if not flags & LEAF_FLAG_BUCKET:
                yield bytes(buf[start:kend]), bytes(buf[kend:vend])

    def buckets(self) -> Iterator[tuple[bytes, Bucket]]:
        """Every nested (name, bucket) pair, in key order."""
        buf = self._pager.buf
        for entry in self._entries():
            if entry[0] & LEAF_FLAG_BUCKET:
                yield bytes(buf[entry[1]:entry[2]]), self._child(entry)

    def keys(self) -> Iterator[tuple[bytes, bool]]:
        """Every key with whether it names a nested bucket, in key order."""
        buf = self._pager.buf
        for flags, start, kend, _, _ in self._entries():
            yield bytes(buf[start:kend]), bool(flags & LEAF_FLAG_BUCKET)

    def __iter__(self) -> Iterator[tuple[bytes, bool]]:
        """Same as :meth:`keys` (so ``for key, is_bucket in bucket`` reads well)."""
        return self.keys()

    # -- walking ---------------------------------------------------------------------------

    def _leaves(self) -> Iterator[Page]:
        pager = self._pager
        stack = [self._page]
        while stack:
            page = stack.pop()
            if page.is_leaf:
                yield page
                continue
            elem = page.offset + PAGE_HEADER_SIZE
            children = []
            for _ in range(page.count):
                children.append(pager.page(BRANCH_ELEM.unpack_from(pager.buf, elem)[2], elem))
                elem += ELEM_SIZE
            children.reverse()
            stack.extend(children)

    def _entries(self) -> Iterator[_Entry]:
        buf = self._pager.buf
        for page in self._leaves():
            elem = page.offset + PAGE_HEADER_SIZE
            table = buf[elem:elem + page.count * ELEM_SIZE]  # one copy, then a fast unpack
            for flags, pos, ksize, vsize in LEAF_ELEM.iter_unpack(table):
                start = elem + pos
                kend = start + ksize
                vend = kend + vsize
                if vend > page.end:
                    raise self._bad_elem(page, elem, "runs past the end of the page")
                yield flags, start, kend, vend, elem
                elem += ELEM_SIZE

    def _leaf_entry(self, page: Page, index: int) -> _Entry:
        elem = page.offset + PAGE_HEADER_SIZE + index * ELEM_SIZE
        flags, pos, ksize, vsize = LEAF_ELEM.unpack_from(self._pager.buf, elem)
        start = elem + pos
        vend = start + ksize + vsize
        if vend > page.end:
            raise self._bad_elem(page, elem, "runs past the end of the page")
        return flags, start, start + ksize, vend, elem

    def _branch_key(self, page: Page, index: int) -> tuple[bytes, int, int]:
        """Key, child pgid and element offset of branch element ``index``."""
        elem = page.offset + PAGE_HEADER_SIZE + index * ELEM_SIZE
        pos, ksize, child = BRANCH_ELEM.unpack_from(self._pager.buf, elem)
        start = elem + pos
        if start + ksize > page.end:
            raise self._bad_elem(page, elem, "key runs past the end of the page")
        return bytes(self._pager.buf[start:start + ksize]), child, elem

    def _find(self, key: bytes) -> _Entry | None:
        page = self._page
        if page.is_leaf and page.count <= _INDEX_MAX:  # a small record: index it once
            index = self._index
            if not index and page.count:
                buf = self._pager.buf
                for entry in self._entries():
                    index.setdefault(bytes(buf[entry[1]:entry[2]]), entry)
            return index.get(key)
        while not page.is_leaf:
            lo, hi = 0, page.count  # first element whose key is greater than ``key``
            while lo < hi:
                mid = (lo + hi) // 2
                if self._branch_key(page, mid)[0] <= key:
                    lo = mid + 1
                else:
                    hi = mid
            _, child, elem = self._branch_key(page, max(lo - 1, 0))
            page = self._pager.page(child, elem)
        buf = self._pager.buf
        base = page.offset + PAGE_HEADER_SIZE
        lo, hi = 0, page.count  # first element whose key is not less than ``key``
        while lo < hi:  # keys compared unchecked (a short slice at worst); the match is checked
            mid = (lo + hi) // 2
            elem = base + mid * ELEM_SIZE
            pos, ksize = LEAF_KEY.unpack_from(buf, elem + LEAF_KEY_OFFSET)
            if buf[elem + pos:elem + pos + ksize] < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < page.count:
            entry = self._leaf_entry(page, lo)
            if buf[entry[1]:entry[2]] == key:
                return entry
        return None

    def _child(self, entry: _Entry) -> Bucket:
        _, _, vstart, vend, elem = entry
        pager = self._pager
        if self._depth + 1 > MAX_BUCKET_DEPTH:
            raise pager.corrupt(self._page.pgid, f"buckets nested deeper than {MAX_BUCKET_DEPTH}")
        if vend - vstart < BUCKET_HEADER.size:
            raise self._bad_elem(self._page, elem, "bucket value shorter than a bucket header")
        root, sequence = BUCKET_HEADER.unpack_from(pager.buf, vstart)
        if root:
            page = pager.page(root, elem)
        else:
            page = pager.inline(vstart + BUCKET_HEADER.size, vend, elem)
            if not page.is_leaf:
                raise pager.corrupt(0, f"at offset {page.offset}: not a leaf page")
        return Bucket(pager, page, sequence, self._depth + 1)

    def _bad_elem(self, page: Page, elem: int, what: str) -> CorruptInputError:
        index = (elem - page.offset - PAGE_HEADER_SIZE) // ELEM_SIZE
        return self._pager.corrupt(page.pgid, f"element {index} {what}")


class BoltDB:
    """One bbolt database, opened read-only. Use as a context manager, or call close()."""

    def __init__(self, pager: Pager, mapping: mmap.mmap | None = None) -> None:
        self._pager = pager
        self._mapping = mapping
        self.name = pager.name
        self.meta: Meta = pager.meta
        self.txid = pager.meta.txid
        self.page_size = pager.page_size
        self.root = Bucket(pager, pager.page(pager.meta.root_pgid, META_REFERRER),
                           pager.meta.root_sequence)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> BoltDB:
        """Open ``path`` read-only; InputError if unreadable, CorruptInputError if malformed."""
        name = os.fspath(path)
        fd = _open_rdonly(name)
        try:
            size = _regular_size(fd, name)
            try:
                mapping = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
            except OSError as err:
                raise InputError(f"read {name}: cannot map the file: {err.strerror}") from err
        finally:
            os.close(fd)
        try:
            return cls(Pager(mapping, size, name), mapping)
        except BaseException:
            mapping.close()
            raise

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> BoltDB:
        """A database held in memory (tests, fuzzing, a file read elsewhere)."""
        _check_size(len(data), name)
        buf: Buffer = data
        return cls(Pager(buf, len(data), name))

    def bucket(self, *names: bytes) -> Bucket | None:
        """The bucket at the nested path ``names`` under the root bucket, or None."""
        current: Bucket | None = self.root
        for name in names:
            if current is None:
                return None
            current = current.bucket(name)
        return current

    def close(self) -> None:
        if self._mapping is not None:
            self._mapping.close()
            self._mapping = None

    def __enter__(self) -> BoltDB:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BoltDB({self.name!r}, txid={self.txid}, page_size={self.page_size})"


def _open_rdonly(name: str) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise InputError(f"read {name}: no such file") from err
    except PermissionError as err:
        raise InputError(f"read {name}: permission denied{denied_hint()}") from err
    except OSError as err:
        raise InputError(f"read {name}: {err.strerror}") from err


def _regular_size(fd: int, name: str) -> int:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"read {name}: not a regular file")
    _check_size(st.st_size, name)
    return st.st_size


def _check_size(size: int, name: str) -> None:
    if size < MIN_FILE_SIZE:
        raise CorruptInputError(
            f"read {name}: page 0: file is {size} bytes, too small for a BoltDB (truncated?)")


# -- live writer detection -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriterLock:
    """Whether a process holds the database's writer lock; true in a boolean context.

    ``pid`` is the holder as /proc/locks shows it (in the pid namespace that mounted
    /proc), or None when not held or not found.
    """

    held: bool
    pid: int | None = None

    def __bool__(self) -> bool:
        return self.held


def writer_lock_holder(path: str | os.PathLike[str]) -> WriterLock:
    """Probe, without blocking, whether a read-write bbolt user (containerd) has ``path`` open.

    bbolt holds an exclusive ``flock`` on the file while it is open read-write. A shared,
    non-blocking ``flock`` is tried on a read-only descriptor and released at once.
    """
    name = os.fspath(path)
    fd = _open_rdonly(name)
    try:
        st = os.fstat(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise InputError(f"lock {name}: {err.strerror}") from err
            held = True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            held = False
    finally:
        os.close(fd)
    return WriterLock(True, _flock_holder(st)) if held else WriterLock(False)


def _flock_holder(st: os.stat_result, locks_file: str = PROC_LOCKS) -> int | None:
    """The pid of the exclusive flock holder of the file ``st`` describes, from /proc/locks."""
    try:
        text = Path(locks_file).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return parse_proc_locks(text, os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)


def parse_proc_locks(text: str, major: int, minor: int, inode: int) -> int | None:
    """The pid on the first ``FLOCK ... WRITE`` line for (major, minor, inode).

    Lines look like ``3: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF``; device numbers
    are hex, the inode decimal. Waiters (``->`` lines) are skipped. When no line matches
    the device (some filesystems report another one), a unique inode match is used.
    """
    exact: list[int] = []
    by_inode: list[int] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE":
            continue
        dev_ino = fields[5].split(":")
        if len(dev_ino) != 3 or not fields[4].lstrip("-").isdigit():
            continue
        try:
            maj, mnr, ino = int(dev_ino[0], 16), int(dev_ino[1], 16), int(dev_ino[2])
        except ValueError:
            continue
        if ino == inode:
            (exact if (maj, mnr) == (major, minor) else by_inode).append(int(fields[4]))
    if exact:
        return exact[0]
    return by_inode[0] if len(by_inode) == 1 else None
