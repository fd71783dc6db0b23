"""An in-memory tree as a :class:`~crilink.pathres.base.VFS` (for image views, tests).

Paths given to :class:`MemoryVFS` are in-root paths (``/usr/bin/x``; a missing leading
slash is added, ``.`` and repeated slashes dropped). ``..`` is refused (``ValueError``):
normalise untrusted names before adding them; an entry whose name climbs out is a finding
(``unsafe_entry``), not a node.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from crilink.errors import InputError
from crilink.pathres.base import Node, NodeType

__all__ = ["MemNode", "MemoryVFS", "norm_path"]


def norm_path(path: str) -> str:
    """``path`` as a normalised in-root path; ``ValueError`` on ``..``."""
    comps = [c for c in path.split("/") if c and c != "."]
    if ".." in comps:
        raise ValueError(f"in-root path with '..': {path!r}")
    return "/" + "/".join(comps)


@dataclass(frozen=True, slots=True)
class MemNode:
    """One node: its type, link text (symlinks), identity and free-form provenance.

    ``ino`` is shared by hard links (see :meth:`MemoryVFS.add_hardlink`); ``layer`` and
    ``size`` are for the caller (e.g. the layer digest that provided the node).
    """

    type: NodeType
    link_text: str | None = None
    ino: int = 0
    layer: str | None = None
    size: int = 0


class MemoryVFS:
    """A dict-based tree. ``/`` always exists as a directory.

    - :meth:`add` creates or replaces a node; missing parents are created as directories.
      Replacing a directory by a non-directory drops its subtree; adding a directory where
      one exists keeps the children (as tar extraction does). A parent that exists as a
      non-directory is an error (``ValueError``): remove it first.
    - :meth:`remove` drops a node and its whole subtree (a whiteout); missing is fine.
    - :meth:`get` returns the :class:`MemNode` or ``None``.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, MemNode] = {"/": MemNode(NodeType.DIR, ino=1)}
        self._children: dict[str, dict[str, None]] = {"/": {}}
        self._next_ino = 2

    def add(self, path: str, kind: NodeType, link_text: str | None = None, *,
            ino: int | None = None, layer: str | None = None, size: int = 0) -> MemNode:
        """Create or replace the node at ``path``; returns it."""
        path = norm_path(path)
        if path == "/":
            if kind is not NodeType.DIR:
                raise ValueError("the root must stay a directory")
            return self._nodes["/"]
        if kind is NodeType.SYMLINK and link_text is None:
            raise ValueError(f"symlink {path} without link text")
        parent, name = path.rsplit("/", 1)
        self._ensure_dir(parent or "/")
        old = self._nodes.get(path)
        if old is not None and (old.type is not NodeType.DIR or kind is not NodeType.DIR):
            self.remove(path)
        if ino is None:
            ino, self._next_ino = self._next_ino, self._next_ino + 1
        node = MemNode(kind, link_text if kind is NodeType.SYMLINK else None, ino, layer, size)
        self._nodes[path] = node
        self._children[parent or "/"][name] = None
        if kind is NodeType.DIR:
            self._children.setdefault(path, {})
        return node

    def add_hardlink(self, path: str, target: str, *, layer: str | None = None) -> MemNode:
        """Add ``path`` as another name of the existing non-directory ``target``."""
        node = self.get(target)
        if node is None or node.type is NodeType.DIR:
            raise ValueError(f"hard link {path} -> {target}: target missing or a directory")
        return self.add(path, node.type, node.link_text, ino=node.ino, layer=layer,
                        size=node.size)

    def remove(self, path: str) -> None:
        """Drop ``path`` and everything under it."""
        path = norm_path(path)
        if path == "/" or path not in self._nodes:
            return
        todo = [path]
        while todo:
            cur = todo.pop()
            del self._nodes[cur]
            todo.extend(cur + "/" + child for child in self._children.pop(cur, ()))
        parent, name = path.rsplit("/", 1)
        self._children[parent or "/"].pop(name, None)

    def get(self, path: str) -> MemNode | None:
        return self._nodes.get(norm_path(path))

    def listdir(self, path: str) -> list[str]:
        """Names in directory ``path`` in insertion order (``[]`` when not a directory)."""
        return list(self._children.get(norm_path(path), ()))

    def walk(self) -> Iterator[tuple[str, MemNode]]:
        """Every node but the root as (in-root path, node), parents before children."""
        todo = ["/"]
        while todo:
            cur = todo.pop()
            for name in self._children.get(cur, ()):
                path = "/" + name if cur == "/" else cur + "/" + name
                node = self._nodes[path]
                yield path, node
                if node.type is NodeType.DIR:
                    todo.append(path)

    def __len__(self) -> int:
        return len(self._nodes)

    def _ensure_dir(self, path: str) -> None:
        node = self._nodes.get(path)
        if node is None:
            self.add(path, NodeType.DIR)
        elif node.type is not NodeType.DIR:
            raise ValueError(f"parent {path} exists and is a {node.type}, not a directory")

    # VFS protocol (paths here are already normalised by the resolver)
    def lstat(self, path: str) -> Node | None:
        node = self._nodes.get(path)
        return None if node is None else Node(node.type, 0, node.ino)

    def readlink(self, path: str) -> str:
        node = self._nodes.get(path)
        if node is None or node.link_text is None:
            raise InputError(f"readlink {path}: not a symlink in the image view")
        return node.link_text
