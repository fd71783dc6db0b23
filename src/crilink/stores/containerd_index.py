"""Lookups across one :class:`ContainerdState`: records by key and id, dirs, sizes, reachability.

Built once per read; checks, the snapshot tree and the GC plan all ask the same index.
Sizes are measured lazily (hard-link aware, :mod:`crilink.stores.usage`) and cached.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime

from crilink.errors import InputError
from crilink.stores.containerd import ContainerdState
from crilink.stores.containerd_disk import SnapshotDir, snapshotter_dir
from crilink.stores.containerd_gc import Node, NodeType, Reachability, compute_reachability
from crilink.stores.containerd_model import BackendSnapshot, MetaSnapshot
from crilink.stores.usage import Usage, usage_each, usage_of

__all__ = ["StoreIndex"]

SSKey = tuple[str, str]  # (snapshotter, key)


class StoreIndex:
    """Everything a check needs to look up, for one state read and one ``now``."""

    def __init__(self, state: ContainerdState, now: datetime) -> None:
        self.state = state
        self.now = now
        self.reach: Reachability = compute_reachability(state.metadata, now)
        meta = state.metadata
        self.backend: dict[SSKey, BackendSnapshot] = {
            (ss, r.key): r for ss, recs in meta.backend.items() for r in recs}
        self.backend_by_id: dict[tuple[str, int], BackendSnapshot] = {
            (r.snapshotter, r.id): r for r in self.backend.values()}
        self.meta_snaps: dict[tuple[str, str, str], MetaSnapshot] = {
            (s.namespace, s.snapshotter, s.key): s for ns in meta.namespaces for s in ns.snapshots}
        self.meta_by_backend: dict[SSKey, MetaSnapshot] = {
            (s.snapshotter, s.backend_key): s for s in self.meta_snaps.values()}
        self.dirs: dict[tuple[str, int], SnapshotDir] = {
            (d.snapshotter, d.id): d for d in state.disk.snapshot_dirs if d.id is not None}
        self.container_keys: dict[tuple[str, str, str], list[str]] = {}
        for ns in meta.namespaces:
            for c in ns.containers:
                self.container_keys.setdefault((ns.name, c.snapshotter, c.snapshot_key),
                                               []).append(c.id)
        self._sizes: dict[tuple[str, ...], Usage] = {}
        self._dir_paths = {d.path for d in state.disk.snapshot_dirs}
        self._dirs_measured = state.dir_sizes is not None
        if state.dir_sizes is not None:
            self._sizes.update(((p,), u) for p, u in state.dir_sizes.items())

    # --- paths and sizes

    def usage(self, paths: Iterable[str]) -> Usage:
        """Hard-link-aware usage of store-relative ``paths`` taken together (cached).

        The first time one snapshot dir is asked for, every snapshot dir is measured, each on
        its own and several at once (:func:`usage_each`): the checks and the tree ask for
        nearly all of them.
        """
        key = tuple(sorted(set(paths)))
        if (key not in self._sizes and len(key) == 1 and key[0] in self._dir_paths
                and not self._dirs_measured):
            self._measure_dirs()
        if key not in self._sizes:
            self._sizes[key] = usage_of([self.state.root / p for p in key])
        return self._sizes[key]

    def _measure_dirs(self) -> None:
        self._dirs_measured = True
        rels = sorted(self._dir_paths)
        root = os.fspath(self.state.root)
        try:
            sizes = usage_each([f"{root}/{p}" for p in rels])
        except InputError:
            return  # measured one at a time, so that the error names the dir asked for
        self._sizes.update(((p,), u) for p, u in zip(rels, sizes, strict=True))

    def bytes_of(self, *paths: str) -> int:
        return self.usage(paths).exclusive

    def dir_of(self, record: BackendSnapshot) -> SnapshotDir | None:
        return self.dirs.get((record.snapshotter, record.id))

    def dir_path(self, snapshotter: str, sid: int) -> str:
        return f"{snapshotter_dir(snapshotter)}/snapshots/{sid}"

    def record_of(self, snap: MetaSnapshot) -> BackendSnapshot | None:
        return self.backend.get((snap.snapshotter, snap.backend_key))

    def snapshot_path(self, snap: MetaSnapshot) -> str:
        rec = self.record_of(snap)
        if rec is not None:
            return self.dir_path(snap.snapshotter, rec.id)
        return f"{snapshotter_dir(snap.snapshotter)}/metadata.db"

    def snapshot_bytes(self, snap: MetaSnapshot) -> int | None:
        rec = self.record_of(snap)
        d = self.dir_of(rec) if rec is not None else None
        return self.bytes_of(d.path) if d is not None else None

    # --- reachability

    def snap_node(self, snap: MetaSnapshot) -> Node:
        return Node(NodeType.SNAPSHOT, snap.namespace, f"{snap.snapshotter}/{snap.key}")

    def snapshot_reachable(self, snap: MetaSnapshot) -> bool:
        return self.reach.reachable(self.snap_node(snap))

    def owners(self, snap: MetaSnapshot) -> list[str]:
        """Containers whose snapshot this is."""
        return self.container_keys.get((snap.namespace, snap.snapshotter, snap.key), [])
