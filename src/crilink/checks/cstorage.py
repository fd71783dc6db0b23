"""Checks of a containers-storage graph root (overlay driver): records against the dirs.

Findings, paths relative to the graph root:
- the overlay link checks of :mod:`crilink.checks.overlaylinks` (``missing_short_link``,
  ``wrong_short_link``, ``dangling_short_link``, ``missing_link_file``, ``bad_lower``);
- ``orphan_layer_dir`` / ``missing_layer_dir``: a dir no record knows / a record with no dir;
- ``incomplete_layer``: a record flagged incomplete (an interrupted write or removal; podman's
  next write to the store deletes it);
- ``unreferenced_layer``: complete layers no image or container reaches through the parent
  chain (``bytes``: what deleting the dir frees, hard-link aware).

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
    read_overlay,
)
from crilink.errors import InputError
from crilink.formats.cstorage import OVERLAY_DIR
from crilink.model import Finding, ScanResult, Severity, TargetKind
from crilink.stores.cstorage import CStorageStore
from crilink.stores.usage import tree_usage

if TYPE_CHECKING:
    from crilink.scan import ScanOptions

__all__ = ["expectations", "run", "scan_store"]

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
    findings = list(check_links(state, expectations(store)))
    known = frozenset(layer.id for layer in store.layers)
    findings += check_layer_dirs(state, known, size_of)
    findings += _record_findings(store, state, size_of)
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
