"""The BoltDB reader on the real containerd stores, checked against what ctr printed.

Each scenario's meta.db (containerd's metadata plugin) and metadata.db (the overlayfs
snapshotter) were written by a real containerd (tests/fixtures/make-real-stores.sh);
dumps/containerd-<scenario>.ctr.txt holds the ctr listings taken on the same store.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from crilink.formats.bolt import BoltDB, Bucket, parse_proc_locks, writer_lock_holder

META_DB = "io.containerd.metadata.v1.bolt/meta.db"
SNAP_DB = "io.containerd.snapshotter.v1.overlayfs/metadata.db"
SNAP_DIRS = "io.containerd.snapshotter.v1.overlayfs/snapshots"
SCENARIOS = ["clean", "gc-pending", "orphan-dir", "interrupted-import", "interrupted-unpack",
             "bulk"]
KIND_NAMES = {1: "View", 2: "Active", 3: "Committed"}  # containerd's snapshots.Kind bytes


def ctr_sections(path: Path) -> dict[str, list[list[str]]]:
    """'$ ctr -n NS <cmd>' -> rows of each listing, cut at the header's column starts.

    Cells are cut by position, not split on blanks: a snapshot key may hold a space
    (``extract-<n>-<id> sha256:...``).
    """
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    starts: list[int] = []
    for line in path.read_text().splitlines():
        if line.startswith("$ ctr"):
            current = sections.setdefault(re.sub(r"^\$ ctr -n \S+ ", "", line), [])
            starts = []
        elif current is not None and line.strip():
            if not starts:
                starts = [m.start() for m in re.finditer(r"\S+", line)]
                continue
            bounds = [*starts[1:], len(line)]
            current.append([line[a:b].strip() for a, b in zip(starts, bounds, strict=True)])
    return sections


def uvarint(raw: bytes) -> int:
    value = shift = 0
    for byte in raw:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return value


def names(bucket: Bucket | None) -> set[str]:
    return set() if bucket is None else {k.decode() for k, _ in bucket}


def walk(bucket: Bucket) -> Iterator[tuple[bytes, ...]]:
    for key, is_bucket in bucket:
        yield (key,)
        if is_bucket:
            sub = bucket.bucket(key)
            assert sub is not None
            yield from ((key, *rest) for rest in walk(sub))


@pytest.fixture(scope="module")
def ctd(real_fixtures: Path) -> Path:
    return real_fixtures / "containerd"


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("dbfile", [META_DB, SNAP_DB])
def test_every_real_file_reads_whole(ctd: Path, scenario: str, dbfile: str) -> None:
    path = ctd / scenario / "root" / dbfile
    if dbfile == SNAP_DB and scenario == "interrupted-import":
        assert not path.exists()  # the snapshotter never ran a transaction there
        return
    before = path.stat()
    with BoltDB.open(path) as db:
        paths = list(walk(db.root))
        from_bytes = list(walk(BoltDB.from_bytes(path.read_bytes()).root))
    assert paths and paths == from_bytes
    assert paths[0] == (b"v1",)
    after = path.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


@pytest.mark.parametrize("scenario", ["clean", "gc-pending", "orphan-dir",
                                      "interrupted-import", "interrupted-unpack"])
def test_meta_db_matches_ctr_listing(ctd: Path, real_fixtures: Path, scenario: str) -> None:
    listing = ctr_sections(real_fixtures / "dumps" / f"containerd-{scenario}.ctr.txt")
    with BoltDB.open(ctd / scenario / "root" / META_DB) as db:
        ns = db.bucket(b"v1", b"k8s.io")
        assert ns is not None
        if "images ls" in listing:
            assert names(ns.bucket(b"images")) == {r[0] for r in listing["images ls"]}
        if "containers ls" in listing:
            rows = listing["containers ls"]
            assert names(ns.bucket(b"containers")) == {r[0] for r in rows}
            for name, image, _ in rows:
                container = db.bucket(b"v1", b"k8s.io", b"containers", name.encode())
                assert container is not None and container.get(b"image") == image.encode()
        if "leases ls" in listing:
            assert names(ns.bucket(b"leases")) == {r[0] for r in listing["leases ls"]}
        _check_snapshots(db, listing["snapshots ls"], ctd / scenario / "root" / SNAP_DB)


def _check_snapshots(db: BoltDB, rows: list[list[str]], snap_db: Path) -> None:
    snaps = db.bucket(b"v1", b"k8s.io", b"snapshots", b"overlayfs")
    assert names(snaps) == {r[0] for r in rows}
    if not rows:
        return
    assert snaps is not None
    with BoltDB.open(snap_db) as backend:
        records = backend.bucket(b"v1", b"snapshots")
        assert records is not None
        for row in rows:
            key, parent, kind = row
            snap = snaps.bucket(key.encode())
            assert snap is not None
            assert snap.get(b"parent") == (parent.encode() if parent else None)
            backend_name = snap.get(b"name")
            assert backend_name is not None and backend_name.endswith(b"/" + key.encode())
            record = records.bucket(backend_name)
            assert record is not None
            assert KIND_NAMES[uvarint(record.get(b"kind") or b"")] == kind


def test_bulk_meta_db_has_250_containers_through_branch_pages(ctd: Path) -> None:
    with BoltDB.open(ctd / "bulk" / "root" / META_DB) as db:
        containers = db.bucket(b"v1", b"bulk", b"containers")
        assert containers is not None
        assert not containers._page.is_leaf  # a multi-level B+tree, the point of bulk
        keys = [k for k, _ in containers.buckets()]
        assert keys == sorted(keys)
        assert set(keys) == {f"bulk-{i}".encode() for i in range(1, 251)}
        for i in (1, 77, 128, 250):
            labels = db.bucket(b"v1", b"bulk", b"containers", f"bulk-{i}".encode(), b"labels")
            assert labels is not None and labels.get(b"n") == str(i).encode()
        snaps = db.bucket(b"v1", b"bulk", b"snapshots", b"overlayfs")
        assert names(snaps) >= {f"bulk-{i}" for i in range(1, 251)}


@pytest.mark.parametrize(("scenario", "exact"), [("clean", True), ("bulk", True),
                                                 ("gc-pending", True), ("orphan-dir", False)])
def test_snapshotter_ids_match_snapshot_dirs(ctd: Path, scenario: str, exact: bool) -> None:
    root = ctd / scenario / "root"
    with BoltDB.open(root / SNAP_DB) as db:
        records = db.bucket(b"v1", b"snapshots")
        assert records is not None
        ids = {str(uvarint(rec.get(b"id") or b"")) for _, rec in records.buckets()}
        assert records.sequence >= max(int(i) for i in ids)
    dirs = {p.name for p in (root / SNAP_DIRS).iterdir()}
    assert ids == dirs if exact else ids < dirs


# -- writer lock --------------------------------------------------------------------------


def test_writer_lock_seen_from_an_exclusive_flock(tmp_path: Path, ctd: Path) -> None:
    path = tmp_path / "meta.db"
    path.write_bytes((ctd / "clean" / "root" / META_DB).read_bytes())
    assert not writer_lock_holder(path)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock = writer_lock_holder(path)
        assert lock.held and lock.pid == os.getpid()
        with BoltDB.open(path) as db:  # reading never waits for the lock
            assert db.bucket(b"v1", b"k8s.io") is not None
    finally:
        os.close(fd)
    assert writer_lock_holder(path) == writer_lock_holder(path)
    assert not writer_lock_holder(path).held


def test_a_shared_lock_is_not_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # what a read-only bbolt user holds
        assert not writer_lock_holder(path)
    finally:
        os.close(fd)


def test_parse_proc_locks() -> None:
    text = ("1: POSIX  ADVISORY  WRITE 77 00:2d:99 0 EOF\n"
            "2: FLOCK  ADVISORY  READ 55 00:2d:99 0 EOF\n"
            "3: FLOCK  ADVISORY  WRITE 1234 fd:01:99 0 EOF\n"
            "3: -> FLOCK  ADVISORY  WRITE 4321 fd:01:99 0 EOF\n"
            "4: FLOCK  ADVISORY  WRITE 888 00:2d:100 0 EOF\n")
    assert parse_proc_locks(text, 0xFD, 0x01, 99) == 1234
    assert parse_proc_locks(text, 0x00, 0x2D, 99) == 1234  # inode-only match, unique
    assert parse_proc_locks(text, 0x00, 0x2D, 100) == 888
    assert parse_proc_locks(text, 0x00, 0x2D, 5) is None
    assert parse_proc_locks("garbage\n3: FLOCK x WRITE y 1:2\n", 1, 2, 3) is None
