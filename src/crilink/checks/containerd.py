"""Audit a containerd root offline: snapshots, content, leases, ingests and mounts.

``run(target, options)`` is what ``crilink scan`` dispatches to; :func:`analyze` is the
library entry (an explicit ``now`` makes lease and ingest expiry testable). Kinds besides the
snapshot ones (:mod:`crilink.checks.containerd_snapshots`): ``expired_lease``, ``stale_ingest``,
``leaked_mount``, ``unreferenced_content``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from crilink.checks.containerd_snapshots import snapshot_findings
from crilink.errors import UsageError
from crilink.model import Finding, ScanResult, Severity, TargetKind
from crilink.stores.containerd import ContainerdState, ContainerdStore
from crilink.stores.containerd_disk import METADATA_DIR, TMPMOUNTS_DIR
from crilink.stores.containerd_gc import Node, NodeType
from crilink.stores.containerd_index import StoreIndex

if TYPE_CHECKING:
    from crilink.scan import ScanOptions

__all__ = ["analyze", "findings", "run", "summarize"]

META_DB_PATH = f"{METADATA_DIR}/meta.db"


def _leases(ix: StoreIndex) -> Iterator[Finding]:
    for ns in ix.state.metadata.namespaces:
        for lease in ns.leases:
            if lease.expired(ix.now):
                assert lease.expires is not None  # for mypy: expired() implies an expiry
                yield Finding(
                    "expired_lease", Severity.WARNING, META_DB_PATH,
                    f"lease expired {lease.expires.isoformat()}; it no longer protects "
                    f"{len(lease.content)} blobs, {len(lease.snapshots)} snapshots, "
                    f"{len(lease.ingests)} ingests (an interrupted pull or unpack)",
                    namespace=ns.name, key=lease.id,
                    detail={"expires": lease.expires.isoformat(), "content": len(lease.content),
                            "snapshots": len(lease.snapshots), "ingests": len(lease.ingests)})


def _ingests(ix: StoreIndex) -> Iterator[Finding]:
    by_ref = {d.ref: d for d in ix.state.disk.ingest_dirs if d.ref is not None}
    known: set[str] = set()
    for ns in ix.state.metadata.namespaces:
        for ing in ns.ingests:
            known.add(ing.backend_ref)
            if ix.reach.reachable(Node(NodeType.INGEST, ns.name, ing.ref)):
                continue
            d = by_ref.get(ing.backend_ref)
            yield Finding("stale_ingest", Severity.WARNING,
                          d.path if d is not None else META_DB_PATH,
                          "ingest of an interrupted write that no lease or expiry keeps",
                          namespace=ns.name, key=ing.ref,
                          bytes=ix.bytes_of(d.path) if d is not None else None,
                          detail={"backend_ref": ing.backend_ref, "expected": ing.expected})
    for d in ix.state.disk.ingest_dirs:
        if d.ref is None or d.ref not in known:
            yield Finding("stale_ingest", Severity.WARNING, d.path,
                          "ingest dir that no namespace of meta.db knows", key=d.ref,
                          bytes=ix.bytes_of(d.path), detail={"unknown_to_meta_db": True})


def _content(ix: StoreIndex) -> Iterator[Finding]:
    files = {b.digest: b for b in ix.state.disk.blob_files}
    known: set[str] = set()
    for ns in ix.state.metadata.namespaces:
        for blob in ns.blobs:
            known.add(blob.digest)
    for ns in ix.state.metadata.namespaces:
        for blob in ns.blobs:
            if ix.reach.reachable(Node(NodeType.CONTENT, ns.name, blob.digest)):
                continue
            f = files.get(blob.digest)
            shared = any(ix.reach.reachable(Node(NodeType.CONTENT, o.name, blob.digest))
                         for o in ix.state.metadata.namespaces if o.name != ns.name)
            yield Finding("unreferenced_content", Severity.WARNING,
                          f.path if f is not None else META_DB_PATH,
                          "no GC root reaches this blob: GC deletes it on its next pass",
                          namespace=ns.name, digest=blob.digest,
                          bytes=ix.bytes_of(f.path) if f is not None and not shared else None,
                          detail={"size": blob.size or 0, "file_kept_by_other_namespace": shared})
    for digest, f in sorted(files.items()):
        if digest not in known:
            yield Finding("unreferenced_content", Severity.WARNING, f.path,
                          "blob file that no namespace of meta.db knows", digest=digest,
                          bytes=ix.bytes_of(f.path), detail={"unknown_to_meta_db": True})


def _mounts(ix: StoreIndex) -> Iterator[Finding]:
    running = ix.state.status.running
    for m in ix.state.disk.mounts:
        where = "tmpmounts/ (an interrupted layer apply)" if m.path.startswith(TMPMOUNTS_DIR) \
            else "the store root"
        note = "; containerd is running, it may be in use" if running else ""
        yield Finding("leaked_mount", Severity.WARNING, m.path,
                      f"{m.fstype} mount left under {where}: umount {m.mount_point}{note}",
                      detail={"mount_point": m.mount_point, "fstype": m.fstype,
                              "source": m.source, "fs_root": m.fs_root})


def findings(ix: StoreIndex, namespace: str | None = None) -> list[Finding]:
    """Every finding of the store; with ``namespace``, only those of that namespace
    (plus store-wide ones that belong to none)."""
    out: list[Finding] = []
    for gen in (snapshot_findings, _leases, _ingests, _content, _mounts):
        out.extend(gen(ix))
    if namespace is not None:
        out = [f for f in out if f.namespace in (None, namespace)]
    return sorted(out, key=lambda f: (f.kind, f.namespace or "", f.path, f.key or ""))


def _stats(state: ContainerdState) -> dict[str, int]:
    meta = state.metadata
    return {
        "namespaces": len(meta.namespaces),
        "images": sum(len(ns.images) for ns in meta.namespaces),
        "containers": sum(len(ns.containers) for ns in meta.namespaces),
        "snapshots": sum(len(ns.snapshots) for ns in meta.namespaces),
        "snapshotter_records": sum(len(v) for v in meta.backend.values()),
        "snapshot_dirs": len(state.disk.snapshot_dirs),
        "blobs": len(state.disk.blob_files),
        "leases": sum(len(ns.leases) for ns in meta.namespaces),
        "runtime_running": int(state.status.running),
    }


def analyze(root: str, now: datetime | None = None, namespace: str | None = None,
            mountinfo: str | None = None) -> tuple[StoreIndex, list[Finding]]:
    """Read the store at ``root`` and judge it as of ``now`` (default: the current time)."""
    state = ContainerdStore(root).load(mountinfo)
    names = [ns.name for ns in state.metadata.namespaces]
    if namespace is not None and namespace not in names:  # a typo must not look like "clean"
        raise UsageError(f"namespace {namespace!r} does not exist in {root}; it has: "
                         f"{', '.join(names) or 'none'}")
    ix = StoreIndex(state, now or datetime.now(UTC))
    return ix, findings(ix, namespace)


def run(target: str, options: ScanOptions) -> ScanResult:
    """``crilink scan CONTAINERD_ROOT``."""
    ix, found = analyze(target, namespace=options.namespace)
    return ScanResult.of(target, TargetKind.CONTAINERD, found, _stats(ix.state))


def summarize(root: str, now: datetime | None = None) -> dict[str, object]:
    """One JSON-safe summary of a containerd root (for ``crilink doctor``): runtime status,
    counts, findings by kind, and the bytes reclaimable by kind."""
    ix, found = analyze(root, now)
    status = ix.state.status
    worst = max((f.severity for f in found), key=lambda sev: sev.rank, default=None)
    by_kind: dict[str, int] = {}
    reclaim: dict[str, int] = {}
    for f in found:
        by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
        if f.bytes:
            reclaim[f.kind] = reclaim.get(f.kind, 0) + f.bytes
    return {"root": root, "running": status.running, "pid": status.pid,
            "evidence": list(status.evidence), "stats": _stats(ix.state),
            "findings": by_kind, "reclaimable_bytes": reclaim,
            "worst": str(worst) if worst is not None else None}
