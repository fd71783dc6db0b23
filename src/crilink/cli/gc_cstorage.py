"""The containers-storage runner of ``crilink gc`` (registered in crilink.cli.gc.GC_RUNNERS)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from crilink.cli.common import stderr_console, stdout_console
from crilink.cli.journalview import raise_for_result
from crilink.errors import ApplyError
from crilink.fix import gc_cstorage as gc
from crilink.fix.journal import default_journal_path
from crilink.fix.result import ApplyResult
from crilink.report import SCHEMA_VERSION, print_json

if TYPE_CHECKING:
    from crilink.cli.gc import GcRequest

__all__ = ["gc_cstorage"]


def _item_json(item: gc.GcItem) -> dict[str, Any]:
    f = item.finding
    return {"kind": f.kind, "path": f.path, "id": f.id, "bytes": item.bytes,
            "how": str(item.how), "command": list(item.command), "note": item.note,
            "actions": [a.to_json() for a in item.actions]}


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _print_plan(plan: gc.GcPlan) -> None:
    out = stdout_console()
    out.print(f"containers-storage {plan.store.root} ({plan.status.describe('podman')}): "
              f"{_items(len(plan.items))}, {plan.total_bytes:,} bytes", soft_wrap=True)
    for item in plan.items:
        how = " ".join(item.command) if item.command else str(item.how)
        out.print(f"  {item.finding.kind:<20} {item.bytes:>12,}  {item.finding.id}  [{how}]"
                  + (f"  {item.note}" if item.note else ""), soft_wrap=True, markup=False)


def gc_cstorage(req: GcRequest) -> int:
    """Print the plan; with ``--apply`` carry it out (journaled) and print what happened."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    plan = gc.plan_gc(req.root, stamp)
    doc: dict[str, Any] = {"schema": SCHEMA_VERSION, "command": "gc",
                           "target": str(plan.store.root), "running": plan.status.running,
                           "bytes": plan.total_bytes,
                           "items": [_item_json(i) for i in plan.items], "applied": False}
    if req.output != "json":
        _print_plan(plan)
    if not req.apply or not plan.items:
        if req.output == "json":
            print_json(doc, sys.stdout)
        return 0
    if not req.yes and sys.stdin.isatty():
        click.confirm("apply this plan?", abort=True)
    journal = default_journal_path("gc", req.journal_dir)
    result, notes, podman_failed = gc.apply_gc(plan, journal)
    if req.output == "json":
        doc.update(applied=True, journal=str(journal), notes=list(notes),
                   bytes_freed=result.bytes_freed,
                   results=[{"kind": o.action.kind, "path": o.action.path,
                             "status": str(o.status)} for o in result.outcomes])
        print_json(doc, sys.stdout)
        return _raise_for(result, podman_failed)
    err = stderr_console()
    for o in result.outcomes:
        err.print(f"{o.status:<8} {o.action.kind} {o.action.path}", markup=False)
    for note in notes:
        err.print(note, markup=False)
    err.print(f"journal: {journal}; {result.bytes_freed:,} bytes freed", markup=False)
    return _raise_for(result, podman_failed)


def _raise_for(result: ApplyResult, podman_failed: bool) -> int:
    """Exit 5 when podman's own step failed, else as :func:`raise_for_result` says."""
    if podman_failed:
        raise ApplyError("gc: podman's cleanup failed (see its exit status and message); "
                         "nothing it was to remove was removed")
    raise_for_result(result, "gc")
    return 0
