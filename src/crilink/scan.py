"""Detect what a scan target is and dispatch to the checks for that kind.

Each kind maps to one ``run(target, options) -> ScanResult`` function, imported
lazily so that a scan of a directory never imports the BoltDB reader.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crilink.errors import InputError, UsageError, denied_hint
from crilink.model import ScanResult, TargetKind

__all__ = ["RUNNERS", "ScanOptions", "detect_target", "run_scan"]


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """Options every runner accepts; a runner ignores what does not apply to its kind.

    ``progress`` is called with (done, total-or-None) now and then; the CLI turns it
    into a progress bar on a TTY.
    """

    one_filesystem: bool = True
    ref: str | None = None
    platform: str | None = None
    deep: bool = False
    namespace: str | None = None
    progress: Callable[[int, int | None], None] | None = None


# kind -> "module:function"; each function is run(target: str, options) -> ScanResult
RUNNERS: dict[TargetKind, str] = {
    TargetKind.ROOTFS: "crilink.checks.rootfs:run",
    TargetKind.CONTAINER: "crilink.checks.rootfs:run_pid",
    TargetKind.OCI_LAYOUT: "crilink.checks.image:run",
    TargetKind.OCI_ARCHIVE: "crilink.checks.image:run",
    TargetKind.DOCKER_ARCHIVE: "crilink.checks.image:run",
    TargetKind.CONTAINERD: "crilink.checks.containerd:run",
    TargetKind.CONTAINERS_STORAGE: "crilink.checks.cstorage:run",
    TargetKind.DOCKER: "crilink.checks.docker:run",
}

_CONTAINERD_MARKERS = ("io.containerd.metadata.v1.bolt", "io.containerd.snapshotter.v1.overlayfs")
_CSTORAGE_MARKERS = ("overlay-layers", "overlay-images")
_DOCKER_MARKERS = ("image/overlay2", "overlay2")


def detect_target(target: str) -> TargetKind:
    """The kind of ``target``: a store root, an image layout or archive, else a root filesystem.

    A directory holding ``oci-layout`` and ``index.json`` is an image layout whatever those
    two are (a symlink, a FIFO ...): reading them then says what is wrong, rather than the
    image being scanned as a plain root filesystem."""
    if not target:
        raise InputError("scan: the target is an empty name; give a directory, image layout, "
                         "image archive or store root")
    try:
        st = Path(target).stat()
    except FileNotFoundError as err:
        raise InputError(f"scan {target}: no such file or directory") from err
    except PermissionError as err:
        raise InputError(f"scan {target}: permission denied{denied_hint()}") from err
    except OSError as err:
        raise InputError(f"scan {target}: {err.strerror}") from err
    if stat.S_ISREG(st.st_mode):
        from crilink.formats.archive import sniff_archive  # noqa: PLC0415 - lazy by design

        return sniff_archive(target)
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"scan {target}: not a directory, image layout or image archive")
    if not os.access(target, os.R_OK | os.X_OK):
        raise InputError(f"scan {target}: permission denied: cannot list this directory "
                         f"{denied_hint().strip()}")
    root = Path(target)
    if os.path.lexists(root / "oci-layout") and os.path.lexists(root / "index.json"):
        return TargetKind.OCI_LAYOUT
    if any((root / m).is_dir() for m in _CONTAINERD_MARKERS):
        return TargetKind.CONTAINERD
    if any((root / m).is_dir() for m in _CSTORAGE_MARKERS):
        return TargetKind.CONTAINERS_STORAGE
    if (root / "image" / "overlay2").is_dir():
        return TargetKind.DOCKER
    return TargetKind.ROOTFS


def _runner(kind: TargetKind) -> Callable[[str, ScanOptions], ScanResult]:
    module_name, func_name = RUNNERS[kind].split(":")
    module = importlib.import_module(module_name)
    func: Callable[[str, ScanOptions], ScanResult] = getattr(module, func_name)
    return func


def run_scan(target: str, kind: TargetKind | None = None,
             options: ScanOptions | None = None) -> ScanResult:
    """Scan ``target`` (kind detected unless given) and return every finding."""
    if kind is None:
        kind = detect_target(target)
    elif kind not in RUNNERS:
        raise UsageError(f"unknown target kind {kind}")
    return _runner(kind)(target, options or ScanOptions())
