"""Snapshot findings: the snapshotter's records, meta.db's snapshots and the dirs, reconciled.

Kinds (bytes only on the finding that owns them, so that totals never count a dir twice):
``orphan_dir``, ``missing_dir``, ``dangling_parent``, ``ghost_child``, ``backend_unreferenced``,
``backend_missing`` (a meta.db snapshot whose snapshotter record is gone),
``unreferenced_snapshot``, ``ownerless_active``, ``extract_leftover``, ``parent_cycle`` (a
snapshot that is its own ancestor: it can never be mounted, nor removed leaf-first).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import TypeVar

from crilink.model import Finding, Severity
from crilink.stores.containerd_index import StoreIndex
from crilink.stores.containerd_model import BackendSnapshot, SnapshotKind

__all__ = ["EXTRACT_PREFIX", "parent_cycles", "snapshot_findings"]

K = TypeVar("K", bound=Hashable)
EXTRACT_PREFIX = "extract-"  # containerd's unpacker names its temporary active snapshots so


def _record_finding(ix: StoreIndex, kind: str, rec: BackendSnapshot, *, sev: Severity, msg: str,
                    with_bytes: bool = False, **detail: object) -> Finding:
    d = ix.dir_of(rec)
    path = d.path if d is not None else ix.dir_path(rec.snapshotter, rec.id)
    return Finding(kind, sev, path, msg, namespace=rec.namespace, key=rec.key, id=str(rec.id),
                   bytes=ix.bytes_of(d.path) if with_bytes and d is not None else None,
                   detail={"snapshotter": rec.snapshotter, "kind": str(rec.kind), **detail})


def _orphan_dirs(ix: StoreIndex) -> Iterator[Finding]:
    for d in ix.state.disk.snapshot_dirs:
        if d.id is not None and (d.snapshotter, d.id) in ix.backend_by_id:
            continue
        what = "temporary dir of an interrupted create" if d.id is None else "no snapshotter record"
        yield Finding("orphan_dir", Severity.WARNING, d.path,
                      f"snapshot dir with {what}; containerd will never use or remove it",
                      id=d.name, bytes=ix.bytes_of(d.path), detail={"snapshotter": d.snapshotter})


def _missing_dirs(ix: StoreIndex) -> Iterator[Finding]:
    broken: dict[tuple[str, str], str] = {}
    for rec in ix.backend.values():
        d = ix.dir_of(rec)
        if d is None or not d.has_fs:
            broken[(rec.snapshotter, rec.key)] = "dir missing" if d is None else "fs/ missing"
    ancestors = _ancestor_reasons(ix, broken) if broken else {}
    for rec in ix.backend.values():
        reason = broken.get((rec.snapshotter, rec.key)) or ancestors.get((rec.snapshotter, rec.key))
        if reason:
            yield _record_finding(ix, "missing_dir", rec, sev=Severity.ERROR,
                                  msg=f"snapshot cannot be mounted: {reason}", reason=reason)


def _parent_rec(ix: StoreIndex, rec: BackendSnapshot) -> BackendSnapshot | None:
    return ix.backend.get((rec.snapshotter, rec.parent)) if rec.parent else None


def _ancestor_reasons(ix: StoreIndex, broken: dict[tuple[str, str], str]
                      ) -> dict[tuple[str, str], str | None]:
    """:func:`_broken_ancestor` of every record, each parent chain followed once: a record's
    answer is its parent's (when the parent is not broken itself). Chains that loop are
    answered one record at a time."""
    memo: dict[tuple[str, str], str | None] = {}
    for rec in ix.backend.values():
        chain: list[BackendSnapshot] = []
        on_chain: set[tuple[str, str]] = set()
        cur: BackendSnapshot | None = rec
        while cur is not None and (k := (cur.snapshotter, cur.key)) not in memo \
                and k not in on_chain:
            chain.append(cur)
            on_chain.add(k)
            cur = _parent_rec(ix, cur)
        if cur is not None and (cur.snapshotter, cur.key) in on_chain:
            for r in chain:
                memo[(r.snapshotter, r.key)] = _broken_ancestor(ix, r, broken)
            continue
        above = memo[(cur.snapshotter, cur.key)] if cur is not None else None
        for r in reversed(chain):
            if cur is not None and (cur.snapshotter, cur.key) in broken:
                above = f"ancestor {cur.key} (id {cur.id}) has its dir or fs/ missing"
            memo[(r.snapshotter, r.key)] = above
            cur = r
    return memo


def _broken_ancestor(ix: StoreIndex, rec: BackendSnapshot,
                     broken: dict[tuple[str, str], str]) -> str | None:
    seen = {rec.key}
    parent = _parent_rec(ix, rec)
    while parent is not None and parent.key not in seen:
        if (parent.snapshotter, parent.key) in broken:
            return f"ancestor {parent.key} (id {parent.id}) has its dir or fs/ missing"
        seen.add(parent.key)
        parent = _parent_rec(ix, parent)
    return None


def _dangling_parents(ix: StoreIndex) -> Iterator[Finding]:
    for rec in ix.backend.values():
        if rec.parent and (rec.snapshotter, rec.parent) not in ix.backend:
            yield _record_finding(ix, "dangling_parent", rec, sev=Severity.ERROR,
                                  msg=f"parent record {rec.parent} is missing from metadata.db",
                                  parent=rec.parent, db="metadata.db")
    for snap in ix.meta_snaps.values():
        if snap.parent and (snap.namespace, snap.snapshotter, snap.parent) not in ix.meta_snaps:
            yield Finding("dangling_parent", Severity.ERROR, ix.snapshot_path(snap),
                          f"parent {snap.parent} is missing from meta.db", namespace=snap.namespace,
                          key=snap.key, detail={"snapshotter": snap.snapshotter,
                                                "parent": snap.parent, "db": "meta.db"})


def _ghost_children(ix: StoreIndex) -> Iterator[Finding]:
    for snap in ix.meta_snaps.values():
        for child in snap.children:
            if (snap.namespace, snap.snapshotter, child) not in ix.meta_snaps:
                yield Finding("ghost_child", Severity.WARNING, ix.snapshot_path(snap),
                              f"children bucket names {child}, which does not exist: "
                              "containerd refuses to remove this snapshot",
                              namespace=snap.namespace, key=snap.key,
                              detail={"snapshotter": snap.snapshotter, "child": child,
                                      "db": "meta.db"})
    for ss, entries in ix.state.metadata.parents.items():
        for e in entries:
            crec = ix.backend_by_id.get((ss, e.child_id))
            prec = ix.backend_by_id.get((ss, e.parent_id))
            if prec is not None and crec is not None and crec.key == e.child_key:
                continue
            why = ("the parent's record is gone (see dangling_parent)" if prec is None
                   else "the snapshotter refuses to remove the parent")
            yield Finding("ghost_child", Severity.WARNING, ix.dir_path(ss, e.parent_id),
                          f"parents index entry {e.parent_id}->{e.child_id} names a snapshot that "
                          f"does not exist: {why}",
                          namespace=e.child_key.split("/", 1)[0], key=e.child_key,
                          id=str(e.parent_id), detail={"snapshotter": ss, "child_id": e.child_id,
                                                       "db": "metadata.db"})


def _backend_side(ix: StoreIndex) -> Iterator[Finding]:
    for rec in ix.backend.values():
        if (rec.snapshotter, rec.key) not in ix.meta_by_backend:
            yield _record_finding(ix, "backend_unreferenced", rec, sev=Severity.WARNING,
                                  msg="snapshotter record that no namespace of meta.db knows; "
                                  "containerd's GC removes it only after another removal here",
                                  with_bytes=True)
    for snap in ix.meta_snaps.values():
        if ix.record_of(snap) is None and snap.backend_key:
            yield Finding("backend_missing", Severity.ERROR, ix.snapshot_path(snap),
                          f"meta.db snapshot whose snapshotter record {snap.backend_key} is gone",
                          namespace=snap.namespace, key=snap.key,
                          detail={"snapshotter": snap.snapshotter, "backend_key": snap.backend_key})


def _meta_side(ix: StoreIndex) -> Iterator[Finding]:
    for snap in ix.meta_snaps.values():
        rec = ix.record_of(snap)
        sid = str(rec.id) if rec is not None else None
        reachable = ix.snapshot_reachable(snap)
        size = ix.snapshot_bytes(snap)
        base = {"snapshotter": snap.snapshotter, "kind": str(rec.kind) if rec else "unknown"}
        path = ix.snapshot_path(snap)
        if not reachable:
            yield Finding("unreferenced_snapshot", Severity.WARNING, path,
                          "no GC root reaches it: containerd's GC deletes it on its next pass",
                          namespace=snap.namespace, key=snap.key, id=sid, bytes=size, detail=base)
        active = rec is not None and rec.kind == SnapshotKind.ACTIVE
        extra = {**base, "dir_bytes": size} if reachable else base
        owned_bytes = size if reachable else None
        if active and snap.key.startswith(EXTRACT_PREFIX):
            chain = ix.reach.why(ix.snap_node(snap)) if reachable else []
            held = chain[0].holder if chain else ""
            yield Finding("extract_leftover", Severity.WARNING, path,
                          "active snapshot of an interrupted unpack"
                          + (f"; held by {held}: reclaimable once that ends" if held else ""),
                          namespace=snap.namespace, key=snap.key, id=sid, bytes=owned_bytes,
                          detail={**extra, "held_by": held} if held else extra)
        elif active and not ix.owners(snap):
            yield Finding("ownerless_active", Severity.WARNING, path,
                          "active snapshot that no container uses", namespace=snap.namespace,
                          key=snap.key, id=sid, bytes=owned_bytes, detail=extra)


def parent_cycles(parent: Mapping[K, K]) -> list[list[K]]:
    """The cycles of the parent relation ``parent`` (child -> parent), each once, in parent
    order from its first member met; linear in the number of keys."""
    state: dict[K, int] = {}  # 1: on the chain being followed, 2: done
    cycles: list[list[K]] = []
    for start in parent:
        chain: list[K] = []
        cur = start
        while cur in parent and cur not in state:
            state[cur] = 1
            chain.append(cur)
            cur = parent[cur]
        if state.get(cur) == 1:  # the chain came back onto itself
            cycles.append(chain[chain.index(cur):])
        for k in chain:
            state[k] = 2
    return cycles


def _parent_cycles(ix: StoreIndex) -> Iterator[Finding]:
    meta = {k: (k[0], k[1], s.parent) for k, s in ix.meta_snaps.items() if s.parent}
    for cycle in parent_cycles(meta):
        keys = [k[2] for k in cycle]
        for k in cycle:
            snap = ix.meta_snaps[k]
            yield Finding("parent_cycle", Severity.ERROR, ix.snapshot_path(snap),
                          "snapshot is its own ancestor: " + " -> ".join([*keys, keys[0]]),
                          namespace=snap.namespace, key=snap.key,
                          detail={"snapshotter": snap.snapshotter, "cycle": keys,
                                  "db": "meta.db"})
    backend = {k: (k[0], r.parent) for k, r in ix.backend.items() if r.parent}
    for ring in parent_cycles(backend):
        names = [k[1] for k in ring]
        for bk in ring:
            yield _record_finding(ix, "parent_cycle", ix.backend[bk], sev=Severity.ERROR,
                                  msg="snapshot record is its own ancestor: "
                                  + " -> ".join([*names, names[0]]), cycle=names,
                                  db="metadata.db")


def snapshot_findings(ix: StoreIndex) -> Iterator[Finding]:
    """Every snapshot finding of the store (all namespaces)."""
    for check in (_orphan_dirs, _missing_dirs, _dangling_parents, _parent_cycles,
                  _ghost_children, _backend_side, _meta_side):
        yield from check(ix)
