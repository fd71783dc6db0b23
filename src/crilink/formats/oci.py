"""OCI image layout documents: index, manifest, config; raw JSON shapes apart from records.

Raw shapes (``*JSON`` TypedDicts, keys as named constants) are what the files hold; one
conversion function per document turns them into frozen records, validating as it goes.
Every digest is checked to be ``<algorithm>:<hex>`` before it becomes a blob path, so a
hostile index cannot point outside ``blobs/``.

Errors: :class:`crilink.errors.CorruptInputError` with the document named, e.g.
``read manifest sha256:ab..: "layers" is not a list``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from crilink.errors import CorruptInputError

__all__ = [
    "ANNOTATION_CONTAINERD_NAME",
    "ANNOTATION_REF_NAME",
    "INDEX_FILE",
    "LAYOUT_FILE",
    "MAX_DOCUMENT",
    "Descriptor",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "blob_path",
    "is_index",
    "parse_config",
    "parse_descriptor",
    "parse_index",
    "parse_json",
    "parse_manifest",
]

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs"
MAX_DOCUMENT = 8 * 1024 * 1024  # index, manifest or config larger than this is refused
MAX_SIZE = (1 << 63) - 1  # a descriptor's size is an int64

# keys
K_MANIFESTS, K_CONFIG, K_LAYERS = "manifests", "config", "layers"
K_MEDIA_TYPE, K_DIGEST, K_SIZE = "mediaType", "digest", "size"
K_ANNOTATIONS, K_PLATFORM = "annotations", "platform"
K_OS, K_ARCH, K_VARIANT = "os", "architecture", "variant"
K_ROOTFS, K_DIFF_IDS = "rootfs", "diff_ids"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_MEDIA_TYPES = frozenset({MT_OCI_INDEX, MT_DOCKER_LIST})

DIGEST_RE = re.compile(r"^(sha256|sha512):([0-9a-f]{64}|[0-9a-f]{128})$")
DIGEST_HEX_LEN = {"sha256": 64, "sha512": 128}


class DescriptorJSON(TypedDict, total=False):
    mediaType: str
    digest: str
    size: int | None  # None: the descriptor gives none
    annotations: dict[str, str]
    platform: dict[str, str]


class IndexJSON(TypedDict, total=False):
    schemaVersion: int
    mediaType: str
    manifests: list[DescriptorJSON]


class ManifestJSON(TypedDict, total=False):
    schemaVersion: int
    mediaType: str
    config: DescriptorJSON
    layers: list[DescriptorJSON]


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int | None  # None: the descriptor gives none
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None

    @property
    def ref_name(self) -> str | None:
        return self.annotations.get(ANNOTATION_REF_NAME)


@dataclass(frozen=True, slots=True)
class Index:
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class ImageConfig:
    diff_ids: tuple[str, ...]
    platform: Platform | None = None


def is_index(desc: Descriptor) -> bool:
    return desc.media_type in INDEX_MEDIA_TYPES


def check_digest(digest: object, what: str) -> str:
    """``digest`` if it is ``<alg>:<hex>`` of the right length, else CorruptInputError."""
    m = DIGEST_RE.match(digest) if isinstance(digest, str) else None
    if m is None or len(m.group(2)) != DIGEST_HEX_LEN[m.group(1)]:
        raise CorruptInputError(f"{what}: digest {str(digest)[:80]!r} is not <algorithm>:<hex>")
    return m.group(0)


def blob_path(digest: str) -> str:
    """Layout-relative path of a blob: ``blobs/<alg>/<hex>`` (digest already checked)."""
    alg, hexpart = check_digest(digest, "blob path").split(":", 1)
    return f"{BLOBS_DIR}/{alg}/{hexpart}"


def parse_json(data: bytes, what: str) -> Any:
    """A JSON document, or CorruptInputError naming ``what``."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as err:
        raise CorruptInputError(f"read {what}: not valid JSON ({str(err)[:80]})") from err


def _expect(value: object, kind: type, what: str, key: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CorruptInputError(f"read {what}: {key!r} is missing or not a {kind.__name__}")
    return value


def _platform(raw: object, what: str) -> Platform | None:
    if raw is None:
        return None
    raw = _expect(raw, dict, what, K_PLATFORM)
    assert isinstance(raw, dict)  # for mypy: _expect checked it
    return Platform(str(raw.get(K_OS, "")), str(raw.get(K_ARCH, "")),
                    str(raw.get(K_VARIANT, "")))


def _size(raw: object, what: str) -> int | None:
    """A descriptor's ``size``: a byte count an int64 can hold; None when left out (the spec
    requires it, but runtimes read blobs without it)."""
    if raw is None:
        return None
    size: int = _expect(raw, int, what, K_SIZE)
    if not 0 <= size <= MAX_SIZE:
        raise CorruptInputError(f"read {what}: {K_SIZE!r} {str(size)[:40]} is not a byte count "
                                f"(0 to {MAX_SIZE})")
    return size


def parse_descriptor(raw: object, what: str) -> Descriptor:
    """One descriptor (``mediaType``, ``digest``, ``size``, annotations, platform)."""
    d: DescriptorJSON = _expect(raw, dict, what, "descriptor")
    annotations: dict[str, str] = _expect(d.get(K_ANNOTATIONS) or {}, dict, what, K_ANNOTATIONS)
    return Descriptor(
        media_type=str(d.get(K_MEDIA_TYPE, "")),
        digest=check_digest(d.get(K_DIGEST), what),
        size=_size(d.get(K_SIZE), what),
        annotations={str(k): str(v) for k, v in annotations.items()},
        platform=_platform(d.get(K_PLATFORM), what),
    )


def _descriptors(raw: object, what: str, key: str) -> tuple[Descriptor, ...]:
    items: Sequence[object] = _expect(raw, list, what, key)
    return tuple(parse_descriptor(item, f"{what} {key}[{i}]") for i, item in enumerate(items))


def parse_index(data: bytes, what: str = INDEX_FILE) -> Index:
    raw: IndexJSON = _expect(parse_json(data, what), dict, what, "document")
    return Index(_descriptors(raw.get(K_MANIFESTS), what, K_MANIFESTS))


def parse_manifest(data: bytes, what: str) -> Manifest:
    raw: ManifestJSON = _expect(parse_json(data, what), dict, what, "document")
    if K_MANIFESTS in raw and K_LAYERS not in raw:
        raise CorruptInputError(f"read {what}: an index where an image manifest was expected")
    return Manifest(parse_descriptor(raw.get(K_CONFIG), f"{what} config"),
                    _descriptors(raw.get(K_LAYERS), what, K_LAYERS))


def parse_config(data: bytes, what: str) -> ImageConfig:
    raw = _expect(parse_json(data, what), dict, what, "document")
    rootfs = _expect(raw.get(K_ROOTFS), dict, what, K_ROOTFS)
    diff_ids = _expect(rootfs.get(K_DIFF_IDS, []), list, what, K_DIFF_IDS)
    plat = Platform(str(raw.get(K_OS, "")), str(raw.get(K_ARCH, "")),
                    str(raw.get(K_VARIANT, "")))
    return ImageConfig(tuple(check_digest(d, f"{what} diff_ids") for d in diff_ids), plat)
