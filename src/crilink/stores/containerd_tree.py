"""The snapshot tree of each namespace, as data: kind, exclusive bytes, what holds each one.

``held_by`` lists direct holds (``image NAME`` via its config's label, ``container ID``,
``lease ID, expires T``, ``label containerd.io/gc.root``, ``child KEY``); ``why`` gives the
whole chain from a GC root. The summary splits bytes into in use and reclaimable by category.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crilink.model import Finding
from crilink.stores.containerd_gc import Hold, Node, NodeType
from crilink.stores.containerd_index import StoreIndex
from crilink.stores.containerd_model import MetaSnapshot

__all__ = ["NamespaceTree", "SnapshotEntry", "build_trees", "why"]


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    namespace: str
    snapshotter: str
    key: str
    parent: str
    kind: str
    id: int | None
    path: str
    bytes: int | None
    held_by: tuple[str, ...]
    children: tuple[str, ...]
    reachable: bool

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "snapshotter": self.snapshotter, "key": self.key,
                "parent": self.parent or None, "kind": self.kind, "id": self.id,
                "path": self.path, "bytes": self.bytes, "held_by": list(self.held_by),
                "children": list(self.children), "reachable": self.reachable}


@dataclass(frozen=True, slots=True)
class NamespaceTree:
    namespace: str
    entries: tuple[SnapshotEntry, ...]
    bytes_in_use: int
    reclaimable: dict[str, int]

    def roots(self) -> list[SnapshotEntry]:
        """Entries to start the tree from: those without a parent here, then one member of
        each parent cycle (which no true root reaches), so that every entry is shown."""
        by_key = self.by_key()
        out = [e for e in self.entries if not e.parent or e.parent not in by_key]
        seen: set[str] = set()
        for e in out:
            seen.update(_below(e.key, by_key))
        for e in self.entries:
            if e.key in seen:
                continue
            cur, path = e, set()
            while cur.key not in path:  # follow parents: every remaining chain ends in a cycle
                path.add(cur.key)
                cur = by_key[cur.parent]
            out.append(cur)
            seen.update(_below(cur.key, by_key))
        return out

    def walk(self) -> Iterator[tuple[SnapshotEntry, int]]:
        """Every entry once, depth first from :meth:`roots`, with its depth."""
        by_key, seen = self.by_key(), set()
        stack = [(r, 0) for r in reversed(self.roots())]
        while stack:
            e, depth = stack.pop()
            if e.key in seen:
                continue
            seen.add(e.key)
            yield e, depth
            stack.extend((by_key[c], depth + 1) for c in reversed(e.children)
                         if c in by_key and c not in seen)

    def by_key(self) -> dict[str, SnapshotEntry]:
        return {e.key: e for e in self.entries}

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "bytes_in_use": self.bytes_in_use,
                "reclaimable": self.reclaimable, "snapshots": [e.to_json() for e in self.entries]}


def _below(key: str, by_key: dict[str, SnapshotEntry]) -> set[str]:
    """``key`` and every entry below it through children (cycles are walked once)."""
    out, stack = set(), [key]
    while stack:
        k = stack.pop()
        if k in out or k not in by_key:
            continue
        out.add(k)
        stack.extend(by_key[k].children)
    return out


def _root_of(ix: StoreIndex, hold: Hold) -> str:
    """A hold as text; a label edge from content is traced back to the image that holds it."""
    if hold.source is None:
        return hold.holder
    if hold.via == "parent":
        return f"child {hold.source.key.split('/', 1)[1]}"
    chain = ix.reach.why(hold.source)
    origin = chain[0].holder if chain else "?"
    return f"{origin} via {hold.source.type} {hold.source.key[:19]} ({hold.via})"


def _entry(ix: StoreIndex, snap: MetaSnapshot, children: list[str]) -> SnapshotEntry:
    rec = ix.record_of(snap)
    node = ix.snap_node(snap)
    holds = ix.reach.holds.get(node, []) if ix.reach.reachable(node) else []
    held = sorted({_root_of(ix, h) for h in holds if h.via != "parent"})
    held += [f"child {c}" for c in children if c != snap.key and ix.reach.reachable(
        Node(NodeType.SNAPSHOT, snap.namespace, f"{snap.snapshotter}/{c}"))]
    return SnapshotEntry(snap.namespace, snap.snapshotter, snap.key, snap.parent,
                         str(rec.kind) if rec else "unknown", rec.id if rec else None,
                         ix.snapshot_path(snap), ix.snapshot_bytes(snap), tuple(held),
                         tuple(sorted(children)), ix.reach.reachable(node))


def build_trees(ix: StoreIndex, found: list[Finding],
                namespace: str | None = None) -> list[NamespaceTree]:
    """One tree per namespace (or only ``namespace``), with the summary from ``found``."""
    out = []
    for ns in ix.state.metadata.namespaces:
        if namespace is not None and ns.name != namespace:
            continue
        kids: dict[str, list[str]] = defaultdict(list)
        for s in ns.snapshots:
            if s.parent:
                kids[s.parent].append(s.key)
        entries = tuple(sorted((_entry(ix, s, kids[s.key]) for s in ns.snapshots),
                               key=lambda e: e.key))
        reclaim: dict[str, int] = defaultdict(int)
        for f in found:
            if f.namespace == ns.name and f.bytes:
                reclaim[f.kind] += f.bytes
        in_use = sum(e.bytes or 0 for e in entries if e.reachable)
        out.append(NamespaceTree(ns.name, entries, in_use, dict(sorted(reclaim.items()))))
    return out


def why(ix: StoreIndex, namespace: str, key: str, snapshotter: str = "overlayfs") -> list[str]:
    """The chain that keeps one snapshot alive, root first; empty when nothing does."""
    node = Node(NodeType.SNAPSHOT, namespace, f"{snapshotter}/{key}")
    lines = []
    for hold in ix.reach.why(node):
        what = f"{hold.target.type} {hold.target.key}"
        lines.append(f"{hold.holder} -> {what}" if hold.source is None
                     else f"  {hold.source.type} {hold.source.key} --{hold.via}--> {what}")
    return lines
