"""Docker overlay2: every finding kind on a store written by a real dockerd, damaged on a copy
the way a crash or power loss leaves it; runtime detection against a live private dockerd."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dockerd_harness import BUILDAH, V1, V2, Dockerd

from crilink.errors import RuntimeBusyError
from crilink.formats import docker as fmt
from crilink.model import Finding, TargetKind
from crilink.scan import detect_target, run_scan
from crilink.stores.base import ensure_stopped
from crilink.stores.docker import DockerStore, dockerd_processes, open_docker, status_for
from crilink.stores.usage import usage_of

if TYPE_CHECKING:
    from docker_fixtures import Pristine

pytestmark = pytest.mark.integration
pytest_plugins = ["docker_fixtures"]


def scan(root: Path) -> list[Finding]:
    return list(run_scan(str(root)).findings)


def kinds(findings: list[Finding]) -> set[tuple[str, str | None]]:
    return {(f.kind, f.id) for f in findings}


def cache_id(root: Path, ref_top_chain: str) -> str:
    return open_docker(root).layers[ref_top_chain].cache_id or ""


def top_chain(root: Path, pristine: Pristine, ref: str) -> str:
    chain = open_docker(root).images[pristine.images[ref]].top_chain
    assert chain is not None
    return chain


def test_real_store_is_detected_and_clean(docker_store: Path, docker_pristine: Pristine) -> None:
    assert detect_target(str(docker_store)) is TargetKind.DOCKER
    result = run_scan(str(docker_store))
    assert result.findings == ()
    assert result.stats["images"] == 3
    assert result.stats["mounts"] == 2
    view = open_docker(docker_store)
    # our chain ids are dockerd's: each image's top chain is in layerdb with the right diff
    for ref in (V1, V2, BUILDAH):
        chain = top_chain(docker_store, docker_pristine, ref)
        assert view.layers[chain].diff_id == docker_pristine.layers[ref][-1]
    assert {m.init_id for m in view.mounts.values()} <= view.layer_dirs


def test_missing_short_link(docker_store: Path, docker_pristine: Pristine) -> None:
    layer = cache_id(docker_store, top_chain(docker_store, docker_pristine, V1))
    short = (docker_store / "overlay2" / layer / "link").read_text()
    (docker_store / "overlay2" / "l" / short).unlink()
    found = scan(docker_store)
    assert ("missing_short_link", layer) in kinds(found)
    f = next(f for f in found if f.kind == "missing_short_link")
    assert f.path == f"overlay2/l/{short}"
    # every layer whose lower names that short link is now bad
    assert any(f.kind == "bad_lower" for f in found)


def test_empty_link_file(docker_store: Path, docker_pristine: Pristine) -> None:
    layer = cache_id(docker_store, top_chain(docker_store, docker_pristine, V2))
    (docker_store / "overlay2" / layer / "link").write_text("")
    found = scan(docker_store)
    assert ("missing_link_file", layer) in kinds(found)


def test_wrong_and_dangling_short_links(docker_store: Path, docker_pristine: Pristine) -> None:
    top = top_chain(docker_store, docker_pristine, BUILDAH)
    layer = cache_id(docker_store, top)
    l_dir = docker_store / "overlay2" / "l"
    short = (docker_store / "overlay2" / layer / "link").read_text()
    # a link that points out of the store, as a bad hand repair leaves it
    other = cache_id(docker_store, top_chain(docker_store, docker_pristine, V1))
    other_short = (docker_store / "overlay2" / other / "link").read_text()
    (l_dir / other_short).unlink()
    (l_dir / other_short).symlink_to("../../../../etc")
    # a removal that got as far as the layer dir but not its l/ link
    shutil.rmtree(docker_store / "overlay2" / layer)
    found = scan(docker_store)
    assert ("wrong_short_link", other) in kinds(found)
    dangling = [f for f in found if f.kind == "dangling_short_link"]
    assert [(f.path, f.id) for f in dangling] == [(f"overlay2/l/{short}", layer)]
    assert ("missing_layer_dir", top) in kinds(found)


def test_bad_lower(docker_store: Path, docker_pristine: Pristine) -> None:
    layer = cache_id(docker_store, top_chain(docker_store, docker_pristine, V2))
    (docker_store / "overlay2" / layer / "lower").write_text("l")
    found = [f for f in scan(docker_store) if f.kind == "bad_lower"]
    assert [(f.id, f.path) for f in found] == [(layer, f"overlay2/{layer}/lower")]
    assert "bare_l" in found[0].detail["reason"]


def test_layerdb_entry_lost(docker_store: Path, docker_pristine: Pristine) -> None:
    """The buildah image's top chain record is gone (its dir was never synced)."""
    top = top_chain(docker_store, docker_pristine, BUILDAH)
    view = open_docker(docker_store)
    layer, parent = view.layers[top].cache_id, view.layers[top].parent
    shutil.rmtree(docker_store / fmt.LAYERDB_SHA256_DIR / top)
    found = scan(docker_store)
    orphan = [f for f in found if f.kind == "orphan_layer_dir"]
    assert [(f.path, f.id) for f in orphan] == [(f"overlay2/{layer}", layer)]
    assert orphan[0].bytes == usage_of([docker_store / "overlay2" / str(layer)]).exclusive > 0
    assert ("missing_image_layer", docker_pristine.images[BUILDAH]) in kinds(found)
    # its parent chain is now needed by nothing
    unref = [f for f in found if f.kind == "unreferenced_layer"]
    assert [f.id for f in unref] == [parent]
    assert unref[0].bytes is not None and unref[0].bytes > 1_000_000


def test_dangling_parent(docker_store: Path, docker_pristine: Pristine) -> None:
    top = top_chain(docker_store, docker_pristine, BUILDAH)
    parent = open_docker(docker_store).layers[top].parent
    assert parent is not None
    shutil.rmtree(docker_store / fmt.LAYERDB_SHA256_DIR / parent)
    found = scan(docker_store)
    assert ("dangling_parent", top) in kinds(found)
    f = next(f for f in found if f.kind == "dangling_parent")
    assert f.path == f"{fmt.LAYERDB_SHA256_DIR}/{top}"
    assert f.detail["parent"] == parent


def test_missing_container_layer_dir(docker_store: Path, docker_pristine: Pristine) -> None:
    cid = docker_pristine.containers["c2"]
    mount = open_docker(docker_store).mounts[cid]
    shutil.rmtree(docker_store / "overlay2" / str(mount.init_id))
    found = scan(docker_store)
    assert ("missing_layer_dir", cid) in kinds(found)


def test_unreferenced_after_interrupted_rmi(docker_store: Path,
                                            docker_pristine: Pristine) -> None:
    """`docker rmi` deletes the image config first, then releases layers: a crash in between
    leaves the layers with no image."""
    image = docker_pristine.images[BUILDAH]
    (docker_store / fmt.IMAGEDB_CONTENT_DIR / image).unlink()
    found = scan(docker_store)
    unref = {f.id: f for f in found if f.kind == "unreferenced_layer"}
    view = open_docker(docker_store)
    assert len(unref) == 2
    expected = usage_of([docker_store / "overlay2" / str(view.layers[c].cache_id)
                         for c in unref]).exclusive
    assert sum(f.bytes or 0 for f in unref.values()) == expected
    assert {f.kind for f in found} == {"unreferenced_layer"}


def test_runtime_busy_while_dockerd_runs(docker_store: Path,
                                         dockerd_on: Callable[[Path], Dockerd]) -> None:
    store = DockerStore(docker_store)
    assert not store.runtime_status().running
    daemon = dockerd_on(docker_store)
    status = store.runtime_status()
    assert status.running
    assert status.pid == daemon.pid
    with pytest.raises(RuntimeBusyError, match=f"pid {daemon.pid}"):
        ensure_stopped(store, "remove orphan dirs")
    ours = [p for p in dockerd_processes() if p.pid == daemon.pid]
    assert [(p.data_root, p.hosts) for p in ours] == [(str(docker_store),
                                                       (f"unix://{daemon.sock}",))]
    helpers = [p for p in dockerd_processes() if p.pid in daemon.helpers()]
    assert [p.data_root for p in helpers] == [str(docker_store)]  # its managed containerd
    daemon.stop()
    assert not status_for(docker_store).running
