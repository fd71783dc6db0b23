"""Choose one image from an index: by reference, then by platform through nested indexes.

Nouns: a *ref* is what the operator types after ``--ref``: a tag (``v2``), the layout's
``org.opencontainers.image.ref.name`` annotation, or a full name (``docker.io/x/y:v2``,
``y:v2``), matched after normalisation against ``io.containerd.image.name`` (or a ``ref.name``
that holds a full name). A bare tag matches ``ref.name`` or a full name's tag; a ref naming a
repository is never matched by its tag alone, and a ref that names nothing is an error, even
when the index holds a single image. A *platform* is
``os/arch[/variant]``; without ``--platform`` the host's is used.

Errors: :class:`crilink.errors.InputError` listing what is there, when nothing or more than
one image fits; :class:`crilink.errors.UsageError` for a malformed ``--platform``.
"""

from __future__ import annotations

import platform as _host
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crilink.errors import CorruptInputError, InputError, UsageError
from crilink.formats.oci import (
    ANNOTATION_CONTAINERD_NAME,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    is_index,
    parse_config,
    parse_index,
    parse_manifest,
)

__all__ = ["HOST_ARCH", "Selected", "check_platform", "host_platform", "is_bare_tag",
           "normalize_name", "parse_platform", "ref_matches", "ref_matches_name",
           "select_image", "tag_of"]

Loader = Callable[[Descriptor], bytes]

# platform.machine() -> (GOARCH, variant)
HOST_ARCH: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "i386": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
}
MAX_NESTING = 8
UNKNOWN = "unknown"  # attestation manifests carry platform unknown/unknown
DEFAULT_DOMAIN, LEGACY_DOMAIN = "docker.io", "index.docker.io"
OFFICIAL_NAMESPACE, DEFAULT_TAG = "library", "latest"


@dataclass(frozen=True, slots=True)
class Selected:
    """The chosen image: its manifest descriptor, manifest and config."""

    descriptor: Descriptor
    manifest: Manifest
    config: ImageConfig


def host_platform() -> Platform:
    arch, variant = HOST_ARCH.get(_host.machine().lower(), (_host.machine().lower(), ""))
    return Platform("linux", arch, variant)


def parse_platform(text: str) -> Platform:
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"--platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def tag_of(ref: str) -> str:
    name = ref.rsplit("@", 1)[0]
    _head, sep, tag = name.rpartition(":")
    return tag if sep and "/" not in tag else ""


def is_bare_tag(ref: str) -> bool:
    """A word with no repository, registry or digest part (``latest``, ``v2``)."""
    return bool(ref) and not any(c in ref for c in "/:@")


def normalize_name(ref: str) -> str:
    """The full form of an image name as Docker and containerd spell it:
    ``busybox`` -> ``docker.io/library/busybox:latest``; a registry is a first component with
    ``.`` or ``:`` or ``localhost``; no tag and no digest means ``:latest``."""
    name, at, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    repo, _sep, tag = path.rpartition(":") if ":" in path else (path, "", "")
    if domain == DEFAULT_DOMAIN and "/" not in repo:
        repo = f"{OFFICIAL_NAMESPACE}/{repo}"
    if not tag and not at:
        tag = DEFAULT_TAG
    return f"{domain}/{repo}" + (f":{tag}" if tag else "") + (f"@{digest}" if at else "")


def ref_matches_name(name: str, ref: str) -> bool:
    """``ref`` names the image called ``name``: equal as written or after
    :func:`normalize_name`, or ``ref`` is a bare tag equal to ``name``'s tag."""
    if ref == name:
        return True
    if is_bare_tag(name):
        return False
    return normalize_name(ref) == normalize_name(name) or (is_bare_tag(ref)
                                                           and tag_of(name) == ref)


def ref_matches(desc: Descriptor, ref: str) -> bool:
    """``ref`` names ``desc``: the manifest digest, a name exactly as annotated, a full name
    equal after :func:`normalize_name`, or a bare tag equal to ``ref.name`` or to a full
    name's tag. A ref with a repository is never matched by its tag alone."""
    names = {desc.ref_name, desc.annotations.get(ANNOTATION_CONTAINERD_NAME)} - {None, ""}
    return desc.digest == ref or any(ref_matches_name(n, ref) for n in names if n)


def _label(desc: Descriptor) -> str:
    name = desc.annotations.get(ANNOTATION_CONTAINERD_NAME) or desc.ref_name
    return name or (str(desc.platform) if desc.platform else desc.digest[:19])


def _platform_fits(have: Platform | None, want: Platform) -> bool:
    if have is None:
        return False
    if (have.os, have.architecture) != (want.os, want.architecture):
        return False
    return not want.variant or not have.variant or have.variant == want.variant


def _pick_platform(cands: Sequence[Descriptor], want: Platform, what: str) -> Descriptor:
    fits = [d for d in cands if _platform_fits(d.platform, want)]
    exact = [d for d in fits if d.platform is not None and d.platform.variant == want.variant]
    if exact or fits:
        return (exact or fits)[0]
    have = sorted({str(d.platform) for d in cands if d.platform is not None
                   and d.platform.os != UNKNOWN})
    raise InputError(f"{what}: no image for platform {want}; available: "
                     f"{', '.join(have) or 'none'} (choose one with --platform)")


def _choose(cands: Sequence[Descriptor], want: Platform, what: str,
            explicit: bool) -> Descriptor:
    """One of ``cands``; a lone image is taken as it is unless ``--platform`` was given and
    its descriptor names another platform."""
    unique = list({d.digest: d for d in cands}.values())
    if len(unique) == 1 and not (explicit and unique[0].platform is not None):
        return unique[0]
    if unique and all(d.platform is not None for d in unique):
        return _pick_platform(unique, want, what)
    labels = sorted({_label(d) for d in cands})
    raise InputError(f"{what}: holds {len(unique)} images; choose one with --ref: "
                     f"{', '.join(labels)}")


def _refuse_ambiguous(cands: Sequence[Descriptor], ref: str, what: str) -> None:
    """Several differently named images fit ``ref`` (a bare tag such as ``latest``)."""
    labels = sorted({_label(d) for d in cands})
    if len(labels) > 1 and len({d.digest for d in cands}) > 1:
        raise InputError(f"{what}: several images {ref!r}; choose one with --ref: "
                         f"{', '.join(labels)}")


def check_platform(have: Platform | None, want: Platform | None, what: str) -> None:
    """InputError when an explicit ``--platform`` (``want``) does not fit the platform an
    image's config states (nothing is checked when either is unknown)."""
    if want is None or have is None or not (have.os and have.architecture):
        return
    if not _platform_fits(have, want):
        raise InputError(f"{what}: no image for platform {want}; available: {have} "
                         "(choose it with --platform)")


def select_image(index: Index, load: Loader, what: str, ref: str | None = None,
                 platform: Platform | None = None) -> Selected:
    """The one image of ``index`` that ``ref`` and ``platform`` name. Without ``platform``
    the host's is preferred among several, and a lone image is taken whatever its platform;
    with it, an image of another platform is an error naming the platforms there."""
    want, explicit = platform or host_platform(), platform is not None
    cands = list(index.manifests)
    if not cands:
        raise InputError(f"{what}: the index lists no image")
    if ref is not None:
        cands = [d for d in cands if ref_matches(d, ref)]
        if not cands:
            labels = sorted({_label(d) for d in index.manifests})
            raise InputError(f"{what}: no image {ref!r}; available: {', '.join(labels)}")
        _refuse_ambiguous(cands, ref, what)
    desc = _choose(cands, want, what, explicit)
    for _ in range(MAX_NESTING):
        if not is_index(desc):
            chosen = _load_image(desc, load)
            check_platform(chosen.config.platform, platform, what)
            return chosen
        nested = parse_index(load(desc), f"index {desc.digest}")
        inner = [d for d in nested.manifests
                 if d.platform is None or d.platform.os != UNKNOWN]
        if not inner:
            raise InputError(f"{what}: index {desc.digest} lists no image")
        desc = _choose(inner, want, what, explicit)
    raise CorruptInputError(f"{what}: indexes nested more than {MAX_NESTING} deep")


def _load_image(desc: Descriptor, load: Loader) -> Selected:
    manifest = parse_manifest(load(desc), f"manifest {desc.digest}")
    config = parse_config(load(manifest.config), f"config {manifest.config.digest}")
    return Selected(desc, manifest, config)
