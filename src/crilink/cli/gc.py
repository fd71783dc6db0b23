"""``crilink gc [ROOT]``: what a store could give back, with bytes; ``--apply`` reclaims it.

Each store kind plugs in one function in :data:`GC_RUNNERS` (``"module:function"``, called
as ``function(request) -> exit code``); the command detects the kind and dispatches.
"""

from __future__ import annotations

import importlib
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click

from crilink.cli.common import output_option, stderr_console, stdout_console
from crilink.cli.journalview import raise_for_result
from crilink.errors import ApplyError, UsageError
from crilink.fix.result import ApplyResult
from crilink.model import TargetKind
from crilink.report import SCHEMA_VERSION, print_json, terminal_text
from crilink.scan import detect_target

__all__ = ["GC_RUNNERS", "GcRequest", "command"]


@dataclass(frozen=True, slots=True)
class GcRequest:
    """What the operator asked for; a runner ignores what does not apply to its kind."""

    root: str
    apply: bool
    yes: bool
    address: str | None
    now: datetime
    output: str
    journal_dir: str | None
    keep_quarantine: bool = False


# kind -> "module:function"; function(GcRequest) -> exit code. Add a kind with one line.
GC_RUNNERS: dict[TargetKind, str] = {
    TargetKind.CONTAINERD: "crilink.cli.gc:gc_containerd",
    TargetKind.CONTAINERS_STORAGE: "crilink.cli.gc_cstorage:gc_cstorage",
    TargetKind.DOCKER: "crilink.cli.docker_store:gc_docker",
}


def _runner(kind: TargetKind) -> Callable[[GcRequest], int]:
    spec = GC_RUNNERS.get(kind)
    if spec is None:
        raise UsageError(f"gc: no garbage collection for {kind} stores")
    module, func = spec.split(":")
    fn: Callable[[GcRequest], int] = getattr(importlib.import_module(module), func)
    return fn


# --- containerd


def _item_json(item: Any, address: str | None) -> dict[str, Any]:
    from crilink.fix.gc_containerd import shell  # noqa: PLC0415 - lazy: only for containerd

    return {"kind": item.kind, "path": item.path, "bytes": item.bytes,
            "namespace": item.namespace, "key": item.key or item.finding.digest,
            "offline": item.offline, "commands": [shell(c, address) for c in item.commands]}


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _print_plan(plan: Any, req: GcRequest) -> None:
    from crilink.fix.gc_containerd import manual_commands  # noqa: PLC0415 - lazy

    out = stdout_console()
    state = "running" if plan.running else "stopped"
    out.print(f"containerd root {plan.root} (containerd {state}): {_items(len(plan.items))}, "
              f"{plan.total_bytes:,} bytes reclaimable", soft_wrap=True, markup=False)
    for item in plan.items:
        ident = item.key or item.finding.digest or ""
        how = ("crilink (quarantine" + (")" if req.keep_quarantine else " + purge)")
               if item.offline else "ctr / containerd GC")
        out.print(terminal_text(f"  {item.kind:<22} {item.bytes:>12,}  "
                                f"{item.namespace or '-':<10} {ident}  [{how}]  {item.path}"),
                  soft_wrap=True, markup=False)
    for f, holder in plan.held:
        out.print(terminal_text(
            f"  not yet: {f.kind} {f.key or f.path} ({f.bytes or 0:,} bytes) is held by "
            f"{holder}; see crilink snapshots {plan.root} --why {shlex.quote(f.key)}"
            if f.key else f"  not yet: {f.kind} {f.path}: held by {holder}"),
            soft_wrap=True, markup=False, highlight=False)
    cmds = list(manual_commands(plan))
    if cmds:
        out.print("# these reclaim the rest through containerd (it must be running"
                  + ("; add --address SOCKET to each when it does not listen on the "
                     "default socket)" if not plan.address else ")") + ":",
                  soft_wrap=True, markup=False, highlight=False)
        for c in cmds:
            out.print(terminal_text(c), soft_wrap=True, markup=False, highlight=False)


def gc_containerd(req: GcRequest) -> int:
    from crilink.fix import gc_containerd as gc  # noqa: PLC0415 - lazy: keeps startup fast
    from crilink.fix.journal import default_journal_path  # noqa: PLC0415

    _, plan = gc.plan_gc(req.root, req.now, req.address)
    doc: dict[str, Any] = {"schema": SCHEMA_VERSION, "command": "gc", "target": req.root,
                           "running": plan.running, "bytes": plan.total_bytes,
                           "items": [_item_json(i, plan.address) for i in plan.items],
                           "commands": list(gc.manual_commands(plan)), "applied": False,
                           "held": [{"kind": f.kind, "path": f.path, "namespace": f.namespace,
                                     "key": f.key, "bytes": f.bytes, "held_by": holder}
                                    for f, holder in plan.held]}
    if req.output != "json":
        _print_plan(plan, req)
    if not req.apply or not plan.items:
        if req.output == "json":
            print_json(doc, sys.stdout)
        return 0
    if not req.yes and sys.stdin.isatty():
        click.confirm("apply this plan?", abort=True)
    journal = None
    if plan.running:
        results = gc.apply_running(plan, req.now)
    else:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        journal = str(default_journal_path("gc", req.journal_dir))
        results = gc.apply_stopped(plan, req.now, journal, stamp, req.keep_quarantine)
        moved = any(r.status == "done" for r in results)
        _say_journal(journal, req.keep_quarantine and moved, plan.root, stamp)
    if req.output == "json":
        doc.update(applied=True, journal=journal, results=[
            {"kind": r.item.kind, "path": r.item.path, "key": r.item.key,
             "status": str(r.status), "reason": r.reason} for r in results])
        print_json(doc, sys.stdout)
    else:
        err = stderr_console()
        for r in results:
            err.print(terminal_text(f"{r.status:<8} {r.item.kind} {r.item.key or r.item.path} "
                                    f"{r.reason}"),
                      markup=False, soft_wrap=True)
    _raise_for_results(results, journal)
    return 0


def _raise_for_results(results: Sequence[Any], journal: str | None) -> None:
    """Exit 5 when a ``ctr`` step failed or an action failed, 4 when an action was skipped or
    refused by its safety re-check; an item the fresh re-scan no longer reports (nothing was
    tried, no outcome) is not an error: the store converged."""
    ctr_failed = [r for r in results if r.status == "failed" and not r.outcomes]
    if ctr_failed:
        raise ApplyError(f"gc: {len(ctr_failed)} ctr step(s) failed (see above); fix the "
                         "cause and run gc again")
    raise_for_result(ApplyResult(journal or "", tuple(o for r in results for o in r.outcomes)),
                     "gc")


def _say_journal(journal: str, kept: bool, root: object, stamp: str) -> None:
    err = stderr_console()
    err.print(f"journal: {journal}  (undo: crilink undo {journal})", soft_wrap=True,
              markup=False, highlight=False)
    if kept:
        err.print(f"quarantine kept: {root}/.crilink-quarantine/{stamp} (space is freed once "
                  "it is removed; crilink undo puts the dirs back)", soft_wrap=True,
                  markup=False, highlight=False)


@click.command("gc")
@click.argument("root", required=False)
@click.option("--apply", is_flag=True, help="reclaim (default: only print the plan)")
@click.option("-y", "--yes", is_flag=True,
              help="do not ask before applying (asked only when stdin is a terminal)")
@click.option("-a", "--address", help="containerd socket (default: from config.toml)")
@click.option("--as-of", "as_of", help="judge lease and ingest expiry at this RFC 3339 time "
              "(default: now; a time without an offset is UTC)")
@click.option("--journal-dir", help="where --apply writes its journal")
@click.option("--keep-quarantine", is_flag=True,
              help="containerd stopped: move orphan dirs into ROOT/.crilink-quarantine/ and "
              "stop there (crilink undo restores them); default: purge them")
@output_option
def command(*, root: str | None, apply: bool, yes: bool, address: str | None, as_of: str | None,
            journal_dir: str | None, keep_quarantine: bool, output: str) -> None:
    """Plan (and with --apply, carry out) reclaiming space in a store.

    containerd running: acts only through ctr, leaf first. Stopped: removes only what
    containerd does not know (orphan dirs): each is moved into a quarantine, re-checked,
    then purged (a purge cannot be undone; --keep-quarantine stops before it, so crilink
    undo can put the dirs back). The rest is printed as ctr commands. No BoltDB is ever
    written.

    containers-storage and Docker roots (engine stopped): orphan layer dirs no record or
    lower chain uses go the same quarantine way; what the engine knows is left to podman
    (or listed for a person). A dir with a mount under it is never removed.
    Exit 0 done or nothing to do, 3 runtime running, 4 an item left alone by its safety
    re-check, 5 a step failed.
    """
    now = datetime.now(UTC)
    if as_of:
        try:
            now = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        except ValueError as err:
            raise UsageError(f"gc: --as-of {as_of!r} is not an RFC 3339 time") from err
        if now.tzinfo is None:  # RFC 3339 needs an offset; a bare time is read as UTC
            now = now.replace(tzinfo=UTC)
    if root is None:
        from crilink.stores.containerd import find_containerd  # noqa: PLC0415 - lazy

        loc = find_containerd()
        root, address = str(loc.root), address or loc.address
    req = GcRequest(root, apply, yes, address, now, output, journal_dir, keep_quarantine)
    sys.exit(_runner(detect_target(root))(req))
