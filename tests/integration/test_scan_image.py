"""``crilink scan`` of images built by the real tools, through the real CLI (subprocess).

- The fixtures' umoci 0.4.7 layout (v1, v2: opaque dir and whiteout by ``umoci insert``,
  layers without tar end-of-archive), its skopeo docker-archive and oci-archive copies, and
  the buildah layout and docker-archive (opaque usr/sbin, whiteout bin/cat, a dangling
  relative link) -- see MANIFEST.md.
- An image built here with umoci and exported with skopeo (tests/fixtures/images.py): a
  symlink whose target an upper layer deletes, an opaque dir hiding a link's target, a
  whiteout, loops, an escaping link; plus one layer added with ``umoci raw add-layer`` from
  a HAND-MADE tar (cross-layer hard link, hard link to nothing, ``../`` name): no tool
  writes those entries, but the real tools carry them through unchanged.
- Damaged copies of real layouts (a truncated blob, a flipped byte).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from images import EXPECTED, build_umoci_image, export, have_tools, layout_layers

pytestmark = pytest.mark.integration

Key = tuple[str, str, str]


def scan(target: Path | str, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([sys.executable, "-m", "crilink.cli.main", "scan", str(target),
                           "-o", "json", *args], capture_output=True, text=True, check=False)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, doc, proc.stderr


def keys(doc: dict[str, Any]) -> set[Key]:
    return {(f["kind"], f["path"], str(f.get("detail", {}).get("reason", "")))
            for f in doc["findings"]}


def finding(doc: dict[str, Any], kind: str, path: str) -> dict[str, Any]:
    hits = [f for f in doc["findings"] if f["kind"] == kind and f["path"] == path]
    assert len(hits) == 1, (kind, path, doc["findings"])
    return hits[0]


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not have_tools():
        pytest.fail("umoci and skopeo are needed: scripts/test installs them")
    work = tmp_path_factory.mktemp("umoci-image")
    layout = build_umoci_image(work)
    return {"oci-layout": layout, **export(layout, work)}


@pytest.mark.parametrize("form", ["oci-layout", "oci-archive", "docker-archive", "oci-zstd"])
def test_built_image_every_kind_in_every_form(built: dict[str, Path], form: str) -> None:
    rc, doc, err = scan(built[form])
    assert rc == 1, err
    assert doc["target_kind"] == {"oci-layout": "oci_layout", "oci-zstd": "oci_layout",
                                  "oci-archive": "oci_archive",
                                  "docker-archive": "docker_archive"}[form]
    assert keys(doc) == EXPECTED
    assert all(f["path"].startswith("/") and f["layer"].startswith("sha256:")
               for f in doc["findings"])
    cross = finding(doc, "hardlink_cross_layer", "/srv/big-hardlink")
    assert cross["bytes"] == 5000 and cross["severity"] == "info"
    assert finding(doc, "hardlink_missing_target", "/srv/orphan")["severity"] == "error"
    assert finding(doc, "unsafe_entry", "/../../outside")["severity"] == "error"
    dangling = finding(doc, "dangling", "/usr/bin/abs")
    assert dangling["link"] == "/etc/target.txt"
    missing_eof = [f for f in doc["findings"] if f["kind"] == "malformed_layer"]
    assert len(missing_eof) == 2 and {f["severity"] for f in missing_eof} == {"info"}


def test_same_findings_in_every_form(built: dict[str, Path]) -> None:
    docs = {form: scan(path)[1] for form, path in built.items()}
    first = docs["oci-layout"]
    for form, doc in docs.items():
        assert sorted(keys(doc)) == sorted(keys(first)), form
        assert doc["summary"]["stats"]["entries"] == first["summary"]["stats"]["entries"]


def test_fixture_v1_has_one_dangling_link_and_v2_only_lacks_eof(real_fixtures: Path) -> None:
    rc, doc, err = scan(real_fixtures / "oci/layout", "--ref", "v1", "--fail-on", "info")
    assert rc == 1 and {k for k in keys(doc) if k[0] != "absolute"} == {
        ("dangling", "/usr/bin/dangling-link", "missing")}, err
    rc, doc, _ = scan(real_fixtures / "oci/layout", "--ref", "v2")
    assert rc == 0  # only info findings: the absolute busybox links and missing_eof
    assert keys(doc) - {k for k in keys(doc) if k[0] == "absolute"} == {
        ("malformed_layer", "/", "missing_eof")}
    # the whiteout removed the dangling link that v1 had under /usr/bin
    assert not any(f["path"] == "/usr/bin/dangling-link" for f in doc["findings"])
    assert doc["summary"]["stats"]["layers"] == 4


def test_fixture_v1_dangling_link_is_seen(real_fixtures: Path) -> None:
    _, doc, _ = scan(real_fixtures / "oci/layout", "--ref", "v1")
    assert ("dangling", "/usr/bin/dangling-link", "missing") in keys(doc)


@pytest.mark.parametrize("name", ["busybox-v2.oci.tar", "busybox-v2.docker.tar"])
def test_fixture_archives_match_the_layout(real_fixtures: Path, name: str) -> None:
    _, layout, _ = scan(real_fixtures / "oci/layout", "--ref", "v2")
    _, archive, _ = scan(real_fixtures / "oci" / name)
    assert keys(archive) == keys(layout)


@pytest.mark.parametrize("target", ["oci/buildah-layout", "oci/buildah-l2.docker.tar"])
def test_buildah_opaque_whiteout_and_dangling(real_fixtures: Path, target: str) -> None:
    rc, doc, err = scan(real_fixtures / target)
    assert rc == 1, err
    found = keys(doc)
    assert ("dangling", "/usr/sbin/rel-busybox", "missing") in found
    # the opaque usr/sbin hid the lower applets; the whiteout removed bin/cat
    assert not any(f["path"].startswith("/usr/sbin/") and f["path"] != "/usr/sbin/rel-busybox"
                   for f in doc["findings"])
    assert not any(f["path"] == "/bin/cat" for f in doc["findings"])


def test_ambiguous_layout_lists_refs(real_fixtures: Path) -> None:
    rc, doc, err = scan(real_fixtures / "oci/layout")
    assert rc == 2 and doc == {}
    assert err.strip().splitlines() == [
        f"crilink: {real_fixtures / 'oci/layout'}: holds 3 images; choose one with --ref: "
        "base, big, v1, v2"]


def _copy_layout(real_fixtures: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "layout"
    subprocess.run(["cp", "-a", str(real_fixtures / "oci/layout"), str(dst)], check=True)
    return dst


def _layer2(layout: Path) -> str:
    """v1's second layer (the busybox changes): gzip, with a tar end-of-archive."""
    return layout_layers(layout, "v1")[1]


def test_truncated_real_blob(real_fixtures: Path, tmp_path: Path) -> None:
    layout = _copy_layout(real_fixtures, tmp_path)
    layer2 = _layer2(layout)
    blob = layout / "blobs/sha256" / layer2
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    rc, doc, err = scan(layout, "--ref", "v1")
    assert rc == 1, err
    bad = finding(doc, "malformed_layer", "/")
    assert bad["detail"]["reason"] == "truncated" and bad["layer"] == "sha256:" + layer2


def test_flipped_byte_in_real_blob(real_fixtures: Path, tmp_path: Path) -> None:
    layout = _copy_layout(real_fixtures, tmp_path)
    blob = layout / "blobs/sha256" / _layer2(layout)
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF  # inside the gzip trailer (CRC-32 / size): zlib notices
    blob.write_bytes(bytes(data))
    rc, doc, _ = scan(layout, "--ref", "v1")
    assert rc == 1
    reasons = {f["detail"]["reason"] for f in doc["findings"] if f["kind"] == "malformed_layer"}
    assert reasons == {"corrupt_compression"}


def test_missing_blob_and_corrupt_index(real_fixtures: Path, tmp_path: Path) -> None:
    layout = _copy_layout(real_fixtures, tmp_path)
    (layout / "blobs/sha256" / _layer2(layout)).unlink()
    rc, doc, _ = scan(layout, "--ref", "v1")
    assert rc == 1 and ("malformed_layer", "/", "missing_blob") in keys(doc)
    (missing,) = [f for f in doc["findings"] if f["kind"] == "malformed_layer"]
    assert missing["severity"] == "error"  # no runtime can unpack this image
    # verdicts on the incomplete view are marked: the target may be in the missing layer
    failed = [f for f in doc["findings"] if f["kind"] in ("dangling", "loop")]
    assert failed and all(f["severity"] == "info" and f["detail"]["unverified"] ==
                          "layer_unreadable" for f in failed)
    (layout / "index.json").write_text("{not json")
    rc, doc, err = scan(layout)
    assert rc == 2 and doc == {} and len(err.strip().splitlines()) == 1
    assert "index.json: not valid JSON" in err and "Traceback" not in err


def test_not_an_image_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00garbage" * 100)
    rc, _, err = scan(junk)
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    gz = tmp_path / "image.tar.gz"
    shutil.copy(junk, gz)
    gz.write_bytes(b"\x1f\x8b\x08" + b"\x00" * 50)
    rc, _, err = scan(gz)
    assert rc == 2 and "decompress it first" in err
