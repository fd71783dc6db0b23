"""Blobs of an OCI layout read safely: only regular files inside the layout, never a symlink,
FIFO or device (each would hang a scan or open a host device); never past the size their
descriptor gives; descriptor sizes checked. Layouts here are hand-made in a tmp dir (FIFOs and
symlinks to /dev cannot be checked in); the checked-in size cases are in tests/data/hostile.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deadline import deadline

from crilink.checks.image import check_image
from crilink.errors import CorruptInputError
from crilink.formats.blobstream import LayerStream
from crilink.formats.imagesource import open_image
from crilink.formats.oci import MAX_SIZE, parse_descriptor
from crilink.formats.source import DirSource, MissingBlobError
from crilink.model import TargetKind

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "a" * 64


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A test that would block on a FIFO or read /dev/zero for ever fails after 20 s."""
    with deadline(20, "scan of a hostile blob"):
        yield


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def one_symlink_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("a")
        info.type, info.linkname = tarfile.SYMTYPE, "b"
        tar.addfile(info)
    return buf.getvalue()


class Layout:
    """A one-layer gzip layout; sizes in descriptors can be overridden before ``write``."""

    def __init__(self, root: Path, layer_size: int | None = None,
                 manifest_size: int | None = None, algorithm: str = "sha256",
                 compress: Callable[[bytes], bytes] = lambda b: gzip.compress(b, mtime=0),
                 ) -> None:
        self.root, self.algorithm = root, algorithm
        tar = one_symlink_tar()
        blob = compress(tar)
        self.layer = self.put(blob)
        config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha(tar)]}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "config": {
            "mediaType": "c", "digest": self.put(config), "size": len(config)},
            "layers": [{"mediaType": "l", "digest": self.layer,
                        "size": len(blob) if layer_size is None else layer_size}]}).encode()
        self.manifest = self.put(manifest)
        size = len(manifest) if manifest_size is None else manifest_size
        (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": MT_MANIFEST, "digest": self.manifest, "size": size}]}))
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def put(self, data: bytes) -> str:
        digest = f"{self.algorithm}:{hashlib.new(self.algorithm, data).hexdigest()}"
        self.blob(digest).parent.mkdir(parents=True, exist_ok=True)
        self.blob(digest).write_bytes(data)
        return digest

    def blob(self, digest: str) -> Path:
        return self.root / "blobs" / self.algorithm / digest.split(":", 1)[1]

    def replace(self, digest: str, how: str) -> None:
        path = self.blob(digest)
        if how == "fifo":
            path.unlink()
            os.mkfifo(path)
        elif how == "devzero":
            path.unlink()
            path.symlink_to("/dev/zero")
        elif how == "inner-link":  # a link to a good copy of itself, inside the layout
            path.rename(self.root / "copy")
            path.symlink_to("../../copy")


def layer_reasons(root: Path) -> list[str]:
    plan = open_image(str(root))
    try:
        result = check_image(str(root), plan)
    finally:
        plan.source.close()
    return [f.detail["reason"] for f in result.findings if f.kind == "malformed_layer"]


@pytest.mark.parametrize("how", ["fifo", "devzero", "inner-link"])
def test_layer_blob_that_is_not_a_regular_file_is_a_finding(tmp_path: Path, how: str) -> None:
    layout = Layout(tmp_path)
    layout.replace(layout.layer, how)
    assert layer_reasons(tmp_path) == ["not_a_file"]


@pytest.mark.parametrize(("how", "said"), [("fifo", "a FIFO"), ("devzero", "a symlink")])
def test_manifest_blob_that_is_not_a_regular_file_is_refused(tmp_path: Path, how: str,
                                                             said: str) -> None:
    layout = Layout(tmp_path)
    layout.replace(layout.manifest, how)
    with pytest.raises(CorruptInputError, match=said):
        open_image(str(tmp_path))


def test_symlinked_blob_dir_and_index_are_not_followed(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    source = DirSource(str(tmp_path))
    assert source.read_small("index.json", "index")
    (tmp_path / "blobs").rename(tmp_path / "elsewhere")
    (tmp_path / "blobs").symlink_to("elsewhere")
    with pytest.raises(CorruptInputError, match="not a plain directory"):
        source.open(f"blobs/sha256/{layout.layer.split(':')[1]}")
    (tmp_path / "index.json").rename(tmp_path / "i")
    (tmp_path / "index.json").symlink_to("i")
    with pytest.raises(CorruptInputError, match="a symlink"):
        source.read_small("index.json", "index")
    with pytest.raises(MissingBlobError):
        source.open("blobs2/x")
    for name in ("../x", "/etc/passwd", "blobs//x", "./index.json"):
        with pytest.raises(CorruptInputError, match="leaves the image layout"):
            source.open(name)
    source.close()


def test_layer_blob_longer_or_shorter_than_its_descriptor(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Layout(tmp_path / "a", layer_size=10)  # the blob is longer: read 10 bytes (+1), no more
    assert layer_reasons(tmp_path / "a")[-1] == "size_mismatch"
    (tmp_path / "b").mkdir()
    Layout(tmp_path / "b", layer_size=MAX_SIZE)  # shorter: read whole, then said
    assert layer_reasons(tmp_path / "b") == ["size_mismatch"]


def test_sha512_blobs_with_sha256_diff_ids_verify(tmp_path: Path) -> None:
    """skopeo/umoci --digest sha512: blobs under sha512, diff_ids still sha256."""
    layout = Layout(tmp_path, algorithm="sha512")
    assert layout.layer.startswith("sha512:")
    assert layer_reasons(tmp_path) == []


def test_stream_reads_no_further_than_its_limit() -> None:
    raw = io.BytesIO(b"\0" * 100_000)
    stream = LayerStream(raw, limit=1000)
    stream.drain()
    assert stream.raw_bytes == 1000 and stream.longer_than_limit() and raw.tell() == 1001


@pytest.mark.parametrize("size", [-1, MAX_SIZE + 1, 10**40, 1.5, "1", True])
def test_descriptor_size_must_be_a_byte_count(size: object) -> None:
    with pytest.raises(CorruptInputError, match="size"):
        parse_descriptor({"digest": DIGEST, "size": size}, "manifest")
    assert parse_descriptor({"digest": DIGEST}, "m").size is None
    assert parse_descriptor({"digest": DIGEST, "size": MAX_SIZE}, "m").size == MAX_SIZE


@pytest.mark.parametrize(("size", "said"), [(3, "its descriptor says 3"),
                                            (1 << 40, "more than any image document")])
def test_manifest_of_another_size_than_its_descriptor_is_refused(tmp_path: Path, size: int,
                                                                 said: str) -> None:
    Layout(tmp_path, manifest_size=size)
    with pytest.raises(CorruptInputError, match=said):
        open_image(str(tmp_path))


def test_good_layout_has_no_layer_finding(tmp_path: Path) -> None:
    Layout(tmp_path)
    plan = open_image(str(tmp_path))
    assert plan.kind is TargetKind.OCI_LAYOUT and plan.layers[0].size is not None
    plan.source.close()
    assert layer_reasons(tmp_path) == []
