"""Hand-made hostile images (tests/data/hostile/, written by make_hostile.py with Python's
tarfile -- no real tool produces them) scanned through the real CLI; findings compared with
the ``*.expected.json`` written from each case's definition."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HOSTILE = Path(__file__).resolve().parents[1] / "data" / "hostile"
CASES = sorted(p.name.removesuffix(".expected.json") for p in HOSTILE.glob("*.expected.json"))

pytestmark = pytest.mark.integration


def _key(f: dict[str, Any]) -> tuple[str, str, str, str]:
    reason = f.get("reason", f.get("detail", {}).get("reason", ""))
    return f["kind"], f["path"], f["severity"], str(reason)


def test_cases_exist() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES)
def test_hostile_case(case: str) -> None:
    want = json.loads((HOSTILE / f"{case}.expected.json").read_text())
    proc = subprocess.run([sys.executable, "-m", "crilink.cli.main", "scan",
                           str(HOSTILE / want["target"]), "-o", "json"],
                          capture_output=True, text=True, check=False)
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert sorted(map(_key, doc["findings"])) == sorted(map(_key, want["findings"]))
    worst = {f["severity"] for f in want["findings"]}
    assert proc.returncode == (1 if worst & {"warning", "error"} else 0)
    assert all(f["path"].startswith("/") and f["layer"].startswith("sha256:")
               for f in doc["findings"])


# -- layouts that cannot be checked in (FIFOs, links to /dev): made from a checked-in case

def _hostile_copy(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of the one-layer ``unsafe-names`` layout: (root, manifest blob, layer blob)."""
    root = tmp_path / "layout"
    shutil.copytree(HOSTILE / "unsafe-names", root)
    blobs = root / "blobs" / "sha256"
    manifest = json.loads((root / "index.json").read_text())["manifests"][0]["digest"]
    layer = json.loads((blobs / manifest[7:]).read_text())["layers"][0]["digest"]
    return root, blobs / manifest[7:], blobs / layer[7:]


def _cli(target: Path | str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "crilink.cli.main", "scan", str(target),
                           "-o", "json"], capture_output=True, text=True, check=False,
                          timeout=60)  # before the fix these hung for ever
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def _replace(path: Path, how: str) -> None:
    path.unlink()
    if how == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


@pytest.mark.parametrize("how", ["fifo", "devzero"])
def test_layer_blob_fifo_or_dev_zero_is_a_finding_not_a_hang(tmp_path: Path, how: str) -> None:
    root, _, layer = _hostile_copy(tmp_path)
    _replace(layer, how)
    rc, out, err = _cli(root)
    assert rc == 1, err
    found = [(f["kind"], f["detail"]["reason"]) for f in json.loads(out)["findings"]]
    assert found == [("malformed_layer", "not_a_file")]


@pytest.mark.parametrize("how", ["fifo", "devzero"])
def test_manifest_blob_fifo_or_dev_zero_is_an_error_not_a_hang(tmp_path: Path,
                                                               how: str) -> None:
    root, manifest, _ = _hostile_copy(tmp_path)
    _replace(manifest, how)
    rc, out, err = _cli(root)
    assert rc == 2 and out == "" and "where a regular file belongs" in err


def test_symlinked_index_is_a_layout_refused(tmp_path: Path) -> None:
    root, _, _ = _hostile_copy(tmp_path)
    (root / "index.json").unlink()
    (root / "index.json").symlink_to("/dev/zero")
    rc, out, err = _cli(root)
    assert rc == 2 and out == "" and "index.json" in err and "a symlink" in err


def test_empty_target_and_truncated_archive_say_so(tmp_path: Path) -> None:
    rc, _, err = _cli("")  # the empty name itself, as typed: crilink scan ''
    assert rc == 2 and "empty" in err and "permission" not in err
    archive = tmp_path / "x.docker.tar"
    data = (HOSTILE / "docker-diff-id.docker.tar").read_bytes()
    archive.write_bytes(data[:len(data) // 2])
    rc, _, err = _cli(archive)
    assert rc == 2 and "a tar archive, but truncated or corrupt" in err
