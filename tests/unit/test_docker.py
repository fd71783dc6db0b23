"""Docker overlay2: raw formats, dockerd discovery from a fake /proc, and the check logic on
small trees laid out like a real dockerd's (ids and chain values taken from a real run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crilink.checks.docker import check_view, expectations, referenced_chains
from crilink.errors import CorruptInputError, InputError
from crilink.formats import docker as fmt
from crilink.stores.docker import (
    DEFAULT_DATA_ROOT,
    configured_data_root,
    dockerd_processes,
    find_docker,
    open_docker,
    status_for,
)

# from a real dockerd 20.10 run: busybox v1's diff ids and the chain ids layerdb used
V1_DIFFS = ["sha256:28c4eee936eaaa3a80e5a666af223c7ddb0149f32b6f90811216d972ff04fe30",
            "sha256:a36b25510e6a60caac966cc914369b5cb88bab1d0df8467300b8c1f6d2c89d9c"]
V1_CHAINS = ["sha256:28c4eee936eaaa3a80e5a666af223c7ddb0149f32b6f90811216d972ff04fe30",
             "sha256:8cc8756a5efcb69ec653d48b9080817bebb0dc1bd63d558572ccf783814cac43"]


def test_chain_ids_match_dockerd() -> None:
    assert fmt.chain_ids(V1_DIFFS) == V1_CHAINS
    assert fmt.chain_ids([]) == []


def test_layer_and_mount_records() -> None:
    rec = fmt.layer_record("ab", {"cache-id": b"c1\n", "parent": b"sha256:p", "size": b"x"})
    assert (rec.cache_id, rec.parent, rec.diff_id, rec.size) == ("c1", "sha256:p", None, None)
    m = fmt.mount_record("ct", {"mount-id": b"m", "init-id": b"m-init", "parent": b""})
    assert (m.mount_id, m.init_id, m.parent) == ("m", "m-init", None)


def test_json_shapes() -> None:
    cfg = fmt.parse_image_config("i", json.dumps({"rootfs": {"diff_ids": V1_DIFFS}}).encode())
    assert cfg.diff_ids == tuple(V1_DIFFS)
    repos = fmt.parse_repositories(b'{"Repositories":{"a":{"a:1":"sha256:x"},"b":{}}}')
    assert repos == {"a:1": "sha256:x"}
    c = fmt.parse_container_config("c", b'{"ID":"c","Image":"sha256:i","Name":"/n"}')
    assert (c.id, c.image, c.name, c.driver) == ("c", "sha256:i", "/n", None)
    with pytest.raises(CorruptInputError, match="diff_ids"):
        fmt.parse_image_config("i", b'{"rootfs": {}}')
    with pytest.raises(CorruptInputError, match="not valid JSON"):
        fmt.parse_repositories(b"{")


def _fake_proc(tmp_path: Path, pid: int, exe: str, argv: list[str]) -> Path:
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "exe").symlink_to(exe)
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return proc


def test_dockerd_found_by_flag_and_config(tmp_path: Path) -> None:
    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps({"data-root": str(tmp_path / "viaconf")}))
    proc = _fake_proc(tmp_path, 41, "/usr/sbin/dockerd", ["dockerd", "--data-root=/srv/d"])
    _fake_proc(tmp_path, 42, "/usr/sbin/dockerd", ["dockerd", "--config-file", str(conf)])
    _fake_proc(tmp_path, 43, "/usr/bin/python3", ["python3", "--data-root", "/srv/d"])
    found = {p.pid: p.data_root for p in dockerd_processes(str(proc))}
    assert found == {41: "/srv/d", 42: str(tmp_path / "viaconf")}
    status = status_for("/srv/d", str(proc))
    assert (status.running, status.pid) == (True, 41)
    assert not status_for("/srv/other", str(proc)).running


def test_managed_containerd_counts_as_busy(tmp_path: Path) -> None:
    toml = tmp_path / "containerd.toml"
    toml.write_text(f'root = "{tmp_path}/data/containerd/daemon"\n')
    proc = _fake_proc(tmp_path, 50, "/usr/bin/containerd", ["containerd", "--config", str(toml)])
    status = status_for(tmp_path / "data", str(proc))
    assert (status.running, status.pid) == (True, 50)


def test_find_docker_without_daemon(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    assert configured_data_root(str(tmp_path / "missing.json")) == DEFAULT_DATA_ROOT
    conf = tmp_path / "daemon.json"
    root = tmp_path / "root"
    (root / fmt.IMAGE_DIR).mkdir(parents=True)
    conf.write_text(json.dumps({"data-root": str(root)}))
    d = find_docker(str(conf), str(tmp_path / "proc"))
    assert (d.data_root, d.exists, d.running, d.pid, d.source) == (root, True, False, None,
                                                                   "config")


def _layer(root: Path, chain: str, cache: str, parent: str | None) -> None:
    d = root / fmt.LAYERDB_SHA256_DIR / chain
    d.mkdir(parents=True)
    (d / "cache-id").write_text(cache)
    if parent:
        (d / "parent").write_text("sha256:" + parent)


def _dir(root: Path, name: str, short: str, lower: str | None) -> None:
    d = root / "overlay2" / name
    (d / "diff").mkdir(parents=True)
    (d / "link").write_text(short)
    if lower is not None:
        (d / "lower").write_text(lower)
    (root / "overlay2" / "l").mkdir(exist_ok=True)
    (root / "overlay2" / "l" / short).symlink_to(f"../{name}/diff")


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Two chains (A <- B), image on B, a container on B with its -init dir."""
    root = tmp_path / "data"
    a, b = "a" * 64, "b" * 64
    _layer(root, a, "ca", None)
    _layer(root, b, "cb", a)
    _dir(root, "ca", "SA", None)
    _dir(root, "cb", "SB", "l/SA")
    _dir(root, "m-init", "SI", "l/SB:l/SA")
    _dir(root, "m", "SM", "l/SI:l/SB:l/SA")
    mnt = root / fmt.MOUNTS_DIR / "c1"
    mnt.mkdir(parents=True)
    (mnt / "mount-id").write_text("m")
    (mnt / "init-id").write_text("m-init")
    (mnt / "parent").write_text("sha256:" + b)
    img = root / fmt.IMAGEDB_CONTENT_DIR
    img.mkdir(parents=True)
    diffs = [a, "sha256:" + "d" * 64]
    (img / ("e" * 64)).write_text(json.dumps({"rootfs": {"diff_ids": ["sha256:" + a, diffs[1]]}}))
    # make chain B's id the real chain id of (A, d): rename its layerdb dir
    real_b = fmt.chain_ids(["sha256:" + a, diffs[1]])[1].removeprefix("sha256:")
    (root / fmt.LAYERDB_SHA256_DIR / b).rename(root / fmt.LAYERDB_SHA256_DIR / real_b)
    (mnt / "parent").write_text("sha256:" + real_b)
    return root


def test_tiny_store_is_clean(tiny: Path) -> None:
    view = open_docker(tiny)
    assert list(check_view(view)) == []
    assert expectations(view).chains["m"] == ("m-init", "cb", "ca")
    assert referenced_chains(view) == set(view.layers)


def test_orphan_and_unreferenced(tiny: Path) -> None:
    (tiny / "overlay2" / "stray").mkdir()
    for f in (tiny / fmt.IMAGEDB_CONTENT_DIR).iterdir():
        f.unlink()
    for f in (tiny / fmt.MOUNTS_DIR / "c1").iterdir():
        f.unlink()
    (tiny / fmt.MOUNTS_DIR / "c1").rmdir()
    found = {(f.kind, f.id) for f in check_view(open_docker(tiny))}
    assert ("orphan_layer_dir", "stray") in found
    assert ("orphan_layer_dir", "m-init") in found
    assert {i for k, i in found if k == "unreferenced_layer"} == set(open_docker(tiny).layers)


def test_not_a_docker_root(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a Docker overlay2 data root"):
        open_docker(tmp_path)
