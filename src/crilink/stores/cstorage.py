"""containers-storage (podman, CRI-O, buildah) graph root behind the Store protocol.

Nouns: the *graph root* holds ``overlay-layers/``, ``overlay-images/``,
``overlay-containers/`` (JSON records) and ``overlay/`` (the overlay driver's dirs, see
:mod:`crilink.checks.overlaylinks`). The *engine* is whatever process has the store open:
podman, CRI-O, buildah, skopeo. It is *running* when one of the store's lock files is locked
(``/proc/locks``) or held open by a process (``/proc/PID/fd``).

Guarantees: read-only; never takes a lock (a held lock is reported, never waited for).
Errors: a graph root that is unreadable or not a containers-storage root raises InputError;
malformed JSON raises CorruptInputError naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from crilink.errors import InputError
from crilink.formats.cstorage import (
    CHAIN_LIMIT,
    CONTAINERS_JSON,
    DEFAULT_STORAGE_CONF,
    IMAGES_JSON,
    LAYERS_JSON,
    LOCK_FILES,
    VOLATILE_CONTAINERS_JSON,
    VOLATILE_LAYERS_JSON,
    Container,
    Image,
    Layer,
    StorageConf,
    parse_containers,
    parse_images,
    parse_layers,
    parse_storage_conf,
)
from crilink.model import TargetKind
from crilink.pathres.files import read_regular
from crilink.stores.base import RuntimeStatus
from crilink.stores.chains import ParentChains

__all__ = [
    "CStorageStore",
    "LockHolder",
    "find_lock_holders",
    "graph_root_from_conf",
    "load_storage_conf",
]

STORAGE_CONF_ENV = "CONTAINERS_STORAGE_CONF"
PROC = "/proc"
PROC_LOCKS = "/proc/locks"
RUNTIME_NAME = "podman"
CONF_LIMIT = 1 << 20  # storage.conf: a few KiB in practice


@dataclass(frozen=True, slots=True)
class LockHolder:
    """A process that locks (``how="lock"``) or holds open (``how="open"``) a lock file."""

    pid: int
    comm: str
    path: str
    how: str

    def describe(self) -> str:
        verb = "locks" if self.how == "lock" else "holds open"
        return f"{self.comm} (pid {self.pid}) {verb} {self.path}"


def load_storage_conf(path: str | None = None) -> StorageConf:
    """storage.conf's ``[storage]`` table (``path``, else ``$CONTAINERS_STORAGE_CONF`` as
    podman reads it, else /etc/containers/storage.conf); the defaults when there is none."""
    path = path or os.environ.get(STORAGE_CONF_ENV) or DEFAULT_STORAGE_CONF
    if not os.path.lexists(path):
        return StorageConf()
    return parse_storage_conf(read_regular(path, path, limit=CONF_LIMIT), path)


def graph_root_from_conf(path: str | None = None) -> str:
    """The graph root storage.conf names (``/var/lib/containers/storage`` by default)."""
    return load_storage_conf(path).graph_root


def _comm(pid: int) -> str:
    try:
        return Path(f"{PROC}/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _locked_inodes() -> Iterator[tuple[int, int, int, int]]:
    """(major, minor, inode, pid) of every lock in /proc/locks (waiters skipped)."""
    try:
        text = Path(PROC_LOCKS).read_text()
    except OSError:
        return
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":
            continue
        try:
            pid = int(fields[4])
            major, minor, ino = fields[5].split(":")
            yield int(major, 16), int(minor, 16), int(ino), pid
        except ValueError:
            continue


def _open_fds() -> Iterator[tuple[int, int, int]]:
    """(pid, st_dev, st_ino) of every file any process holds open (where we may look)."""
    me = os.getpid()
    for entry in os.scandir(PROC):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = os.listdir(f"{PROC}/{entry.name}/fd")  # noqa: PTH208 - names only, hot loop
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{PROC}/{entry.name}/fd/{fd}")  # noqa: PTH116 - hot loop
            except OSError:
                continue
            yield int(entry.name), st.st_dev, st.st_ino


def find_lock_holders(root: Path, lock_files: tuple[str, ...] = LOCK_FILES) -> list[LockHolder]:
    """Processes that lock or hold open one of ``root``'s lock files (ourselves excepted)."""
    by_inode: dict[tuple[int, int], str] = {}
    for rel in lock_files:
        try:
            st = (root / rel).stat()
        except OSError:
            continue
        by_inode[(st.st_dev, st.st_ino)] = rel
    if not by_inode:
        return []
    holders: dict[tuple[int, str], LockHolder] = {}
    me = os.getpid()
    for major, minor, ino, pid in _locked_inodes():
        locked = by_inode.get((os.makedev(major, minor), ino))
        if locked is not None and pid != me:
            holders[(pid, locked)] = LockHolder(pid, _comm(pid), locked, "lock")
    for pid, dev, ino in _open_fds():
        held = by_inode.get((dev, ino))
        if held is not None and (pid, held) not in holders:
            holders[(pid, held)] = LockHolder(pid, _comm(pid), held, "open")
    return sorted(holders.values(), key=lambda h: (h.how != "lock", h.pid, h.path))


def _read_json(root: Path, rel: str) -> bytes | None:
    """A metadata file's bytes (regular files only, capped); ``None`` when it is absent."""
    path = root / rel
    if not os.path.lexists(path):
        return None
    return read_regular(path, str(path))


_R = TypeVar("_R", Layer, Container)


def _union(groups: Iterable[Sequence[_R]]) -> tuple[_R, ...]:
    """Records of several files (the regular and the volatile one), each id once (the first
    file's record wins, as containers-storage loads them in that order)."""
    out: dict[str, _R] = {}
    for records in groups:
        for r in records:
            out.setdefault(r.id, r)
    return tuple(out.values())


@dataclass(frozen=True, slots=True)
class CStorageStore:
    """An opened graph root: its records, as the JSON files hold them right now."""

    root: Path
    layers: tuple[Layer, ...]
    images: tuple[Image, ...]
    containers: tuple[Container, ...]
    layers_json_present: bool = True  # False: layers.json absent (not merely empty)

    @property
    def kind(self) -> TargetKind:
        return TargetKind.CONTAINERS_STORAGE

    @property
    def runtime_name(self) -> str:
        return RUNTIME_NAME

    @classmethod
    def open(cls, root: str | Path) -> CStorageStore:
        """Read the records of the graph root ``root``."""
        path = Path(root).absolute()
        if not (path / "overlay-layers").is_dir() and not (path / "overlay-images").is_dir():
            raise InputError(f"open {path}: not a containers-storage graph root "
                             "(no overlay-layers/ or overlay-images/)")
        layers_raw = _read_json(path, LAYERS_JSON)
        layers = _union(parse_layers(raw or b"", str(path / rel)) for rel, raw in (
            (LAYERS_JSON, layers_raw),
            (VOLATILE_LAYERS_JSON, _read_json(path, VOLATILE_LAYERS_JSON))))
        containers = _union(parse_containers(_read_json(path, rel) or b"", str(path / rel))
                            for rel in (CONTAINERS_JSON, VOLATILE_CONTAINERS_JSON))
        return cls(path, layers,
                   parse_images(_read_json(path, IMAGES_JSON) or b"", str(path / IMAGES_JSON)),
                   containers, layers_raw is not None)

    def lock_holders(self) -> list[LockHolder]:
        return find_lock_holders(self.root)

    def runtime_status(self) -> RuntimeStatus:
        holders = self.lock_holders()
        if not holders:
            return RuntimeStatus(False)
        return RuntimeStatus(True, holders[0].pid, tuple(h.describe() for h in holders))

    def layer_map(self) -> dict[str, Layer]:
        return {layer.id: layer for layer in self.layers}

    def parents(self) -> dict[str, str | None]:
        """id -> parent id (``None`` for a base layer)."""
        return {layer.id: layer.parent for layer in self.layers}

    def chains(self, limit: int = CHAIN_LIMIT) -> ParentChains:
        """id -> the ids below it, nearest parent first, computed on demand (cut after a
        missing parent, before a cycle repeats, and after ``limit`` + 1 ids)."""
        return ParentChains(self.parents(), limit=limit)

    def live_layers(self) -> set[str]:
        """Layers an image or container uses, with all their parents."""
        by_id = self.layer_map()
        roots = [lid for img in self.images for lid in img.layers]
        roots += [c.layer for c in self.containers if c.layer]
        live: set[str] = set()
        for root in roots:
            cur: str | None = root
            while cur is not None and cur not in live:
                live.add(cur)
                rec = by_id.get(cur)
                cur = rec.parent if rec else None
        return live
