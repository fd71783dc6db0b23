"""Reachability from GC roots, as containerd's metadata GC defines them, with the reasons.

Roots (per namespace): images (their target digest and ``gc.ref.*`` labels); containers
(their snapshot ``<snapshotter>/<snapshotKey>`` and labels); unexpired leases (the content,
snapshots and ingests they list; a lease expires by its ``containerd.io/gc.expire`` label);
content and snapshots labelled ``containerd.io/gc.root``; ingests whose ``expireat`` is in
the future. Edges: content -> ``containerd.io/gc.ref.content[./...]`` and
``containerd.io/gc.ref.snapshot.<snapshotter>[/...]`` label values; snapshot -> its parent and
its labels' refs; ingest -> its expected digest.

Limits: ``containerd.io/gc.flat`` leases are followed like ordinary ones, and back-reference
(``gc.bref.*``) and conditional labels of containerd 2.x are ignored. Both only make more
things look reachable: crilink may under-report what GC would collect, never over-report.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from crilink.stores.containerd_model import (
    LABEL_GC_REF_CONTENT,
    LABEL_GC_REF_SNAPSHOT,
    LABEL_GC_ROOT,
    Metadata,
    Namespace,
)

__all__ = ["Hold", "Node", "NodeType", "Reachability", "compute_reachability", "snapshot_node"]


class NodeType(StrEnum):
    CONTENT = "content"
    SNAPSHOT = "snapshot"
    INGEST = "ingest"


@dataclass(frozen=True, slots=True, order=True)
class Node:
    """One GC resource: for snapshots ``key`` is ``<snapshotter>/<snapshot key>``."""

    type: NodeType
    namespace: str
    key: str

    def __str__(self) -> str:
        return f"{self.type} {self.key}"


def snapshot_node(namespace: str, snapshotter: str, key: str) -> Node:
    return Node(NodeType.SNAPSHOT, namespace, f"{snapshotter}/{key}")


@dataclass(frozen=True, slots=True)
class Hold:
    """Why ``target`` is kept: ``holder`` is a root's description (``image NAME``,
    ``container ID``, ``lease ID (expires T)``, ``label containerd.io/gc.root``) or, for an
    edge, the node that refers to it, with ``via`` naming the edge (``parent``, a label key)."""

    target: Node
    holder: str
    source: Node | None = None
    via: str = ""

    def describe(self) -> str:
        if self.source is None:
            return self.holder
        return f"{self.source}" + (f" ({self.via})" if self.via else "")


@dataclass(slots=True)
class Reachability:
    """Every node reached, each with all its holds and the first (shortest) one."""

    holds: dict[Node, list[Hold]] = field(default_factory=dict)
    first: dict[Node, Hold] = field(default_factory=dict)

    def reachable(self, node: Node) -> bool:
        return node in self.first

    def why(self, node: Node) -> list[Hold]:
        """The chain from a root to ``node`` (root first); empty when unreachable."""
        chain: list[Hold] = []
        seen: set[Node] = set()
        current: Node | None = node
        while current is not None and current in self.first and current not in seen:
            seen.add(current)
            hold = self.first[current]
            chain.append(hold)
            current = hold.source
        return list(reversed(chain))


def label_refs(namespace: str, labels: Mapping[str, str]) -> Iterator[tuple[Node, str]]:
    """The (node, label key) pairs a labelled object refers to."""
    for key, value in labels.items():
        if key.startswith(LABEL_GC_REF_CONTENT):
            rest = key[len(LABEL_GC_REF_CONTENT):]
            if rest == "" or rest[0] in "./":
                yield Node(NodeType.CONTENT, namespace, value), key
        elif key.startswith(LABEL_GC_REF_SNAPSHOT):
            snapshotter = key[len(LABEL_GC_REF_SNAPSHOT):].split("/", 1)[0]
            yield snapshot_node(namespace, snapshotter, value), key


def _roots(ns: Namespace, now: datetime) -> Iterator[Hold]:
    n = ns.name
    for lease in ns.leases:
        if lease.expired(now):
            continue
        exp = f", expires {lease.expires.isoformat()}" if lease.expires else ""
        who = f"lease {lease.id}{exp}"
        yield from (Hold(Node(NodeType.CONTENT, n, d), who) for d in lease.content)
        yield from (Hold(snapshot_node(n, ss, k), who) for ss, k in lease.snapshots)
        yield from (Hold(Node(NodeType.INGEST, n, r), who) for r in lease.ingests)
    for image in ns.images:
        if image.target_digest:
            yield Hold(Node(NodeType.CONTENT, n, image.target_digest), f"image {image.name}")
        yield from (Hold(t, f"image {image.name}", via=k) for t, k in label_refs(n, image.labels))
    for c in ns.containers:
        if c.snapshotter:
            yield Hold(snapshot_node(n, c.snapshotter, c.snapshot_key), f"container {c.id}")
        yield from (Hold(t, f"container {c.id}", via=k) for t, k in label_refs(n, c.labels))
    yield from (Hold(Node(NodeType.CONTENT, n, b.digest), f"label {LABEL_GC_ROOT}")
                for b in ns.blobs if LABEL_GC_ROOT in b.labels)
    yield from (Hold(snapshot_node(n, s.snapshotter, s.key), f"label {LABEL_GC_ROOT}")
                for s in ns.snapshots if LABEL_GC_ROOT in s.labels)
    yield from (Hold(Node(NodeType.INGEST, n, i.ref), f"ingest expires {i.expire_at.isoformat()}")
                for i in ns.ingests if i.expire_at is not None and i.expire_at >= now)


class _Graph:
    """Out-edges of every node of one namespace, from meta.db."""

    def __init__(self, ns: Namespace) -> None:
        n = ns.name
        self.edges: dict[Node, list[tuple[Node, str]]] = {}
        for b in ns.blobs:
            self.edges[Node(NodeType.CONTENT, n, b.digest)] = list(label_refs(n, b.labels))
        for s in ns.snapshots:
            out = list(label_refs(n, s.labels))
            if s.parent:
                out.insert(0, (snapshot_node(n, s.snapshotter, s.parent), "parent"))
            self.edges[snapshot_node(n, s.snapshotter, s.key)] = out
        for i in ns.ingests:
            if i.expected:
                self.edges[Node(NodeType.INGEST, n, i.ref)] = [
                    (Node(NodeType.CONTENT, n, i.expected), "expected")]


def compute_reachability(meta: Metadata, now: datetime) -> Reachability:
    """Walk from every root of every namespace; record every hold on every node reached."""
    result = Reachability()
    for ns in meta.namespaces:
        graph = _Graph(ns)
        queue: deque[Node] = deque()
        for hold in _roots(ns, now):
            _add(result, hold, queue)
        while queue:
            node = queue.popleft()
            for target, via in graph.edges.get(node, ()):
                _add(result, Hold(target, "", node, via), queue)
    return result


def _add(result: Reachability, hold: Hold, queue: deque[Node]) -> None:
    result.holds.setdefault(hold.target, []).append(hold)
    if hold.target not in result.first:
        result.first[hold.target] = hold
        queue.append(hold.target)
