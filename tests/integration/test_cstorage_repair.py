"""containers-storage repair against the real podman 4.3: damage as a power loss leaves it,
``fix --apply``, podman runs the images again, a rescan is clean, undo restores the damage.

The stores are made by podman in the test's tmp dir (podman's libpod database pins the
graph root's path, so a copied fixture store cannot be run by podman)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from podman_harness import Podman, available

from crilink.fix.cstorage import apply_repair, plan_repair
from crilink.fix.undo import undo_journal
from crilink.formats.cstorage import IMAGES_JSON, parse_images
from crilink.scan import run_scan
from crilink.stores.cstorage import CStorageStore

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not available(), reason="needs podman and root")]

V1 = "docker.io/crilink/busybox:v1"
V2 = "docker.io/crilink/busybox:v2"


def manifest(top: Path) -> dict[str, tuple[object, ...]]:
    """path -> (type, mode, uid, gid, link text or content hash), never following links."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                what: object = str(p.readlink())
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                what = None
            out[str(p.relative_to(top))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                            st.st_uid, st.st_gid, what)
    return out


@pytest.fixture
def pm(tmp_path: Path, real_fixtures: Path) -> Iterator[Podman]:
    podman = Podman(tmp_path / "pm")
    try:
        podman.load(real_fixtures / "oci/busybox-v1.docker.tar")
        podman.load(real_fixtures / "oci/busybox-v2.docker.tar")
        yield podman
    finally:
        podman.close()


def top_layer(root: Path, ref: str) -> str:
    images = parse_images((root / IMAGES_JSON).read_bytes())
    return next(img.layers[0] for img in images if ref in img.names)


def test_power_loss_damage_repaired_podman_runs_again_undo_restores(pm: Podman,
                                                                     tmp_path: Path) -> None:
    root = pm.root
    assert pm.run(V1, "/bin/echo", "before").stdout.strip() == "before"
    store = CStorageStore.open(root)
    chains = store.chains()
    v1_top = top_layer(root, V1)
    base = chains[v1_top][-1]
    v2_top = top_layer(root, V2)
    overlay = root / "overlay"
    # power loss: the base layer's link file truncated to zero bytes and its l/ entry lost;
    # busybox:v2's top layer lost its l/ entry too
    base_name = (overlay / base / "link").read_text()
    (overlay / base / "link").write_bytes(b"")
    (overlay / "l" / base_name).unlink()
    (overlay / "l" / (overlay / v2_top / "link").read_text()).unlink()

    failed = pm.run(V1, "/bin/echo", "broken", check=False)
    assert failed.returncode != 0 and "readlink" in failed.stderr
    kinds = {f.kind for f in run_scan(str(root)).findings}
    assert {"missing_link_file", "bad_lower"} <= kinds
    damaged = manifest(overlay)

    opened, plan = plan_repair(str(root))
    assert plan.manual == () and plan.minted == {}  # the lost name is recovered, not minted
    result = apply_repair(opened, plan, tmp_path / "journal.jsonl")
    assert result.applied.ok and result.remaining == ()
    assert (overlay / base / "link").read_text() == base_name

    assert pm.run(V1, "/bin/echo", "after").stdout.strip() == "after"
    assert pm.run(V2, "/bin/echo", "v2").stdout.strip() == "v2"
    assert run_scan(str(root)).findings == ()

    undone = undo_journal(result.applied.journal, tmp_path / "undo.jsonl")
    assert undone.ok
    assert manifest(overlay) == damaged


def test_lost_name_nobody_remembers_is_minted_and_lowers_rewritten(pm: Podman,
                                                                    tmp_path: Path) -> None:
    root = pm.root
    overlay = root / "overlay"
    v1_top = top_layer(root, V1)
    base = CStorageStore.open(root).chains()[v1_top][-1]
    # the base layer's link file and l/ entry lost, and every lower file naming it truncated
    name = (overlay / base / "link").read_text()
    (overlay / base / "link").unlink()
    (overlay / "l" / name).unlink()
    for d in overlay.iterdir():
        if (d / "lower").is_file() and name in (d / "lower").read_text():
            (d / "lower").write_bytes(b"")
    assert pm.run(V1, "/bin/true", check=False).returncode != 0

    _, plan = plan_repair(str(root))
    assert list(plan.minted) == [base]
    # through the CLI, as an operator runs it
    journal = tmp_path / "journal.jsonl"
    cli = [sys.executable, "-m", "crilink.cli.main"]
    fixed = subprocess.run([*cli, "fix", "--apply", "--journal", str(journal), str(root)],
                           capture_output=True, text=True, check=False)
    assert fixed.returncode == 0, fixed.stderr
    rescan = subprocess.run([*cli, "scan", str(root)], capture_output=True, text=True,
                            check=False)
    assert rescan.returncode == 0, rescan.stdout
    minted = (overlay / base / "link").read_text()
    assert minted != name and len(minted) == 26
    assert pm.run(V1, "/bin/echo", "ok").stdout.strip() == "ok"
    assert pm.run(V2, "/bin/echo", "ok").stdout.strip() == "ok"
    assert run_scan(str(root)).findings == ()


def test_the_podman_command_gc_runs_is_accepted_by_podman(pm: Podman) -> None:
    """podman records a store's runroot in its own database and refuses another one: the
    command crilink gc runs must name none (podman reads it there) and work as written."""
    from crilink.fix.gc_cstorage import podman_argv  # noqa: PLC0415
    from crilink.stores.cstorage import CStorageStore  # noqa: PLC0415

    argv = podman_argv(CStorageStore.open(pm.root), "images", "--format", "{{.ID}}")
    assert "--runroot" not in argv
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 2  # busybox v1 and v2
