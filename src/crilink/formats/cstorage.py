"""containers-storage (podman, CRI-O, buildah) metadata: raw JSON shapes and storage.conf.

Pure readers: bytes in, typed records out. The raw shapes (``Raw*``) mirror what
containers-storage writes in ``overlay-layers/layers.json``, ``overlay-images/images.json`` and
``overlay-containers/containers.json``; the records (``Layer``, ``Image``, ``Container``) are
what the rest of crilink uses. :func:`parse_layers` & co. are the one conversion.

Limits: only the keys crilink needs are typed; unknown keys are ignored. A file that is not a
JSON list of objects with string ids raises :class:`CorruptInputError` naming the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from crilink.errors import CorruptInputError
from crilink.formats.jsondoc import parse_json

__all__ = [
    "CHAIN_LIMIT",
    "CONTAINERS_JSON",
    "DEFAULT_GRAPH_ROOT",
    "DEFAULT_RUN_ROOT",
    "DEFAULT_STORAGE_CONF",
    "FLAG_INCOMPLETE",
    "IMAGES_JSON",
    "LAYERS_JSON",
    "LOCK_FILES",
    "OVERLAY_DIR",
    "VOLATILE_CONTAINERS_JSON",
    "VOLATILE_LAYERS_JSON",
    "Container",
    "Image",
    "Layer",
    "RawContainer",
    "RawImage",
    "RawLayer",
    "StorageConf",
    "parse_containers",
    "parse_images",
    "parse_layers",
    "parse_storage_conf",
]

# files and dirs, relative to the graph root
LAYERS_JSON = "overlay-layers/layers.json"
IMAGES_JSON = "overlay-images/images.json"
CONTAINERS_JSON = "overlay-containers/containers.json"
# records of volatile layers and containers (``podman run --rm``, ``--volatile``) are kept
# apart, in these files beside the others; they are records all the same
VOLATILE_LAYERS_JSON = "overlay-layers/volatile-layers.json"
VOLATILE_CONTAINERS_JSON = "overlay-containers/volatile-containers.json"
OVERLAY_DIR = "overlay"
CHAIN_LIMIT = 500  # containers/storage drivers/overlay: maxDepth (lowers per layer)
# lock files containers-storage takes (fcntl record locks) while it changes the store
LOCK_FILES = (
    "storage.lock",
    "overlay-layers/layers.lock",
    "overlay-images/images.lock",
    "overlay-containers/containers.lock",
    "userns.lock",
)

DEFAULT_STORAGE_CONF = "/etc/containers/storage.conf"
DEFAULT_GRAPH_ROOT = "/var/lib/containers/storage"
DEFAULT_RUN_ROOT = "/run/containers/storage"

# JSON keys
KEY_ID = "id"
KEY_NAMES = "names"
KEY_PARENT = "parent"
KEY_FLAGS = "flags"
KEY_LAYER = "layer"
KEY_IMAGE = "image"
KEY_MAPPED_TOP_LAYERS = "mapped-top-layers"
KEY_DIFF_SIZE = "diff-size"
KEY_DIGEST = "digest"
FLAG_INCOMPLETE = "incomplete"

# storage.conf keys
CONF_TABLE = "storage"
CONF_DRIVER = "driver"
CONF_GRAPH_ROOT = "graphroot"
CONF_RUN_ROOT = "runroot"


class RawLayer(TypedDict, total=False):
    """One entry of layers.json, as containers-storage writes it (subset)."""

    id: str
    names: list[str]
    parent: str
    flags: dict[str, Any]
    # "diff-size" is not a valid identifier: read with .get(KEY_DIFF_SIZE)


class RawImage(TypedDict, total=False):
    """One entry of images.json (subset); ``mapped-top-layers`` read by key."""

    id: str
    names: list[str]
    layer: str
    digest: str


class RawContainer(TypedDict, total=False):
    """One entry of containers.json (subset)."""

    id: str
    names: list[str]
    image: str
    layer: str


@dataclass(frozen=True, slots=True)
class Layer:
    """A layer record: ``parent`` is ``None`` for a base layer; ``incomplete`` is the flag
    containers-storage sets while a layer is being written or deleted."""

    id: str
    parent: str | None
    names: tuple[str, ...] = ()
    incomplete: bool = False
    diff_size: int | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """An image record: ``layers`` is its top layer plus any ID-mapped copies of it."""

    id: str
    names: tuple[str, ...]
    layers: tuple[str, ...]
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class Container:
    """A container record: ``layer`` is its read-write layer, ``image`` the image id."""

    id: str
    names: tuple[str, ...]
    image: str | None
    layer: str | None


@dataclass(frozen=True, slots=True)
class StorageConf:
    """The ``[storage]`` table of storage.conf (defaults filled in)."""

    driver: str = "overlay"
    graph_root: str = DEFAULT_GRAPH_ROOT
    run_root: str = DEFAULT_RUN_ROOT


def _load_list(data: bytes, what: str) -> list[Mapping[str, Any]]:
    if not data.strip():
        return []  # containers-storage writes the files lazily; an empty file means no records
    doc = parse_json(data, what, "; restore it from a backup or let podman rebuild the store")
    if not isinstance(doc, list):
        raise CorruptInputError(f"read {what}: expected a JSON list, got {type(doc).__name__}")
    out: list[Mapping[str, Any]] = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict) or not isinstance(item.get(KEY_ID), str):
            raise CorruptInputError(f"read {what}: entry {i} has no string \"id\"")
        out.append(item)
    return out


def _strs(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _layer(raw: Mapping[str, Any]) -> Layer:
    flags = raw.get(KEY_FLAGS)
    incomplete = isinstance(flags, dict) and flags.get(FLAG_INCOMPLETE) is True
    size = raw.get(KEY_DIFF_SIZE)
    return Layer(id=raw[KEY_ID], parent=_opt_str(raw.get(KEY_PARENT)),
                 names=_strs(raw.get(KEY_NAMES)), incomplete=incomplete,
                 diff_size=size if isinstance(size, int) else None)


def _image(raw: Mapping[str, Any]) -> Image:
    top = _opt_str(raw.get(KEY_LAYER))
    layers = ((top,) if top else ()) + _strs(raw.get(KEY_MAPPED_TOP_LAYERS))
    return Image(id=raw[KEY_ID], names=_strs(raw.get(KEY_NAMES)), layers=layers,
                 digest=_opt_str(raw.get(KEY_DIGEST)))


def _container(raw: Mapping[str, Any]) -> Container:
    return Container(id=raw[KEY_ID], names=_strs(raw.get(KEY_NAMES)),
                     image=_opt_str(raw.get(KEY_IMAGE)), layer=_opt_str(raw.get(KEY_LAYER)))


def parse_layers(data: bytes, what: str = LAYERS_JSON) -> tuple[Layer, ...]:
    """The layer records of a layers.json document."""
    return tuple(_layer(r) for r in _load_list(data, what))


def parse_images(data: bytes, what: str = IMAGES_JSON) -> tuple[Image, ...]:
    """The image records of an images.json document."""
    return tuple(_image(r) for r in _load_list(data, what))


def parse_containers(data: bytes, what: str = CONTAINERS_JSON) -> tuple[Container, ...]:
    """The container records of a containers.json document."""
    return tuple(_container(r) for r in _load_list(data, what))


def parse_storage_conf(data: bytes, what: str = DEFAULT_STORAGE_CONF) -> StorageConf:
    """The ``[storage]`` table of a storage.conf (TOML); missing keys take the defaults."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise CorruptInputError(f"read {what}: not valid TOML ({err})") from err
    table = doc.get(CONF_TABLE, {})
    if not isinstance(table, dict):
        raise CorruptInputError(f"read {what}: [{CONF_TABLE}] is not a table")
    defaults = StorageConf()
    return StorageConf(
        driver=_conf_str(table, CONF_DRIVER, defaults.driver),
        graph_root=_conf_str(table, CONF_GRAPH_ROOT, defaults.graph_root),
        run_root=_conf_str(table, CONF_RUN_ROOT, defaults.run_root),
    )


def _conf_str(table: Mapping[str, Any], key: str, default: str) -> str:
    value = table.get(key)
    return value if isinstance(value, str) and value else default
