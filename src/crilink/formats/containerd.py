"""Raw shapes of containerd's two BoltDB files, decoded exactly, with no interpretation.

``io.containerd.metadata.v1.bolt/meta.db`` (the metadata plugin)::

    v1/version = <uvarint schema minor>
    v1/<namespace>/labels/<k> = <v>
    v1/<ns>/images/<name>/{createdat,updatedat,target/{digest,mediatype,size},labels/,annotations/}
    v1/<ns>/containers/<id>/{image,snapshotter,snapshotKey,runtime/{name},labels/,...}
    v1/<ns>/snapshots/<snapshotter>/<key>/{name,parent,children/<key>,labels/,createdat,...}
    v1/<ns>/content/blob/<digest>/{size,labels/,createdat,updatedat}
    v1/<ns>/content/ingests/<ref>/{ref,expected,expireat}
    v1/<ns>/leases/<id>/{createdat,labels/,content/<digest>,snapshots/<ss>/<key>,ingests/<ref>}

``io.containerd.snapshotter.v1.<name>/metadata.db`` (the snapshotter's own storage)::

    v1/snapshots/<backend key>/{id,kind,parent,inodes,size,createdat,updatedat,labels/}
    v1/parents/<uvarint parent id> 0x00 <uvarint child id> = <child backend key>

Sizes in meta.db and usage in metadata.db are zigzag varints, ids uvarints, times Go binary
times (:mod:`crilink.formats.gobinary`). A backend key is ``<ns>/<meta.db sequence>/<key>``.

The readers take any object with the bucket API of :mod:`crilink.formats.bolt`
(:class:`BoltBucket` below) and raise :class:`crilink.errors.CorruptInputError` on a value
that does not decode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from crilink.errors import CorruptInputError
from crilink.formats.gobinary import go_time, uvarint, varint

__all__ = [
    "BoltBucket",
    "RawBackendSnapshot",
    "RawBlob",
    "RawContainer",
    "RawImage",
    "RawIngest",
    "RawLease",
    "RawMetaDB",
    "RawMetaSnapshot",
    "RawNamespace",
    "RawParentEntry",
    "RawSnapshotterDB",
    "read_meta_db",
    "read_snapshotter_db",
]

# --- bucket and key names (meta.db)
B_V1 = b"v1"
K_VERSION = b"version"
B_LABELS = b"labels"
B_ANNOTATIONS = b"annotations"
B_IMAGES = b"images"
B_CONTAINERS = b"containers"
B_SNAPSHOTS = b"snapshots"
B_CONTENT = b"content"
B_BLOB = b"blob"
B_INGESTS = b"ingests"
B_LEASES = b"leases"
B_TARGET = b"target"
B_RUNTIME = b"runtime"
B_CHILDREN = b"children"
K_DIGEST = b"digest"
K_MEDIATYPE = b"mediatype"
K_SIZE = b"size"
K_IMAGE = b"image"
K_NAME = b"name"
K_PARENT = b"parent"
K_SNAPSHOTTER = b"snapshotter"
K_SNAPSHOT_KEY = b"snapshotKey"
K_CREATED = b"createdat"
K_UPDATED = b"updatedat"
K_REF = b"ref"
K_EXPECTED = b"expected"
K_EXPIRE_AT = b"expireat"
# --- bucket and key names (snapshotter metadata.db)
B_PARENTS = b"parents"
K_ID = b"id"
K_KIND = b"kind"
K_INODES = b"inodes"
PARENT_SEPARATOR = 0x00


class BoltBucket(Protocol):
    """The read-only bucket API these readers use (met by ``crilink.formats.bolt.Bucket``)."""

    def get(self, key: bytes) -> bytes | None: ...

    def bucket(self, name: bytes) -> BoltBucket | None: ...

    def items(self) -> Iterable[tuple[bytes, bytes]]: ...

    def buckets(self) -> Iterable[tuple[bytes, BoltBucket]]: ...


@dataclass(frozen=True, slots=True)
class RawImage:
    name: bytes
    target_digest: bytes
    target_mediatype: bytes
    target_size: int | None
    labels: Mapping[bytes, bytes]
    created: datetime | None


@dataclass(frozen=True, slots=True)
class RawContainer:
    id: bytes
    image: bytes
    snapshotter: bytes
    snapshot_key: bytes
    runtime: bytes
    labels: Mapping[bytes, bytes]


@dataclass(frozen=True, slots=True)
class RawMetaSnapshot:
    snapshotter: bytes
    key: bytes
    backend_key: bytes
    parent: bytes
    children: tuple[bytes, ...]
    labels: Mapping[bytes, bytes]
    created: datetime | None


@dataclass(frozen=True, slots=True)
class RawBlob:
    digest: bytes
    size: int | None
    labels: Mapping[bytes, bytes]
    created: datetime | None


@dataclass(frozen=True, slots=True)
class RawIngest:
    ref: bytes
    backend_ref: bytes
    expected: bytes
    expire_at: datetime | None


@dataclass(frozen=True, slots=True)
class RawLease:
    id: bytes
    created: datetime | None
    labels: Mapping[bytes, bytes]
    content: tuple[bytes, ...]
    snapshots: tuple[tuple[bytes, bytes], ...]  # (snapshotter, key)
    ingests: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RawNamespace:
    name: bytes
    labels: Mapping[bytes, bytes]
    images: tuple[RawImage, ...]
    containers: tuple[RawContainer, ...]
    snapshots: tuple[RawMetaSnapshot, ...]
    blobs: tuple[RawBlob, ...]
    ingests: tuple[RawIngest, ...]
    leases: tuple[RawLease, ...]


@dataclass(frozen=True, slots=True)
class RawMetaDB:
    schema_minor: int | None
    namespaces: tuple[RawNamespace, ...]


@dataclass(frozen=True, slots=True)
class RawBackendSnapshot:
    key: bytes
    id: int
    kind: int
    parent: bytes
    inodes: int | None
    size: int | None
    labels: Mapping[bytes, bytes]
    created: datetime | None


@dataclass(frozen=True, slots=True)
class RawParentEntry:
    parent_id: int
    child_id: int
    child_key: bytes


@dataclass(frozen=True, slots=True)
class RawSnapshotterDB:
    snapshots: tuple[RawBackendSnapshot, ...]
    parents: tuple[RawParentEntry, ...]


# --- helpers


def _labels(bkt: BoltBucket, name: bytes = B_LABELS) -> dict[bytes, bytes]:
    sub = bkt.bucket(name)
    return dict(sub.items()) if sub is not None else {}


def _time(bkt: BoltBucket, key: bytes, where: str) -> datetime | None:
    """A Go binary time, or None when absent or undecodable. One damaged timestamp must not
    make the whole store unreadable: a creation time is only shown, and an expiry that cannot
    be read counts as none, so the lease or ingest is kept (the safe reading for GC)."""
    value = bkt.get(key)
    if not value:
        return None
    try:
        return go_time(value, f"{where}/{key.decode()}")
    except CorruptInputError:
        return None


def _int(bkt: BoltBucket, key: bytes, where: str, signed: bool = True) -> int | None:
    value = bkt.get(key)
    if not value:
        return None
    decode = varint if signed else uvarint
    return decode(value, f"{where}/{key.decode()}")[0]


def _where(*parts: bytes) -> str:
    return "/".join(p.decode("utf-8", "backslashreplace") for p in parts)


def _subs(bkt: BoltBucket | None, name: bytes) -> Iterable[tuple[bytes, BoltBucket]]:
    sub = bkt.bucket(name) if bkt is not None else None
    return sub.buckets() if sub is not None else ()


def _keys(bkt: BoltBucket | None) -> tuple[bytes, ...]:
    if bkt is None:
        return ()
    return tuple(k for k, _ in bkt.items()) + tuple(k for k, _ in bkt.buckets())


# --- meta.db


def _image(ns: bytes, name: bytes, bkt: BoltBucket) -> RawImage:
    where = _where(ns, B_IMAGES, name)
    target = bkt.bucket(B_TARGET)
    return RawImage(
        name=name,
        target_digest=(target.get(K_DIGEST) or b"") if target else b"",
        target_mediatype=(target.get(K_MEDIATYPE) or b"") if target else b"",
        target_size=_int(target, K_SIZE, where) if target else None,
        labels=_labels(bkt), created=_time(bkt, K_CREATED, where))


def _container(cid: bytes, bkt: BoltBucket) -> RawContainer:
    runtime = bkt.bucket(B_RUNTIME)
    return RawContainer(
        id=cid, image=bkt.get(K_IMAGE) or b"", snapshotter=bkt.get(K_SNAPSHOTTER) or b"",
        snapshot_key=bkt.get(K_SNAPSHOT_KEY) or b"",
        runtime=(runtime.get(K_NAME) or b"") if runtime else b"", labels=_labels(bkt))


def _meta_snapshots(ns: bytes, nsb: BoltBucket) -> list[RawMetaSnapshot]:
    out = []
    for snapshotter, ssb in _subs(nsb, B_SNAPSHOTS):
        for key, bkt in ssb.buckets():
            where = _where(ns, B_SNAPSHOTS, snapshotter, key)
            out.append(RawMetaSnapshot(
                snapshotter=snapshotter, key=key, backend_key=bkt.get(K_NAME) or b"",
                parent=bkt.get(K_PARENT) or b"", children=_keys(bkt.bucket(B_CHILDREN)),
                labels=_labels(bkt), created=_time(bkt, K_CREATED, where)))
    return out


def _lease(ns: bytes, lid: bytes, bkt: BoltBucket) -> RawLease:
    snaps = tuple((ss, key) for ss, ssb in _subs(bkt, B_SNAPSHOTS) for key in _keys(ssb))
    return RawLease(
        id=lid, created=_time(bkt, K_CREATED, _where(ns, B_LEASES, lid)), labels=_labels(bkt),
        content=_keys(bkt.bucket(B_CONTENT)), snapshots=snaps,
        ingests=_keys(bkt.bucket(B_INGESTS)))


def _content(ns: bytes, nsb: BoltBucket) -> tuple[list[RawBlob], list[RawIngest]]:
    content = nsb.bucket(B_CONTENT)
    blobs = [RawBlob(digest=d, size=_int(b, K_SIZE, _where(ns, B_BLOB, d)), labels=_labels(b),
                     created=_time(b, K_CREATED, _where(ns, B_BLOB, d)))
             for d, b in _subs(content, B_BLOB)]
    ingests = [RawIngest(ref=r, backend_ref=b.get(K_REF) or b"", expected=b.get(K_EXPECTED) or b"",
                         expire_at=_time(b, K_EXPIRE_AT, _where(ns, B_INGESTS, r)))
               for r, b in _subs(content, B_INGESTS)]
    return blobs, ingests


def _namespace(ns: bytes, nsb: BoltBucket) -> RawNamespace:
    blobs, ingests = _content(ns, nsb)
    return RawNamespace(
        name=ns, labels=_labels(nsb),
        images=tuple(_image(ns, n, b) for n, b in _subs(nsb, B_IMAGES)),
        containers=tuple(_container(c, b) for c, b in _subs(nsb, B_CONTAINERS)),
        snapshots=tuple(_meta_snapshots(ns, nsb)), blobs=tuple(blobs), ingests=tuple(ingests),
        leases=tuple(_lease(ns, lid, b) for lid, b in _subs(nsb, B_LEASES)))


def read_meta_db(root: BoltBucket) -> RawMetaDB:
    """Every namespace of a meta.db, given the database's root bucket."""
    v1 = root.bucket(B_V1)
    if v1 is None:
        return RawMetaDB(None, ())
    return RawMetaDB(
        schema_minor=_int(v1, K_VERSION, "v1", signed=True),
        namespaces=tuple(_namespace(ns, b) for ns, b in v1.buckets()))


# --- snapshotter metadata.db


def _backend_snapshot(key: bytes, bkt: BoltBucket) -> RawBackendSnapshot:
    where = _where(B_SNAPSHOTS, key)
    sid = _int(bkt, K_ID, where, signed=False)
    kind = bkt.get(K_KIND) or b""
    if sid is None:
        raise CorruptInputError(f"read metadata.db: snapshot {where} has no id")
    return RawBackendSnapshot(
        key=key, id=sid, kind=kind[0] if len(kind) == 1 else 0, parent=bkt.get(K_PARENT) or b"",
        inodes=_int(bkt, K_INODES, where), size=_int(bkt, K_SIZE, where), labels=_labels(bkt),
        created=_time(bkt, K_CREATED, where))


def parse_parent_key(key: bytes) -> tuple[int, int]:
    """Split a ``v1/parents`` key into (parent id, child id)."""
    parent, used = uvarint(key, "parents key")
    if used >= len(key) or key[used] != PARENT_SEPARATOR:
        raise CorruptInputError(f"read metadata.db: parents key {key.hex()} lacks its separator")
    child, used2 = uvarint(key[used + 1:], "parents key")
    if used + 1 + used2 != len(key):
        raise CorruptInputError(f"read metadata.db: parents key {key.hex()} has trailing bytes")
    return parent, child


def read_snapshotter_db(root: BoltBucket) -> RawSnapshotterDB:
    """The snapshot records and the parents index of a snapshotter's metadata.db."""
    v1 = root.bucket(B_V1)
    if v1 is None:
        return RawSnapshotterDB((), ())
    snaps = tuple(_backend_snapshot(k, b) for k, b in _subs(v1, B_SNAPSHOTS))
    pb = v1.bucket(B_PARENTS)
    parents = []
    for key, value in (pb.items() if pb is not None else ()):
        pid, cid = parse_parent_key(key)
        parents.append(RawParentEntry(pid, cid, value))
    return RawSnapshotterDB(snaps, tuple(parents))
