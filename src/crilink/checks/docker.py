"""Checks for a Docker overlay2 data root: layer records against driver dirs, and back.

Kinds (paths relative to the data root; ``id`` is what an operator types next):
- ``orphan_layer_dir`` (warning): ``overlay2/<name>`` that no layerdb ``cache-id`` and no
  container ``mount-id``/``init-id`` knows. ``bytes``: what removing it frees.
- ``missing_layer_dir`` (error): a layerdb chain (or a container mount) whose driver dir is
  gone, or that has no ``cache-id`` at all; dockerd fails on every image that uses it.
- ``dangling_parent`` (error): a chain or mount whose ``parent`` chain is not in layerdb
  (``detail.reason`` ``missing``), or a chain on a parent cycle (``cycle``: no base layer).
- ``unreferenced_layer`` (warning): a chain that no image, container mount or used child
  chain needs. ``bytes``: its driver dir's exclusive bytes (hard links counted once).
- ``missing_image_layer`` (error): an image in imagedb whose top chain is not in layerdb;
  dockerd drops such an image when it starts.
- ``incomplete_layer`` (warning): a ``layerdb/tmp/write-set-*`` left by an interrupted
  layer registration (``docker load``/``pull`` killed).
The shared overlay ``l/`` checks (short links, ``link``, ``lower``) run through
:mod:`crilink.checks.overlaylinks` with the driver dir names as known layer ids.
Never writes, never prints.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from enum import StrEnum
from typing import TYPE_CHECKING

from crilink.checks import overlaylinks as ol
from crilink.errors import InputError
from crilink.formats import docker as fmt
from crilink.model import Finding, ScanResult, Severity, TargetKind
from crilink.stores.chains import ParentChains, cycle_members
from crilink.stores.docker import DockerView, open_docker
from crilink.stores.usage import usage_of

if TYPE_CHECKING:
    from crilink.scan import ScanOptions

__all__ = ["Kind", "check_view", "dir_parents", "expectations", "referenced_chains", "run",
           "torn_reasons"]

ROOTFS_CHECKS = "crilink.checks.rootfs"  # imported lazily: only --deep needs it


class Kind(StrEnum):
    """Finding kinds this module emits (stable names shared with the other stores)."""

    ORPHAN_LAYER_DIR = "orphan_layer_dir"
    MISSING_LAYER_DIR = "missing_layer_dir"
    DANGLING_PARENT = "dangling_parent"
    UNREFERENCED_LAYER = "unreferenced_layer"
    INCOMPLETE_LAYER = "incomplete_layer"
    MISSING_IMAGE_LAYER = "missing_image_layer"


def _layer_path(chain: str) -> str:
    return f"{fmt.LAYERDB_SHA256_DIR}/{chain}"


def _mount_path(container: str) -> str:
    return f"{fmt.MOUNTS_DIR}/{container}"


def _dir_bytes(view: DockerView, name: str) -> int:
    return usage_of([view.root / fmt.DRIVER_DIR / name]).exclusive


def _orphan_dirs(view: DockerView) -> Iterator[Finding]:
    for name in sorted(view.layer_dirs - view.known_dirs()):
        yield Finding(Kind.ORPHAN_LAYER_DIR, Severity.WARNING, f"{fmt.DRIVER_DIR}/{name}",
                      message="no layerdb record or container mount knows this layer dir",
                      id=name, bytes=_dir_bytes(view, name))


def _missing_dirs(view: DockerView) -> Iterator[Finding]:
    for chain, layer in sorted(view.layers.items()):
        if layer.cache_id is None:
            yield Finding(Kind.MISSING_LAYER_DIR, Severity.ERROR, _layer_path(chain),
                          message="layerdb entry has no cache-id", id=chain)
        elif layer.cache_id not in view.layer_dirs:
            yield Finding(Kind.MISSING_LAYER_DIR, Severity.ERROR, _layer_path(chain),
                          message=f"driver dir {fmt.DRIVER_DIR}/{layer.cache_id} is gone",
                          id=chain, detail={"cache_id": layer.cache_id})
    for container, mount in sorted(view.mounts.items()):
        for role, name in (("mount_id", mount.mount_id), ("init_id", mount.init_id)):
            if name is not None and name not in view.layer_dirs:
                yield Finding(Kind.MISSING_LAYER_DIR, Severity.ERROR, _mount_path(container),
                              message=f"container {role} dir {fmt.DRIVER_DIR}/{name} is gone",
                              id=container, detail={role: name})


def _dangling_parents(view: DockerView) -> Iterator[Finding]:
    cycle = cycle_members({c: layer.parent for c, layer in view.layers.items()})
    for chain, layer in sorted(view.layers.items()):
        if layer.parent is not None and layer.parent not in view.layers:
            yield Finding(Kind.DANGLING_PARENT, Severity.ERROR, _layer_path(chain),
                          message=f"parent chain {layer.parent} is not in layerdb", id=chain,
                          detail={"parent": layer.parent, "reason": "missing"})
        elif chain in cycle:
            yield Finding(Kind.DANGLING_PARENT, Severity.ERROR, _layer_path(chain),
                          message="parent chains loop back to this layer: no base layer",
                          id=chain, detail={"parent": layer.parent or "", "reason": "cycle"})
    for container, mount in sorted(view.mounts.items()):
        if mount.parent is not None and mount.parent not in view.layers:
            yield Finding(Kind.DANGLING_PARENT, Severity.ERROR, _mount_path(container),
                          message=f"container's parent chain {mount.parent} is not in layerdb",
                          id=container, detail={"parent": mount.parent, "reason": "missing"})


def _image_chains(view: DockerView) -> Iterator[Finding]:
    for image_id, image in sorted(view.images.items()):
        if image.top_chain is not None and image.top_chain not in view.layers:
            yield Finding(Kind.MISSING_IMAGE_LAYER, Severity.ERROR,
                          f"{fmt.IMAGEDB_CONTENT_DIR}/{image_id}",
                          message=f"top layer chain {image.top_chain} is not in layerdb",
                          id=image_id, digest=fmt.SHA256_PREFIX + image_id,
                          detail={"chain": image.top_chain, "refs": ", ".join(image.refs)})


def referenced_chains(view: DockerView) -> set[str]:
    """Chains some image or container mount needs, with all their ancestors."""
    todo = [i.top_chain for i in view.images.values() if i.top_chain]
    todo += [m.parent for m in view.mounts.values() if m.parent]
    seen: set[str] = set()
    while todo:
        chain = todo.pop()
        if chain in seen:
            continue
        seen.add(chain)
        layer = view.layers.get(chain)
        if layer is not None and layer.parent is not None:
            todo.append(layer.parent)
    return seen


def _unreferenced(view: DockerView) -> Iterator[Finding]:
    used = referenced_chains(view)
    for chain, layer in sorted(view.layers.items()):
        if chain in used:
            continue
        size = _dir_bytes(view, layer.cache_id) if layer.cache_id else 0
        yield Finding(Kind.UNREFERENCED_LAYER, Severity.WARNING, _layer_path(chain),
                      message="no image, container or used child layer needs this layer",
                      id=chain, bytes=size,
                      detail={"cache_id": layer.cache_id or "", "diff_id": layer.diff_id or ""})


def _incomplete(view: DockerView) -> Iterator[Finding]:
    for name in view.pending:
        yield Finding(Kind.INCOMPLETE_LAYER, Severity.WARNING, f"{fmt.LAYERDB_TMP_DIR}/{name}",
                      message="an interrupted layer registration left this behind", id=name)


_MISSING = "\0missing"  # a parent dir no record gives: never a dir name


def _dir_of(view: DockerView, chain: str | None) -> str | None:
    """The driver dir of ``chain`` (``None`` for no chain, ``_MISSING`` when unknown)."""
    if chain is None:
        return None
    layer = view.layers.get(chain)
    return layer.cache_id if layer is not None and layer.cache_id else _MISSING


def dir_parents(view: DockerView) -> dict[str, str | None]:
    """Driver dir -> the driver dir right below it, as layerdb and the mounts say."""
    parents: dict[str, str | None] = {}
    for layer in view.layers.values():
        if layer.cache_id is not None:
            parents[layer.cache_id] = _dir_of(view, layer.parent)
    for mount in view.mounts.values():
        below = _dir_of(view, mount.parent)
        if mount.init_id is not None:
            parents[mount.init_id] = below
        if mount.mount_id is not None:
            parents[mount.mount_id] = mount.init_id if mount.init_id is not None else below
    return parents


def expectations(view: DockerView) -> ol.Expectations:
    """What the layerdb says each driver dir's ``lower`` must be, for the shared checks: a
    dir whose chain passes a missing record or a cycle has no expectation."""
    chains = ParentChains(dir_parents(view), limit=ol.DOCKER_MAX_LOWERS, strict=True)
    return ol.Expectations(chains=chains, max_lowers=ol.DOCKER_MAX_LOWERS,
                           known=view.known_dirs())


_TORN_KINDS = frozenset({Kind.DANGLING_PARENT, Kind.MISSING_IMAGE_LAYER})


def torn_reasons(view: DockerView, findings: list[Finding]) -> tuple[str, ...]:
    """Why the layerdb cannot be trusted to say which driver dirs are orphans (empty: it
    can): cache ids missing, empty or unreadable; images or chains naming chains layerdb
    lacks; parent cycles; no layer records at all while dirs and images exist."""
    reasons: list[str] = []
    no_cache = sum(1 for layer in view.layers.values() if layer.cache_id is None)
    if no_cache:
        reasons.append(f"{no_cache} layerdb entries have no readable cache-id")
    if not view.layers and view.layer_dirs and view.images:
        reasons.append(f"layerdb is empty while {len(view.images)} images and "
                       f"{len(view.layer_dirs)} layer dirs exist")
    gaps = sum(1 for f in findings if f.kind in _TORN_KINDS)
    if gaps:
        reasons.append(f"{gaps} images or layer chains name chains that layerdb lacks "
                       "or that loop")
    return tuple(reasons)


def _overlay_links(view: DockerView) -> Iterator[Finding]:
    """The shared ``l/``-link checks (:mod:`crilink.checks.overlaylinks`) on ``overlay2/``."""
    if not (view.root / fmt.DRIVER_DIR).is_dir():
        return
    yield from ol.linked_driver_finding(view.root, fmt.DRIVER_DIR)
    state = ol.read_overlay(str(view.root), fmt.DRIVER_DIR)
    yield from ol.check_links(state, expectations(view))


_CHECKS: tuple[Callable[[DockerView], Iterator[Finding]], ...] = (
    _overlay_links, _orphan_dirs, _missing_dirs, _dangling_parents, _image_chains, _unreferenced,
    _incomplete,
)


def check_view(view: DockerView) -> Iterator[Finding]:
    """Every finding for one data root, check by check."""
    for check in _CHECKS:
        yield from check(view)


def _deep(view: DockerView, options: ScanOptions) -> Iterator[Finding]:
    """``--deep``: the directory symlink checks on each layer dir's ``diff/``."""
    try:
        rootfs = importlib.import_module(ROOTFS_CHECKS)
    except ImportError as err:
        raise InputError(f"scan --deep: the directory checks are not available "
                         f"({ROOTFS_CHECKS} missing)") from err
    sub = replace(options, deep=False, progress=None)
    for name in sorted(view.layer_dirs):
        diff = f"{fmt.DRIVER_DIR}/{name}/{ol.DIFF_DIR}"
        if (view.root / diff).is_dir():
            result: ScanResult = rootfs.run(str(view.root / diff), sub)
            yield from (replace(f, path=diff + f.path, layer=f.layer or name, id=f.id or name)
                        for f in result.findings)


def run(target: str, options: ScanOptions) -> ScanResult:
    """Scan the Docker data root ``target``; ``options.deep`` adds the layers' contents."""
    view = open_docker(target)
    findings = list(check_view(view))
    if options.deep:
        findings += _deep(view, options)
    stats = {"layers": len(view.layers), "mounts": len(view.mounts),
             "images": len(view.images), "layer_dirs": len(view.layer_dirs)}
    return ScanResult.of(str(view.root), TargetKind.DOCKER, findings, stats)
