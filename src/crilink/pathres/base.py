"""The contract of in-root resolution: the VFS a resolver walks and the verdict it returns.

Nouns:
- *in-root path*: a str starting with ``/``, normalised (no ``.``/``..``/``//``), naming a
  node as the container sees it. Names are ``os.fsdecode`` strs (surrogateescape), so any
  byte string round-trips.
- *link text*: what readlink returns; untrusted (``unsafe_*`` until resolved).

A :class:`VFS` answers ``lstat`` and ``readlink`` for in-root paths whose parent components
are already resolved (never symlinks); it never follows a link itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

__all__ = ["MAX_LINKS", "VFS", "Node", "NodeType", "Resolution", "ResolveError"]

MAX_LINKS = 40  # the kernel's limit on links followed in one lookup (MAXSYMLINKS)


class NodeType(StrEnum):
    DIR = "dir"
    FILE = "file"
    SYMLINK = "symlink"
    OTHER = "other"  # device, fifo, socket, whiteout char device


@dataclass(frozen=True, slots=True)
class Node:
    """What ``lstat`` tells: the type and, where known, (dev, ino) identity."""

    type: NodeType
    dev: int = 0
    ino: int = 0


class VFS(Protocol):
    """A tree of nodes addressed by in-root paths.

    Guarantees: ``lstat`` never follows the last component; the caller only passes paths
    whose parents were resolved to directories. Errors: ``lstat`` returns ``None`` for a
    missing node; other I/O failures raise ``crilink.errors.InputError``.
    """

    def lstat(self, path: str) -> Node | None: ...

    def readlink(self, path: str) -> str: ...


class ResolveError(StrEnum):
    MISSING = "missing"
    NOT_A_DIRECTORY = "not_a_directory"
    LOOP = "loop"


@dataclass(frozen=True, slots=True)
class Resolution:
    """How far in-root resolution got.

    ``resolved`` is the deepest in-root path reached (the final target when ``error`` is
    None); ``remaining`` is the unresolved rest, ``""`` on success. ``clamped`` is true when a
    ``..`` was applied at the root (an escape for anyone resolving from the host).
    ``cycle`` lists the in-root paths of the links forming a cycle, when ``error`` is LOOP
    and a cycle (not just a long chain) was detected. ``node`` is the target's node.
    ``text_clamped`` is true when a ``..`` of the looked-up text itself (not of a link body
    met on the way) was applied at the root: the text climbs above the root from ``start``.
    """

    resolved: str
    remaining: str = ""
    error: ResolveError | None = None
    node: Node | None = None
    hops: int = 0
    clamped: bool = False
    cycle: tuple[str, ...] = ()
    text_clamped: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None
