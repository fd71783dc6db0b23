"""containers-storage: every finding kind on a store written by the real podman 4.3.

The stores are the fixtures' podman graph roots (see MANIFEST.md: a SIGKILLed load, a failed
rmi, and the store after podman's next command), copied with ``cp -a``. Where podman cannot
leave a fault by itself, the copy is damaged the way a power loss leaves it: a directory
entry lost (a short link, a whole layer dir), a file truncated to zero bytes (ext4 after a
crash without fsync), metadata rolled back to its previous version (a rename not persisted).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from fixture_ids import busybox_layers

from crilink.errors import RuntimeBusyError
from crilink.model import Finding, Severity, TargetKind
from crilink.scan import ScanOptions, detect_target, run_scan
from crilink.stores.base import ensure_stopped
from crilink.stores.cstorage import CStorageStore
from crilink.stores.usage import tree_usage

pytestmark = pytest.mark.integration

CS = "containers-storage"
IDS = busybox_layers()  # looked up in the fixtures: builds are not byte-reproducible
BUSYBOX_V1_TOP, BUSYBOX_BASE = IDS["v1_top"], IDS["base"]
V2_LOST_TOP, V2_MIDDLE = IDS["v2_top"], IDS["v2_middle"]


def scan(root: Path, deep: bool = False) -> list[Finding]:
    return list(run_scan(str(root), options=ScanOptions(deep=deep)).findings)


def by_kind(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.kind, []).append(f)
    return out


def link_of(root: Path, lid: str) -> str:
    return (root / "overlay" / lid / "link").read_text()


@pytest.fixture
def store(copy_fixture: Callable[[str], Path]) -> Callable[[str], Path]:
    return lambda scenario: copy_fixture(f"{CS}/{scenario}/root")


def test_clean_store_is_clean_and_detected(store: Callable[[str], Path]) -> None:
    root = store("clean")
    assert detect_target(str(root)) is TargetKind.CONTAINERS_STORAGE
    result = run_scan(str(root))
    assert result.findings == ()
    assert result.stats["layers"] == 9 and result.stats["short_links"] == 9


def test_volatile_records_are_records(store: Callable[[str], Path], tmp_path: Path) -> None:
    """A ``podman run --rm`` container's records live in the volatile files: its layer is
    neither an orphan nor reclaimable, and gc leaves it alone."""
    root = store("clean")
    ctrs = json.loads((root / "overlay-containers/containers.json").read_text())
    layers = json.loads((root / "overlay-layers/layers.json").read_text())
    moved = ctrs[0]
    (lrec,) = [x for x in layers if x["id"] == moved["layer"]]
    for rel, keep, volatile in (("overlay-containers/%s.json", ctrs[1:], [moved]),
                                ("overlay-layers/%s.json", [x for x in layers if x is not lrec],
                                 [lrec])):
        base = "containers" if "containers" in rel else "layers"
        (root / (rel % base)).write_text(json.dumps(keep))
        (root / (rel % f"volatile-{base}")).write_text(json.dumps(volatile))
    assert scan(root) == []
    proc = subprocess.run([sys.executable, "-m", "crilink.cli.main", "gc", str(root), "--apply",
                           "--yes", "--journal-dir", str(tmp_path / "j")],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (root / "overlay" / moved["layer"] / "diff").is_dir()


def test_incomplete_layer_from_sigkilled_load(store: Callable[[str], Path]) -> None:
    root = store("incomplete-layer")
    layers = json.loads((root / "overlay-layers/layers.json").read_text())
    flagged = [x["id"] for x in layers if x.get("flags", {}).get("incomplete")]
    found = by_kind(scan(root))
    assert [f.id for f in found.pop("incomplete_layer")] == flagged
    assert found == {}


def test_partial_delete_and_dangling_layer(store: Callable[[str], Path]) -> None:
    found = by_kind(scan(store("partial-delete")))
    assert [f.id for f in found["incomplete_layer"]] == [V2_LOST_TOP]
    # its link file is already gone, but an incomplete layer is not link-checked
    assert "missing_link_file" not in found
    root = store("dangling-layer")
    found = by_kind(scan(root))
    (unref,) = found.pop("unreferenced_layer")
    assert unref.id == V2_MIDDLE and unref.severity is Severity.WARNING
    assert unref.bytes == tree_usage(root / "overlay" / V2_MIDDLE).exclusive > 0
    assert found == {}


def test_missing_short_link_after_power_loss(store: Callable[[str], Path]) -> None:
    root = store("clean")
    name = link_of(root, BUSYBOX_BASE)
    (root / "overlay/l" / name).unlink()
    found = by_kind(scan(root))
    assert [(f.path, f.id) for f in found["missing_short_link"]] == [
        (f"overlay/l/{name}", BUSYBOX_BASE)]
    assert all("unresolved" in f.detail["reason"] for f in found["bad_lower"])
    stacked = {d.name for d in (root / "overlay").iterdir()
               if (d / "lower").is_file() and name in (d / "lower").read_text()}
    assert {f.id for f in found["bad_lower"]} == stacked  # every layer on busybox's base
    assert len(stacked) == 5


def test_missing_link_file_and_bad_lower_truncated(store: Callable[[str], Path]) -> None:
    root = store("clean")
    (root / "overlay" / BUSYBOX_V1_TOP / "link").write_bytes(b"")
    (root / "overlay" / BUSYBOX_V1_TOP / "lower").write_bytes(b"")
    found = by_kind(scan(root))
    assert [(f.id, f.detail["reason"]) for f in found["missing_link_file"]] == [
        (BUSYBOX_V1_TOP, "empty")]
    assert (BUSYBOX_V1_TOP, ["empty"]) in [(f.id, f.detail["reason"]) for f in found["bad_lower"]]


def test_wrong_and_dangling_short_links(store: Callable[[str], Path]) -> None:
    root = store("dangling-layer")
    l_dir = root / "overlay/l"
    # a layer dir removed whose record and short link survived (the record write was lost)
    mid_name = link_of(root, V2_MIDDLE)
    shutil.rmtree(root / "overlay" / V2_MIDDLE)
    # a short link that points at another layer, and one out of the store
    base_name = link_of(root, BUSYBOX_BASE)
    (l_dir / base_name).unlink()
    (l_dir / base_name).symlink_to(f"../{BUSYBOX_V1_TOP}/diff")
    (l_dir / "OUTOFTHESTORE2222222222222").symlink_to("../../../../etc")
    found = by_kind(scan(root))
    assert {(f.path, f.detail["reason"]) for f in found["wrong_short_link"]} == {
        (f"overlay/l/{base_name}", "other_layer"),
        ("overlay/l/OUTOFTHESTORE2222222222222", "not_a_layer_diff")}
    assert [f.path for f in found["dangling_short_link"]] == [f"overlay/l/{mid_name}"]
    assert [f.id for f in found["missing_layer_dir"]] == [V2_MIDDLE]
    assert all(f.severity is Severity.ERROR for f in found["wrong_short_link"])


def test_orphan_layer_dir_after_metadata_rollback(store: Callable[[str], Path]) -> None:
    # podman loaded busybox:v2 into partial-delete's store before the failed rmi; roll
    # layers.json/images.json back to dangling-layer's (a later version whose rename was
    # persisted without the dir removal): the half-deleted top layer's dir is now unknown
    root = store("partial-delete")
    other = store("dangling-layer")
    for rel in ("overlay-layers/layers.json", "overlay-images/images.json"):
        shutil.copy2(other / rel, root / rel)
    found = by_kind(scan(root))
    (orphan,) = found["orphan_layer_dir"]
    assert orphan.id == V2_LOST_TOP and orphan.path == f"overlay/{V2_LOST_TOP}"
    assert orphan.bytes == tree_usage(root / "overlay" / V2_LOST_TOP).exclusive


def test_non_utf8_and_l_as_file(store: Callable[[str], Path]) -> None:
    root = store("clean")
    os.symlink(b"../gone/diff", os.fsencode(str(root / "overlay/l")) + b"/BAD\xff")
    found = by_kind(scan(root))
    (dangling,) = found["dangling_short_link"]
    assert dangling.path == "overlay/l/BAD\udcff" and "path_b64" in dangling.to_json()
    shutil.rmtree(root / "overlay/l")
    (root / "overlay/l").write_text("")
    found = by_kind(scan(root))
    assert len(found["missing_short_link"]) == 9


def test_deep_runs_directory_checks_on_diffs(store: Callable[[str], Path]) -> None:
    pytest.importorskip("crilink.checks.rootfs")
    root = store("clean")
    deep = [f for f in scan(root, deep=True) if "/diff/" in f.path]
    assert deep, "busybox's absolute applet links show up under their layer's diff/"
    assert all(f.id for f in deep)


def test_held_lock_refuses_and_names_the_process(store: Callable[[str], Path]) -> None:
    root = store("clean")
    code = ("import fcntl,sys; f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX);"
            "print('locked', flush=True); sys.stdin.read()")
    lock = root / "overlay-layers/layers.lock"
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        opened = CStorageStore.open(root)
        with pytest.raises(RuntimeBusyError, match=f"pid {holder.pid}"):
            ensure_stopped(opened, "repair")
        holders = opened.lock_holders()
        assert (holder.pid, "overlay-layers/layers.lock", "lock") in [
            (h.pid, h.path, h.how) for h in holders]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert not CStorageStore.open(root).runtime_status().running
    # our own lock is never reported
    with open(root / "storage.lock", "r+") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        assert not CStorageStore.open(root).runtime_status().running
