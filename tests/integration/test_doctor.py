"""``crilink doctor`` on a host with all three stores, each written by its real runtime.

The containerd and containers-storage stores are copies of the real fixtures; the Docker
store is the session's store written by a real private dockerd (docker_fixtures). The
runtimes' config files are written to tmp and passed with --containerd-config,
--storage-conf and --docker-config, as an operator would point doctor at a non-default
install.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["docker_fixtures"]

pytestmark = pytest.mark.integration


def _doctor(*args: str) -> tuple[int, dict[str, Any]]:
    r = subprocess.run([sys.executable, "-m", "crilink.cli.main", "doctor", "-o", "json", *args],
                       capture_output=True, text=True, check=False)
    assert r.returncode in (0, 1), r.stderr
    assert "Traceback" not in r.stderr
    return r.returncode, json.loads(r.stdout)


def _configs(tmp_path: Path, containerd_root: Path, graph_root: Path,
             docker_root: Path) -> list[str]:
    ctd = tmp_path / "containerd.toml"
    ctd.write_text(f'version = 2\nroot = "{containerd_root}"\nstate = "{tmp_path}/ctd-state"\n')
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{graph_root}"\n'
                    f'runroot = "{tmp_path}/run"\n')
    daemon = tmp_path / "daemon.json"
    daemon.write_text(json.dumps({"data-root": str(docker_root)}))
    return ["--containerd-config", str(ctd), "--storage-conf", str(conf),
            "--docker-config", str(daemon)]


def test_doctor_reports_all_three_stores(tmp_path: Path, copy_fixture: Callable[[str], Path],
                                         docker_store: Path) -> None:
    ctd_root = copy_fixture("containerd/gc-pending/root")
    graph = copy_fixture("containers-storage/dangling-layer/root")
    rc, doc = _doctor(*_configs(tmp_path, ctd_root, graph, docker_store))
    assert doc["schema"] == 1 and doc["command"] == "doctor"
    stores = {s["kind"]: s for s in doc["stores"]}
    assert set(stores) == {"containerd", "containers_storage", "docker"}
    for kind, root in (("containerd", ctd_root), ("containers_storage", graph),
                       ("docker", docker_store)):
        entry = stores[kind]
        assert entry["root"] == str(root)
        assert entry["present"] is True, entry
        assert entry["running"] is False, entry
        assert "error" not in entry, entry
        assert "summary" in entry
    # the leaky stores' findings come through, each attributed to its own store
    ctd_kinds = stores["containerd"]["summary"]["by_kind"]
    assert "backend_unreferenced" in ctd_kinds
    assert "unreferenced_layer" in stores["containers_storage"]["summary"]["by_kind"]
    assert rc == 1  # warnings at the default --fail-on
    total = sum(s["summary"]["total"] for s in doc["stores"])
    assert doc["summary"]["total"] == total


def test_doctor_on_a_host_without_runtimes(tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    rc, doc = _doctor(*_configs(tmp_path, empty / "c", empty / "s", empty / "d"))
    assert rc == 0
    assert [s["present"] for s in doc["stores"]] == [False, False, False]
    assert isinstance(doc["host"]["openat2"], bool)
    assert doc["summary"]["total"] == 0


def test_doctor_reports_an_unreadable_store_and_scans_the_others(
        tmp_path: Path, copy_fixture: Callable[[str], Path]) -> None:
    ctd_root = copy_fixture("containerd/clean/root")
    meta = ctd_root / "io.containerd.metadata.v1.bolt" / "meta.db"
    meta.write_bytes(b"\0" * 8192)  # both meta pages gone: not a bbolt file any more
    graph = copy_fixture("containers-storage/clean/root")
    rc, doc = _doctor(*_configs(tmp_path, ctd_root, graph, tmp_path / "no-docker"))
    stores = {s["kind"]: s for s in doc["stores"]}
    assert "meta.db" in stores["containerd"]["error"]
    assert stores["containers_storage"]["present"] and "summary" in stores["containers_storage"]
    assert rc in (0, 1)


@pytest.mark.parametrize("damage", ["fifo", "devzero", "not_utf8"])
def test_doctor_survives_a_hostile_containerd_config(tmp_path: Path, damage: str) -> None:
    """A config that is a FIFO, a link to /dev/zero or not UTF-8: that store is an error
    line, the others are still reported, and doctor neither hangs nor crashes."""
    cfg = tmp_path / "config.toml"
    if damage == "fifo":
        import os  # noqa: PLC0415

        os.mkfifo(cfg)
    elif damage == "devzero":
        cfg.symlink_to("/dev/zero")
    else:
        cfg.write_bytes(b'root = "/var/lib/\xff"\n')
    (tmp_path / "storage.conf").write_text(f'[storage]\ngraphroot = "{tmp_path}/none"\n')
    (tmp_path / "daemon.json").write_text(json.dumps({"data-root": f"{tmp_path}/none"}))
    r = subprocess.run([sys.executable, "-m", "crilink.cli.main", "doctor", "-o", "json",
                        "--containerd-config", str(cfg), "--storage-conf",
                        str(tmp_path / "storage.conf"), "--docker-config",
                        str(tmp_path / "daemon.json")],
                       capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode in (0, 1), r.stderr
    stores = {s["kind"]: s for s in json.loads(r.stdout)["stores"]}
    assert str(cfg) in stores["containerd"]["error"]
    assert set(stores) == {"containerd", "containers_storage", "docker"}


def test_a_config_named_on_the_command_line_must_exist(tmp_path: Path) -> None:
    """Falling back to the defaults would report on another store than the one meant."""
    r = subprocess.run([sys.executable, "-m", "crilink.cli.main", "doctor",
                        "--storage-conf", str(tmp_path / "typo.conf")],
                       capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 2 and "--storage-conf" in r.stderr and "no such file" in r.stderr
