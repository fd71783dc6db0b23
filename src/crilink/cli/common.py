"""Options and output helpers shared by the commands."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from crilink.model import Severity

__all__ = ["fail_on_option", "output_option", "stderr_console", "stdout_console"]

F = TypeVar("F", bound=Callable[..., Any])


def output_option(func: F) -> F:
    return click.option("-o", "--output", "output", type=click.Choice(["table", "json"]),
                        default="table", show_default=True,
                        help="table for people, json (versioned envelope) for scripts")(func)


def fail_on_option(func: F) -> F:
    return click.option("--fail-on", type=click.Choice([str(s) for s in Severity]),
                        default=str(Severity.WARNING), show_default=True,
                        help="exit 1 when a finding is at or above this severity")(func)


def stdout_console() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False)
