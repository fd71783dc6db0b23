"""``crilink gc`` as an operator drives it: JSON after --apply, --keep-quarantine with undo,
and a running containerd whose socket crilink was not told (refused, naming the PID)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from containerd_daemon import Containerd

pytestmark = pytest.mark.integration

ORPHAN = "io.containerd.snapshotter.v1.overlayfs/snapshots/7"


def crilink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crilink.cli.main", *args],
                          capture_output=True, text=True, check=False, timeout=600)


def test_apply_json_keep_quarantine_then_undo(copy_fixture: Callable[[str], Path],
                                              tmp_path: Path) -> None:
    root = copy_fixture("containerd/orphan-dir/root")
    before = sorted(p.name for p in (root / ORPHAN).parent.iterdir())
    proc = crilink("gc", str(root), "--apply", "--yes", "--keep-quarantine", "-o", "json",
                   "--journal-dir", str(tmp_path / "j"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # JSON on stdout, also after --apply
    assert doc["applied"] is True
    assert [(r["path"], r["status"]) for r in doc["results"]] == [(ORPHAN, "done")]
    assert not (root / ORPHAN).exists()
    kept = list((root / ".crilink-quarantine").iterdir())
    assert len(kept) == 1 and any(kept[0].iterdir())
    undo = crilink("undo", doc["journal"], "--journal", str(tmp_path / "u.jsonl"))
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert sorted(p.name for p in (root / ORPHAN).parent.iterdir()) == before
    assert not (root / ".crilink-quarantine").exists() or \
        not any((root / ".crilink-quarantine").rglob("*"))


def test_running_daemon_without_socket_is_refused(copy_fixture: Callable[[str], Path]) -> None:
    root = copy_fixture("containerd/orphan-dir/root")
    with Containerd(root, gc="delayed") as ctd:
        proc = crilink("gc", str(root), "--apply", "--yes")
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert f"pid {ctd.pid}" in proc.stderr and "--address" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert (root / ORPHAN).is_dir()
        told = crilink("gc", str(root), "--apply", "--yes", "--address", ctd.address,
                       "-o", "json")
        assert told.returncode == 0, told.stderr
        results = {r["path"]: r for r in json.loads(told.stdout)["results"]}
        assert results[ORPHAN]["status"] == "skipped"
        assert "stopped" in results[ORPHAN]["reason"]
        assert (root / ORPHAN).is_dir()  # containerd's root is not touched behind its back


def test_plan_says_what_still_holds_an_interrupted_unpack(real_fixtures: Path) -> None:
    root = real_fixtures / "containerd/interrupted-unpack/root"
    proc = crilink("gc", str(root), "-o", "json", "--as-of", "2026-01-01T00:00:00Z")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (held,) = [h for h in doc["held"] if h["kind"] == "extract_leftover"]
    assert held["held_by"].startswith("lease ") and "expires" in held["held_by"]
    assert held["bytes"] > 0
    assert held["key"] not in {i["key"] for i in doc["items"]}
    text = crilink("gc", str(root), "--as-of", "2026-01-01T00:00:00Z").stdout
    assert "not yet: extract_leftover" in text and "--why" in text


def test_item_skipped_by_its_safety_check_exits_4(copy_fixture: Callable[[str], Path],
                                                   tmp_path: Path) -> None:
    """The snapshots dir relocated behind a symlink: gc never follows it to remove the
    orphan there, and says so with exit 4 (unsafe target), not 0."""
    root = copy_fixture("containerd/orphan-dir/root")
    snaps = (root / ORPHAN).parent
    outside = tmp_path / "outside"
    snaps.rename(outside)
    snaps.symlink_to(outside)
    before = sorted(p.name for p in outside.iterdir())
    proc = crilink("gc", str(root), "--apply", "--yes", "-o", "json",
                   "--journal-dir", str(tmp_path / "j"))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [(r["path"], r["status"]) for r in results] == [(ORPHAN, "skipped")]
    assert sorted(p.name for p in outside.iterdir()) == before  # nothing removed out there


def test_as_of_without_offset_is_utc(real_fixtures: Path) -> None:
    root = real_fixtures / "containerd/interrupted-import/root"
    naive = crilink("gc", str(root), "--as-of", "2020-01-01T00:00:00", "-o", "json")
    aware = crilink("gc", str(root), "--as-of", "2020-01-01T00:00:00Z", "-o", "json")
    assert naive.returncode == aware.returncode == 0, naive.stderr
    assert json.loads(naive.stdout)["items"] == json.loads(aware.stdout)["items"]


def test_orphan_dir_with_a_mount_under_it_is_never_purged(copy_fixture: Callable[[str], Path],
                                                           tmp_path: Path) -> None:
    """A leaked bind mount inside an orphan dir: removing the dir would delete what the
    mount shows, outside the store. gc leaves the item (exit 4) and the files survive."""
    root = copy_fixture("containerd/orphan-dir/root")
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "precious").write_text("keep me")
    point = root / ORPHAN / "fs"
    point.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", str(outside), str(point)], check=True)
    try:
        proc = crilink("gc", str(root), "--apply", "--yes", "-o", "json",
                       "--journal-dir", str(tmp_path / "j"))
    finally:
        subprocess.run(["umount", str(point)], check=True)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert (outside / "sub" / "precious").read_text() == "keep me"
    assert (root / ORPHAN).is_dir()
