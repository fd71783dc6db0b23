"""The merged view of an image's layers, in memory, as a runtime would extract it.

Layers are applied in order into a :class:`~crilink.pathres.memvfs.MemoryVFS` holding
metadata only (type, link text, size, the layer digest that last wrote each path).

Rules, as containerd's and podman's appliers behave:
- entry names are cleaned lexically (``a/./b``, ``/abs`` -> ``/a/b``, ``/abs``); a name whose
  ``..`` climbs out of the root is an ``unsafe_entry`` issue and is not applied;
- the parent of an entry is resolved inside the root (a lower layer's symlinked directory is
  followed); missing parents are created as directories;
- a layer's whiteouts (``.wh.NAME``) and opaque markers (``.wh..wh..opq``) apply to the
  lower layers only, whatever their position in the tar: they are applied first, then the
  layer's other entries in tar order. Other ``.wh..wh.*`` names (aufs metadata) are ignored;
  a whiteout of ``..``, ``.`` or the empty name (``.wh...``, ``.wh..``, ``.wh.``) names no
  file of its directory: it is an ``unsafe_entry`` issue (``bad_whiteout_name``), never
  applied to the directory or its parent;
- a whiteout's path is looked up lexically in the lower view, never through a symlink: when
  an ancestor is a symlink (or missing, or not a directory) it hides nothing. This is what
  overlayfs (the default snapshotter of containerd and podman) does: the layer's whiteout
  sits in its own upper tree, and a lower path below a symlink is no lower entry at that
  path. (containerd's naive applier resolves the parent in-root and would delete through
  the link; that deletes a file of another directory, which no overlay mount shows.) So a
  layer that turns symlink ``d`` into a directory and whites out ``d/f`` leaves the
  symlink's target untouched;
- a hard link is tied to its target as the stack stands at that entry: a missing (or
  whited-out) target is ``hardlink_missing_target`` and the entry is not applied (as is a
  target that is a directory: reason ``target_is_directory``); a target
  last written by a lower layer is ``hardlink_cross_layer`` (its size is stored again).
  An absolute hard-link target is root-relative; one that climbs out is ``unsafe_entry``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from crilink.formats.layertar import EntryType, TarEntry
from crilink.pathres.base import NodeType, ResolveError
from crilink.pathres.memvfs import MemoryVFS
from crilink.pathres.resolve import resolve_in_root

__all__ = ["BAD_WHITEOUT", "TARGET_IS_DIRECTORY", "WHITEOUT_OPAQUE", "WHITEOUT_PREFIX",
           "ImageView", "IssueKind", "MergeIssue", "clean_name"]

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
BAD_WHITEOUT = "bad_whiteout_name"  # reason: a whiteout of "..", "." or the empty name
TARGET_IS_DIRECTORY = "target_is_directory"  # reason: a hard link names a directory
_DOT_NAMES = frozenset({"", ".", ".."})
_NODE_TYPES = {EntryType.FILE: NodeType.FILE, EntryType.DIR: NodeType.DIR,
               EntryType.SYMLINK: NodeType.SYMLINK, EntryType.OTHER: NodeType.OTHER}


class IssueKind(StrEnum):
    UNSAFE_ENTRY = "unsafe_entry"
    HARDLINK_MISSING_TARGET = "hardlink_missing_target"
    HARDLINK_CROSS_LAYER = "hardlink_cross_layer"


@dataclass(frozen=True, slots=True)
class MergeIssue:
    """A fault met while merging. ``path`` is root-relative; ``link`` the hard-link target
    as stored; ``size`` the bytes a cross-layer hard link stores again."""

    kind: IssueKind
    path: str
    layer: str
    reason: str = ""
    link: str | None = None
    size: int | None = None
    target_layer: str | None = None


def clean_name(unsafe_name: str) -> str | None:
    """The in-root path a tar name means (``/`` for the top), or None when ``..`` climbs out."""
    comps: list[str] = []
    for comp in unsafe_name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not comps:
                return None
            comps.pop()
        else:
            comps.append(comp)
    return "/" + "/".join(comps)


def _join(parent: str, name: str) -> str:
    return "/" + name if parent == "/" else f"{parent}/{name}"


def _split(path: str) -> tuple[str, str]:
    parent, name = path.rsplit("/", 1)
    return parent or "/", name


def _raw_path(unsafe_name: str) -> str:
    return "/" + unsafe_name.lstrip("/")


@dataclass(frozen=True, slots=True)
class _Whiteout:
    path: str  # the in-root path hidden (or the opaque directory)
    opaque: bool


class ImageView:
    """Apply layers bottom-up with :meth:`apply_layer`; read the result through :attr:`vfs`."""

    def __init__(self) -> None:
        self.vfs = MemoryVFS()
        self._whited: dict[str, str] = {}  # in-root path -> layer that whited it out
        self._written: set[str] = set()  # real paths written by the layer being applied
        self.entries = 0

    # -- locating paths in the current view
    def _locate(self, path: str, *, create: bool) -> str | None:
        """Where ``path`` lands: its parent resolved in-root (links followed), its last
        component kept. With ``create``, a non-directory standing where a parent directory
        is needed is removed (extraction replaces it). None when the parent cannot be had."""
        if path == "/":
            return path
        parent, name = _split(path)
        node = self.vfs.lstat(parent)
        if node is not None and node.type is NodeType.DIR:
            return path
        res = resolve_in_root(self.vfs, parent)
        if res.ok and res.node is not None and res.node.type is NodeType.DIR:
            return _join(res.resolved, name)
        if not create or res.error is ResolveError.LOOP:
            return None
        base = res.resolved
        blocker = self.vfs.lstat(base)
        if blocker is not None and blocker.type is not NodeType.DIR:
            self.vfs.remove(base)
        rest = clean_name(res.remaining) or "/"
        return _join(base.rstrip("/") + rest if rest != "/" else base, name)

    # -- one layer
    def apply_layer(self, layer: str, entries: Iterable[TarEntry]) -> list[MergeIssue]:
        """Merge one layer's entries (tar order) on top of the view; returns its issues."""
        issues: list[MergeIssue] = []
        whiteouts: list[_Whiteout] = []
        others: list[tuple[str, TarEntry]] = []
        for entry in entries:
            self.entries += 1
            self._sort_entry(layer, entry, whiteouts, others, issues)
        for wh in whiteouts:
            self._apply_whiteout(layer, wh)
        self._written = set()
        for path, entry in others:
            issue = self._apply_entry(layer, path, entry)
            if issue is not None:
                issues.append(issue)
        self._written = set()
        return issues

    def _sort_entry(self, layer: str, entry: TarEntry, whiteouts: list[_Whiteout],
                    others: list[tuple[str, TarEntry]], issues: list[MergeIssue]) -> None:
        path = clean_name(entry.name)
        if path is None:
            issues.append(MergeIssue(IssueKind.UNSAFE_ENTRY, _raw_path(entry.name), layer,
                                     "name_climbs_out"))
            return
        if path == "/":
            return  # the top directory itself ("./"): always there
        parent, name = _split(path)
        if name == WHITEOUT_OPAQUE:
            whiteouts.append(_Whiteout(parent, opaque=True))
        elif name.startswith(WHITEOUT_META_PREFIX) or path.startswith("/" + WHITEOUT_META_PREFIX):
            return  # aufs metadata (.wh..wh.aufs, .wh..wh.plnk/...): never part of the tree
        elif name.startswith(WHITEOUT_PREFIX):
            hidden = name[len(WHITEOUT_PREFIX):]
            if hidden in _DOT_NAMES:  # would hide the directory itself or its parent
                issues.append(MergeIssue(IssueKind.UNSAFE_ENTRY, path, layer,
                                         BAD_WHITEOUT))
                return
            whiteouts.append(_Whiteout(_join(parent, hidden), opaque=False))
        else:
            others.append((path, entry))

    def _lexical(self, path: str) -> str | None:
        """``path`` when each of its ancestors in the view is a directory, no link followed;
        else None (a path under a symlink names nothing in the lower layers)."""
        parent = _split(path)[0] if path != "/" else "/"
        while parent != "/":
            node = self.vfs.lstat(parent)
            if node is None or node.type is not NodeType.DIR:
                return None
            parent = _split(parent)[0]
        return path

    def _apply_whiteout(self, layer: str, wh: _Whiteout) -> None:
        real = self._lexical(wh.path)
        if real is None:
            return
        if wh.opaque:
            node = self.vfs.lstat(real)
            if node is None or node.type is not NodeType.DIR:
                return
            for child in self.vfs.listdir(real):
                self.vfs.remove(_join(real, child))
                self._whited[_join(real, child)] = layer
        elif self.vfs.lstat(real) is not None:
            self.vfs.remove(real)
            self._whited[real] = layer

    def _apply_entry(self, layer: str, path: str, entry: TarEntry) -> MergeIssue | None:
        if entry.type is EntryType.HARDLINK:
            return self._apply_hardlink(layer, path, entry)
        real = self._locate(path, create=True)
        if real is None:
            return None
        link = entry.linkname if entry.type is EntryType.SYMLINK else None
        self.vfs.add(real, _NODE_TYPES[entry.type], link, layer=layer, size=entry.size)
        self._written.add(real)
        return None

    def _apply_hardlink(self, layer: str, path: str, entry: TarEntry) -> MergeIssue | None:
        target = clean_name(entry.linkname)
        if target is None or target == "/":
            reason = "link_target_climbs_out" if target is None else "link_target_is_root"
            kind = IssueKind.UNSAFE_ENTRY if target is None else IssueKind.HARDLINK_MISSING_TARGET
            return MergeIssue(kind, path, layer, reason, link=entry.linkname)
        real_target = self._locate(target, create=False)
        node = self.vfs.get(real_target) if real_target is not None else None
        if real_target is None or node is None or node.type is NodeType.DIR:
            reason = TARGET_IS_DIRECTORY if node is not None else self._missing_reason(target)
            return MergeIssue(IssueKind.HARDLINK_MISSING_TARGET, path, layer, reason,
                              link=entry.linkname)
        real = self._locate(path, create=True)
        if real is None:
            return None
        cross = real_target not in self._written
        self.vfs.add_hardlink(real, real_target, layer=layer)
        self._written.add(real)
        if not cross:
            return None
        return MergeIssue(IssueKind.HARDLINK_CROSS_LAYER, path, layer, link=entry.linkname,
                          size=node.size, target_layer=node.layer)

    def _missing_reason(self, target: str) -> str:
        probe = target
        while probe != "/":
            if probe in self._whited:
                return "whited_out"
            probe = _split(probe)[0]
        return "absent"

    # -- reading the result
    def symlinks(self) -> Iterator[tuple[str, str, str | None]]:
        """Every symlink of the merged view: (in-root path, link text, layer digest)."""
        for path, node in self.vfs.walk():
            if node.type is NodeType.SYMLINK and node.link_text is not None:
                yield path, node.link_text, node.layer
