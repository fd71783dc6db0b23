"""The BoltDB reader against a real, running containerd on a private copy of a store.

While containerd runs, it holds the writer lock of meta.db, and of the snapshotter's
metadata.db once the snapshotter has run a transaction: writer_lock_holder says so, with
containerd's PID, without blocking; the reader still reads, and sees what ctr lists.
After SIGTERM, and after a SIGKILL crash, nothing holds the lock.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from containerd_daemon import Containerd, containerd_available

from crilink.formats.bolt import BoltDB, writer_lock_holder

pytestmark = pytest.mark.integration

META_DB = "io.containerd.metadata.v1.bolt/meta.db"
SNAP_DB = "io.containerd.snapshotter.v1.overlayfs/metadata.db"


@pytest.fixture
def store(copy_fixture: Callable[[str], Path]) -> Path:
    why = containerd_available()
    if why:
        pytest.skip(why)
    return copy_fixture("containerd/clean/root")


def _snapshot_keys_read(root: Path) -> set[str]:
    with BoltDB.open(root / META_DB) as db:
        snaps = db.bucket(b"v1", b"k8s.io", b"snapshots", b"overlayfs")
        assert snaps is not None
        return {key.decode() for key, _ in snaps}


def _snapshot_keys_listed(daemon: Containerd) -> set[str]:
    lines = daemon.ctr("-n", "k8s.io", "snapshots", "ls").stdout.splitlines()[1:]
    return {line.split()[0] for line in lines if line.strip()}


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_writer_lock_follows_the_daemon(store: Path, stop_signal: signal.Signals) -> None:
    assert not writer_lock_holder(store / META_DB)
    daemon = Containerd(store)
    try:
        daemon.start()
        lock = writer_lock_holder(store / META_DB)
        assert lock.held and lock.pid == daemon.pid
        # containerd 1.6's snapshotter opens metadata.db lazily, at its first transaction
        daemon.ctr("-n", "k8s.io", "snapshots", "prepare", "crilink-probe",
                   sorted(k for k in _snapshot_keys_listed(daemon) if k.startswith("sha256:"))[0])
        lock = writer_lock_holder(store / SNAP_DB)
        assert lock.held and lock.pid == daemon.pid
        assert _snapshot_keys_read(store) == _snapshot_keys_listed(daemon)
        assert "crilink-probe" in _snapshot_keys_read(store)
        daemon.stop(stop_signal)
        for rel in (META_DB, SNAP_DB):
            assert not writer_lock_holder(store / rel), rel
        assert "crilink-probe" in _snapshot_keys_read(store)
    finally:
        daemon.cleanup()
