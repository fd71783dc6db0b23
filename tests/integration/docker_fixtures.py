"""Pytest fixtures for the Docker tests: one store written by a real dockerd per session.

``docker_pristine`` is built once: a private dockerd loads the three real docker-archives
(busybox v1, v2 and the buildah image), runs container ``c1`` to completion and creates ``c2``,
then is stopped with SIGTERM. Tests never change it: ``docker_store`` gives a ``cp -a`` copy
(hard links, xattrs and owners kept), which a test damages as a crash or power loss would.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockerd_harness import ARCHIVES, BUILDAH, V1, V2, Dockerd, dockerd_available


@dataclass(frozen=True)
class Pristine:
    """The session's store and what dockerd said about it while it ran."""

    root: Path
    logs: Path
    images: dict[str, str]  # ref -> image id (bare hex)
    containers: dict[str, str]  # name -> container id
    layers: dict[str, list[str]]  # ref -> RootFS.Layers diff ids, as docker inspect shows


def _inspect(daemon: Dockerd, *args: str) -> list[dict[str, object]]:
    doc = json.loads(daemon.docker("inspect", *args).stdout)
    assert isinstance(doc, list)
    return doc


@pytest.fixture(scope="session")
def docker_pristine(tmp_path_factory: pytest.TempPathFactory, real_fixtures: Path) -> Pristine:
    why = dockerd_available()
    if why:
        pytest.fail(f"cannot run a private dockerd: {why}")
    base = tmp_path_factory.mktemp("docker-pristine")
    root, logs = base / "data", base / "logs"
    logs.mkdir()
    with Dockerd(root, logs / "dockerd.log") as daemon:
        for archive in ARCHIVES:
            daemon.docker("load", "-i", str(real_fixtures / "oci" / archive))
        daemon.docker("run", "--network", "none", "--name", "c1", V1, "sh", "-c",
                      "echo hi > /written-by-c1")
        daemon.docker("create", "--network", "none", "--name", "c2", V2, "true")
        (logs / "images.txt").write_text(daemon.docker("images", "--no-trunc").stdout)
        (logs / "ps.txt").write_text(daemon.docker("ps", "-a", "--no-trunc").stdout)
        images, layers = {}, {}
        for ref in (V1, V2, BUILDAH):
            doc = _inspect(daemon, ref)[0]
            images[ref] = str(doc["Id"]).removeprefix("sha256:")
            rootfs = doc["RootFS"]
            assert isinstance(rootfs, dict)
            layers[ref] = list(rootfs["Layers"])
        containers = {name: str(_inspect(daemon, name)[0]["Id"]) for name in ("c1", "c2")}
    return Pristine(root, logs, images, containers, layers)


@pytest.fixture
def docker_store(docker_pristine: Pristine, tmp_path: Path) -> Path:
    """A private ``cp -a`` copy of the pristine store (its data root)."""
    dst = tmp_path / "data"
    subprocess.run(["cp", "-a", str(docker_pristine.root), str(dst)], check=True)
    return dst


@pytest.fixture
def dockerd_on(tmp_path: Path) -> Iterator[Callable[[Path], Dockerd]]:
    """``dockerd_on(root)`` starts a private dockerd on ``root``; all are stopped at teardown."""
    started: list[Dockerd] = []

    def start(root: Path) -> Dockerd:
        daemon = Dockerd(root, tmp_path / f"dockerd-{len(started)}.log")
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.close()
