"""Findings on the real containerd stores (made by the real daemon; see the fixtures' MANIFEST).

Where only a crash at a precise point could produce a state, a COPY of a real store is edited
minimally, and the edit is documented in the test.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from fixture_ids import chain_ids, diff_ids, fixtures_dir, manifest_digest

from crilink.checks.containerd import analyze
from crilink.model import Finding
from crilink.stores.containerd import ContainerdStore
from crilink.stores.containerd_tree import build_trees, why
from crilink.stores.usage import tree_usage

LAYOUT = fixtures_dir() / "oci/layout"  # ids looked up: fixture builds are not reproducible
V1_DIFFS = diff_ids(LAYOUT, "v1")
BUSYBOX_BASE = V1_DIFFS[0]

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
        manifest_digest(LAYOUT, "v1")]
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
    assert ingest.key == f"tar-{V1_DIFFS[1].split(':')[1]}.tar"
    assert ingest.bytes and ingest.bytes >= 1 << 20  # ctr had written 1 MiB of the layer
    assert [f.digest[:15] for f in k["unreferenced_content"]] == [BUSYBOX_BASE[:15]]


def test_interrupted_unpack_extract_leftover(real_fixtures: Path) -> None:
    _, found = analyze(root_of(real_fixtures, "interrupted-unpack"))
    (f,) = found
    assert f.kind == "extract_leftover" and f.key and f.key.startswith("extract-")
    assert f.id == "1" and f.bytes and f.bytes > 1 << 20
    # what gc will say too: the unpack's lease still holds it, until it expires
    assert str(f.detail["held_by"]).startswith("lease ") and "expires" in f.message


def test_bulk_is_clean_and_tree_counts(real_fixtures: Path) -> None:
    ix, found = analyze(root_of(real_fixtures, "bulk"))
    assert found == []
    (tree,) = build_trees(ix, found)
    assert len(tree.entries) == 252 and tree.reclaimable == {}
    held = tree.by_key()["bulk-7"].held_by
    assert held == ("container bulk-7",)


def test_why_chain_reaches_the_image(real_fixtures: Path) -> None:
    ix, _ = analyze(root_of(real_fixtures, "clean"))
    base = BUSYBOX_BASE
    chain = why(ix, "k8s.io", base)
    assert chain[0].startswith(("container c-", "image docker.io/crilink/"))
    assert chain[-1].endswith(base)
    assert why(ix, "k8s.io", "v-view") == []


def test_missing_dir_on_an_edited_copy(copy_fixture: Callable[[str], Path]) -> None:
    # edit: delete fs/ of the busybox:v1 top layer's snapshot in a copy, as a crash in the
    # middle of an 'rm -rf' of the dir would; every descendant becomes unusable too
    root = copy_fixture("containerd/clean/root")
    records = {r.key: r for recs in ContainerdStore(root).read_metadata().backend.values()
               for r in recs}
    base_key, top_key = chain_ids(V1_DIFFS)
    top = next(r for r in records.values() if r.key.endswith("/" + top_key))
    subprocess.run(["rm", "-rf", str(root / SNAPS / str(top.id) / "fs")], check=True)
    _, found = analyze(str(root))
    missing = {f.id: f.detail["reason"] for f in found if f.kind == "missing_dir"}
    assert missing[str(top.id)] == "fs/ missing"

    def above_top(key: str) -> bool:
        while key:
            if key == top.key:
                return True
            key = records[key].parent
        return False

    descendants = {str(r.id) for r in records.values() if r.key != top.key and above_top(r.key)}
    assert len(descendants) >= 3  # v2's two upper layers, c-ran's active snapshot ...
    assert set(missing) == {str(top.id)} | descendants
    base = next(r for r in records.values() if r.key.endswith("/" + base_key))
    assert str(base.id) not in missing


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


def test_ingest_ref_that_is_a_fifo_does_not_block(copy_fixture: Callable[[str], Path]) -> None:
    root = copy_fixture("containerd/interrupted-import/root")
    (ingest,) = (root / "io.containerd.content.v1.content/ingest").iterdir()
    (ingest / "ref").unlink()
    import os  # noqa: PLC0415

    os.mkfifo(ingest / "ref")  # reading it would wait for a writer for ever
    _, found = analyze(str(root))
    assert [f.kind for f in found if f.kind == "stale_ingest"] == ["stale_ingest"]


def test_unknown_namespace_is_a_usage_error_not_clean(real_fixtures: Path) -> None:
    from crilink.errors import UsageError  # noqa: PLC0415

    with pytest.raises(UsageError, match=r"'K8s\.io' does not exist.*it has: k8s\.io"):
        analyze(root_of(real_fixtures, "clean"), namespace="K8s.io")
    _, found = analyze(root_of(real_fixtures, "clean"), namespace="k8s.io")
    assert found
