"""``crilink undo JOURNAL``: revert what a journaled run did, newest change first."""

from __future__ import annotations

import sys

import click

from crilink.cli.common import output_option, stderr_console, stdout_console
from crilink.cli.journalview import outcomes_json, print_outcomes, raise_for_result, safe_text
from crilink.fix.journal import default_journal_path
from crilink.fix.undo import undo_journal
from crilink.report import SCHEMA_VERSION, print_json

__all__ = ["command"]


@click.command("undo")
@click.argument("journal_file", metavar="JOURNAL", type=click.Path(dir_okay=False))
@click.option("--journal", type=click.Path(dir_okay=False),
              help="journal of this undo run (default /var/lib/crilink/journal/<time>-undo.jsonl)")
@output_option
def command(journal_file: str, journal: str | None, output: str) -> None:
    """Revert the changes recorded in JOURNAL (from fix or gc), newest first.

    Each change is reverted only if the path is still exactly as the run left it; anything
    changed since is refused and reported. Undo is journaled and safe to rerun; purged
    quarantine cannot be brought back. Exit 0 restored, 4 some items refused, 5 failed,
    6 unreadable journal.
    """
    out = journal or str(default_journal_path("undo"))
    result = undo_journal(journal_file, out)
    if output == "json":
        print_json({"schema": SCHEMA_VERSION, "command": "undo", "undoes": journal_file,
                    **outcomes_json(result)}, sys.stdout)
        stderr_console().print(f"journal: {safe_text(result.journal)}", highlight=False)
    else:
        print_outcomes(result, stdout_console())
    raise_for_result(result, "undo")
