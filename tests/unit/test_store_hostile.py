"""Hostile store metadata: FIFOs, /dev/zero, deep JSON and deep or looping parent chains in
containers-storage and Docker stores end in a finding or a one-line error, never a hang."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from deadline import deadline

from crilink.checks.cstorage import scan_store
from crilink.checks.docker import check_view
from crilink.errors import CorruptInputError
from crilink.formats import docker as fmt
from crilink.stores.chains import ParentChains, cycle_members
from crilink.stores.cstorage import CStorageStore
from crilink.stores.docker import open_docker

HOSTILE = ["fifo", "devzero", "deep"]


@pytest.fixture(autouse=True)
def _deadline() -> Iterator[None]:
    """A regression here is a hang: fail after 60 s instead of blocking the suite."""
    with deadline(60, "a hostile store file"):
        yield


def _cstore(root: Path) -> Path:
    for d in ("overlay/l", "overlay-layers", "overlay-images", "overlay-containers"):
        (root / d).mkdir(parents=True)
    (root / "overlay-images/images.json").write_text("[]")
    (root / "overlay-containers/containers.json").write_text("[]")
    return root


def _plant(path: Path, how: str) -> None:
    if path.exists():
        path.unlink()
    if how == "fifo":
        os.mkfifo(path)
    elif how == "devzero":
        path.symlink_to("/dev/zero")
    else:
        path.write_text("[" * 50_000 + "]" * 50_000)


@pytest.mark.parametrize("how", HOSTILE)
@pytest.mark.parametrize("rel", ["overlay-layers/layers.json", "overlay-images/images.json",
                                 "overlay-containers/containers.json"])
def test_cstorage_metadata_hostile(tmp_path: Path, rel: str, how: str) -> None:
    root = _cstore(tmp_path)
    _plant(root / rel, how)
    with pytest.raises(CorruptInputError, match=rel.rsplit("/", maxsplit=1)[-1]):
        CStorageStore.open(root)


def _dstore(root: Path) -> Path:
    for d in (fmt.LAYERDB_SHA256_DIR, fmt.IMAGEDB_CONTENT_DIR, "overlay2/l", "containers"):
        (root / d).mkdir(parents=True)
    return root


@pytest.mark.parametrize("how", HOSTILE)
@pytest.mark.parametrize("rel", [fmt.REPOSITORIES_FILE, f"{fmt.IMAGEDB_CONTENT_DIR}/{'e' * 64}",
                                 f"containers/{'f' * 64}/config.v2.json"])
def test_docker_metadata_hostile(tmp_path: Path, rel: str, how: str) -> None:
    root = _dstore(tmp_path)
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    _plant(root / rel, how)
    with pytest.raises(CorruptInputError):
        open_docker(root)


@pytest.mark.parametrize("how", ["fifo", "devzero"])
def test_docker_layerdb_small_files_and_overlay_files_never_block(tmp_path: Path,
                                                                  how: str) -> None:
    root = _dstore(tmp_path)
    layer = root / fmt.LAYERDB_SHA256_DIR / ("a" * 64)
    layer.mkdir()
    _plant(layer / "cache-id", how)
    for name in ("link", "lower"):
        (root / "overlay2/x/diff").mkdir(parents=True, exist_ok=True)
        _plant(root / "overlay2/x" / name, how)
    view = open_docker(root)
    assert view.layers["a" * 64].cache_id is None
    kinds = {f.kind for f in check_view(view)}
    assert "missing_layer_dir" in kinds and "missing_link_file" in kinds


def test_parent_chains_are_lazy_linear_and_terminate() -> None:
    depth = 20_000
    parents: dict[str, str | None] = {f"{i:05d}": (f"{i - 1:05d}" if i else None)
                                      for i in range(depth)}
    parents.update({"x": "y", "y": "z", "z": "x", "into": "x", "orphan": "gone"})
    tracemalloc.start()
    start = time.monotonic()
    strict = ParentChains(parents, limit=500, strict=True)
    assert sum(1 for _ in strict) == depth  # every complete node, none of the broken ones
    lenient = ParentChains(parents, limit=500)
    top = lenient[f"{depth - 1:05d}"]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - start < 5 and peak < 50 << 20
    assert len(top) == 501 and top[0] == f"{depth - 2:05d}"
    assert lenient["x"] == ("y", "z") and lenient["orphan"] == ("gone",)
    assert "x" not in strict and "into" not in strict and "orphan" not in strict
    assert cycle_members(parents) == {"x", "y", "z"}


def test_deep_layers_json_scans_quickly(tmp_path: Path) -> None:
    root = _cstore(tmp_path)
    layers = [{"id": f"{i:064x}", "parent": f"{i - 1:064x}" if i else None}
              for i in range(20_000)]
    (root / "overlay-layers/layers.json").write_text(json.dumps(layers))
    start = time.monotonic()
    result = scan_store(CStorageStore.open(root))
    assert time.monotonic() - start < 20
    assert result.stats["layers"] == 20_000


def test_docker_parent_cycle_is_a_finding(tmp_path: Path) -> None:
    root = _dstore(tmp_path)
    ids = ["a" * 64, "b" * 64, "c" * 64]
    for i, chain in enumerate(ids):
        d = root / fmt.LAYERDB_SHA256_DIR / chain
        d.mkdir()
        (d / "cache-id").write_text(f"c{i}")
        (d / "parent").write_text("sha256:" + ids[(i + 1) % 3])
        (root / "overlay2" / f"c{i}" / "diff").mkdir(parents=True)
    found = [f for f in check_view(open_docker(root)) if f.kind == "dangling_parent"]
    assert sorted((f.id, f.detail["reason"]) for f in found) == [(c, "cycle") for c in ids]
