"""``crilink doctor``: find every container runtime store on this host, say whether its
runtime runs, scan each one, and check what the host offers (openat2, overlayfs, d_type).

Discovery reads each runtime's own configuration or defaults:
containerd ``/etc/containerd/config.toml`` (``root``, ``state``, ``[grpc] address``);
containers-storage ``storage.conf`` (``$CONTAINERS_STORAGE_CONF`` or
``/etc/containers/storage.conf``, ``graphroot``); Docker a running dockerd's
``--data-root``, else ``/etc/docker/daemon.json``, else ``/var/lib/docker``.
A store that does not exist is reported as absent, not as an error; a store that
cannot be read is reported with its error and the others are still scanned.
"""

from __future__ import annotations

import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crilink.errors import CrilinkError
from crilink.model import Finding, ScanResult, TargetKind
from crilink.scan import ScanOptions, run_scan
from crilink.stores.base import RuntimeStatus

__all__ = ["DoctorConfig", "DoctorReport", "HostFacts", "StoreReport", "run_doctor"]

PEER_TOOLS = ("containerd", "ctr", "runc", "podman", "dockerd", "crictl", "skopeo", "umoci")


@dataclass(frozen=True, slots=True)
class DoctorConfig:
    """Where to look: each runtime's config file (the runtime's own default when None)."""

    containerd_config: str = "/etc/containerd/config.toml"
    storage_conf: str | None = None
    docker_config: str = "/etc/docker/daemon.json"


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the host can do: facts an operator needs before trusting a scan or a fix."""

    kernel: str
    openat2: bool
    overlayfs: bool
    tools: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class StoreReport:
    """One runtime's store: where it is, how it was found, its runtime's state, its scan."""

    runtime: str
    kind: TargetKind
    root: str
    source: str
    present: bool
    status: RuntimeStatus | None = None
    result: ScanResult | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DoctorReport:
    host: HostFacts
    stores: tuple[StoreReport, ...] = field(default_factory=tuple)

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for s in self.stores if s.result for f in s.result.findings)


def host_facts() -> HostFacts:
    from crilink.pathres import openat2_available  # noqa: PLC0415 - keeps doctor import light

    try:
        overlay = "overlay" in Path("/proc/filesystems").read_text()
    except OSError:
        overlay = False
    tools = {name: shutil.which(name) for name in PEER_TOOLS}
    return HostFacts(platform.release(), openat2_available(), overlay, tools)


def _containerd(cfg: DoctorConfig) -> tuple[str, str, str, Callable[[str], RuntimeStatus]]:
    from crilink.stores.containerd import ContainerdStore, find_containerd  # noqa: PLC0415

    loc = find_containerd(cfg.containerd_config)
    source = f"config {loc.config}" if loc.config else "default"

    def status(root: str) -> RuntimeStatus:
        return ContainerdStore(root, loc.address).runtime_status()

    return "containerd", str(loc.root), source, status


def _cstorage(cfg: DoctorConfig) -> tuple[str, str, str, Callable[[str], RuntimeStatus]]:
    from crilink.stores.cstorage import CStorageStore, graph_root_from_conf  # noqa: PLC0415

    root = graph_root_from_conf(cfg.storage_conf)

    def status(path: str) -> RuntimeStatus:
        return CStorageStore.open(path).runtime_status()

    return "containers-storage", root, "storage.conf or default", status


def _docker(cfg: DoctorConfig) -> tuple[str, str, str, Callable[[str], RuntimeStatus]]:
    from crilink.stores.docker import find_docker, status_for  # noqa: PLC0415

    found = find_docker(cfg.docker_config)
    return "docker", str(found.data_root), found.source, status_for


_DISCOVERY: tuple[tuple[TargetKind, Callable[[DoctorConfig], tuple[
    str, str, str, Callable[[str], RuntimeStatus]]]], ...] = (
    (TargetKind.CONTAINERD, _containerd),
    (TargetKind.CONTAINERS_STORAGE, _cstorage),
    (TargetKind.DOCKER, _docker),
)

_MARKERS: dict[TargetKind, tuple[str, ...]] = {
    TargetKind.CONTAINERD: ("io.containerd.metadata.v1.bolt",
                            "io.containerd.snapshotter.v1.overlayfs"),
    TargetKind.CONTAINERS_STORAGE: ("overlay-layers", "overlay-images"),
    TargetKind.DOCKER: ("image/overlay2",),
}


def _present(kind: TargetKind, root: str) -> bool:
    return any((Path(root) / m).is_dir() for m in _MARKERS[kind])


def _inspect(kind: TargetKind, discover: Callable[[DoctorConfig], tuple[
        str, str, str, Callable[[str], RuntimeStatus]]], cfg: DoctorConfig,
        options: ScanOptions) -> StoreReport:
    try:
        name, root, source, status_of = discover(cfg)
    except CrilinkError as err:
        return StoreReport(kind.value, kind, "?", "discovery", False, error=err.message)
    if not _present(kind, root):
        return StoreReport(name, kind, root, source, False)
    try:
        status = status_of(root)
        result = run_scan(root, kind, options)
    except CrilinkError as err:
        return StoreReport(name, kind, root, source, True, error=err.message)
    return StoreReport(name, kind, root, source, True, status, result)


def run_doctor(cfg: DoctorConfig | None = None,
               options: ScanOptions | None = None) -> DoctorReport:
    """Discover, check and scan every runtime store of this host (read-only)."""
    cfg = cfg or DoctorConfig()
    options = options or ScanOptions()
    stores = tuple(_inspect(kind, fn, cfg, options) for kind, fn in _DISCOVERY)
    return DoctorReport(host_facts(), stores)
