"""Docker overlay2 repair and gc on stores written by a real dockerd: damage as a crash or power
loss leaves it, repair through the journal, then the real dockerd runs busybox again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from dockerd_harness import DOCKER, V1, V2, Dockerd

from crilink.errors import RuntimeBusyError
from crilink.fix.docker import apply_docker, plan_gc, plan_repair
from crilink.fix.undo import undo_journal
from crilink.formats import docker as fmt
from crilink.model import Finding
from crilink.scan import run_scan
from crilink.stores.docker import DockerStore, open_docker

if TYPE_CHECKING:
    from docker_fixtures import Pristine

pytestmark = pytest.mark.integration
pytest_plugins = ["docker_fixtures"]

BIG_REF = "crilink/big:1"
KILL_TRIES = 3
POLLS = 3000  # x 0.01 s while waiting for the load to start writing a layer


def scan(root: Path) -> list[Finding]:
    return list(run_scan(str(root)).findings)


def kinds_of(findings: list[Finding]) -> set[str]:
    return {f.kind for f in findings}


def run_v1(daemon: Dockerd) -> subprocess.CompletedProcess[str]:
    return daemon.docker("run", "--rm", "--network", "none", V1, "true", check=False)


def break_links(root: Path, pristine: Pristine) -> None:
    """As a power loss leaves it: v1's base layer lost its l/ link, v2's top layer its link
    file (written but never synced: empty)."""
    view = open_docker(root)
    v1_chains = [c for c in view.layers if view.layers[c].parent is None
                 and c == pristine.layers[V1][0].removeprefix("sha256:")]
    base = view.layers[v1_chains[0]].cache_id
    short = (root / "overlay2" / str(base) / "link").read_text()
    (root / "overlay2" / "l" / short).unlink()
    top = view.images[pristine.images[V2]].top_chain
    (root / "overlay2" / str(view.layers[str(top)].cache_id) / "link").write_text("")


def test_repair_then_dockerd_runs_again(docker_store: Path, docker_pristine: Pristine,
                                        dockerd_on: Callable[[Path], Dockerd],
                                        tmp_path: Path) -> None:
    break_links(docker_store, docker_pristine)
    before = scan(docker_store)
    assert {"missing_short_link", "missing_link_file", "bad_lower"} <= kinds_of(before)
    daemon = dockerd_on(docker_store)
    assert run_v1(daemon).returncode != 0, "the damage must break busybox:v1"
    daemon.stop()
    # dockerd's failed run left the new container's init layer dir behind, known to nothing
    orphans = [f for f in scan(docker_store) if f.kind == "orphan_layer_dir"]
    assert [str(f.id).endswith("-init") for f in orphans] == [True]

    plan = plan_repair(open_docker(docker_store))
    assert plan.manual == ()
    result = apply_docker(DockerStore(docker_store), plan, tmp_path / "repair.jsonl", "repair")
    assert result.ok, result.outcomes
    assert [f.kind for f in scan(docker_store)] == ["orphan_layer_dir"]
    result = apply_docker(DockerStore(docker_store), plan_gc(open_docker(docker_store)),
                          tmp_path / "gc.jsonl", "gc")
    assert result.ok, result.outcomes
    assert scan(docker_store) == []

    daemon = dockerd_on(docker_store)
    res = run_v1(daemon)
    assert res.returncode == 0, res.stderr
    res = daemon.docker("run", "--rm", "--network", "none", V2, "cat", "/opt/app/only.txt",
                        check=False)
    assert res.returncode == 0, res.stderr
    daemon.docker("start", "-a", docker_pristine.containers["c1"])


def test_undo_restores_the_damage(docker_store: Path, docker_pristine: Pristine,
                                  tmp_path: Path) -> None:
    break_links(docker_store, docker_pristine)
    before = sorted((f.kind, f.path) for f in scan(docker_store))
    journal = tmp_path / "repair.jsonl"
    apply_docker(DockerStore(docker_store), plan_repair(open_docker(docker_store)), journal,
                 "repair")
    assert scan(docker_store) == []
    assert undo_journal(journal).ok
    assert sorted((f.kind, f.path) for f in scan(docker_store)) == before


def test_mutation_refused_while_dockerd_runs(docker_store: Path, docker_pristine: Pristine,
                                             dockerd_on: Callable[[Path], Dockerd],
                                             tmp_path: Path) -> None:
    break_links(docker_store, docker_pristine)
    plan = plan_repair(open_docker(docker_store))
    daemon = dockerd_on(docker_store)
    with pytest.raises(RuntimeBusyError, match=rf"dockerd is running \(pid {daemon.pid}\)"):
        apply_docker(DockerStore(docker_store), plan, tmp_path / "j.jsonl", "repair")
    assert not (tmp_path / "j.jsonl").exists()
    assert "missing_link_file" in kinds_of(scan(docker_store))


def _has_entries(path: Path) -> bool:
    try:
        return any(True for _ in path.iterdir())
    except OSError:
        return False


def _kill_mid_load(daemon: Dockerd, archive: Path, root: Path) -> bool:
    """SIGKILL dockerd while `docker load` writes a layer dir that layerdb does not know yet.
    True when the kill landed in that window."""
    known = set(open_docker(root).layer_dirs)
    load = subprocess.Popen([DOCKER, "-H", f"unix://{daemon.sock}", "load", "-i", str(archive)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(POLLS):
            new = {p.name for p in (root / "overlay2").iterdir()} - known - {"l"}
            if any(_has_entries(root / "overlay2" / n / "diff") for n in new):
                break
            time.sleep(0.01)
        daemon.stop(signal.SIGKILL)
    finally:
        load.kill()
        load.wait()
    view = open_docker(root)
    return bool(view.layer_dirs - view.known_dirs())


def test_sigkill_mid_load_then_gc(docker_pristine: Pristine, tmp_path: Path,
                                  dockerd_on: Callable[[Path], Dockerd]) -> None:
    archive = tmp_path / "big.docker.tar"
    subprocess.run(["skopeo", "copy", "-q", "oci:/var/tmp/crilink-fixtures/oci/layout:big",
                    f"docker-archive:{archive}:{BIG_REF}"], check=True)
    for attempt in range(KILL_TRIES):
        root = tmp_path / f"data-{attempt}"
        subprocess.run(["cp", "-a", str(docker_pristine.root), str(root)], check=True)
        if _kill_mid_load(dockerd_on(root), archive, root):
            break
    else:
        pytest.fail(f"the SIGKILL missed the unpack window {KILL_TRIES} times")
    found = scan(root)
    orphans = [f for f in found if f.kind == "orphan_layer_dir"]
    assert orphans and all(f.bytes for f in orphans)
    assert kinds_of(found) <= {"orphan_layer_dir", "incomplete_layer"}

    plan = plan_gc(open_docker(root))
    result = apply_docker(DockerStore(root), plan, tmp_path / "gc.jsonl", "gc")
    assert result.ok, result.outcomes
    assert result.bytes_freed >= sum(f.bytes or 0 for f in orphans)
    assert scan(root) == []
    daemon = dockerd_on(root)
    assert run_v1(daemon).returncode == 0
    daemon.docker("load", "-i", str(archive), timeout=300)
    daemon.stop()
    assert scan(root) == []


def test_gc_of_unreferenced_chains(docker_store: Path, docker_pristine: Pristine,
                                   dockerd_on: Callable[[Path], Dockerd],
                                   tmp_path: Path) -> None:
    image = docker_pristine.images["crilink/bb-buildah:l2"]
    (docker_store / fmt.IMAGEDB_CONTENT_DIR / image).unlink()  # rmi crashed after step one
    plan = plan_gc(open_docker(docker_store))
    assert plan.actions == ()
    assert any("docker image prune" in line for line in plan.commands)
    plan = plan_gc(open_docker(docker_store), unreferenced=True)
    result = apply_docker(DockerStore(docker_store), plan, tmp_path / "gc.jsonl", "gc")
    assert result.ok, result.outcomes
    assert scan(docker_store) == []
    daemon = dockerd_on(docker_store)
    assert run_v1(daemon).returncode == 0


def crilink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crilink.cli.main", *args], check=False,
                          capture_output=True, text=True)


def test_cli_fix_and_gc(docker_store: Path, docker_pristine: Pristine,
                        dockerd_on: Callable[[Path], Dockerd], tmp_path: Path) -> None:
    break_links(docker_store, docker_pristine)
    (docker_store / "overlay2" / "0123-stray").mkdir()
    assert crilink("scan", str(docker_store)).returncode == 1
    daemon = dockerd_on(docker_store)
    busy = crilink("fix", str(docker_store), "--apply", "--journal", str(tmp_path / "j1"))
    assert busy.returncode == 3, busy.stderr
    assert f"pid {daemon.pid}" in busy.stderr
    daemon.stop()
    res = crilink("fix", str(docker_store), "--apply", "--journal", str(tmp_path / "j2"))
    assert res.returncode == 0, res.stdout + res.stderr
    res = crilink("gc", str(docker_store), "--apply", "--yes", "--journal-dir", str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    res = crilink("scan", str(docker_store), "-o", "json")
    assert res.returncode == 0, res.stdout
    assert json.loads(res.stdout)["findings"] == []
