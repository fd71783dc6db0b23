"""Docker overlay2 runners for ``crilink fix`` (STORE_FIXERS) and ``crilink gc`` (GC_RUNNERS).

``fix DATA_ROOT``: the shared ``l/``-link repair. ``gc DATA_ROOT``: orphan layer dirs and
interrupted registrations are quarantined and purged; unreferenced chains are printed with the
docker commands that release them. Both refuse to change the store while dockerd runs on it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from crilink.cli.common import stderr_console, stdout_console
from crilink.cli.journalview import outcomes_json, print_outcomes, raise_for_result, safe_text
from crilink.fix.docker import DockerApplied, DockerPlan, apply_and_recheck, plan_gc, plan_repair
from crilink.model import TargetKind
from crilink.report import SCHEMA_VERSION, print_json
from crilink.stores.docker import DockerStore, open_docker

if TYPE_CHECKING:
    from crilink.cli.gc import GcRequest

__all__ = ["fix_docker", "gc_docker"]


def _envelope(command: str, target: str, plan: DockerPlan,
              done: DockerApplied | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "command": command, "target": target,
        "target_kind": str(TargetKind.DOCKER), "applied": done is not None,
        "plan": {"actions": [a.to_json() for a in plan.actions], "manual": list(plan.manual),
                 "commands": list(plan.commands), "minted": dict(plan.minted)}}
    if done is not None:
        doc["result"] = outcomes_json(done.applied)
        doc["remaining"] = [f.to_json() for f in done.remaining]
    return doc


def _print_plan(target: str, plan: DockerPlan) -> None:
    out = stdout_console()
    if plan.empty and not plan.manual and not plan.commands:
        out.print(f"nothing to do in {safe_text(target)}")
        return
    for a in plan.actions:
        out.print(f"{a.kind:<16} {safe_text(a.path)}  ({safe_text(a.reason)})", highlight=False)
    for m in plan.manual:
        out.print(f"[yellow]manual[/]           {safe_text(m)}", highlight=False)
    for c in plan.commands:
        out.print(c, markup=False, highlight=False, soft_wrap=True)
    if plan.actions:
        out.print(f"{len(plan.actions)} actions; run with --apply (dockerd stopped) to carry "
                  "them out")


def _run(command: str, target: str, plan: DockerPlan, *, apply: bool, journal: str | None,
         output: str) -> None:
    done = None
    if apply and plan.actions:
        done = apply_and_recheck(DockerStore(open_docker(target).root), plan, journal, command)
    if output == "json":
        print_json(_envelope(command, target, plan, done), sys.stdout)
    elif done is None:
        _print_plan(target, plan)
    else:
        print_outcomes(done.applied, stdout_console())
    if done is None:
        return
    for f in done.remaining:
        stderr_console().print(f"still there: {f.kind} {safe_text(f.path)}", highlight=False)
    raise_for_result(done.applied, command)


def fix_docker(target: str, apply: bool, journal: str | None, output: str) -> None:
    """``crilink fix DATA_ROOT``: mend overlay2's ``l/`` links, ``link`` and ``lower`` files."""
    _run("fix", target, plan_repair(open_docker(target)), apply=apply, journal=journal,
         output=output)


def gc_docker(req: GcRequest) -> int:
    """``crilink gc DATA_ROOT``: orphan dirs out (journaled); unreferenced chains as commands."""
    plan = plan_gc(open_docker(req.root))
    if req.apply and plan.actions and not req.yes and sys.stdin.isatty():
        click.confirm("apply this plan?", abort=True)
    journal = None
    if req.journal_dir is not None:
        from crilink.fix.journal import default_journal_path  # noqa: PLC0415 - only when asked

        journal = str(default_journal_path("gc", req.journal_dir))
    _run("gc", req.root, plan, apply=req.apply, journal=journal, output=req.output)
    return 0
