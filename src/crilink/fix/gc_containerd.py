"""``crilink gc`` for containerd: a plan of what can be reclaimed, and its two ways of applying.

Plan (pure, from one scan): orphan dirs (unknown to containerd), expired leases, stale
ingests, unreferenced snapshots (leaf first), unreferenced content, and snapshotter records
that no namespace knows. Every item carries its bytes and the exact ``ctr`` commands.

Apply:
- containerd **stopped**: only orphan dirs are removed (renamed into the quarantine, then
  purged) through the journal; no BoltDB is ever written. The rest is printed as commands.
- containerd **running**: only ``ctr`` acts (``--address`` of the running daemon), leaf
  first, then a synchronous GC pass (``ctr leases rm --sync`` of a lease made for it), which
  drops ingests and snapshotter records that no namespace knows. Orphan dirs wait for a stop.

Each item is re-checked just before it is acted on (a fresh read of the store must still
report it, and the daemon must still be in the state the path assumes).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from crilink.checks.containerd import findings as scan_findings
from crilink.errors import ApplyError, RuntimeBusyError
from crilink.fix import actions as A
from crilink.fix.apply import apply_one
from crilink.fix.journal import Journal
from crilink.fix.ops import open_root
from crilink.fix.result import Outcome, Status
from crilink.model import Finding
from crilink.stores.containerd import ContainerdStore
from crilink.stores.containerd_index import StoreIndex
from crilink.stores.containerd_tree import why

__all__ = ["GcItem", "GcPlan", "ItemResult", "apply_running", "apply_stopped", "plan_gc"]

GC_KINDS = ("orphan_dir", "expired_lease", "unreferenced_snapshot", "extract_leftover",
            "unreferenced_content", "stale_ingest", "backend_unreferenced")
TRIGGER = "crilink-gc-trigger"  # name of the temporary lease / snapshot that triggers GC


@dataclass(frozen=True, slots=True)
class GcItem:
    """One reclaimable thing. ``offline``: crilink may remove it itself with containerd stopped
    (orphan dirs); otherwise only ``commands`` (ctr argv without ``--address``) reclaim it."""

    kind: str
    path: str
    bytes: int
    namespace: str | None
    key: str | None
    commands: tuple[tuple[str, ...], ...]
    offline: bool
    finding: Finding

    def ident(self) -> tuple[str, str | None, str | None, str]:
        return (self.kind, self.namespace, self.key or self.finding.digest, self.path)


@dataclass(frozen=True, slots=True)
class GcPlan:
    root: Path
    items: tuple[GcItem, ...]
    running: bool
    address: str | None
    trailer: tuple[tuple[str, ...], ...] = ()  # commands after the items (the GC trigger)
    # findings with bytes that something still holds (an interrupted unpack's lease ...):
    # (finding, what holds it), said so that an operator knows why they are not in the plan
    held: tuple[tuple[Finding, str], ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(i.bytes for i in self.items)


@dataclass(frozen=True, slots=True)
class ItemResult:
    item: GcItem
    status: Status
    reason: str = ""
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)


def _ss(f: Finding) -> str:
    return str(f.detail.get("snapshotter", "overlayfs"))


def _commands(f: Finding) -> tuple[tuple[str, ...], ...]:
    ns = f.namespace or ""
    if f.kind in ("unreferenced_snapshot", "extract_leftover"):
        return (("ctr", "-n", ns, "snapshots", "--snapshotter", _ss(f), "rm", f.key or ""),)
    if f.kind == "expired_lease":
        return (("ctr", "-n", ns, "leases", "rm", f.key or ""),)
    if f.kind == "unreferenced_content" and f.namespace is not None:
        return (("ctr", "-n", ns, "content", "rm", f.digest or ""),)
    return ()  # removed by the GC pass (ingests, backend records, unknown blobs) or offline


def _depth(ix: StoreIndex, f: Finding) -> int:
    """Distance from the root of the snapshot's chain, so that leaves are removed first."""
    depth, key, seen = 0, f.key, set()
    while key and key not in seen:
        seen.add(key)
        snap = ix.meta_snaps.get((f.namespace or "", _ss(f), key))
        key = snap.parent if snap is not None else None
        depth += 1
    return depth


def _order(ix: StoreIndex, items: list[GcItem]) -> list[GcItem]:
    rank = {k: i for i, k in enumerate(GC_KINDS)}
    return sorted(items, key=lambda i: (rank[i.kind], -_depth(ix, i.finding), i.path))


def _item(f: Finding) -> GcItem:
    return GcItem(f.kind, f.path, f.bytes or 0, f.namespace, f.key, _commands(f),
                  f.kind == "orphan_dir", f)


def _reclaimable(ix: StoreIndex, f: Finding) -> bool:
    if f.kind == "extract_leftover":  # reachable only through a live lease: not yet
        return False
    return f.kind in GC_KINDS


def _trailer(items: Iterable[GcItem]) -> tuple[tuple[str, ...], ...]:
    out: list[tuple[str, ...]] = []
    for ss in sorted({_ss(i.finding) for i in items if i.kind == "backend_unreferenced"}):
        ns = next(i.namespace for i in items if i.kind == "backend_unreferenced") or "default"
        out += [("ctr", "-n", ns, "snapshots", "--snapshotter", ss, "prepare", TRIGGER),
                ("ctr", "-n", ns, "snapshots", "--snapshotter", ss, "rm", TRIGGER)]
    if any(not i.offline for i in items):
        out += [("ctr", "-n", "default", "leases", "create", "--id", TRIGGER),
                ("ctr", "-n", "default", "leases", "rm", "--sync", TRIGGER)]
    return tuple(out)


def plan_from(ix: StoreIndex, address: str | None) -> GcPlan:
    """The plan for one analysed state (pure)."""
    found = scan_findings(ix)
    items = _order(ix, [_item(f) for f in found if _reclaimable(ix, f)])
    held = tuple((f, _holder(ix, f)) for f in found
                 if (f.bytes and f.kind not in GC_KINDS) or f.kind == "extract_leftover")
    return GcPlan(ix.state.root, tuple(items), ix.state.status.running,
                  address or ix.state.status.address, _trailer(items), held)


def _holder(ix: StoreIndex, f: Finding) -> str:
    """What keeps the snapshot of ``f`` alive: the first link of its chain (a lease with
    its expiry, a container ...), or why it is left alone."""
    if f.key and f.namespace:
        chain = why(ix, f.namespace, f.key, _ss(f))
        if chain:
            return chain[0].split(" -> ")[0].strip()
    return "not garbage by containerd's rules"


def plan_gc(root: str, now: datetime, address: str | None = None) -> tuple[StoreIndex, GcPlan]:
    """Read the store and plan (``now``: the time lease and ingest expiry is judged at)."""
    store = ContainerdStore(root, address)
    ix = StoreIndex(store.load(), now)
    return ix, plan_from(ix, address)


def shell(argv: tuple[str, ...], address: str | None) -> str:
    """One command as an operator would type it."""
    full = [argv[0], *(("--address", address) if address else ()), *argv[1:]]
    return shlex.join(full)


def _still_there(root: str, now: datetime, address: str | None) -> set[tuple[str, str | None,
                                                                             str | None, str]]:
    _, fresh = plan_gc(root, now, address)
    return {i.ident() for i in fresh.items}


def apply_stopped(plan: GcPlan, now: datetime, journal: str, stamp: str,
                  keep_quarantine: bool = False) -> list[ItemResult]:
    """Remove orphan dirs (quarantine, then purge) through the journal; containerd must stay
    stopped. Everything else is left for ``ctr``. With ``keep_quarantine`` the dirs stay in
    the quarantine (``ROOT/.crilink-quarantine/STAMP``), nothing is purged, and ``crilink
    undo`` of the journal puts them back; the space is freed only once that dir is removed."""
    store = ContainerdStore(plan.root, plan.address)
    results: list[ItemResult] = []
    with open_root(str(plan.root)) as r, Journal.create(journal, "gc") as j:
        seq = 0
        for item in (i for i in plan.items if i.offline):
            reason = _recheck_stopped(store, item, now)
            if reason:
                results.append(ItemResult(item, Status.SKIPPED, reason))
                continue
            outcomes = []
            for action in _offline_actions(item, stamp, keep_quarantine):
                seq += 1
                outcomes.append(apply_one(r, j, seq, action))
            bad = [o for o in outcomes if o.status not in (Status.DONE, Status.ALREADY)]
            results.append(ItemResult(item, bad[0].status if bad else Status.DONE,
                                      bad[0].reason if bad else "", tuple(outcomes)))
        if seq and not keep_quarantine:  # this run's quarantine, now empty: leave no trace
            qdir = "/" + A.QUARANTINE_DIRNAME
            for path in (f"{qdir}/{stamp}", qdir):
                seq += 1
                apply_one(r, j, seq, A.remove_dir(path, reason="empty quarantine"))
    return results


def _offline_actions(item: GcItem, stamp: str, keep_quarantine: bool) -> list[A.Action]:
    path = "/" + item.path
    why = f"{item.kind} ({item.bytes} bytes)"
    moves = A.quarantine(path, stamp, reason=why)
    if keep_quarantine:
        return list(moves)
    return [*moves, A.purge_dir(A.quarantine_path(path, stamp), reason=why)]


def _recheck_stopped(store: ContainerdStore, item: GcItem, now: datetime) -> str:
    status = store.runtime_status()
    if status.running:
        return status.describe("containerd") + ": not touching its files"
    if item.ident() not in _still_there(str(store.root), now, store.address):
        return "no longer reported by a fresh scan"
    return ""


Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


CTR_TIMEOUT = 120  # seconds; a synchronous GC pass on a big store takes a while


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=CTR_TIMEOUT)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"no answer within {CTR_TIMEOUT}s "
                                           "(is containerd's GC scheduler delayed?)")
    except FileNotFoundError as err:
        raise ApplyError("gc --apply: ctr not found; install containerd's ctr") from err


def apply_running(plan: GcPlan, now: datetime, runner: Runner = _run) -> list[ItemResult]:
    """Reclaim through ``ctr`` while containerd runs, leaf first, then a synchronous GC pass."""
    if not plan.address:
        state = ContainerdStore(plan.root).runtime_status().describe("containerd")
        raise RuntimeBusyError(f"gc --apply: {state} on {plan.root}, but its socket is "
                               "unknown: pass --address SOCKET (its config.toml's [grpc] "
                               "address), or stop containerd to remove orphan dirs only")
    results = [_apply_item(plan, item, now, runner) if not item.offline else
               ItemResult(item, Status.SKIPPED, "containerd runs: crilink removes dirs it "
                          "does not know only while it is stopped; rerun gc --apply then")
               for item in plan.items]
    for argv in plan.trailer:
        done = runner(shlex.split(shell(argv, plan.address)))
        if done.returncode != 0 and "rm" in argv:
            raise ApplyError(f"gc: {shell(argv, plan.address)} failed: {done.stderr.strip()}")
    return results


def _apply_item(plan: GcPlan, item: GcItem, now: datetime, runner: Runner) -> ItemResult:
    if not item.commands:
        return ItemResult(item, Status.DONE, "left to containerd's GC pass")
    store = ContainerdStore(plan.root, plan.address)
    if not store.runtime_status().running:
        return ItemResult(item, Status.SKIPPED, "containerd stopped meanwhile")
    if item.ident() not in _still_there(str(plan.root), now, plan.address):
        return ItemResult(item, Status.SKIPPED, "no longer reported by a fresh scan")
    for argv in item.commands:
        done = runner(shlex.split(shell(argv, plan.address)))
        if done.returncode != 0:
            return ItemResult(item, Status.FAILED, done.stderr.strip() or done.stdout.strip())
    return ItemResult(item, Status.DONE)


def manual_commands(plan: GcPlan) -> Iterator[str]:
    """What an operator runs once containerd is up (everything but orphan dirs)."""
    for item in plan.items:
        for argv in item.commands:
            yield shell(argv, plan.address)
    for argv in plan.trailer:
        yield shell(argv, plan.address)
