"""Render what apply or undo did (an :class:`ApplyResult`) and map it to an exit code.

Shared by every command that changes a tree through the journal (fix, undo, gc, store repair).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from crilink.errors import ApplyError, UnsafeTargetError
from crilink.fix.result import ApplyResult, Status
from crilink.report import safe_text

__all__ = ["outcomes_json", "print_outcomes", "raise_for_result", "safe_text"]

_STYLE = {Status.DONE: "green", Status.ALREADY: "dim", Status.SKIPPED: "yellow",
          Status.REFUSED: "yellow", Status.IRREVERSIBLE: "cyan", Status.FAILED: "bold red"}


def outcomes_json(result: ApplyResult) -> dict[str, Any]:
    """``{"journal", "summary": {status: n}, "bytes_freed", "outcomes": [...]}``."""
    return {"journal": result.journal, "summary": result.summary(),
            "bytes_freed": result.bytes_freed,
            "outcomes": [o.to_json() for o in result.outcomes]}


def print_outcomes(result: ApplyResult, console: Console, *, all_rows: bool = False) -> None:
    """A table of the outcomes (only the ones not ``done``/``already`` unless ``all_rows``),
    then a totals line and the journal path."""
    rows = [o for o in result.outcomes
            if all_rows or o.status not in (Status.DONE, Status.ALREADY)]
    if rows:
        table = Table(show_lines=False)
        for col in ("status", "action", "path", "reason"):
            table.add_column(col, overflow="fold")
        for o in rows:
            table.add_row(f"[{_STYLE.get(o.status, '')}]{o.status}[/]", str(o.action.kind),
                          safe_text(o.action.path), safe_text(o.reason))
        console.print(table)
    counts = ", ".join(f"{n} {s}" for s, n in result.summary().items() if n)
    line = f"{len(result.outcomes)} actions: {counts or 'none'}"
    if result.bytes_freed:
        line += f"; {result.bytes_freed:,} bytes freed"
    console.print(line)
    where = safe_text(result.journal)
    console.print(f"journal: {where}  (undo: crilink undo {where})", soft_wrap=True,
                  markup=False, highlight=False)


def raise_for_result(result: ApplyResult, verb: str) -> None:
    """Exit 5 (ApplyError) when an action failed, 4 (UnsafeTargetError) when one was skipped or
    refused because the tree was not as expected; return when all went through."""
    failed = result.count(Status.FAILED)
    if failed:
        raise ApplyError(f"{verb}: {failed} action(s) failed; see the journal "
                         f"{result.journal}, mend the cause, then rerun (or crilink undo it)")
    unsafe = result.count(Status.SKIPPED) + result.count(Status.REFUSED)
    if unsafe:
        raise UnsafeTargetError(f"{verb}: {unsafe} action(s) left alone because the tree was "
                                f"not as expected; journal {result.journal}")
