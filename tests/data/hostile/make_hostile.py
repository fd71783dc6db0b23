"""Write the hand-made hostile images under tests/data/hostile/ (run: python make_hostile.py).

These inputs are HAND-MADE with Python's tarfile, gzip and zstandard: real tools (umoci,
buildah, skopeo, docker) refuse to produce them. Each case is a tiny OCI image layout
``<case>/`` (or a docker-archive ``<case>.docker.tar``) plus ``<case>.expected.json``: the
findings an image scan must report, as ``{kind, path, severity[, reason]}`` written here from
the case's definition (not from crilink's output). Output is deterministic (mtime 0).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

HERE = Path(__file__).resolve().parent
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"

# an entry: (type, name, arg): type in file/dir/symlink/hardlink/raw; arg = size, link or bytes
Entry = tuple[str, str | bytes, object]


def tar_bytes(entries: list[Entry], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for etype, name, arg in entries:
            info = tarfile.TarInfo(name if isinstance(name, str) else name.decode(
                "utf-8", "surrogateescape"))
            info.mtime, info.mode = 0, 0o755 if etype == "dir" else 0o644
            data = None
            if etype == "file":
                assert isinstance(arg, int)
                info.size, data = arg, io.BytesIO(b"x" * arg)
            elif etype == "dir":
                info.type = tarfile.DIRTYPE
            elif etype == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(arg)
            elif etype == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(arg)
            tar.addfile(info, data)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Layer:
    tar: bytes
    compress: Callable[[bytes], bytes] = gz
    media_type: str = MT_LAYER_GZ
    mangle: Callable[[bytes], bytes] | None = None  # applied to the blob after digesting
    desc_size: int | None = None  # the size its descriptor gives, when not the blob's

    def blob(self) -> bytes:
        return self.compress(self.tar)


@dataclass
class Case:
    name: str
    layers: list[Layer]
    expected: list[dict[str, str]]
    note: str
    extra: dict[str, object] = field(default_factory=dict)


def write_blob(root: Path, data: bytes, digest: str | None = None) -> str:
    digest = digest or sha(data)
    path = root / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def write_layout(case: Case) -> None:
    root = HERE / case.name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descs = []
    for layer in case.layers:
        blob = layer.blob()
        digest = sha(blob)
        write_blob(root, layer.mangle(blob) if layer.mangle else blob, digest)
        size = len(blob) if layer.desc_size is None else layer.desc_size
        descs.append({"mediaType": layer.media_type, "digest": digest, "size": size})
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [sha(layer.tar) for layer in case.layers]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": {
        "mediaType": MT_CONFIG, "digest": write_blob(root, config), "size": len(config)},
        "layers": descs}).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": MT_MANIFEST, "digest": write_blob(root, manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    (root / "index.json").write_text(json.dumps(index))


def write_docker(case: Case) -> None:
    out = HERE / f"{case.name}.docker.tar"
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [sha(layer.tar) for layer in case.layers]}}).encode()
    files: list[tuple[str, bytes]] = [("config.json", config)]
    names = []
    for i, layer in enumerate(case.layers):
        data = layer.mangle(layer.tar) if layer.mangle else layer.tar
        names.append(f"layer{i}/layer.tar")
        files.append((names[-1], data))
    manifest = [{"Config": "config.json", "RepoTags": ["hostile/x:latest"], "Layers": names}]
    files.append(("manifest.json", json.dumps(manifest).encode()))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))


def exp(kind: str, path: str, severity: str, reason: str = "") -> dict[str, str]:
    out = {"kind": kind, "path": path, "severity": severity}
    if reason:
        out["reason"] = reason
    return out


BASE = tar_bytes([("dir", "usr", None), ("dir", "usr/lib", None),
                  ("file", "usr/lib/libx.so", 100), ("file", "etc-file", 7)])


def truncate_half(blob: bytes) -> bytes:
    return blob[: len(blob) // 2]


def flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 0xFF])


def bad_checksum(tar: bytes) -> bytes:
    # corrupt the checksum field (offset 148) of the second header block
    second = 512 + 512  # first member is a 1-block file with 7 bytes of data
    return tar[:second + 148] + b"0000000\x00" + tar[second + 156:]


def lone_zero_block() -> bytes:
    """A file header, ONE zero block, then another member and a proper end: readers that stop
    at the zero block and readers that skip it see different files."""
    def header(name: str) -> bytes:
        info = tarfile.TarInfo(name)
        info.mtime = 0
        return info.tobuf(tarfile.USTAR_FORMAT)
    return header("seen") + bytes(512) + header("hidden") + bytes(1024)


def append_garbage(blob: bytes) -> bytes:
    return blob + b"appended after digesting" * 100


CASES = [
    Case("hardlink-missing", [Layer(BASE), Layer(tar_bytes([
        ("file", "etc-file-wh-marker", 0), ("file", ".wh.etc-file", 0),
        ("hardlink", "to-nowhere", "no/such/file"),
        ("hardlink", "to-whited-out", "etc-file"),
        ("hardlink", "to-dir", "usr/lib")]))],
        [exp("hardlink_missing_target", "/to-nowhere", "error", "absent"),
         exp("hardlink_missing_target", "/to-whited-out", "error", "whited_out"),
         exp("hardlink_missing_target", "/to-dir", "error", "target_is_directory")],
        "hard links whose target is absent, whited out by the same layer, or a directory"),
    Case("hardlink-cross-layer", [Layer(BASE), Layer(tar_bytes([
        ("dir", "opt", None),
        ("hardlink", "opt/libx-rel", "usr/lib/libx.so"),
        ("hardlink", "opt/libx-abs", "/usr/lib/libx.so"),
        ("file", "opt/own", 5), ("hardlink", "opt/own-link", "opt/own")]))],
        [exp("hardlink_cross_layer", "/opt/libx-rel", "info"),
         exp("hardlink_cross_layer", "/opt/libx-abs", "info")],
        "hard links to a lower layer's file (relative and absolute target); a same-layer one"),
    Case("unsafe-names", [Layer(tar_bytes([
        ("file", "../../etc/evil", 3), ("file", "a/../../b", 3),
        ("hardlink", "steal", "../../etc/shadow"), ("file", "/abs/ok", 3),
        ("file", "a/./c/../fine", 1)]))],
        [exp("unsafe_entry", "/../../etc/evil", "error", "name_climbs_out"),
         exp("unsafe_entry", "/a/../../b", "error", "name_climbs_out"),
         exp("unsafe_entry", "/steal", "error", "link_target_climbs_out")],
        "names and a hard-link target climbing out with '..'; absolute names are fine"),
    Case("truncated-gzip", [Layer(BASE), Layer(tar_bytes([("file", "big", 40000)]),
                                               mangle=truncate_half)],
         [exp("malformed_layer", "/", "warning", "truncated")],
         "second layer's gzip blob cut in half (descriptor still names the whole blob)"),
    Case("digest-mismatch", [Layer(BASE, compress=lambda b: b, media_type=MT_LAYER,
                                   mangle=flip_last_byte)],
         [exp("malformed_layer", "/", "warning", "digest_mismatch"),
          exp("malformed_layer", "/", "warning", "diff_id_mismatch")],
         "an uncompressed layer whose last (padding) byte was flipped after digesting"),
    Case("truncated-plain", [Layer(BASE[:512 * 3 + 40], compress=lambda b: b,
                                   media_type=MT_LAYER)],
         [exp("malformed_layer", "/", "warning", "truncated")],
         "a plain tar cut inside the data of its third member (diff_id is of the cut tar)"),
    Case("bad-header", [Layer(bad_checksum(tar_bytes([("file", "one", 7), ("file", "two", 7)],
                                                     fmt=tarfile.USTAR_FORMAT)))],
         [exp("malformed_layer", "/", "warning", "bad_header")],
         "the second header's checksum is wrong"),
    Case("zstd-and-xz", [Layer(BASE, compress=zstandard.ZstdCompressor().compress,
                               media_type=MT_LAYER_ZSTD),
                         Layer(tar_bytes([("file", "more", 1)]), compress=lzma.compress)],
         [exp("malformed_layer", "/", "warning", "unknown_compression")],
         "a zstd layer (valid) and an xz layer (no runtime accepts it)"),
    Case("odd-names", [Layer(tar_bytes([
        ("file", b"bad-\xff-byte", 1), ("file", "new\nline", 1),
        ("hardlink", b"link-\xfe", b"gone-\xfd".decode("utf-8", "surrogateescape")),
        ("file", "p/" + "n" * 200 + "/" + "m" * 3000, 1)]))],
        [exp("hardlink_missing_target", "/link-\udcfe", "error", "absent")],
        "names that are not UTF-8, with a newline, and very long (PAX)"),
    Case("docker-diff-id", [Layer(BASE), Layer(tar_bytes([("file", "x", 1)]),
                                               mangle=flip_last_byte)],
         [exp("malformed_layer", "/", "warning", "diff_id_mismatch")],
         "docker-archive: second layer.tar changed after its diff_id was computed",
         extra={"docker": True}),
    Case("whiteout-dots", [Layer(BASE), Layer(tar_bytes([
        ("file", ".wh...", 0), ("file", "usr/.wh...", 0), ("file", "usr/lib/.wh..", 0),
        ("file", ".wh.", 0), ("file", ".wh.etc-file", 0)]))],
        [exp("unsafe_entry", "/.wh...", "error", "bad_whiteout_name"),
         exp("unsafe_entry", "/usr/.wh...", "error", "bad_whiteout_name"),
         exp("unsafe_entry", "/usr/lib/.wh..", "error", "bad_whiteout_name"),
         exp("unsafe_entry", "/.wh.", "error", "bad_whiteout_name")],
        "whiteouts of '..', '.' and the empty name (never applied); a proper one beside them"),
    Case("lone-zero-block", [Layer(lone_zero_block(), compress=lambda b: b,
                                   media_type=MT_LAYER)],
         [exp("malformed_layer", "/", "warning", "lone_zero_block")],
         "one zero block, then a member 'hidden' and two zero blocks"),
    Case("size-longer", [Layer(BASE, mangle=append_garbage)],
         [exp("malformed_layer", "/", "warning", "size_mismatch")],
         "bytes appended to a good gzip blob: longer than its descriptor says (read no further)"),
    Case("size-huge", [Layer(BASE, desc_size=(1 << 63) - 1)],
         [exp("malformed_layer", "/", "warning", "size_mismatch")],
         "a good blob whose descriptor claims the largest int64 size"),
]


def main() -> None:
    index = {}
    for case in CASES:
        if case.extra.get("docker"):
            write_docker(case)
            target = f"{case.name}.docker.tar"
        else:
            write_layout(case)
            target = case.name
        doc = {"target": target, "note": case.note, "hand_made": True,
               "findings": case.expected}
        (HERE / f"{case.name}.expected.json").write_text(json.dumps(doc, indent=2) + "\n")
        index[case.name] = target
    print(json.dumps(index, indent=2))


if __name__ == "__main__":
    main()
