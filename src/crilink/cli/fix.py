"""``crilink fix TARGET``: rewrite absolute links as relative ones (or back), through the journal.

A root filesystem directory is handled here; a store root (containers-storage, Docker) is
handed to the store's own repair command module, when one is registered in ``STORE_FIXERS``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

import click

from crilink.cli.common import output_option, stderr_console, stdout_console
from crilink.cli.journalview import outcomes_json, print_outcomes, raise_for_result, safe_text
from crilink.errors import UsageError
from crilink.fix.journal import default_journal_path
from crilink.fix.links import Direction, Verdict
from crilink.fix.plan import JOURNAL_COMMAND, FixPlan, apply_fix, plan_fix
from crilink.fix.result import ApplyResult
from crilink.model import TargetKind
from crilink.report import SCHEMA_VERSION, print_json
from crilink.scan import detect_target

__all__ = ["STORE_FIXERS", "command"]

# target kind -> "module:function" taking (target, apply, journal, output) and exiting or
# returning None; lets the store engineers plug their repair into ``crilink fix``.
STORE_FIXERS: dict[TargetKind, str] = {
    TargetKind.CONTAINERS_STORAGE: "crilink.cli.fix_store:fix_cstorage",
    TargetKind.DOCKER: "crilink.cli.docker_store:fix_docker",
}

_VERDICT_STYLE = {Verdict.REWRITE: "green", Verdict.DANGLING: "yellow", Verdict.LOOP: "red",
                  Verdict.MISMATCH: "yellow", Verdict.TOO_LONG: "yellow",
                  Verdict.STALE_TEMP: "cyan", Verdict.HARDLINKED: "yellow",
                  Verdict.ALIASED: "yellow"}


def _envelope(plan: FixPlan, result: ApplyResult | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema": SCHEMA_VERSION, "command": "fix", "target": plan.target,
                           "target_kind": str(TargetKind.ROOTFS), "applied": result is not None,
                           "journal": result.journal if result else None,
                           "plan": plan.to_json()}
    if result is not None:
        doc["result"] = outcomes_json(result)
    return doc


def _print_plan(plan: FixPlan) -> None:
    from rich.table import Table  # noqa: PLC0415 - rich tables only for the table output

    console = stdout_console()
    if not plan.items:
        console.print(f"nothing to do in {safe_text(plan.target)} ({plan.direction})")
        return
    table = Table(title=f"{safe_text(plan.target)}: {plan.direction}")
    for col in ("verdict", "path", "link", "new link / reason"):
        table.add_column(col, overflow="fold")
    for i in plan.items:
        table.add_row(f"[{_VERDICT_STYLE[i.verdict]}]{i.verdict}[/]", safe_text(i.path),
                      safe_text(i.old), safe_text(i.new if i.new is not None else i.reason))
    console.print(table)
    console.print(", ".join(f"{n} {v}" for v, n in plan.counts().items() if n)
                  + " (dangling and looping links are left as they are)")


def _store_fixer(kind: TargetKind) -> Callable[..., None]:
    spec = STORE_FIXERS.get(kind)
    if spec is None:
        raise UsageError(f"fix: a {kind} target is not something fix can mend; give a root "
                         "filesystem directory, a containers-storage graph root or a Docker "
                         "data root (containerd stores: see crilink gc)")
    module_name, func_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise UsageError(f"fix: repair of {kind} stores is not available in this build") from err
    func: Callable[..., None] | None = getattr(module, func_name, None)
    if func is None:
        raise UsageError(f"fix: repair of {kind} stores is not available in this build")
    return func


@click.command("fix")
@click.argument("target")
@click.option("--to-absolute", is_flag=True,
              help="rewrite relative links as absolute in-root paths instead")
@click.option("--apply", "do_apply", is_flag=True,
              help="make the changes (default: print the plan)")
@click.option("--journal", type=click.Path(dir_okay=False),
              help="journal file to create (default /var/lib/crilink/journal/<time>-fix.jsonl)")
@click.option("--one-file-system/--cross-file-systems", "one_filesystem", default=True,
              show_default=True, help="stay on the target's filesystem")
@output_option
def command(target: str, *, to_absolute: bool, do_apply: bool, journal: str | None,
            one_filesystem: bool, output: str) -> None:
    """Mend TARGET. A root filesystem directory: rewrite its absolute links as relative
    links with the same in-root meaning (or the reverse with --to-absolute); each new text is
    verified to reach the same file as the old one; dangling and looping links are left
    alone. A containers-storage graph root or a Docker data root: repair the overlay
    driver's l/ short links, link and lower files (the engine must be stopped).

    Dry-run by default; --apply changes links atomically through a journal that
    `crilink undo JOURNAL` reverses. Exit 0 nothing to do or done, 2 input error,
    4 links changed under us (left alone), 5 apply failed.
    """
    kind = detect_target(target)
    if kind != TargetKind.ROOTFS:
        _store_fixer(kind)(target, do_apply, journal, output)
        return
    direction = Direction.TO_ABSOLUTE if to_absolute else Direction.TO_RELATIVE
    plan = plan_fix(target, direction, one_filesystem)
    result = None
    if do_apply and plan.actions():
        path = journal or str(default_journal_path(JOURNAL_COMMAND))
        result = apply_fix(plan, path)
    if output == "json":
        print_json(_envelope(plan, result), sys.stdout)
    elif result is None:
        _print_plan(plan)
    else:
        print_outcomes(result, stdout_console())
    if result is not None:
        if output == "json":  # the table already names the journal
            stderr_console().print(f"journal: {safe_text(result.journal)}", highlight=False)
        raise_for_result(result, "fix")
