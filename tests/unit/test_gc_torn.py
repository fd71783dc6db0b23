"""gc never removes layer dirs that torn records, images or other dirs' lowers still use."""

from __future__ import annotations

import json
from pathlib import Path

from crilink.checks.cstorage import scan_store
from crilink.fix import gc_cstorage
from crilink.fix.docker import plan_gc as docker_gc
from crilink.formats import docker as fmt
from crilink.stores.cstorage import CStorageStore
from crilink.stores.docker import open_docker

A, B, C = "a" * 64, "b" * 64, "c" * 64
NAMES = {A: "S" * 26, B: "T" * 26, C: "U" * 26}


def cstore(root: Path, layers: list[tuple[str, str | None]] | None,
           images: list[dict[str, object]]) -> Path:
    for d in ("overlay/l", "overlay-layers", "overlay-images", "overlay-containers"):
        (root / d).mkdir(parents=True)
    if layers is not None:
        (root / "overlay-layers/layers.json").write_text(
            json.dumps([{"id": i, "parent": p} if p else {"id": i} for i, p in layers]))
    (root / "overlay-images/images.json").write_text(json.dumps(images))
    (root / "overlay-containers/containers.json").write_text("[]")
    below = {A: [], B: [A], C: [B, A]}
    for lid, short in NAMES.items():
        (root / "overlay" / lid / "diff").mkdir(parents=True)
        (root / "overlay" / lid / "link").write_text(short)
        if below[lid]:
            (root / "overlay" / lid / "lower").write_text(
                ":".join(f"l/{NAMES[x]}" for x in below[lid]))
        (root / "overlay/l" / short).symlink_to(f"../{lid}/diff")
    return root


def crilink_removes(root: Path) -> set[str]:
    plan = gc_cstorage.plan_gc(str(root), "STAMP")
    return {str(i.finding.id) for i in plan.items if i.how is gc_cstorage.GcHow.CRILINK}


def test_missing_or_empty_layers_json_refuses_every_orphan(tmp_path: Path) -> None:
    image = [{"id": "d" * 64, "layer": C}]
    for name, layers in (("missing", None), ("empty", [])):
        root = cstore(tmp_path / name, layers, image)
        assert crilink_removes(root) == set()
        plan = gc_cstorage.plan_gc(str(root), "STAMP")
        assert all("torn" in i.note for i in plan.items if i.finding.kind == "orphan_layer_dir")
        kinds = {f.kind for f in scan_store(CStorageStore.open(root)).findings}
        assert "missing_layer_record" in kinds


def test_orphan_used_by_a_known_layers_lower_is_kept(tmp_path: Path) -> None:
    # B is a record (top of an image) but A's record is lost: A is an orphan that B stands on;
    # C is a true orphan no one uses
    root = cstore(tmp_path, [(B, None)], [{"id": "d" * 64, "layer": B}])
    assert crilink_removes(root) == {C}
    notes = {str(i.finding.id): i.note for i in gc_cstorage.plan_gc(str(root), "S").items}
    assert "lower of" in notes[A]


def test_dangling_parent_and_cycles_in_layers_json(tmp_path: Path) -> None:
    root = cstore(tmp_path, [(A, "gone"), (B, C), (C, B)], [])
    found = {(f.id, f.detail.get("reason")) for f in scan_store(CStorageStore.open(root)).findings
             if f.kind == "dangling_parent"}
    assert found == {(A, "missing"), (B, "cycle"), (C, "cycle")}


def test_docker_empty_cache_ids_refuse_every_orphan(tmp_path: Path) -> None:
    root = tmp_path
    for d in (fmt.IMAGEDB_CONTENT_DIR, fmt.MOUNTS_DIR, "overlay2/l"):
        (root / d).mkdir(parents=True)
    diffs = ["sha256:" + "1" * 64, "sha256:" + "2" * 64]
    for chain in fmt.chain_ids(diffs):
        d = root / fmt.LAYERDB_SHA256_DIR / chain.removeprefix("sha256:")
        d.mkdir(parents=True)
        (d / "cache-id").write_text("")
    for name in ("x1", "x2"):
        (root / "overlay2" / name / "diff").mkdir(parents=True)
    (root / fmt.IMAGEDB_CONTENT_DIR / ("e" * 64)).write_text(
        json.dumps({"rootfs": {"diff_ids": diffs}}))
    plan = docker_gc(open_docker(root), "STAMP")
    assert not [a for a in plan.actions if "x1" in a.path or "x2" in a.path]
    assert len(plan.manual) == 2 and all("torn" in m for m in plan.manual)


def test_relocated_overlay_dir_is_read_and_never_written_through(tmp_path: Path) -> None:
    import pytest  # noqa: PLC0415 - only this test needs it

    from crilink.errors import UnsafeTargetError  # noqa: PLC0415
    from crilink.fix.cstorage import apply_repair, plan_repair  # noqa: PLC0415

    root = cstore(tmp_path / "store", [(A, None), (B, A), (C, B)], [{"id": "d" * 64,
                                                                     "layer": C}])
    (root / "overlay").rename(tmp_path / "elsewhere")
    (root / "overlay").symlink_to(tmp_path / "elsewhere")
    found = scan_store(CStorageStore.open(root)).findings
    assert [(f.kind, f.severity) for f in found] == [("relocated_driver_dir", "info")]
    (tmp_path / "elsewhere/l" / NAMES[A]).unlink()
    store, plan = plan_repair(str(root))
    assert plan.actions
    with pytest.raises(UnsafeTargetError, match="symlink"):
        apply_repair(store, plan, tmp_path / "journal")
    assert not (tmp_path / "elsewhere/l" / NAMES[A]).exists()
