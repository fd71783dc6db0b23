"""Cross-checks against a real containerd on copies of the real stores, and gc end to end."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from containerd_daemon import Containerd, containerd_available
from fixture_ids import diff_ids, fixtures_dir

from crilink.checks.containerd import analyze
from crilink.stores.containerd import ContainerdStore
from crilink.stores.containerd_model import MetaSnapshot

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(containerd_available() is not None,
                                 reason=str(containerd_available()))]

LAYOUT = fixtures_dir() / "oci/layout"  # ids looked up: fixture builds are not reproducible
V1_DIFFS = diff_ids(LAYOUT, "v1")
BUSYBOX_BASE = V1_DIFFS[0]

SCENARIOS = ["clean", "gc-pending", "orphan-dir", "interrupted-import", "interrupted-unpack",
             "bulk"]


def _ours(root: Path) -> dict[str, dict[str, set[str]]]:
    meta = ContainerdStore(root).read_metadata()
    kind = {(r.snapshotter, r.key): str(r.kind).capitalize()
            for recs in meta.backend.values() for r in recs}

    def row(s: MetaSnapshot) -> str:  # a 'ctr snapshots ls' row, whitespace collapsed
        return " ".join(p for p in (s.key, s.parent, kind[(s.snapshotter, s.backend_key)]) if p)

    return {ns.name: {"images": {i.name for i in ns.images},
                      "containers": {c.id for c in ns.containers},
                      "leases": {lease.id for lease in ns.leases},
                      "snapshots": {row(s) for s in ns.snapshots}}
            for ns in meta.namespaces}


def _theirs(ctd: Containerd, ns: str) -> dict[str, set[str]]:
    def q(*args: str) -> set[str]:
        return set(ctd.ctr("-n", ns, *args).stdout.split())

    rows = {" ".join(line.split())
            for line in ctd.ctr("-n", ns, "snapshots", "ls").stdout.splitlines()[1:]}
    return {"images": q("images", "ls", "-q"), "containers": q("containers", "ls", "-q"),
            "leases": q("leases", "ls", "-q"), "snapshots": rows}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lists_equal_ctr(scenario: str, copy_fixture: Callable[[str], Path]) -> None:
    root = copy_fixture(f"containerd/{scenario}/root")
    ours = _ours(root)  # read before the daemon touches the copy
    with Containerd(root, gc="delayed") as ctd:
        namespaces = set(ctd.ctr("namespaces", "ls", "-q").stdout.split())
        assert namespaces == set(ours)
        for ns in namespaces:
            assert _theirs(ctd, ns) == ours[ns], ns


def test_running_daemon_detected_and_ownerless_active(
        copy_fixture: Callable[[str], Path]) -> None:
    root = copy_fixture("containerd/clean/root")
    with Containerd(root, gc="delayed") as ctd:
        status = ContainerdStore(root).runtime_status()
        assert status.running and status.pid == ctd.pid
        parent = BUSYBOX_BASE
        ctd.ctr("-n", "k8s.io", "snapshots", "prepare", "scratch-active", parent)
    _, found = analyze(str(root))
    kinds = {(f.kind, f.key) for f in found}
    assert ("ownerless_active", "scratch-active") in kinds
    assert ("unreferenced_snapshot", "v-view") in kinds


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sxB1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def _crilink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["python", "-m", "crilink.cli.main", *args], capture_output=True,
                          text=True, check=False, timeout=600)


def test_gc_apply_stopped_then_running(copy_fixture: Callable[[str], Path],
                                       tmp_path: Path) -> None:
    root = copy_fixture("containerd/orphan-dir/root")
    # make the store leakier with the real daemon: an unreferenced view and an expired lease
    with Containerd(root, gc="delayed") as ctd:
        images_before = ctd.ctr("-n", "k8s.io", "images", "ls", "-q").stdout
        base = BUSYBOX_BASE
        ctd.ctr("-n", "k8s.io", "snapshots", "view", "leaky-view", base)
        ctd.ctr("-n", "k8s.io", "leases", "create", "--id", "leaky-lease", "--expires", "1s")
    ix, found = analyze(str(root))
    later = ix.now + timedelta(seconds=5)
    as_of = later.isoformat()
    reported = {f.kind: f.bytes or 0 for f in found}
    assert reported["orphan_dir"] > 0
    journal_dir = tmp_path / "journal"

    # 1. containerd stopped: only the orphan dir goes, through the journal
    du0 = _du(root)
    r = _crilink("gc", str(root), "--apply", "--yes", "--as-of", as_of,
                 "--journal-dir", str(journal_dir))
    assert r.returncode == 0, r.stderr
    du1 = _du(root)
    assert du0 - du1 >= reported["orphan_dir"]
    assert list(journal_dir.iterdir())
    _, found = analyze(str(root), now=later)
    assert "orphan_dir" not in {f.kind for f in found}
    still = sum(f.bytes or 0 for f in found)
    assert still > 0  # the view, freed only through containerd
    du2 = _du(root)

    # 2. containerd running: ctr removes the rest, leaf first, then a GC pass
    with Containerd(root, gc="normal") as ctd:
        r = _crilink("gc", str(root), "--apply", "--yes", "--as-of", as_of,
                     "--address", ctd.address)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ctd.ctr("-n", "k8s.io", "images", "ls", "-q").stdout == images_before
    _, after = analyze(str(root), now=later)
    assert [f for f in after if f.bytes] == []
    assert du2 - _du(root) >= still
    assert {f.kind for f in after} <= {"ghost_child"}
    # 3. the daemon still works: images unchanged, a container runs
    with Containerd(root, gc="normal") as ctd:
        assert ctd.ctr("-n", "k8s.io", "images", "ls", "-q").stdout == images_before
        run = ctd.ctr("-n", "k8s.io", "run", "--rm", *ctd.run_args(),
                      "docker.io/crilink/busybox:v1", "after-gc", "/bin/echo", "ok")
        assert run.stdout.strip() == "ok"
