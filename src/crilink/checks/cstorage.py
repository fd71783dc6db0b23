"""Checks of a containers-storage graph root (overlay driver): records against the dirs.

Findings, paths relative to the graph root:
- the overlay link checks of :mod:`crilink.checks.overlaylinks` (``missing_short_link``,
  ``wrong_short_link``, ``dangling_short_link``, ``missing_link_file``, ``bad_lower``);
- ``orphan_layer_dir`` / ``missing_layer_dir``: a dir no record knows / a record with no dir;
- ``incomplete_layer``: a record flagged incomplete (an interrupted write or removal; podman's
  next write to the store deletes it);
- ``unreferenced_layer``: complete layers no image or container reaches through the parent
  chain (``bytes``: what deleting the dir frees, hard-link aware);
- ``missing_layer_record`` (error): an image or container names a layer that layers.json
  does not know (``detail.layer``; the records look torn: gc then removes no orphan dir);
- ``dangling_parent`` (error): a layer record whose parent no record knows
  (``detail.reason`` ``missing``) or that lies on a parent cycle (``cycle``).

With ``options.deep`` the directory symlink checks run on each layer's ``diff/``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from crilink.checks.overlaylinks import (
    CSTORAGE_MAX_LOWERS,
    DIFF_DIR,
    Expectations,
    OverlayState,
    check_layer_dirs,
    check_links,
    linked_driver_finding,
    read_overlay,
)
from crilink.errors import InputError
from crilink.formats.cstorage import CONTAINERS_JSON, IMAGES_JSON, LAYERS_JSON, OVERLAY_DIR
from crilink.model import Finding, ScanResult, Severity, TargetKind
from crilink.stores.chains import cycle_members
from crilink.stores.cstorage import CStorageStore
from crilink.stores.usage import tree_usage

if TYPE_CHECKING:
    from crilink.scan import ScanOptions

__all__ = ["expectations", "record_gaps", "run", "scan_store", "torn_reasons"]

ROOTFS_CHECKS = "crilink.checks.rootfs"


def expectations(store: CStorageStore) -> Expectations:
    """What the records say the overlay dir must look like."""
    return Expectations(chains=store.chains(CSTORAGE_MAX_LOWERS),
                        skip=frozenset(layer.id for layer in store.layers if layer.incomplete),
                        max_lowers=CSTORAGE_MAX_LOWERS,
                        known=frozenset(layer.id for layer in store.layers))


def _sizer(root: Path) -> Callable[[str], int | None]:
    def size_of(rel: str) -> int | None:
        return tree_usage(root / rel).exclusive

    return size_of


def _record_findings(store: CStorageStore, state: OverlayState,
                     size_of: Callable[[str], int | None]) -> Iterator[Finding]:
    live = store.live_layers()
    for layer in store.layers:
        path = state.path(layer.id)
        if layer.incomplete:
            yield Finding("incomplete_layer", Severity.WARNING, path, id=layer.id,
                          bytes=size_of(path) if layer.id in state.layers else 0,
                          message="flagged incomplete: an interrupted write or removal",
                          detail={"names": list(layer.names)} if layer.names else {})
        elif layer.id not in live:
            yield Finding("unreferenced_layer", Severity.WARNING, path, id=layer.id,
                          bytes=size_of(path) if layer.id in state.layers else 0,
                          message="no image, container or child layer uses it",
                          detail={"parent": layer.parent} if layer.parent else {})


def record_gaps(store: CStorageStore) -> Iterator[Finding]:
    """Records that name layers or parents no layer record knows (torn records)."""
    known = {layer.id for layer in store.layers}
    for img in store.images:
        for lid in img.layers:
            if lid not in known:
                yield Finding("missing_layer_record", Severity.ERROR, IMAGES_JSON, id=img.id,
                              message=f"image names layer {lid}, which {LAYERS_JSON} lacks",
                              detail={"layer": lid, "names": list(img.names)})
    for ctr in store.containers:
        if ctr.layer is not None and ctr.layer not in known:
            yield Finding("missing_layer_record", Severity.ERROR, CONTAINERS_JSON, id=ctr.id,
                          message=f"container names layer {ctr.layer}, which {LAYERS_JSON} "
                          "lacks", detail={"layer": ctr.layer, "names": list(ctr.names)})
    cycle = cycle_members(store.parents())
    for layer in store.layers:
        if layer.parent is not None and layer.parent not in known:
            yield Finding("dangling_parent", Severity.ERROR, LAYERS_JSON, id=layer.id,
                          message=f"parent {layer.parent} has no layer record",
                          detail={"parent": layer.parent, "reason": "missing"})
        elif layer.id in cycle:
            yield Finding("dangling_parent", Severity.ERROR, LAYERS_JSON, id=layer.id,
                          message="parents loop back to this layer: no base layer",
                          detail={"parent": layer.parent or "", "reason": "cycle"})


def torn_reasons(store: CStorageStore, state: OverlayState) -> tuple[str, ...]:
    """Why the records cannot be trusted to say which dirs are orphans (empty: they can)."""
    reasons: list[str] = []
    if not store.layers and state.layers:
        what = "has no records" if store.layers_json_present else "is missing"
        reasons.append(f"{LAYERS_JSON} {what} while {len(state.layers)} layer dirs exist")
    gaps = list(record_gaps(store))
    named = sum(1 for f in gaps if f.kind == "missing_layer_record")
    if named:
        reasons.append(f"images or containers name {named} layers {LAYERS_JSON} lacks")
    if len(gaps) > named:
        reasons.append(f"{len(gaps) - named} layer records have a missing or looping parent")
    return tuple(reasons)


def _deep(store: CStorageStore, state: OverlayState, options: ScanOptions) -> Iterator[Finding]:
    try:
        rootfs = importlib.import_module(ROOTFS_CHECKS)
    except ImportError as err:
        raise InputError("scan --deep: the directory checks are not available "
                         f"({ROOTFS_CHECKS} missing)") from err
    sub = replace(options, deep=False, progress=None)
    for lid in sorted(state.layers):
        if not state.layers[lid].has_diff:
            continue
        diff = state.path(lid, DIFF_DIR)
        result: ScanResult = rootfs.run(str(store.root / diff), sub)
        for f in result.findings:
            yield replace(f, path=diff + f.path, layer=f.layer or lid, id=f.id or lid)


def scan_store(store: CStorageStore, options: ScanOptions | None = None) -> ScanResult:
    """Every finding for an opened store."""
    progress = options.progress if options else None
    state = read_overlay(str(store.root), OVERLAY_DIR,
                         (lambda n: progress(n, None)) if progress else None)
    size_of = _sizer(store.root)
    findings = linked_driver_finding(store.root, OVERLAY_DIR)
    findings += check_links(state, expectations(store))
    known = frozenset(layer.id for layer in store.layers)
    findings += check_layer_dirs(state, known, size_of)
    findings += _record_findings(store, state, size_of)
    findings += record_gaps(store)
    if options is not None and options.deep:
        findings += _deep(store, state, options)
    stats = {"layers": len(store.layers), "images": len(store.images),
             "containers": len(store.containers), "layer_dirs": len(state.layers),
             "short_links": len(state.short_links)}
    return ScanResult.of(str(store.root), TargetKind.CONTAINERS_STORAGE, findings, stats)


def run(target: str, options: ScanOptions) -> ScanResult:
    """``crilink scan GRAPH_ROOT`` for a containers-storage store."""
    store = CStorageStore.open(target)
    if not (store.root / OVERLAY_DIR).is_dir():
        raise InputError(f"scan {store.root}: no {OVERLAY_DIR}/ dir; only the overlay "
                         "driver is supported")
    return scan_store(store, options)
