"""Domain records shared by every layer: findings, severities, scan results.

Findings are data. Nothing here reads the filesystem or prints; renderers in
:mod:`crilink.report` and the exporter in :mod:`crilink.metrics` read the same
objects.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "SEVERITY_ORDER",
    "Finding",
    "ScanResult",
    "Severity",
    "TargetKind",
    "json_path",
]


class Severity(StrEnum):
    """How bad a finding is (see DESIGN.md, "Conventions for findings")."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return SEVERITY_ORDER[self]


SEVERITY_ORDER: Mapping[Severity, int] = {
    Severity.INFO: 0,
    Severity.WARNING: 1,
    Severity.ERROR: 2,
}


class TargetKind(StrEnum):
    """What a scan target is; detected by :func:`crilink.scan.detect_target`."""

    ROOTFS = "rootfs"
    CONTAINER = "container"  # a running process's root, /proc/PID/root
    OCI_LAYOUT = "oci_layout"
    OCI_ARCHIVE = "oci_archive"
    DOCKER_ARCHIVE = "docker_archive"
    CONTAINERD = "containerd"
    CONTAINERS_STORAGE = "containers_storage"
    DOCKER = "docker"


def json_path(path: str | bytes) -> str:
    """A path as JSON carries it: ``os.fsdecode`` (surrogateescape) of the raw bytes.

    A byte that is not UTF-8 becomes a lone surrogate (``"\\udcff"`` in JSON);
    ``os.fsencode`` of the string gives the original bytes back.
    """
    return os.fsdecode(path)


def _needs_b64(path: str) -> bool:
    """True unless ``path`` is plain printable UTF-8 (no control characters, no bytes that
    were not UTF-8): those names also get their raw bytes in base64."""
    if not path.isascii():
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: a byte that was not UTF-8
            return True
    return not path.isprintable()


@dataclass(frozen=True, slots=True)
class Finding:
    """One fact about a fault.

    ``kind`` is a stable snake_case name; ``path`` is root-relative (``/usr/bin/x``)
    for root filesystems and images, store-relative (``overlay/l/ABC``) for stores.
    Paths are ``str`` as produced by :func:`os.fsdecode` (surrogateescape).
    ``detail`` holds kind-specific JSON-safe values.
    """

    kind: str
    severity: Severity
    path: str
    message: str = ""
    link: str | None = None
    resolved: str | None = None
    remaining: str | None = None
    layer: str | None = None
    namespace: str | None = None
    key: str | None = None
    id: str | None = None
    digest: str | None = None
    bytes: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __reduce__(self) -> tuple[type[Finding], tuple[Any, ...]]:
        """Pickle as a call with the fields (scan workers send findings back): several times
        quicker than the per-field state a frozen slotted dataclass pickles by default."""
        return (Finding, (self.kind, self.severity, self.path, self.message, self.link,
                          self.resolved, self.remaining, self.layer, self.namespace, self.key,
                          self.id, self.digest, self.bytes, self.detail))

    def to_json(self) -> dict[str, Any]:
        """The finding as the JSON envelope carries it; ``None`` fields are left out."""
        out: dict[str, Any] = {"kind": self.kind, "severity": str(self.severity), "path": self.path}
        if _needs_b64(self.path):
            out["path_b64"] = base64.b64encode(os.fsencode(self.path)).decode("ascii")
        for name in ("link", "resolved", "remaining", "layer", "namespace", "key", "id",
                     "digest", "bytes"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.link is not None and _needs_b64(self.link):
            out["link_b64"] = base64.b64encode(os.fsencode(self.link)).decode("ascii")
        if self.message:
            out["message"] = self.message
        if self.detail:
            out["detail"] = dict(self.detail)
        return out


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Everything one scan found, plus counters the scan kept (entries, links, bytes)."""

    target: str
    target_kind: TargetKind
    findings: tuple[Finding, ...]
    stats: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, target: str, kind: TargetKind, findings: Iterable[Finding],
           stats: Mapping[str, int] | None = None) -> ScanResult:
        return cls(target, kind, tuple(findings), dict(stats or {}))

    def worst(self) -> Severity | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: s.rank)
