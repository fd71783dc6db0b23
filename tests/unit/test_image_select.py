"""Choosing an image: refs, tags, nested indexes, platforms, and the errors listing choices."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest

from crilink.errors import CorruptInputError, InputError, UsageError
from crilink.formats.imageselect import (
    normalize_name,
    parse_platform,
    ref_matches,
    select_image,
)
from crilink.formats.oci import (
    Descriptor,
    Platform,
    blob_path,
    parse_descriptor,
    parse_index,
)

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Blobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, doc: Any) -> str:
        raw = json.dumps(doc).encode()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        self.data[digest] = raw
        return digest

    def load(self, desc: Descriptor) -> bytes:
        return self.data[desc.digest]

    def image(self, arch: str) -> dict[str, Any]:
        config = self.put({"architecture": arch, "os": "linux",
                           "rootfs": {"type": "layers", "diff_ids": []}})
        man = self.put({"schemaVersion": 2, "config": {
            "mediaType": "x", "digest": config, "size": 1}, "layers": []})
        return {"mediaType": MT_MANIFEST, "digest": man, "size": 1}


def index(*descs: dict[str, Any]) -> bytes:
    return json.dumps({"schemaVersion": 2, "manifests": list(descs)}).encode()


def named(desc: dict[str, Any], name: str) -> dict[str, Any]:
    return {**desc, "annotations": {"org.opencontainers.image.ref.name": name}}


def plat(desc: dict[str, Any], arch: str, variant: str = "") -> dict[str, Any]:
    p = {"os": "linux", "architecture": arch}
    if variant:
        p["variant"] = variant
    return {**desc, "platform": p}


def test_single_image_needs_no_ref() -> None:
    b = Blobs()
    img = b.image("amd64")
    sel = select_image(parse_index(index(named(img, "v1"))), b.load, "L")
    assert sel.descriptor.digest == img["digest"]


def test_ambiguous_lists_refs_and_ref_picks() -> None:
    b = Blobs()
    one, two = b.image("amd64"), b.image("arm64")
    idx = parse_index(index(named(one, "base"), named(one, "v1"), named(two, "v2")))
    with pytest.raises(InputError, match="holds 2 images; choose one with --ref: base, v1, v2"):
        select_image(idx, b.load, "L")
    assert select_image(idx, b.load, "L", ref="v2").descriptor.digest == two["digest"]
    assert select_image(idx, b.load, "L", ref="base").descriptor.digest == one["digest"]
    with pytest.raises(InputError, match="no image 'v9'; available: base, v1, v2"):
        select_image(idx, b.load, "L", ref="v9")


def test_ref_by_full_name_or_tag() -> None:
    desc = parse_descriptor({"mediaType": MT_MANIFEST, "digest": "sha256:" + "a" * 64,
                             "size": 1, "annotations": {
                                 "io.containerd.image.name": "docker.io/x/y:v2",
                                 "org.opencontainers.image.ref.name": "v2"}}, "d")
    assert ref_matches(desc, "v2")
    assert ref_matches(desc, "docker.io/x/y:v2")
    assert ref_matches(desc, "x/y:v2")  # normalised: docker.io is the default registry
    assert not ref_matches(desc, "localhost:5000/other:v2")  # a repository is never a tag
    assert not ref_matches(desc, "v3")


def test_normalize_name() -> None:
    for short in ("busybox", "busybox:latest", "docker.io/busybox", "index.docker.io/busybox"):
        assert normalize_name(short) == "docker.io/library/busybox:latest"
    assert normalize_name("localhost:5000/a") == "localhost:5000/a:latest"
    assert normalize_name("quay.io/x/y@sha256:ab") == "quay.io/x/y@sha256:ab"


def docker_named(desc: dict[str, Any], full: str) -> dict[str, Any]:
    """As docker save (>= 25) and ctr export annotate: a bare tag and the full name."""
    return {**desc, "annotations": {"org.opencontainers.image.ref.name": "latest",
                                    "io.containerd.image.name": full}}


def test_ref_naming_another_repository_is_refused_even_for_a_lone_image() -> None:
    b = Blobs()
    busybox = docker_named(b.image("amd64"), "docker.io/library/busybox:latest")
    idx = parse_index(index(busybox))
    for ref in ("alpine:latest", "docker.io/library/alpine:latest"):
        with pytest.raises(InputError, match=re.escape(
                f"no image '{ref}'; available: docker.io/library/busybox:latest")):
            select_image(idx, b.load, "L", ref=ref)
    for ref in ("busybox", "busybox:latest", "latest"):
        assert select_image(idx, b.load, "L", ref=ref).descriptor.digest == busybox["digest"]


def test_full_name_picks_among_images_sharing_a_tag() -> None:
    b = Blobs()
    busybox = docker_named(b.image("amd64"), "docker.io/library/busybox:latest")
    alpine = docker_named(b.image("arm64"), "docker.io/library/alpine:latest")
    idx = parse_index(index(busybox, alpine))
    for ref in ("alpine:latest", "alpine", "docker.io/library/alpine:latest"):
        assert select_image(idx, b.load, "L", ref=ref).descriptor.digest == alpine["digest"]
    with pytest.raises(InputError, match=re.escape(
            "several images 'latest'; choose one with --ref: docker.io/library/alpine:latest, "
            "docker.io/library/busybox:latest")):
        select_image(idx, b.load, "L", ref="latest")


def test_nested_multi_platform_index_picks_platform() -> None:
    b = Blobs()
    amd, arm7, arm64 = b.image("amd64"), b.image("arm"), b.image("arm64")
    nested = b.put({"schemaVersion": 2, "manifests": [
        plat(amd, "amd64"), plat(arm7, "arm", "v7"), plat(arm64, "arm64", "v8"),
        {**b.image("x"), "platform": {"os": "unknown", "architecture": "unknown"}}]})
    idx = parse_index(index(named({"mediaType": MT_INDEX, "digest": nested, "size": 1}, "m")))
    for want, got in ((Platform("linux", "arm64"), arm64), (Platform("linux", "amd64"), amd),
                      (Platform("linux", "arm", "v7"), arm7)):
        assert select_image(idx, b.load, "L", platform=want).descriptor.digest == got["digest"]
    with pytest.raises(InputError, match="no image for platform linux/s390x; available: "
                                         "linux/amd64, linux/arm/v7, linux/arm64/v8"):
        select_image(idx, b.load, "L", platform=Platform("linux", "s390x"))


def test_explicit_platform_is_checked_for_a_lone_image() -> None:
    b = Blobs()
    arm6 = b.image("arm")
    idx = parse_index(index(plat(arm6, "arm", "v6")))
    for want in (Platform("linux", "s390x"), Platform("linux", "arm", "v7")):
        with pytest.raises(InputError, match=f"no image for platform {want}; available: "
                                             "linux/arm/v6"):
            select_image(idx, b.load, "L", platform=want)
    # as with several images: [v6, v5] refuses v7 too
    two = parse_index(index(plat(arm6, "arm", "v6"), plat(b.image("arm"), "arm", "v5")))
    with pytest.raises(InputError, match="no image for platform linux/arm/v7"):
        select_image(two, b.load, "L", platform=Platform("linux", "arm", "v7"))
    for want in (Platform("linux", "arm", "v6"), Platform("linux", "arm")):
        assert select_image(idx, b.load, "L", platform=want).descriptor.digest == arm6["digest"]
    # without --platform a lone image is scanned whatever its platform
    assert select_image(idx, b.load, "L").descriptor.digest == arm6["digest"]
    # a descriptor without platform: the config's is checked
    bare = parse_index(index(b.image("arm64")))
    with pytest.raises(InputError, match="no image for platform linux/amd64; available: "
                                         "linux/arm64"):
        select_image(bare, b.load, "L", platform=Platform("linux", "amd64"))


def test_parse_platform() -> None:
    assert parse_platform("linux/arm64/v8") == Platform("linux", "arm64", "v8")
    with pytest.raises(UsageError):
        parse_platform("arm64")


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "md5:abc", "sha256:" + "A" * 64,
                                    None, 7])
def test_hostile_digests_never_become_paths(digest: object) -> None:
    with pytest.raises(CorruptInputError):
        parse_index(index({"mediaType": MT_MANIFEST, "digest": digest, "size": 1}))
    with pytest.raises(CorruptInputError):
        blob_path(str(digest))


@pytest.mark.parametrize("doc", [b"{", b"[]", b'{"manifests": {}}', b'{"manifests": [1]}',
                                 b'{"manifests": [{"digest": "sha256:' + b"a" * 64 +
                                 b'", "size": "big"}]}'])
def test_corrupt_index_is_a_one_line_error(doc: bytes) -> None:
    with pytest.raises(CorruptInputError) as err:
        parse_index(doc)
    assert "\n" not in err.value.message
