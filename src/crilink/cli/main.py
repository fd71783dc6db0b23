"""Entry point: the ``crilink`` command group and the one place errors become exit codes."""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback

import click

from crilink import __version__
from crilink.errors import CrilinkError, denied_hint

__all__ = ["cli", "main"]

# command name -> module under crilink.cli that defines a click command called ``command``
COMMANDS = {
    "scan": "scan",
    "fix": "fix",
    "undo": "undo",
    "snapshots": "snapshots",
    "gc": "gc",
    "doctor": "doctor",
}

EXIT_INTERNAL = 70


class _LazyGroup(click.Group):
    """Imports a command's module only when that command runs (keeps startup fast)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"crilink.cli.{module_name}")
        command: click.Command = module.command
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crilink")
def cli() -> None:
    """Audit and repair the links that hold container storage together.

    Read-only by default: commands that change anything print a plan and act
    only with --apply, through a journal that `crilink undo` reverses.

    Exit codes: 0 clean, 1 findings at or above --fail-on, 2 usage or input
    error, 3 runtime running (mutation refused), 4 unsafe target, 5 apply
    failed, 6 journal error, 70 internal error.
    """


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map every error to an exit code and a one-line message."""
    if sys.stdout is None:  # started with stdout closed (>&-): the exit code still counts
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    try:
        rv = cli.main(args=argv, prog_name="crilink", standalone_mode=False)
    except CrilinkError as err:
        from crilink.report import terminal_text  # noqa: PLC0415 - lazy: keeps startup fast

        click.echo(f"crilink: {terminal_text(err.message)}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("crilink: aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:  # usage: one line, with where to look
        hint = ""
        if isinstance(err, click.UsageError) and err.ctx is not None:
            hint = f" (see {err.ctx.command_path} --help)"
        click.echo(f"crilink: {err.format_message()}{hint}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("crilink: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as err:
        if err.filename is None and err.errno in (errno.ENOSPC, errno.EBADF, errno.EDQUOT):
            click.echo(f"crilink: cannot write the output: {err.strerror}", err=True)
            sys.exit(2)
        # an input the commands did not expect to be unreadable
        what = f" {os.fsdecode(err.filename)}" if err.filename is not None else ""
        click.echo(f"crilink: cannot read{what}: {err.strerror or err}"
                   f"{denied_hint() if isinstance(err, PermissionError) else ''}", err=True)
        sys.exit(2)
    except Exception as err:  # last line of defence: no traceback for operators
        if os.environ.get("CRILINK_DEBUG"):
            traceback.print_exc()
        click.echo(f"crilink: internal error: {type(err).__name__}: {err} "
                   "(set CRILINK_DEBUG=1 for a traceback, and please report it)", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
