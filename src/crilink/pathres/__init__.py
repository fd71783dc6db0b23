"""In-root path resolution: the project's one chokepoint for untrusted paths.

- :func:`resolve_in_root` / :class:`Resolver`: pure lookups over a :class:`VFS` with the
  semantics of ``openat2(RESOLVE_IN_ROOT)``; the verdict says how far it got.
- :class:`DirVFS` (a live directory through a dir fd) and :class:`MemoryVFS` (a tree in
  memory, for images) are the two VFS implementations.
- :func:`open_in_root` / :func:`open_dir_in_root`: fd-safe opens for writers.
"""

from __future__ import annotations

from crilink.pathres.base import MAX_LINKS, VFS, Node, NodeType, Resolution, ResolveError
from crilink.pathres.dirvfs import DirVFS, node_type
from crilink.pathres.fdopen import open_dir_in_root, open_in_root, openat2, openat2_available
from crilink.pathres.memvfs import MemNode, MemoryVFS, norm_path
from crilink.pathres.resolve import Resolver, parent_of, resolve_in_root, split_path

__all__ = [
    "MAX_LINKS",
    "VFS",
    "DirVFS",
    "MemNode",
    "MemoryVFS",
    "Node",
    "NodeType",
    "Resolution",
    "ResolveError",
    "Resolver",
    "node_type",
    "norm_path",
    "open_dir_in_root",
    "open_in_root",
    "openat2",
    "openat2_available",
    "parent_of",
    "resolve_in_root",
    "split_path",
]
