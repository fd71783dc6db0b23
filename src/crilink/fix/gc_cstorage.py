"""``crilink gc GRAPH_ROOT`` for containers-storage: what can be reclaimed, and by whom.

Each reclaimable finding becomes one :class:`GcItem`, acted on by whoever may touch it:

- ``orphan_layer_dir`` (no record knows the dir): crilink moves it into the graph root's
  quarantine (``.crilink-quarantine/<stamp>/``), removes the ``l/`` entries that point at it,
  then purges it; journaled (the move and the link removals can be undone until the purge).
  Refused (``manual``, with the reason) when the records look torn
  (:func:`crilink.checks.cstorage.torn_reasons`: layers.json missing or empty while dirs
  exist, images or containers naming unknown layers, missing or looping parents), or when a
  record or another dir's ``lower`` still uses the dir (:mod:`crilink.checks.orphans`);
- ``incomplete_layer``: podman's own cleanup; containers-storage deletes incomplete layers
  the next time it takes the layer store's write lock, which any ``podman images`` does;
- ``unreferenced_layer``: a layer record no image or container uses. No podman 4.3 command
  removes a bare layer and crilink never edits the records, so it is reported with what to
  run (``podman system check --repair`` in podman >= 5).

Before acting, the store is opened again and every item re-checked (a dir that a record now
knows is dropped); crilink refuses while an engine holds the store's locks.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from crilink.checks.cstorage import scan_store, torn_reasons
from crilink.checks.orphans import kept_orphans
from crilink.checks.overlaylinks import LINK_DIR, OverlayState, read_overlay, target_layer
from crilink.fix import actions as A
from crilink.fix.apply import apply_plan, ensure_not_linked
from crilink.fix.result import ApplyResult
from crilink.formats.cstorage import OVERLAY_DIR
from crilink.model import Finding
from crilink.stores.base import RuntimeStatus, ensure_stopped
from crilink.stores.cstorage import CStorageStore, load_storage_conf

__all__ = ["GcHow", "GcItem", "GcPlan", "apply_gc", "plan_gc", "podman_argv"]

PODMAN = "podman"
PODMAN_TIMEOUT = 600
GC_KINDS = ("orphan_layer_dir", "incomplete_layer", "unreferenced_layer")


class GcHow(StrEnum):
    CRILINK = "crilink"  # quarantine + purge, journaled
    PODMAN = "podman"  # podman's own command
    MANUAL = "manual"  # reported only


@dataclass(frozen=True, slots=True)
class GcItem:
    finding: Finding
    how: GcHow
    actions: tuple[A.Action, ...] = ()
    command: tuple[str, ...] = ()
    note: str = ""

    @property
    def bytes(self) -> int:
        return self.finding.bytes or 0


@dataclass(frozen=True, slots=True)
class GcPlan:
    store: CStorageStore
    items: tuple[GcItem, ...]
    status: RuntimeStatus

    @property
    def total_bytes(self) -> int:
        return sum(i.bytes for i in self.items)


def podman_argv(store: CStorageStore, *args: str) -> tuple[str, ...]:
    """``podman --root ROOT --runroot RUNROOT ARGS``; the runroot from storage.conf."""
    return (PODMAN, "--root", str(store.root), *_run_root_args(store),
            "--storage-driver", "overlay", *args)


# podman's own database under the graph root records the runroot the store was made with,
# and refuses ("database configuration mismatch") any other one given on the command line
_LIBPOD_DBS = ("libpod/bolt_state.db", "libpod/db.sql")


def _run_root_args(store: CStorageStore) -> tuple[str, ...]:
    """``--runroot`` for podman: none when podman's database names it (podman reads it
    there); the configured one for the host's configured store; else a private one (short:
    podman's socket paths must stay short), never the host's lock and mount state."""
    if any((store.root / db).is_file() for db in _LIBPOD_DBS):
        return ()
    conf = load_storage_conf()
    if os.path.realpath(conf.graph_root) == os.path.realpath(store.root):
        return ("--runroot", conf.run_root)
    return ("--runroot",
            "/run/crilink-" + hashlib.sha256(os.fsencode(store.root)).hexdigest()[:12])


def _orphan_actions(state: OverlayState, lid: str, stamp: str) -> tuple[A.Action, ...]:
    path = f"/{OVERLAY_DIR}/{lid}"
    links = [A.remove_symlink("/" + state.path(LINK_DIR, s.name), s.target,
                              reason=f"short link of orphan {lid}")
             for s in sorted(state.short_links.values(), key=lambda s: s.name)
             if s.target is not None and target_layer(s.target) == lid]
    moved = A.quarantine_path(path, stamp)
    return (*A.quarantine(path, stamp, reason="no layer record knows it"), *links,
            A.purge_dir(moved, reason="free the orphan's bytes"))


def _refusals(store: CStorageStore, state: OverlayState, orphans: list[str]) -> dict[str, str]:
    """orphan id -> why crilink must not remove it (empty when all may go)."""
    torn = torn_reasons(store, state)
    if torn:
        why = f"not removed: the records look torn ({'; '.join(torn)}); restore them first"
        return dict.fromkeys(orphans, why)
    pinned = {lid: f"image {img.id} names it" for img in store.images for lid in img.layers}
    pinned.update({c.layer: f"container {c.id} names it" for c in store.containers if c.layer})
    return {o: f"not removed: {why}" for o, why in kept_orphans(state, orphans, pinned).items()}


def _item(store: CStorageStore, state: OverlayState, f: Finding, stamp: str,
          refused: dict[str, str]) -> GcItem:
    assert f.id is not None  # layer findings always carry the layer id
    if f.kind == "orphan_layer_dir" and f.id in refused:
        return GcItem(f, GcHow.MANUAL, note=refused[f.id])
    if f.kind == "orphan_layer_dir":
        return GcItem(f, GcHow.CRILINK, _orphan_actions(state, f.id, stamp))
    if f.kind == "incomplete_layer":
        return GcItem(f, GcHow.PODMAN, command=podman_argv(store, "images"),
                      note="containers-storage deletes incomplete layers on its next write lock")
    return GcItem(f, GcHow.MANUAL, note="no podman 4.3 command removes a bare layer; "
                  "podman >= 5: podman system check --repair")


def plan_gc(root: str, stamp: str) -> GcPlan:
    """Open the store, scan it, and plan every reclaimable finding (reads only)."""
    store = CStorageStore.open(root)
    findings = [f for f in scan_store(store).findings if f.kind in GC_KINDS]
    state = read_overlay(str(store.root), OVERLAY_DIR)
    refused = _refusals(store, state, [str(f.id) for f in findings
                                       if f.kind == "orphan_layer_dir"])
    items = tuple(_item(store, state, f, stamp, refused) for f in findings)
    return GcPlan(store, items, store.runtime_status())


def _still_true(plan: GcPlan) -> list[GcItem]:
    known = {layer.id for layer in CStorageStore.open(plan.store.root).layers}
    return [i for i in plan.items
            if not (i.how is GcHow.CRILINK and i.finding.id in known)]


def apply_gc(plan: GcPlan, journal: str | os.PathLike[str]
             ) -> tuple[ApplyResult, list[str], bool]:
    """Carry out the crilink items (journaled) and podman's cleanup command once. Returns
    the apply result, one line per podman run, and whether a podman run failed. Raises
    RuntimeBusyError while an engine holds the store's lock files."""
    ensure_stopped(plan.store, "remove orphan layer dirs")
    items = _still_true(plan)
    actions: Sequence[A.Action] = [a for i in items if i.how is GcHow.CRILINK for a in i.actions]
    if actions:
        ensure_not_linked(plan.store.root, OVERLAY_DIR, "gc")
    result = apply_plan(str(plan.store.root), actions, journal, "gc-cstorage")
    notes, failed = [], False
    for argv in dict.fromkeys(i.command for i in items if i.how is GcHow.PODMAN):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=PODMAN_TIMEOUT)
        failed = failed or proc.returncode != 0
        notes.append(f"{' '.join(argv)}: exit {proc.returncode} {proc.stderr.strip()[-300:]}")
    return result, notes, failed
