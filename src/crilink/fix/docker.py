"""Repair and gc plans for a Docker overlay2 data root (plans are pure; applying journals).

- :func:`plan_repair`: the shared ``l/``-link repair (:mod:`crilink.fix.overlaylinks`) with the
  lower chains the layerdb gives (:func:`crilink.checks.docker.expectations`).
- :func:`plan_gc`: orphan layer dirs (``overlay2/<id>`` no record knows) are quarantined, then
  purged, together with the ``l/`` entry that points at them, unless the layerdb looks torn
  (:func:`crilink.checks.docker.torn_reasons`) or another dir's ``lower`` still uses them
  (:mod:`crilink.checks.orphans`): those go to ``manual`` with the reason. The ``layerdb/tmp``
  leftovers of interrupted registrations are quarantined and purged too. Unreferenced
  chains are dockerd's own records: the plan prints the docker commands that release them,
  and quarantines them
  (layerdb entry, driver dir, short link) only when asked (``unreferenced=True``).
- :func:`apply_docker`: refuses while dockerd runs on the store (RuntimeBusyError naming the
  pid), then applies through the journal (``crilink undo`` reverses all but purges).
Action paths are in-root paths relative to the data root (``/overlay2/l/ABC``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from crilink.checks import overlaylinks as ol
from crilink.checks.docker import Kind, check_view, expectations, torn_reasons
from crilink.checks.orphans import kept_orphans
from crilink.fix import actions as A
from crilink.fix.apply import apply_plan, ensure_not_linked
from crilink.fix.journal import default_journal_path
from crilink.fix.overlaylinks import plan_link_repair
from crilink.fix.result import ApplyResult
from crilink.formats import docker as fmt
from crilink.model import Finding
from crilink.stores.base import ensure_stopped
from crilink.stores.docker import DockerStore, DockerView

__all__ = ["DockerApplied", "DockerPlan", "apply_and_recheck", "apply_docker", "plan_gc",
           "plan_repair", "quarantine_stamp"]


@dataclass(frozen=True, slots=True)
class DockerPlan:
    """Actions in execution order; what needs a human; commands for the operator to run."""

    actions: tuple[A.Action, ...] = ()
    manual: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    minted: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.actions


def quarantine_stamp() -> str:
    """A quarantine dir name for one run: UTC time and pid."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"


def _state(view: DockerView) -> ol.OverlayState:
    return ol.read_overlay(str(view.root), fmt.DRIVER_DIR)


def plan_repair(view: DockerView) -> DockerPlan:
    """Mend ``l/`` links, ``link`` and ``lower`` files to a fixed point."""
    plan = plan_link_repair(_state(view), expectations(view))
    return DockerPlan(plan.actions, plan.manual, (), dict(plan.minted))


def _short_link_of(state: ol.OverlayState, layer_id: str) -> Iterator[A.Action]:
    """Remove the ``l/`` entries that point at ``layer_id`` (it is about to leave)."""
    want = ol.link_target(layer_id)
    for link in sorted(state.short_links.values(), key=lambda s: s.name):
        if link.target is not None and ol.target_layer(link.target) == layer_id:
            yield A.remove_symlink(f"/{fmt.DRIVER_DIR}/l/{link.name}", link.target,
                                   reason=f"short link of {layer_id} ({want})")


def _remove_dir(path: str, stamp: str, purge: bool, reason: str) -> list[A.Action]:
    steps = A.quarantine(path, stamp, reason=reason)
    if purge:
        steps.append(A.purge_dir(A.quarantine_path(path, stamp), reason=reason))
    return steps


def _orphan_actions(state: ol.OverlayState, finding: Finding, stamp: str,
                    purge: bool) -> list[A.Action]:
    name = str(finding.id)
    return [*_short_link_of(state, name),
            *_remove_dir(f"/{fmt.DRIVER_DIR}/{name}", stamp, purge,
                         f"orphan layer dir ({finding.bytes or 0} bytes)")]


def _unreferenced_actions(view: DockerView, state: ol.OverlayState, finding: Finding,
                          stamp: str, purge: bool) -> list[A.Action]:
    chain = str(finding.id)
    layer = view.layers[chain]
    why = f"unreferenced chain {chain}"
    steps = _remove_dir(f"/{fmt.LAYERDB_SHA256_DIR}/{chain}", stamp, purge, why)
    if layer.cache_id is not None and layer.cache_id in view.layer_dirs:
        steps[:0] = _short_link_of(state, layer.cache_id)
        steps += _remove_dir(f"/{fmt.DRIVER_DIR}/{layer.cache_id}", stamp, purge, why)
    return steps


def _commands(unreferenced: list[Finding]) -> tuple[str, ...]:
    if not unreferenced:
        return ()
    total = sum(f.bytes or 0 for f in unreferenced)
    lines = [f"# {len(unreferenced)} layer chain(s), {total:,} bytes, are used by no image or "
             "container. Images that no container uses hold their layers; list and remove them:",
             "docker image ls -a --filter dangling=true",
             "docker image prune --force        # dangling images",
             "docker rmi <image>                # an image you no longer need",
             "# chains with no image at all (an interrupted load or rmi) are removed by no "
             "docker command; with dockerd stopped, crilink's plan_gc(unreferenced=True) "
             "quarantines them (layerdb entry, overlay2 dir, l/ link):"]
    lines += [f"#   {f.id} ({f.bytes or 0:,} bytes)" for f in unreferenced]
    return tuple(lines)


def plan_gc(view: DockerView, stamp: str | None = None, *, purge: bool = True,
            unreferenced: bool = False) -> DockerPlan:
    """Quarantine (and purge) orphan layer dirs; unreferenced chains: commands, or with
    ``unreferenced`` their layerdb entry and driver dir as well."""
    stamp = stamp or quarantine_stamp()
    state = _state(view)
    findings = list(check_view(view))
    actions: list[A.Action] = []
    refused = _refusals(view, state, findings)
    for f in findings:
        if f.kind == Kind.ORPHAN_LAYER_DIR and str(f.id) in refused:
            continue
        if f.kind == Kind.ORPHAN_LAYER_DIR:
            actions += _orphan_actions(state, f, stamp, purge)
        elif f.kind == Kind.INCOMPLETE_LAYER:
            actions += _remove_dir("/" + f.path, stamp, purge, "interrupted layer registration")
    unref = [f for f in findings if f.kind == Kind.UNREFERENCED_LAYER]
    if unreferenced:
        for f in unref:
            actions += _unreferenced_actions(view, state, f, stamp, purge)
    lost = [f"# image {f.id} ({f.detail.get('refs') or 'untagged'}) lost its layers: "
            "load or pull it again" for f in findings if f.kind == Kind.MISSING_IMAGE_LAYER]
    manual = tuple(f"/{fmt.DRIVER_DIR}/{lid}: {why}" for lid, why in sorted(refused.items()))
    return DockerPlan(tuple(_dedup_make_dirs(actions)), manual,
                      (*(() if unreferenced else _commands(unref)), *lost))


def _refusals(view: DockerView, state: ol.OverlayState,
              findings: list[Finding]) -> dict[str, str]:
    """orphan dir -> why crilink must not remove it (torn layerdb, or a lower uses it)."""
    orphans = [str(f.id) for f in findings if f.kind == Kind.ORPHAN_LAYER_DIR]
    torn = torn_reasons(view, findings)
    if torn:
        why = f"not removed: the layerdb looks torn ({'; '.join(torn)}); restore it first"
        return dict.fromkeys(orphans, why)
    return {o: f"not removed: {why}" for o, why in kept_orphans(state, orphans).items()}


def _dedup_make_dirs(actions: list[A.Action]) -> Iterator[A.Action]:
    seen: set[str] = set()
    for action in actions:
        if action.kind == A.ActionKind.MAKE_DIR:
            if action.path in seen:
                continue
            seen.add(action.path)
        yield action


def apply_docker(store: DockerStore, plan: DockerPlan, journal: str | os.PathLike[str] | None,
                 command: str) -> ApplyResult:
    """Apply ``plan`` to the store through the journal (default: a new one in the journal
    dir); refuses while dockerd runs on it."""
    ensure_stopped(store, f"{command} {store.root}")
    if any(a.path.startswith(f"/{fmt.DRIVER_DIR}/") for a in plan.actions):
        ensure_not_linked(store.root, fmt.DRIVER_DIR, command)
    path = journal if journal is not None else default_journal_path(command)
    return apply_plan(str(store.root), plan.actions, path, command)


@dataclass(frozen=True, slots=True)
class DockerApplied:
    """What applying did, and the findings a rescan still shows."""

    applied: ApplyResult
    remaining: tuple[Finding, ...]


def apply_and_recheck(store: DockerStore, plan: DockerPlan,
                      journal: str | os.PathLike[str] | None, command: str) -> DockerApplied:
    """:func:`apply_docker`, then scan the store again."""
    applied = apply_docker(store, plan, journal, command)
    return DockerApplied(applied, tuple(check_view(store.view())))
