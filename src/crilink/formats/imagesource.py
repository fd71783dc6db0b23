"""Open an image (OCI layout, oci-archive, docker-archive) as a plan: which layer files to read,
in order, and which digests they must have.

Guarantees: only small documents (index, manifests, configs, ``manifest.json``) are read here;
layer blobs are opened later, one at a time, from :attr:`ImagePlan.source`.
Errors: :class:`crilink.errors.InputError` when the image to scan cannot be chosen (with the
refs or platforms available), :class:`crilink.errors.CorruptInputError` when a document is
missing or damaged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from crilink.errors import CorruptInputError, InputError
from crilink.formats.archive import (
    DOCKER_MANIFEST,
    ArchiveSource,
    DockerImage,
    parse_docker_manifest,
)
from crilink.formats.imageselect import (
    Selected,
    check_platform,
    parse_platform,
    ref_matches_name,
    select_image,
)
from crilink.formats.oci import (
    INDEX_FILE,
    MAX_DOCUMENT,
    Descriptor,
    blob_path,
    check_digest,
    parse_config,
    parse_index,
)
from crilink.formats.source import BlobSource, DirSource
from crilink.model import TargetKind

__all__ = ["ImagePlan", "LayerRef", "open_image", "read_document"]

HEX64 = re.compile(r"[0-9a-f]{64}")
ID_ALGORITHM = "sha256"  # docker image ids are the sha256 of the config
SHORT_ID = 12  # docker's short image id, the shortest prefix --ref accepts


@dataclass(frozen=True, slots=True)
class LayerRef:
    """One layer to read: ``name`` in the source; ``digest`` as findings report it (the OCI
    descriptor digest, or the ``diff_id`` for docker-archive); what its bytes must hash to."""

    index: int
    name: str
    digest: str
    blob_digest: str | None
    diff_id: str | None
    size: int | None = None  # the blob's length per its descriptor (OCI); None: unknown


@dataclass(frozen=True, slots=True)
class ImagePlan:
    source: BlobSource
    kind: TargetKind
    image: str  # the chosen ref / tag / manifest digest, for messages
    layers: tuple[LayerRef, ...]


def open_image(target: str, ref: str | None = None, platform: str | None = None) -> ImagePlan:
    """The plan for the image at ``target``: a layout directory, else an archive (kind
    detected from its members); the caller closes ``plan.source``."""
    source: DirSource | ArchiveSource
    if Path(target).is_dir():
        source = DirSource(target)
        kind = TargetKind.OCI_LAYOUT
    else:
        source = ArchiveSource(target)
        kind = source.kind
    try:
        if kind is TargetKind.DOCKER_ARCHIVE:
            assert isinstance(source, ArchiveSource)  # for mypy: only archives are docker
            return _docker_plan(source, target, ref, platform)
        return _oci_plan(source, kind, target, ref, platform)
    except BaseException:
        source.close()
        raise


def _oci_plan(source: BlobSource, kind: TargetKind, target: str, ref: str | None,
              platform: str | None) -> ImagePlan:
    index = parse_index(source.read_small(INDEX_FILE, f"{target} {INDEX_FILE}"),
                        f"{target} {INDEX_FILE}")

    def load(desc: Descriptor) -> bytes:
        return read_document(source, desc)

    want = parse_platform(platform) if platform else None
    chosen = select_image(index, load, target, ref, want)
    return ImagePlan(source, kind, ref or chosen.descriptor.digest, _oci_layers(chosen))


def read_document(source: BlobSource, desc: Descriptor) -> bytes:
    """The blob of a manifest, index or config, refused unless as long as its descriptor says
    (the size is checked before reading, so a huge one costs nothing)."""
    what = f"blob {desc.digest}"
    if desc.size is not None and desc.size > MAX_DOCUMENT:
        raise CorruptInputError(f"read {what}: its descriptor says {desc.size} bytes, more "
                                f"than any image document ({MAX_DOCUMENT}); refused")
    data = source.read_small(blob_path(desc.digest), what)
    if desc.size is not None and len(data) != desc.size:
        raise CorruptInputError(f"read {what}: {len(data)} bytes, but its descriptor says "
                                f"{desc.size}")
    return data


def _oci_layers(chosen: Selected) -> tuple[LayerRef, ...]:
    layers = chosen.manifest.layers
    diff_ids = chosen.config.diff_ids
    if len(diff_ids) != len(layers):
        raise CorruptInputError(f"read manifest {chosen.descriptor.digest}: {len(layers)} "
                                f"layers but the config lists {len(diff_ids)} diff_ids")
    return tuple(LayerRef(i, blob_path(d.digest), d.digest, d.digest, diff_ids[i], d.size)
                 for i, d in enumerate(layers))


def _image_id(img: DockerImage) -> str:
    """The image id (the config's sha256 hex) when the config name spells it, else ``""``."""
    base = PurePosixPath(img.config).name.removesuffix(".json")
    return base if HEX64.fullmatch(base) else ""


def _docker_labels(images: tuple[DockerImage, ...]) -> list[str]:
    """Tags, and untagged images by their short id (or config name), as ``--ref`` takes them."""
    return sorted({t for img in images for t in img.repo_tags} |
                  {_image_id(img)[:SHORT_ID] or img.config for img in images
                   if not img.repo_tags})


def _docker_matches(img: DockerImage, ref: str) -> bool:
    """``ref`` names ``img``: a tag (normalised, or bare: the tag part), the config member
    name, or the image id (``sha256:<hex>`` or a prefix of at least 12 hex digits)."""
    if ref == img.config or any(ref_matches_name(t, ref) for t in img.repo_tags):
        return True
    image_id, hex_ref = _image_id(img), ref.removeprefix(f"{ID_ALGORITHM}:")
    return bool(image_id) and len(hex_ref) >= SHORT_ID and image_id.startswith(hex_ref)


def _pick_docker(images: tuple[DockerImage, ...], target: str, ref: str | None) -> DockerImage:
    if ref is None:
        if len(images) == 1:
            return images[0]
        raise InputError(f"{target}: holds {len(images)} images; choose one with --ref: "
                         f"{', '.join(_docker_labels(images))}")
    fits = [img for img in images if _docker_matches(img, ref)]
    if len(fits) != 1:
        what = "no image" if not fits else "several images"
        raise InputError(f"{target}: {what} {ref!r}; available: "
                         f"{', '.join(_docker_labels(images)) or 'none'}")
    return fits[0]


def _docker_plan(source: ArchiveSource, target: str, ref: str | None,
                 platform: str | None) -> ImagePlan:
    what = f"{target} {DOCKER_MANIFEST}"
    image = _pick_docker(parse_docker_manifest(source.read_small(DOCKER_MANIFEST, what), what),
                         target, ref)
    config = parse_config(source.read_small(image.config, f"config {image.config}"),
                          f"config {image.config}")
    check_platform(config.platform, parse_platform(platform) if platform else None, target)
    if len(config.diff_ids) != len(image.layers):
        raise CorruptInputError(f"read {what}: {len(image.layers)} layers but the config "
                                f"lists {len(config.diff_ids)} diff_ids")
    layers = tuple(LayerRef(i, name, check_digest(diff_id, what), None, diff_id)
                   for i, (name, diff_id) in enumerate(zip(image.layers, config.diff_ids,
                                                           strict=True)))
    label = ref or (image.repo_tags[0] if image.repo_tags else
                    _image_id(image)[:SHORT_ID] or image.config)
    return ImagePlan(source, TargetKind.DOCKER_ARCHIVE, label, layers)
