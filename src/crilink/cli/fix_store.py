"""Store repairs behind ``crilink fix STORE_ROOT`` (registered in crilink.cli.fix.STORE_FIXERS).

Each function takes ``(target, apply, journal, output)``: prints the plan, or with ``apply``
carries it out through the journal and prints the outcomes; raises for failures.
"""

from __future__ import annotations

import sys
from typing import Any

from crilink.cli.common import stderr_console, stdout_console
from crilink.cli.journalview import outcomes_json, print_outcomes, raise_for_result, safe_text
from crilink.model import TargetKind
from crilink.report import SCHEMA_VERSION, print_json

__all__ = ["fix_cstorage"]


# --- containers-storage (podman, CRI-O): the overlay driver's l/ links, link and lower files

def _cstorage_envelope(target: str, plan: Any, result: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "command": "fix", "target": target,
        "target_kind": str(TargetKind.CONTAINERS_STORAGE), "applied": result is not None,
        "plan": {"actions": [a.to_json() for a in plan.actions], "manual": list(plan.manual),
                 "minted": dict(plan.minted)}}
    if result is not None:
        doc["result"] = outcomes_json(result.applied)
        doc["remaining"] = [f.to_json() for f in result.remaining]
    return doc


def _cstorage_print_plan(target: str, plan: Any) -> None:
    out = stdout_console()
    if not plan.actions and not plan.manual:
        out.print(f"nothing to mend in {safe_text(target)}")
        return
    for a in plan.actions:
        out.print(f"{a.kind:<16} {safe_text(a.path)}  ({safe_text(a.reason)})", highlight=False)
    for m in plan.manual:
        out.print(f"[yellow]manual[/]           {safe_text(m)}", highlight=False)
    out.print(f"{len(plan.actions)} actions, {len(plan.manual)} left for a human; "
              "run with --apply to carry them out")


def fix_cstorage(target: str, apply: bool, journal: str | None, output: str) -> None:
    """``crilink fix GRAPH_ROOT``: mend the overlay links of a containers-storage store."""
    from crilink.fix.cstorage import apply_repair, plan_repair  # noqa: PLC0415 - lazy

    store, plan = plan_repair(target)
    result = apply_repair(store, plan, journal) if apply and plan.actions else None
    if output == "json":
        print_json(_cstorage_envelope(target, plan, result), sys.stdout)
    elif result is None:
        _cstorage_print_plan(target, plan)
    else:
        print_outcomes(result.applied, stdout_console())
    if result is None:
        return
    if output == "json":
        stderr_console().print(f"journal: {safe_text(result.applied.journal)}", highlight=False)
    for f in result.remaining:
        stderr_console().print(f"still there: {f.kind} {safe_text(f.path)}", highlight=False)
    raise_for_result(result.applied, "fix")
