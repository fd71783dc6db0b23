"""The containerd store adapter: find a root, tell whether containerd runs, load everything.

Nouns: *root* (``root`` in config.toml, default ``/var/lib/containerd``), *state* (``state``,
default ``/run/containerd``: sockets, running tasks' bundles), *address* (``[grpc] address``,
default ``<state>/containerd.sock`` for the default state dir).

Guarantees: nothing here writes; meta.db and metadata.db are opened read-only and never
locked. containerd is *running* when it holds the bbolt ``flock`` on meta.db, or when its
socket accepts a connection. Errors: :class:`InputError` when the root has no meta.db.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crilink.errors import InputError
from crilink.formats.bolt import BoltDB, writer_lock_holder
from crilink.formats.containerd import RawSnapshotterDB, read_meta_db, read_snapshotter_db
from crilink.model import TargetKind
from crilink.pathres.files import read_regular
from crilink.stores.base import RuntimeStatus
from crilink.stores.containerd_disk import (
    META_DB,
    METADATA_DIR,
    SNAPSHOTTER_DB,
    DiskView,
    discover_snapshotters,
    read_disk,
    snapshotter_dir,
)
from crilink.stores.containerd_model import Metadata, to_domain
from crilink.stores.usage import Usage, usage_each_forked

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_ROOT",
    "DEFAULT_STATE",
    "ContainerdLocation",
    "ContainerdState",
    "ContainerdStore",
    "find_containerd",
]

DEFAULT_CONFIG = "/etc/containerd/config.toml"
_CONFIG_LIMIT = 4 << 20  # a containerd config is a few KiB
_FORK_MEASURE_AFTER = 256  # snapshot dirs; fewer are measured in-process, as needed
DEFAULT_ROOT = "/var/lib/containerd"
DEFAULT_STATE = "/run/containerd"
SOCKET_NAME = "containerd.sock"
SOCKET_TIMEOUT = 0.5  # seconds; a local unix socket answers at once or not at all


@dataclass(frozen=True, slots=True)
class ContainerdLocation:
    """Where containerd keeps its files, as its config (or the defaults) says."""

    root: Path
    state: Path
    address: str
    config: str | None  # the config file read, None when defaults were used


def find_containerd(config_path: str = DEFAULT_CONFIG) -> ContainerdLocation:
    """Read ``root``, ``state`` and ``[grpc] address`` from containerd's config (TOML).

    A missing config gives the defaults; an unreadable or malformed one raises ``InputError``.
    """
    if not os.path.lexists(config_path):
        conf: dict[str, Any] = {}
        used: str | None = None
    else:
        # a config that is a FIFO or a device would block or never end: regular files only
        data = read_regular(Path(config_path).resolve(), config_path, limit=_CONFIG_LIMIT)
        try:
            conf, used = tomllib.loads(data.decode("utf-8")), config_path
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise InputError(f"read {config_path}: not valid TOML ({err}); fix the file "
                             "or pass --config") from err
    state = str(conf.get("state") or DEFAULT_STATE)
    grpc = conf.get("grpc")
    address = grpc.get("address") if isinstance(grpc, dict) else None
    return ContainerdLocation(Path(str(conf.get("root") or DEFAULT_ROOT)), Path(state),
                              str(address or Path(state) / SOCKET_NAME), used)


def socket_answers(address: str) -> bool:
    """Whether a unix socket at ``address`` accepts a connection (no bytes are sent)."""
    path = address.removeprefix("unix://")
    if not Path(path).exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(SOCKET_TIMEOUT)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


@dataclass(frozen=True, slots=True)
class ContainerdState:
    """One consistent read of a containerd root: both databases and the disk."""

    root: Path
    metadata: Metadata
    disk: DiskView
    status: RuntimeStatus
    read_at: datetime
    # usage of each snapshot dir (store-relative path), when measured while reading
    dir_sizes: Mapping[str, Usage] | None = None


class ContainerdStore:
    """A containerd root (meets :class:`crilink.stores.base.Store`).

    ``address``: the API socket to probe too (default: none known for a custom root, the
    default socket for ``/var/lib/containerd``).
    """

    kind = TargetKind.CONTAINERD
    runtime_name = "containerd"

    def __init__(self, root: str | os.PathLike[str], address: str | None = None) -> None:
        self._root = Path(root).absolute()
        if address is None and str(self._root) == DEFAULT_ROOT:
            address = str(Path(DEFAULT_STATE) / SOCKET_NAME)
        self.address = address
        if not self.meta_db.is_file():
            raise InputError(f"open {self._root}: no {METADATA_DIR}/{META_DB}; "
                             "is this a containerd root (see 'root' in config.toml)?")

    @property
    def root(self) -> Path:
        return self._root

    @property
    def meta_db(self) -> Path:
        return self._root / METADATA_DIR / META_DB

    def snapshotter_db(self, snapshotter: str) -> Path:
        return self._root / snapshotter_dir(snapshotter) / SNAPSHOTTER_DB

    def runtime_status(self) -> RuntimeStatus:
        """Look again: the bbolt writer lock on meta.db, then the socket if one is known."""
        evidence: list[str] = []
        lock = writer_lock_holder(self.meta_db)
        if lock:
            who = f"pid {lock.pid}" if lock.pid is not None else "a process"
            evidence.append(f"flock on {METADATA_DIR}/{META_DB} held by {who}")
        if self.address and socket_answers(self.address):
            evidence.append(f"socket {self.address} accepts connections")
        return RuntimeStatus(bool(evidence), lock.pid, tuple(evidence), self.address)

    def read_metadata(self) -> Metadata:
        """Both databases, converted to the domain model."""
        with BoltDB.open(self.meta_db) as db:
            meta = read_meta_db(db.root)
        backends: dict[str, RawSnapshotterDB] = {}
        for ss in discover_snapshotters(self._root):
            with BoltDB.open(self.snapshotter_db(ss)) as db:
                backends[ss] = read_snapshotter_db(db.root)
        return to_domain(meta, backends)

    def load(self, mountinfo: str | None = None, measure: bool = True) -> ContainerdState:
        """Read everything: status first, then the disk, then the databases. With ``measure``
        the snapshot dirs' usage is measured in a child process meanwhile (the checks need
        nearly every dir's size; decoding the databases is pure Python and would wait)."""
        status = self.runtime_status()
        disk = read_disk(self._root, mountinfo)
        rels = [d.path for d in disk.snapshot_dirs]
        collect = usage_each_forked([f"{self._root}/{r}" for r in rels]) \
            if measure and len(rels) >= _FORK_MEASURE_AFTER else None
        metadata = self.read_metadata()
        sizes = collect() if collect is not None else None
        return ContainerdState(self._root, metadata, disk, status, datetime.now(UTC),
                               dict(zip(rels, sizes, strict=True)) if sizes is not None else None)
