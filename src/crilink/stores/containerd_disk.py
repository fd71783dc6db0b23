"""What a containerd root holds on disk beside its databases.

- snapshot directories: ``io.containerd.snapshotter.v1.<name>/snapshots/<id>`` (and the
  snapshotter's ``new-*`` temp dirs, made before a record exists);
- content: ``io.containerd.content.v1.content/blobs/<alg>/<hex>`` and ingests
  ``.../ingest/<sha256(ref)>/{ref,data,total,startedat,updatedat}``;
- mounts at or below the root (``tmpmounts/containerd-mount*`` while applying layers, the
  overlay mounts of running containers live under the *state* dir), from ``/proc/self/mountinfo``.

Paths are relative to the store root (``str``, fsdecoded). Nothing here writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from crilink.errors import CrilinkError
from crilink.formats.mountinfo import unescape
from crilink.pathres.files import read_regular

__all__ = [
    "CONTENT_DIR",
    "METADATA_DIR",
    "SNAPSHOTTER_PREFIX",
    "TMPMOUNTS_DIR",
    "BlobFile",
    "DiskView",
    "IngestDir",
    "MountEntry",
    "SnapshotDir",
    "read_disk",
    "read_mountinfo",
    "snapshotter_dir",
]

METADATA_DIR = "io.containerd.metadata.v1.bolt"
META_DB = "meta.db"
SNAPSHOTTER_PREFIX = "io.containerd.snapshotter.v1."
SNAPSHOTTER_DB = "metadata.db"
SNAPSHOTS_SUBDIR = "snapshots"
CONTENT_DIR = "io.containerd.content.v1.content"
BLOBS_SUBDIR = "blobs"
INGEST_SUBDIR = "ingest"
INGEST_REF_FILE = "ref"
INGEST_DATA_FILE = "data"
TMPMOUNTS_DIR = "tmpmounts"
NEW_DIR_PREFIX = "new-"  # overlayfs/native: mkdtemp name before the record is committed
# the subdirectory of snapshots/<id> that holds the files, per snapshotter ("" = the dir itself)
FS_SUBDIR = {"overlayfs": "fs", "native": "", "fuse-overlayfs": "fs"}
MOUNTINFO = "/proc/self/mountinfo"
_REF_LIMIT = 64 << 10  # an ingest ref is a short name


def snapshotter_dir(name: str) -> str:
    return SNAPSHOTTER_PREFIX + name


@dataclass(frozen=True, slots=True)
class SnapshotDir:
    """``snapshots/<name>`` of one snapshotter; ``id`` is None for a ``new-*`` temp dir."""

    snapshotter: str
    name: str
    path: str
    id: int | None
    has_fs: bool


@dataclass(frozen=True, slots=True)
class IngestDir:
    name: str
    path: str
    ref: str | None  # the ``ref`` file's text (the backend ref), None if unreadable
    data_bytes: int  # st_size of ``data``
    updated: float | None  # mtime of ``data`` (or the dir)


@dataclass(frozen=True, slots=True)
class BlobFile:
    digest: str  # "<alg>:<hex>"
    path: str


@dataclass(frozen=True, slots=True)
class MountEntry:
    mount_point: str  # absolute, as mountinfo says (octal escapes decoded)
    path: str  # relative to the store root ("." for the root itself)
    fstype: str
    source: str
    fs_root: str


@dataclass(frozen=True, slots=True)
class DiskView:
    snapshotters: tuple[str, ...]  # those with a metadata.db
    snapshot_dirs: tuple[SnapshotDir, ...]
    ingest_dirs: tuple[IngestDir, ...]
    blob_files: tuple[BlobFile, ...]
    mounts: tuple[MountEntry, ...]


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _subdirs(path: Path) -> list[str]:
    """Names of the real directories (not symlinks to one) in ``path``, sorted; d_type spares
    a stat per entry."""
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _snapshot_dirs(root: Path, snapshotter: str) -> list[SnapshotDir]:
    rel = f"{snapshotter_dir(snapshotter)}/{SNAPSHOTS_SUBDIR}"
    fs = FS_SUBDIR.get(snapshotter, "fs")
    base = f"{root}/{rel}"
    out = []
    for name in _subdirs(root / rel):
        sid = int(name) if name.isdigit() else None
        if sid is None and not name.startswith(NEW_DIR_PREFIX):
            continue
        has_fs = os.path.isdir(f"{base}/{name}/{fs}") if fs else True  # noqa: PTH112 - no Path per dir
        out.append(SnapshotDir(snapshotter, name, f"{rel}/{name}", sid, has_fs))
    return out


def _read_text(path: Path) -> str | None:
    """A small text file (an ingest's ``ref``), or None when it is missing, unreadable, not a
    regular file (a FIFO would block) or larger than any ref containerd writes."""
    try:
        return os.fsdecode(read_regular(path, str(path), limit=_REF_LIMIT))
    except CrilinkError:
        return None


def _ingest_dir(root: Path, name: str) -> IngestDir:
    rel = f"{CONTENT_DIR}/{INGEST_SUBDIR}/{name}"
    full = root / rel
    try:
        st = (full / INGEST_DATA_FILE).stat()
        size, updated = st.st_size, st.st_mtime
    except OSError:
        size, updated = 0, None
    return IngestDir(name, rel, _read_text(full / INGEST_REF_FILE), size, updated)


def _blob_files(root: Path) -> list[BlobFile]:
    base = root / CONTENT_DIR / BLOBS_SUBDIR
    return [BlobFile(f"{alg}:{hexd}", f"{CONTENT_DIR}/{BLOBS_SUBDIR}/{alg}/{hexd}")
            for alg in _listdir(base) for hexd in _listdir(base / alg)]


def read_mountinfo(root: Path, text: str | None = None) -> list[MountEntry]:
    """Mounts at or below ``root`` (``text``: mountinfo content, read from /proc when None)."""
    if text is None:
        try:
            text = Path(MOUNTINFO).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            return []
    prefix = os.path.realpath(root).rstrip("/")  # mountinfo names real paths: a relocated
    # root (/var/lib/containerd -> /data/containerd) is matched by where it really is
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        point = unescape(fields[4])
        if point != prefix and not point.startswith(prefix + "/"):
            continue
        rel = os.path.relpath(point, prefix)
        out.append(MountEntry(point, rel, tail[0], unescape(tail[1]), unescape(fields[3])))
    return out


def discover_snapshotters(root: Path) -> tuple[str, ...]:
    """Snapshotter plugin names that have a metadata.db under ``root``."""
    return tuple(name[len(SNAPSHOTTER_PREFIX):] for name in _listdir(root)
                 if name.startswith(SNAPSHOTTER_PREFIX)
                 and (root / name / SNAPSHOTTER_DB).is_file())


def read_disk(root: Path, mountinfo: str | None = None) -> DiskView:
    """Every snapshot dir, ingest dir, blob file and mount of the store at ``root``."""
    snapshotters = discover_snapshotters(root)
    with_dirs = sorted(set(snapshotters) | {
        n[len(SNAPSHOTTER_PREFIX):] for n in _listdir(root) if n.startswith(SNAPSHOTTER_PREFIX)})
    return DiskView(
        snapshotters=snapshotters,
        snapshot_dirs=tuple(d for ss in with_dirs for d in _snapshot_dirs(root, ss)),
        ingest_dirs=tuple(_ingest_dir(root, n)
                          for n in _listdir(root / CONTENT_DIR / INGEST_SUBDIR)
                          if (root / CONTENT_DIR / INGEST_SUBDIR / n).is_dir()),
        blob_files=tuple(_blob_files(root)),
        mounts=tuple(read_mountinfo(root, mountinfo)))
