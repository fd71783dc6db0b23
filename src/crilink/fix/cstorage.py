"""``crilink fix GRAPH_ROOT`` for containers-storage: plan, apply and re-check the link repair.

The plan comes from :func:`crilink.fix.overlaylinks.plan_link_repair` with the chains and
incomplete layers the store's records give. Applying it refuses while an engine holds the
store's lock files (:class:`RuntimeBusyError` names the process), goes through the journal
(``crilink undo JOURNAL`` reverses it), and rescans afterwards: ``remaining`` lists the link
findings still there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from crilink.checks.cstorage import expectations
from crilink.checks.overlaylinks import check_links, read_overlay
from crilink.fix.apply import apply_plan, ensure_not_linked
from crilink.fix.journal import default_journal_path
from crilink.fix.overlaylinks import Minter, RepairPlan, mint_short_name, plan_link_repair
from crilink.fix.result import ApplyResult
from crilink.formats.cstorage import OVERLAY_DIR
from crilink.model import Finding
from crilink.stores.base import ensure_stopped
from crilink.stores.cstorage import CStorageStore

__all__ = ["JOURNAL_COMMAND", "RepairResult", "apply_repair", "plan_repair", "remaining_findings"]

JOURNAL_COMMAND = "fix-cstorage"


@dataclass(frozen=True, slots=True)
class RepairResult:
    """What apply did (journal and outcomes) and the link findings a rescan still shows."""

    applied: ApplyResult
    remaining: tuple[Finding, ...]


def plan_repair(root: str, mint: Minter = mint_short_name) -> tuple[CStorageStore, RepairPlan]:
    """Open the graph root and plan the link repair (reads only)."""
    store = CStorageStore.open(root)
    state = read_overlay(str(store.root), OVERLAY_DIR)
    return store, plan_link_repair(state, expectations(store), mint)


def remaining_findings(store: CStorageStore) -> tuple[Finding, ...]:
    """The link findings of a fresh look at the store (records re-read too)."""
    fresh = CStorageStore.open(store.root)
    state = read_overlay(str(fresh.root), OVERLAY_DIR)
    return tuple(check_links(state, expectations(fresh)))


def apply_repair(store: CStorageStore, plan: RepairPlan,
                 journal: str | os.PathLike[str] | None = None) -> RepairResult:
    """Apply ``plan`` to ``store`` through a journal, then rescan. Raises RuntimeBusyError
    while podman, CRI-O or buildah holds the store's lock files."""
    ensure_stopped(store, "repair the overlay links")
    if plan.actions:
        ensure_not_linked(store.root, OVERLAY_DIR, "fix")
    path = journal if journal is not None else default_journal_path(JOURNAL_COMMAND)
    applied = apply_plan(str(store.root), plan.actions, path, JOURNAL_COMMAND)
    return RepairResult(applied, remaining_findings(store))
