"""Disk usage of directory trees, hard-link aware: what deleting a tree would give back.

Nouns:
- *allocated bytes* of an inode: ``st_blocks * 512`` (what ``du`` counts, not ``st_size``).
- *exclusive bytes* of a set of trees: the allocated bytes of every inode all of whose links
  (``st_nlink``) lie inside the set. Deleting the trees frees exactly these bytes.
- *shared bytes*: allocated bytes of inodes seen in the set that also have links elsewhere.

Guarantees: every ``(st_dev, st_ino)`` is counted once, however many links point at it; symlinks
are never followed; with ``one_filesystem`` a directory on another device (a mount point) is
neither counted nor entered. Entries that vanish during the walk are skipped. Limits: a
directory's own ``st_nlink`` is not compared (directories cannot be hard-linked).
Errors: a tree root that cannot be read raises :class:`crilink.errors.InputError`;
unreadable subdirectories are counted in ``Usage.errors``.

Speed: one ``lstat`` per entry (``os.scandir`` + ``DirEntry.stat``), and the directories are
read by a few threads at once (``workers``; the kernel work of ``getdents``/``lstat`` runs
without the GIL). Each thread keeps its own link counts; they are summed at the end, and a
directory is entered by exactly one thread, so the result is the one a single walk gives.
"""

from __future__ import annotations

import os
import pickle
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from crilink.errors import InputError

__all__ = ["Usage", "default_workers", "tree_usage", "usage_each", "usage_each_forked",
           "usage_of"]

BLOCK_SIZE = 512  # st_blocks unit on Linux, whatever the filesystem's block size
MAX_WORKERS = 4  # more threads than this only contend for the GIL
SPLIT_DIRS = 16  # directories queued per worker before a walk is split between threads
Key = tuple[int, int]  # (st_dev, st_ino)
Top = str | bytes
_S_IFMT, _S_IFDIR = stat.S_IFMT(0o177777), stat.S_IFDIR


def default_workers() -> int:
    """Threads for a walk: the CPUs this process may use, at most ``MAX_WORKERS``."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


@dataclass(frozen=True, slots=True)
class Usage:
    """Allocated bytes of a set of trees, split by whether deleting them would free the bytes."""

    exclusive: int = 0
    shared: int = 0
    inodes: int = 0
    errors: int = 0

    @property
    def total(self) -> int:
        return self.exclusive + self.shared


class _Walk:
    """One thread's share of a walk: links seen per inode, and the inodes' sizes and link counts.

    ``claim`` decides whether this walk enters a directory; walks that share a claim set never
    enter the same directory twice.
    """

    def __init__(self, one_filesystem: bool, claim: Callable[[Key], bool] | None = None) -> None:
        self.one_filesystem = one_filesystem
        self.seen: dict[Key, int] = {}
        self.info: dict[Key, tuple[int, int]] = {}  # -> (bytes, nlink or 0 for dirs)
        self.errors = 0
        self.claim = claim

    def add(self, st: os.stat_result, is_dir: bool) -> bool:
        """Count one link to ``st``'s inode; True if this walk should enter it (a new dir)."""
        key = (st.st_dev, st.st_ino)
        count = self.seen.get(key)
        self.seen[key] = (count or 0) + 1
        if count is None:
            self.info[key] = (st.st_blocks * BLOCK_SIZE, 0 if is_dir else st.st_nlink)
            return self.claim is None or not is_dir or self.claim(key)
        return False

    def scan(self, top: Top, dev: int, pending: list[Top] | deque[Top]) -> None:
        """Count the entries of directory ``top``; append its subdirectories to ``pending``.

        The body of :meth:`add` is inlined: this loop runs once per entry of the tree.
        """
        try:
            it = os.scandir(top)
        except OSError:
            self.errors += 1
            return
        one_fs, seen, info, claim = self.one_filesystem, self.seen, self.info, self.claim
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError:
                    self.errors += 1
                    continue
                is_dir = st.st_mode & _S_IFMT == _S_IFDIR
                if is_dir and one_fs and st.st_dev != dev:
                    continue
                key = (st.st_dev, st.st_ino)
                count = seen.get(key)
                if count is not None:
                    seen[key] = count + 1
                    continue
                seen[key] = 1
                if is_dir:
                    info[key] = (st.st_blocks * BLOCK_SIZE, 0)
                    if claim is None or claim(key):
                        pending.append(entry.path)
                else:
                    info[key] = (st.st_blocks * BLOCK_SIZE, st.st_nlink)

    def walk(self, stack: list[Top], dev: int) -> _Walk:
        while stack:
            self.scan(stack.pop(), dev, stack)
        return self

    def merge(self, other: _Walk) -> None:
        for key, count in other.seen.items():
            self.seen[key] = self.seen.get(key, 0) + count
        self.info.update(other.info)
        self.errors += other.errors

    def result(self) -> Usage:
        exclusive = shared = 0
        seen = self.seen
        for key, (size, nlink) in self.info.items():
            if nlink == 0 or seen[key] >= nlink:
                exclusive += size
            else:
                shared += size
        return Usage(exclusive, shared, len(self.info), self.errors)


def _start(walk: _Walk, paths: Iterable[str | bytes | os.PathLike[str]],
           missing_ok: bool) -> list[tuple[Top, int]]:
    """Count the roots themselves; return the directories to enter, with their devices."""
    tops = []
    for p in paths:
        path = os.fspath(p)
        try:
            st = os.lstat(path)
        except FileNotFoundError as err:
            if missing_ok:
                continue
            raise InputError(f"measure {os.fsdecode(path)}: no such file or directory") from err
        except OSError as err:
            raise InputError(f"measure {os.fsdecode(path)}: {err.strerror}") from err
        is_dir = stat.S_ISDIR(st.st_mode)
        if walk.add(st, is_dir) and is_dir:
            tops.append((path, st.st_dev))
    return tops


def _walk_split(walk: _Walk, top: Top, dev: int, workers: int) -> None:
    """Walk ``top`` into ``walk``: breadth-first until there is enough to share, then the
    queued directories are dealt out to ``workers`` threads, each with its own counts."""
    queue: deque[Top] = deque([top])
    while queue and len(queue) < SPLIT_DIRS * workers:
        walk.scan(queue.popleft(), dev, queue)
    if not queue:
        return
    if workers == 1 or len(queue) < SPLIT_DIRS * workers:
        walk.walk(list(queue), dev)
        return
    lock = threading.Lock()
    entered = set(walk.info)

    def claim(key: Key) -> bool:
        with lock:
            if key in entered:
                return False
            entered.add(key)
            return True

    walk.claim = claim
    shares = [list(queue)[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        for part in pool.map(lambda s: _Walk(walk.one_filesystem, claim).walk(s, dev), shares):
            walk.merge(part)


def usage_of(paths: Iterable[str | bytes | os.PathLike[str]], *, one_filesystem: bool = True,
             missing_ok: bool = True, workers: int | None = None) -> Usage:
    """Usage of the union of ``paths`` (each a directory or file), every inode counted once.

    A path that does not exist counts nothing when ``missing_ok``, else raises ``InputError``.
    ``workers``: threads that read directories (default :func:`default_workers`); the result
    does not depend on it.
    """
    walk = _Walk(one_filesystem)
    n = default_workers() if workers is None else max(1, workers)
    for top, dev in _start(walk, paths, missing_ok):
        _walk_split(walk, top, dev, n)
    return walk.result()


def usage_each(paths: Sequence[str | bytes | os.PathLike[str]], *, one_filesystem: bool = True,
               workers: int | None = None) -> list[Usage]:
    """``[usage_of([p]) for p in paths]``: each tree on its own (an inode linked from two of
    the trees is shared in both), the trees dealt out to ``workers`` threads.

    A path that does not exist counts nothing; any other unreadable path raises ``InputError``
    (the first such path in order).
    """
    n = min(len(paths), default_workers() if workers is None else max(1, workers))
    if n <= 1:
        return [_one(p, one_filesystem) for p in paths]
    shares = [paths[i::n] for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(_each, share, one_filesystem) for share in shares]
        parts = [f.result() for f in futures]
    out: list[Usage] = []
    for i in range(len(paths)):
        res = parts[i % n][i // n]
        if isinstance(res, InputError):
            raise res
        out.append(res)
    return out


def _each(paths: Sequence[str | bytes | os.PathLike[str]],
          one_filesystem: bool) -> list[Usage | InputError]:
    out: list[Usage | InputError] = []
    for p in paths:
        try:
            out.append(_one(p, one_filesystem))
        except InputError as err:
            out.append(err)
    return out


def _one(path: str | bytes | os.PathLike[str], one_filesystem: bool) -> Usage:
    walk = _Walk(one_filesystem)
    for top, dev in _start(walk, [path], True):
        walk.walk([top], dev)
    return walk.result()


def tree_usage(path: str | bytes | os.PathLike[str], *, one_filesystem: bool = True) -> Usage:
    """Usage of one tree (see :func:`usage_of`)."""
    return usage_of([path], one_filesystem=one_filesystem)


def usage_each_forked(paths: Sequence[str]) -> Callable[[], list[Usage] | None]:
    """Start :func:`usage_each` of ``paths`` in a forked child; return a function that waits
    for it and gives its result, or None if the child failed (measure in-process then).

    For a caller with pure-Python work of its own to do meanwhile (decoding BoltDB files):
    the per-entry loop of a walk holds the GIL, so threads cannot overlap the two, a
    process can. Call the returned function exactly once.
    """
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return lambda: None
    if pid == 0:  # the child: measure, send, leave without running the parent's cleanups
        code = 1
        try:
            os.close(read_fd)
            out = [(u.exclusive, u.shared, u.inodes, u.errors) if isinstance(u, Usage) else None
                   for u in _each_or_none(paths)]
            with os.fdopen(write_fd, "wb") as pipe:
                pickle.dump(out, pipe, protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)

    def collect() -> list[Usage] | None:
        try:
            with os.fdopen(read_fd, "rb") as pipe:
                rows = pickle.load(pipe)
        except (EOFError, OSError, pickle.UnpicklingError):
            rows = None
        finally:
            _, status = os.waitpid(pid, 0)
        if rows is None or status != 0 or len(rows) != len(paths) or None in rows:
            return None
        return [Usage(*row) for row in rows]

    return collect


def _each_or_none(paths: Sequence[str]) -> list[Usage | None]:
    try:
        return list(usage_each(paths))
    except InputError:
        return [None] * len(paths)
