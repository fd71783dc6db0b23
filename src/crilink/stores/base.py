"""The contract every store adapter meets: what a store is, and whether its runtime is busy.

Nouns:
- *store*: a runtime's storage root on disk (containerd root, containers-storage graph root,
  Docker data root). ``root`` is that directory, absolute.
- *runtime*: the daemon or tool that owns the store (containerd, podman, dockerd). It is
  *running* when it holds the store's lock (a BoltDB ``flock``, ``storage.lock`` ...) or
  answers on its socket.

Guarantees: opening an adapter and calling these methods never writes to the store and never
blocks on the runtime's lock (a held lock is a fact to report, not a wait).
Errors: an unreadable root raises :class:`crilink.errors.InputError`.

Mutating code calls :func:`ensure_stopped` (a generic helper on top of the Protocol) before it
touches anything that the runtime could touch too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from crilink.errors import RuntimeBusyError
from crilink.model import TargetKind

__all__ = ["RuntimeStatus", "Store", "ensure_stopped"]


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    """Whether the store's runtime is live, and how that was found out.

    ``running``: the lock is held or the socket answers. ``pid``: the holder, where the
    kernel tells (``/proc/locks``), else ``None``. ``evidence``: one short phrase per signal
    seen (``"flock on meta.db held by pid 42"``, ``"socket /run/containerd/containerd.sock
    accepts connections"``), for messages. ``address``: the API socket, when known.
    """

    running: bool
    pid: int | None = None
    evidence: tuple[str, ...] = ()
    address: str | None = None

    def describe(self, name: str) -> str:
        """``"containerd is running (pid 42)"`` / ``"containerd is stopped"``."""
        if not self.running:
            return f"{name} is stopped"
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        why = f": {'; '.join(self.evidence)}" if self.evidence else ""
        return f"{name} is running{pid}{why}"


@runtime_checkable
class Store(Protocol):
    """One runtime's storage root, opened read-only.

    ``kind`` names the runtime (a :class:`TargetKind`); ``root`` is the store directory;
    ``runtime_name`` is what messages call the owner (``"containerd"``, ``"podman"``).
    ``runtime_status()`` looks again every time it is called (cheap: a lock probe and a
    socket connect), so callers re-check just before acting.
    """

    @property
    def kind(self) -> TargetKind: ...

    @property
    def root(self) -> Path: ...

    @property
    def runtime_name(self) -> str: ...

    def runtime_status(self) -> RuntimeStatus: ...


def ensure_stopped(store: Store, doing: str) -> RuntimeStatus:
    """Raise :class:`RuntimeBusyError` unless the store's runtime is stopped; return the status.

    ``doing`` is a verb phrase for the message ("remove orphan dirs").
    """
    status = store.runtime_status()
    if status.running:
        raise RuntimeBusyError(
            f"{status.describe(store.runtime_name)}: refusing to {doing} in {store.root}; "
            f"stop {store.runtime_name} first, or act through its API")
    return status
