"""Image archives read in place: docker-archive shapes (skopeo, docker save before and after
25.0), oci-archive, and damaged or hostile archives. Archives here are hand-made with tarfile;
the skopeo-made ones are in the integration tests."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from crilink.errors import CorruptInputError, InputError
from crilink.formats.archive import ArchiveSource, sniff_archive
from crilink.formats.imagesource import open_image
from crilink.formats.source import MissingBlobError
from crilink.model import TargetKind


def layer_tar(*names: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            tar.addfile(tarfile.TarInfo(name))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_tar(path: Path, members: dict[str, bytes | tuple[bytes, str]]) -> Path:
    """members: name -> data, or name -> (b"", "symlink target")."""
    with tarfile.open(path, "w") as tar:
        for name, value in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, value[1]
                tar.addfile(info)
            else:
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
    return path


def config_for(*layers: bytes) -> bytes:
    return json.dumps({"rootfs": {"type": "layers",
                                  "diff_ids": [sha(layer) for layer in layers]}}).encode()


def test_old_docker_save_shape(tmp_path: Path) -> None:
    one, two = layer_tar("a"), layer_tar("b")
    cfg = config_for(one, two)
    path = write_tar(tmp_path / "old.tar", {
        "abc/layer.tar": one, "def/layer.tar": two, "cfg.json": cfg,
        "manifest.json": json.dumps([{"Config": "cfg.json", "RepoTags": ["x/y:1"],
                                      "Layers": ["abc/layer.tar", "def/layer.tar"]}]).encode()})
    assert sniff_archive(str(path)) is TargetKind.DOCKER_ARCHIVE
    plan = open_image(str(path))
    assert [(lr.name, lr.digest) for lr in plan.layers] == [
        ("abc/layer.tar", sha(one)), ("def/layer.tar", sha(two))]
    with plan.source.open("def/layer.tar") as f:
        assert f.read() == two


def test_skopeo_shape_symlinked_layer_and_several_images(tmp_path: Path) -> None:
    one = layer_tar("a")
    cfg = config_for(one)
    digest = sha(one).split(":")[1]
    entry = {"Config": "c.json", "Layers": ["id1/layer.tar"]}
    path = write_tar(tmp_path / "sk.tar", {
        f"{digest}.tar": one, "id1/layer.tar": (b"", f"../{digest}.tar"), "c.json": cfg,
        "manifest.json": json.dumps([{**entry, "RepoTags": ["r/a:v1"]},
                                     {**entry, "RepoTags": ["r/b:v2"]}]).encode()})
    with pytest.raises(InputError, match="holds 2 images; choose one with --ref: r/a:v1, r/b:v2"):
        open_image(str(path))
    plan = open_image(str(path), ref="v2")
    assert plan.image == "v2"
    with plan.source.open(plan.layers[0].name) as f:
        assert f.read() == one
    with pytest.raises(InputError, match="no image 'v3'"):
        open_image(str(path), ref="v3")


def test_untagged_images_are_chosen_by_image_id_or_config_name(tmp_path: Path) -> None:
    members: dict[str, bytes | tuple[bytes, str]] = {}
    entries, ids = [], []
    for name in ("a", "b", "c"):
        layer = layer_tar(name)
        cfg = config_for(layer)
        image_id = sha(cfg).split(":")[1]
        members[f"{name}/layer.tar"], members[f"{image_id}.json"] = layer, cfg
        entries.append({"Config": f"{image_id}.json", "Layers": [f"{name}/layer.tar"],
                        "RepoTags": ["r/c:v1"] if name == "c" else None})
        ids.append(image_id)
    members["manifest.json"] = json.dumps(entries).encode()
    path = write_tar(tmp_path / "ids.tar", members)
    listed = ", ".join(sorted([ids[0][:12], ids[1][:12], "r/c:v1"]))
    with pytest.raises(InputError, match=f"holds 3 images; choose one with --ref: {listed}"):
        open_image(str(path))
    for ref in (ids[1][:12], f"sha256:{ids[1]}", f"{ids[1]}.json", ids[1]):
        assert open_image(str(path), ref=ref).layers[0].name == "b/layer.tar"
    with pytest.raises(InputError, match="no image"):
        open_image(str(path), ref=ids[1][:11])  # shorter than docker's short id
    assert open_image(str(path), ref="docker.io/r/c:v1").layers[0].name == "c/layer.tar"
    with pytest.raises(InputError, match="no image 'other/c:v1'"):
        open_image(str(path), ref="other/c:v1")


def test_docker_25_archive_is_read_as_oci(tmp_path: Path) -> None:
    one = layer_tar("a")
    cfg = config_for(one)
    man = json.dumps({"schemaVersion": 2, "config": {"mediaType": "c", "digest": sha(cfg),
                                                     "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                  "digest": sha(one), "size": len(one)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(man),
        "size": len(man), "annotations": {"io.containerd.image.name": "docker.io/x/y:1",
                                          "org.opencontainers.image.ref.name": "1"}}]})
    blobs = {f"blobs/sha256/{sha(d).split(':')[1]}": d for d in (one, cfg, man)}
    path = write_tar(tmp_path / "d25.tar", {
        **blobs, "oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index.encode(),
        "manifest.json": json.dumps([{"Config": f"blobs/sha256/{sha(cfg).split(':')[1]}",
                                      "Layers": list(blobs)[:1]}]).encode()})
    assert sniff_archive(str(path)) is TargetKind.OCI_ARCHIVE
    plan = open_image(str(path), ref="docker.io/x/y:1")
    assert plan.kind is TargetKind.OCI_ARCHIVE and plan.layers[0].diff_id == sha(one)


def test_symlink_cycle_and_missing_member(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "c.tar", {"manifest.json": b"[]", "a": (b"", "b"),
                                          "b": (b"", "a")})
    src = ArchiveSource(str(path))
    with pytest.raises(CorruptInputError, match="too many links"):
        src.open("a")
    with pytest.raises(MissingBlobError):
        src.open("nope")
    with pytest.raises(CorruptInputError, match="lists no image"):
        open_image(str(path))
    src.close()


@pytest.mark.parametrize("manifest", [b"{", b"{}", b'[{"Layers": []}]',
                                      b'[{"Config": "c", "Layers": [1]}]'])
def test_corrupt_docker_manifest(tmp_path: Path, manifest: bytes) -> None:
    path = write_tar(tmp_path / "m.tar", {"manifest.json": manifest})
    with pytest.raises(CorruptInputError) as err:
        open_image(str(path))
    assert "\n" not in err.value.message


def test_diff_id_count_mismatch(tmp_path: Path) -> None:
    one = layer_tar("a")
    path = write_tar(tmp_path / "n.tar", {
        "l.tar": one, "c.json": config_for(one, one),
        "manifest.json": json.dumps([{"Config": "c.json", "Layers": ["l.tar"]}]).encode()})
    with pytest.raises(CorruptInputError, match="1 layers but the config lists 2 diff_ids"):
        open_image(str(path))


def test_not_tar_or_plain_tar_without_image(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world" * 100)
    with pytest.raises(InputError, match="not a directory, image layout or image archive"):
        sniff_archive(str(junk))
    plain = write_tar(tmp_path / "p.tar", {"etc/passwd": b"root"})
    with pytest.raises(InputError, match="neither an oci-archive"):
        sniff_archive(str(plain))


def _docker_archive(path: Path) -> Path:
    one = layer_tar("a")
    return write_tar(path, {"l.tar": one, "c.json": config_for(one), "manifest.json":
                            json.dumps([{"Config": "c.json", "Layers": ["l.tar"]}]).encode()})


def test_malformed_gnu_sparse_pax_member_is_a_clear_error(tmp_path: Path) -> None:
    path = _docker_archive(tmp_path / "s.tar")
    with tarfile.open(path, "a", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("sparse")  # tarfile raises ValueError reading this header
        info.pax_headers = {"GNU.sparse.map": "a,b", "GNU.sparse.size": "1"}
        tar.addfile(info)
    with pytest.raises(CorruptInputError, match="a tar archive, but truncated or corrupt"):
        sniff_archive(str(path))


def test_truncated_archive_says_truncated(tmp_path: Path) -> None:
    path = _docker_archive(tmp_path / "t.tar")
    data = path.read_bytes()
    path.write_bytes(data[:512 + 300])  # inside the first member's data
    with pytest.raises(CorruptInputError, match="truncated or corrupt after 1 member"):
        ArchiveSource(str(path))
    path.write_bytes(data[:300])  # inside its first header: still recognisably a tar
    with pytest.raises(CorruptInputError, match="a tar archive, but truncated"):
        sniff_archive(str(path))
