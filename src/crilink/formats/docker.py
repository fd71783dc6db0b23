"""Docker's overlay2 data root, as raw records: bytes in, typed records out.

Layout of a data root (``/var/lib/docker``), as moby's layer store and overlay2 driver
write it (read from a real dockerd 20.10 run; names are the constants below)::

    image/overlay2/layerdb/sha256/<chain-id>/{cache-id,parent,diff,size,tar-split.json.gz}
    image/overlay2/layerdb/mounts/<container-id>/{mount-id,init-id,parent}
    image/overlay2/layerdb/tmp/write-set-*/        a layer registration in progress
    image/overlay2/imagedb/content/sha256/<image-id>   image config JSON (rootfs.diff_ids)
    image/overlay2/repositories.json               {"Repositories": {repo: {ref: image-id}}}
    containers/<container-id>/config.v2.json       {"ID", "Image", "Name", "Driver", ...}
    overlay2/<cache-id>/{diff/,link,lower,work/,committed}
    overlay2/<mount-id>-init/                      a container's init layer
    overlay2/l/<26-char short name> -> ../<cache-id>/diff

A *chain id* names a layer together with everything below it:
``chain(0) = diff(0)``, ``chain(n) = sha256(chain(n-1) + " " + diff(n))``.
Nothing here touches the filesystem; :mod:`crilink.stores.docker` reads the files.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crilink.errors import CorruptInputError
from crilink.formats.jsondoc import parse_json

__all__ = [
    "CACHE_ID_FILE",
    "CONFIG_V2_FILE",
    "CONTAINERS_DIR",
    "DIFF_FILE",
    "DRIVER_DIR",
    "IMAGEDB_CONTENT_DIR",
    "IMAGEDB_METADATA_DIR",
    "IMAGE_DIR",
    "INIT_ID_FILE",
    "INIT_SUFFIX",
    "LAYERDB_DIR",
    "LAYERDB_SHA256_DIR",
    "LAYERDB_TMP_DIR",
    "MOUNTS_DIR",
    "MOUNT_ID_FILE",
    "PARENT_FILE",
    "REPOSITORIES_FILE",
    "SHA256_PREFIX",
    "SIZE_FILE",
    "RawContainerConfig",
    "RawImageConfig",
    "RawLayerRecord",
    "RawMountRecord",
    "chain_ids",
    "is_hex_id",
    "layer_record",
    "mount_record",
    "parse_container_config",
    "parse_image_config",
    "parse_repositories",
]

IMAGE_DIR = "image/overlay2"
LAYERDB_DIR = f"{IMAGE_DIR}/layerdb"
LAYERDB_SHA256_DIR = f"{LAYERDB_DIR}/sha256"
MOUNTS_DIR = f"{LAYERDB_DIR}/mounts"
LAYERDB_TMP_DIR = f"{LAYERDB_DIR}/tmp"
IMAGEDB_CONTENT_DIR = f"{IMAGE_DIR}/imagedb/content/sha256"
IMAGEDB_METADATA_DIR = f"{IMAGE_DIR}/imagedb/metadata/sha256"
REPOSITORIES_FILE = f"{IMAGE_DIR}/repositories.json"
CONTAINERS_DIR = "containers"
CONFIG_V2_FILE = "config.v2.json"
DRIVER_DIR = "overlay2"
INIT_SUFFIX = "-init"

CACHE_ID_FILE = "cache-id"
PARENT_FILE = "parent"
DIFF_FILE = "diff"
SIZE_FILE = "size"
MOUNT_ID_FILE = "mount-id"
INIT_ID_FILE = "init-id"

SHA256_PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-f]{64}")

# JSON keys
_K_ROOTFS = "rootfs"
_K_DIFF_IDS = "diff_ids"
_K_REPOSITORIES = "Repositories"
_K_ID = "ID"
_K_IMAGE = "Image"
_K_NAME = "Name"
_K_DRIVER = "Driver"


def is_hex_id(name: str) -> bool:
    """True for a bare 64-hex-digit id (a chain id dir, an image id, a container id)."""
    return _HEX64.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class RawLayerRecord:
    """``layerdb/sha256/<chain>/``: each field ``None`` when its file is absent or empty.

    ``parent`` and ``diff_id`` keep their ``sha256:`` prefix as on disk.
    """

    chain_id: str
    cache_id: str | None
    parent: str | None
    diff_id: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class RawMountRecord:
    """``layerdb/mounts/<container>/``: the container's read-write layer and its base."""

    container_id: str
    mount_id: str | None
    init_id: str | None
    parent: str | None


@dataclass(frozen=True, slots=True)
class RawImageConfig:
    """An imagedb content file: the image id (its file name) and its ordered diff ids."""

    image_id: str
    diff_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RawContainerConfig:
    """The parts of ``containers/<id>/config.v2.json`` an auditor needs."""

    id: str
    image: str | None
    name: str | None
    driver: str | None


def _text(files: Mapping[str, bytes], name: str) -> str | None:
    raw = files.get(name)
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace").strip()
    return text or None


def layer_record(chain_id: str, files: Mapping[str, bytes]) -> RawLayerRecord:
    """One layerdb entry from its small files (name -> content; absent files left out)."""
    size_text = _text(files, SIZE_FILE)
    try:
        size = int(size_text) if size_text is not None else None
    except ValueError:
        size = None
    return RawLayerRecord(chain_id, _text(files, CACHE_ID_FILE), _text(files, PARENT_FILE),
                          _text(files, DIFF_FILE), size)


def mount_record(container_id: str, files: Mapping[str, bytes]) -> RawMountRecord:
    """One ``layerdb/mounts/<container>`` entry from its small files."""
    return RawMountRecord(container_id, _text(files, MOUNT_ID_FILE), _text(files, INIT_ID_FILE),
                          _text(files, PARENT_FILE))


def _load_json(raw: bytes, what: str) -> Any:
    return parse_json(raw, what)


def parse_image_config(image_id: str, raw: bytes) -> RawImageConfig:
    """An image config (``imagedb/content/sha256/<id>``): its ``rootfs.diff_ids``."""
    doc = _load_json(raw, f"image config {image_id}")
    rootfs = doc.get(_K_ROOTFS) if isinstance(doc, dict) else None
    diff_ids = rootfs.get(_K_DIFF_IDS) if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise CorruptInputError(f"read image config {image_id}: no rootfs.diff_ids list")
    return RawImageConfig(image_id, tuple(diff_ids))


def parse_repositories(raw: bytes) -> dict[str, str]:
    """``repositories.json`` as reference -> image id (``sha256:...``)."""
    doc = _load_json(raw, REPOSITORIES_FILE)
    repos = doc.get(_K_REPOSITORIES) if isinstance(doc, dict) else None
    if not isinstance(repos, dict):
        raise CorruptInputError(f"read {REPOSITORIES_FILE}: no 'Repositories' object")
    out: dict[str, str] = {}
    for refs in repos.values():
        if isinstance(refs, dict):
            out.update({str(k): str(v) for k, v in refs.items()})
    return out


def parse_container_config(container_id: str, raw: bytes) -> RawContainerConfig:
    """``containers/<id>/config.v2.json``: id, image id, name, storage driver."""
    doc = _load_json(raw, f"container {container_id} {CONFIG_V2_FILE}")
    if not isinstance(doc, dict):
        raise CorruptInputError(f"read container {container_id} {CONFIG_V2_FILE}: not an object")

    def get(key: str) -> str | None:
        value = doc.get(key)
        return value if isinstance(value, str) and value else None

    return RawContainerConfig(get(_K_ID) or container_id, get(_K_IMAGE), get(_K_NAME),
                              get(_K_DRIVER))


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The chain id (``sha256:...``) of each prefix of ``diff_ids``, bottom layer first."""
    out: list[str] = []
    for diff in diff_ids:
        if not out:
            out.append(diff)
            continue
        digest = hashlib.sha256(f"{out[-1]} {diff}".encode()).hexdigest()
        out.append(SHA256_PREFIX + digest)
    return out
