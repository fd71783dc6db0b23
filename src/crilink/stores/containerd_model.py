"""The domain model of a containerd root's metadata, and the one conversion from raw shapes.

Nouns (containerd's own):
- *namespace*: an isolated set of images, containers, leases, content and snapshots in meta.db.
- *snapshot key*: the name a namespace gives a snapshot (``sha256:<chain id>`` for committed
  image layers, the container id for a container's rootfs, ``extract-...`` while unpacking).
- *backend key*: the snapshotter's own name for it, ``<namespace>/<sequence>/<key>``.
- *snapshot id*: the snapshotter's number; the directory is ``snapshots/<id>``.
- *lease*: a GC root that clients take while they work (pulls, unpacks); it can expire
  (label ``containerd.io/gc.expire``, RFC 3339).

Strings are ``os.fsdecode`` of the stored bytes (surrogateescape): any byte string round-trips.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from crilink.formats.containerd import (
    RawBackendSnapshot,
    RawLease,
    RawMetaDB,
    RawNamespace,
    RawSnapshotterDB,
)

__all__ = [
    "LABEL_GC_EXPIRE",
    "LABEL_GC_FLAT",
    "LABEL_GC_REF_CONTENT",
    "LABEL_GC_REF_SNAPSHOT",
    "LABEL_GC_ROOT",
    "BackendSnapshot",
    "Blob",
    "Container",
    "Image",
    "Ingest",
    "Lease",
    "MetaSnapshot",
    "Metadata",
    "Namespace",
    "ParentIndexEntry",
    "SnapshotKind",
    "parse_rfc3339",
    "to_domain",
]

LABEL_GC_ROOT = "containerd.io/gc.root"
LABEL_GC_REF_CONTENT = "containerd.io/gc.ref.content"
LABEL_GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
LABEL_GC_EXPIRE = "containerd.io/gc.expire"
LABEL_GC_FLAT = "containerd.io/gc.flat"


class SnapshotKind(StrEnum):
    """``snapshots.Kind`` as the snapshotter stores it (one byte)."""

    UNKNOWN = "unknown"
    VIEW = "view"
    ACTIVE = "active"
    COMMITTED = "committed"


_KIND_BYTES = {1: SnapshotKind.VIEW, 2: SnapshotKind.ACTIVE, 3: SnapshotKind.COMMITTED}

Labels = Mapping[str, str]


# what Go's time.Parse(time.RFC3339, ...) accepts; Python's fromisoformat takes more
# (``20200101T000000Z``), and a label containerd cannot parse is a lease it keeps for ever
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def parse_rfc3339(text: str) -> datetime | None:
    """An RFC 3339 time (``2026-12-04T20:00:21Z``), or None when it does not parse as Go's
    ``time.RFC3339`` layout would (containerd then ignores the label: no expiry)."""
    if _RFC3339.fullmatch(text) is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class Image:
    namespace: str
    name: str
    target_digest: str
    target_mediatype: str
    target_size: int | None
    labels: Labels


@dataclass(frozen=True, slots=True)
class Container:
    namespace: str
    id: str
    image: str
    snapshotter: str
    snapshot_key: str
    runtime: str
    labels: Labels


@dataclass(frozen=True, slots=True)
class MetaSnapshot:
    """A snapshot as a namespace of meta.db knows it."""

    namespace: str
    snapshotter: str
    key: str
    backend_key: str
    parent: str
    children: tuple[str, ...]
    labels: Labels


@dataclass(frozen=True, slots=True)
class Blob:
    namespace: str
    digest: str
    size: int | None
    labels: Labels


@dataclass(frozen=True, slots=True)
class Ingest:
    namespace: str
    ref: str
    backend_ref: str
    expected: str
    expire_at: datetime | None


@dataclass(frozen=True, slots=True)
class Lease:
    namespace: str
    id: str
    created: datetime | None
    labels: Labels
    expires: datetime | None
    flat: bool
    content: tuple[str, ...]
    snapshots: tuple[tuple[str, str], ...]  # (snapshotter, key)
    ingests: tuple[str, ...]

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and self.expires < now


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Labels
    images: tuple[Image, ...]
    containers: tuple[Container, ...]
    snapshots: tuple[MetaSnapshot, ...]
    blobs: tuple[Blob, ...]
    ingests: tuple[Ingest, ...]
    leases: tuple[Lease, ...]


@dataclass(frozen=True, slots=True)
class BackendSnapshot:
    """A record of a snapshotter's metadata.db."""

    snapshotter: str
    key: str
    id: int
    kind: SnapshotKind
    parent: str
    inodes: int | None
    size: int | None
    labels: Labels

    @property
    def namespace(self) -> str:
        """The namespace part of the backend key (``k8s.io/13/c-ran`` -> ``k8s.io``)."""
        return self.key.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The namespace's key part (``k8s.io/13/c-ran`` -> ``c-ran``)."""
        parts = self.key.split("/", 2)
        return parts[2] if len(parts) == 3 else self.key


@dataclass(frozen=True, slots=True)
class ParentIndexEntry:
    snapshotter: str
    parent_id: int
    child_id: int
    child_key: str


@dataclass(frozen=True, slots=True)
class Metadata:
    """Both databases, converted: meta.db's namespaces and each snapshotter's records."""

    schema_minor: int | None
    namespaces: tuple[Namespace, ...]
    backend: Mapping[str, tuple[BackendSnapshot, ...]]
    parents: Mapping[str, tuple[ParentIndexEntry, ...]]

    def namespace(self, name: str) -> Namespace | None:
        return next((ns for ns in self.namespaces if ns.name == name), None)


def _s(value: bytes) -> str:
    return os.fsdecode(value)


def _labels(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in sorted(raw.items())}


def _lease(ns: str, raw: RawLease) -> Lease:
    labels = _labels(raw.labels)
    exp = labels.get(LABEL_GC_EXPIRE)
    return Lease(
        namespace=ns, id=_s(raw.id), created=raw.created, labels=labels,
        expires=parse_rfc3339(exp) if exp is not None else None, flat=LABEL_GC_FLAT in labels,
        content=tuple(_s(c) for c in raw.content),
        snapshots=tuple((_s(ss), _s(k)) for ss, k in raw.snapshots),
        ingests=tuple(_s(i) for i in raw.ingests))


def _namespace(raw: RawNamespace) -> Namespace:
    ns = _s(raw.name)
    return Namespace(
        name=ns, labels=_labels(raw.labels),
        images=tuple(Image(ns, _s(i.name), _s(i.target_digest), _s(i.target_mediatype),
                           i.target_size, _labels(i.labels)) for i in raw.images),
        containers=tuple(Container(ns, _s(c.id), _s(c.image), _s(c.snapshotter),
                                   _s(c.snapshot_key), _s(c.runtime), _labels(c.labels))
                         for c in raw.containers),
        snapshots=tuple(MetaSnapshot(ns, _s(s.snapshotter), _s(s.key), _s(s.backend_key),
                                     _s(s.parent), tuple(_s(c) for c in s.children),
                                     _labels(s.labels)) for s in raw.snapshots),
        blobs=tuple(Blob(ns, _s(b.digest), b.size, _labels(b.labels)) for b in raw.blobs),
        ingests=tuple(Ingest(ns, _s(i.ref), _s(i.backend_ref), _s(i.expected), i.expire_at)
                      for i in raw.ingests),
        leases=tuple(_lease(ns, lease) for lease in raw.leases))


def _backend(ss: str, raw: RawBackendSnapshot) -> BackendSnapshot:
    return BackendSnapshot(ss, _s(raw.key), raw.id, _KIND_BYTES.get(raw.kind, SnapshotKind.UNKNOWN),
                           _s(raw.parent), raw.inodes, raw.size, _labels(raw.labels))


def to_domain(meta: RawMetaDB, snapshotters: Mapping[str, RawSnapshotterDB]) -> Metadata:
    """The one conversion from raw BoltDB shapes to the domain model."""
    return Metadata(
        schema_minor=meta.schema_minor,
        namespaces=tuple(_namespace(ns) for ns in meta.namespaces),
        backend={ss: tuple(_backend(ss, r) for r in db.snapshots)
                 for ss, db in sorted(snapshotters.items())},
        parents={ss: tuple(ParentIndexEntry(ss, p.parent_id, p.child_id, _s(p.child_key))
                           for p in db.parents) for ss, db in sorted(snapshotters.items())})
