"""Findings on the real containerd stores (made by the real daemon; see the fixtures' MANIFEST).

Where only a crash at a precise point could produce a state, a COPY of a real store is edited
minimally, and the edit is documented in the test.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from crilink.checks.containerd import analyze
from crilink.model import Finding
from crilink.stores.containerd import ContainerdStore
from crilink.stores.containerd_tree import build_trees, why
from crilink.stores.usage import tree_usage

SNAPS = "io.containerd.snapshotter.v1.overlayfs/snapshots"
C = "containerd"


def kinds(found: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in found:
        out.setdefault(f.kind, []).append(f)
    return out


def root_of(real_fixtures: Path, scenario: str) -> str:
    return str(real_fixtures / C / scenario / "root")


def test_clean_only_the_view_is_unreferenced(real_fixtures: Path) -> None:
    # v-view (ctr snapshots view) has no container, lease or label: GC would delete it
    _, found = analyze(root_of(real_fixtures, "clean"))
    assert [(f.kind, f.key) for f in found] == [("unreferenced_snapshot", "v-view")]
    f = found[0]
    assert f.namespace == "k8s.io" and f.path == f"{SNAPS}/{f.id}"
    assert f.bytes == tree_usage(real_fixtures / C / "clean/root" / f.path).exclusive


def test_gc_pending(real_fixtures: Path) -> None:
    # busybox-oci:v1 and c-created removed, then SIGKILL before any GC pass
    _, found = analyze(root_of(real_fixtures, "gc-pending"))
    k = kinds(found)
    assert [f.key for f in k["backend_unreferenced"]] == ["k8s.io/13/c-created"]
    assert [f.digest for f in k["unreferenced_content"]] == [
        "sha256:7d4769f59df1bede863d1aeeb8f3574d76ef0c178f3fd2d2dbcf702ab73d5698"]
    assert [f.key for f in k["unreferenced_snapshot"]] == ["v-view"]
    assert set(k) == {"backend_unreferenced", "unreferenced_content", "unreferenced_snapshot"}


def test_orphan_dir_and_ghost_child(real_fixtures: Path) -> None:
    # GC removed c-created's record but not its dir (immutable fs/); GC also deleted v-view's
    # meta.db bucket without touching its parent's children bucket
    _, found = analyze(root_of(real_fixtures, "orphan-dir"))
    k = kinds(found)
    (orphan,) = k["orphan_dir"]
    assert orphan.path.startswith(SNAPS + "/") and orphan.bytes and orphan.bytes > 0
    (ghost,) = k["ghost_child"]
    assert ghost.detail["child"] == "v-view" and ghost.detail["db"] == "meta.db"
    assert set(k) == {"orphan_dir", "ghost_child"}


def test_interrupted_import_before_and_after_lease_expiry(real_fixtures: Path) -> None:
    root = root_of(real_fixtures, "interrupted-import")
    ns = ContainerdStore(root).read_metadata().namespaces[0]
    (lease,) = ns.leases
    assert lease.expires is not None
    _, before = analyze(root, now=lease.expires - timedelta(seconds=1))
    assert before == []  # the lease still protects the partial pull
    _, after = analyze(root, now=lease.expires + timedelta(seconds=1))
    k = kinds(after)
    assert [f.key for f in k["expired_lease"]] == [lease.id]
    (ingest,) = k["stale_ingest"]
    assert ingest.key == "tar-a36b25510e6a60caac966cc914369b5cb88bab1d0df8467300b8c1f6d2c89d9c.tar"
    assert ingest.bytes and ingest.bytes >= 1 << 20  # ctr had written 1 MiB of the layer
    assert [f.digest[:15] for f in k["unreferenced_content"]] == ["sha256:28c4eee9"]


def test_interrupted_unpack_extract_leftover(real_fixtures: Path) -> None:
    _, found = analyze(root_of(real_fixtures, "interrupted-unpack"))
    (f,) = found
    assert f.kind == "extract_leftover" and f.key and f.key.startswith("extract-")
    assert f.id == "1" and f.bytes and f.bytes > 1 << 20


def test_bulk_is_clean_and_tree_counts(real_fixtures: Path) -> None:
    ix, found = analyze(root_of(real_fixtures, "bulk"))
    assert found == []
    (tree,) = build_trees(ix, found)
    assert len(tree.entries) == 252 and tree.reclaimable == {}
    held = tree.by_key()["bulk-7"].held_by
    assert held == ("container bulk-7",)


def test_why_chain_reaches_the_image(real_fixtures: Path) -> None:
    ix, _ = analyze(root_of(real_fixtures, "clean"))
    base = "sha256:28c4eee936eaaa3a80e5a666af223c7ddb0149f32b6f90811216d972ff04fe30"
    chain = why(ix, "k8s.io", base)
    assert chain[0].startswith(("container c-", "image docker.io/crilink/"))
    assert chain[-1].endswith(base)
    assert why(ix, "k8s.io", "v-view") == []


def test_missing_dir_on_an_edited_copy(copy_fixture: Callable[[str], Path]) -> None:
    # edit: delete fs/ of snapshot 2 (the busybox:v1 top layer) in a copy, as a crash in the
    # middle of an 'rm -rf' of the dir would; every descendant becomes unusable too
    root = copy_fixture("containerd/clean/root")
    subprocess.run(["rm", "-rf", str(root / SNAPS / "2" / "fs")], check=True)
    _, found = analyze(str(root))
    missing = {f.id: f.detail["reason"] for f in found if f.kind == "missing_dir"}
    assert missing["2"] == "fs/ missing"
    assert {"3", "4", "7", "8", "9"} <= set(missing)  # children of 2, and theirs
    assert "1" not in missing and "5" not in missing


@pytest.mark.skipif(subprocess.run(["id", "-u"], capture_output=True, text=True,
                                   check=False).stdout.strip() != "0", reason="needs root to mount")
def test_leaked_mount(copy_fixture: Callable[[str], Path]) -> None:
    # edit: recreate on a copy the bind mount containerd held under tmpmounts/ when it was
    # killed mid-unpack (logs/containerd-interrupted-unpack.unmounted.txt)
    root = copy_fixture("containerd/interrupted-unpack/root")
    point = root / "tmpmounts" / "containerd-mount2299436914"
    point.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", str(root / SNAPS / "1" / "fs"), str(point)], check=True)
    try:
        _, found = analyze(str(root))
    finally:
        subprocess.run(["umount", str(point)], check=True)
    (leak,) = [f for f in found if f.kind == "leaked_mount"]
    assert leak.path == "tmpmounts/containerd-mount2299436914"
    assert leak.detail["mount_point"] == str(point)
