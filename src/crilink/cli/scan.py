"""``crilink scan TARGET``: audit a root filesystem, a running container, an image or a store."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crilink.cli.common import fail_on_option, output_option, stderr_console, stdout_console
from crilink.errors import UsageError
from crilink.model import Severity, TargetKind
from crilink.report import envelope, exit_code, print_json, print_table
from crilink.scan import ScanOptions, run_scan

__all__ = ["command"]


@contextmanager
def progress_callback(label: str) -> Iterator[Callable[[int, int | None], None] | None]:
    """A progress bar on stderr when stderr is a terminal; otherwise nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr_console(), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@click.command("scan")
@click.argument("target", required=False)
@click.option("--pid", type=int, help="scan the root filesystem of running process PID "
              "(its mount namespace, through /proc/PID/root)")
@click.option("--ref", help="image reference or tag, when a layout or archive holds several")
@click.option("--platform", help="os/arch[/variant] to pick from a multi-platform index "
              "(default: this host's)")
@click.option("--one-file-system/--cross-file-systems", "one_filesystem", default=True,
              show_default=True, help="stay on the target's filesystem (rootfs scans)")
@click.option("--deep", is_flag=True,
              help="stores: also run the symlink checks in each layer's diff/")
@click.option("-n", "--namespace", help="containerd: only this namespace")
@output_option
@fail_on_option
def command(target: str | None, pid: int | None, ref: str | None, platform: str | None,
            one_filesystem: bool, deep: bool, namespace: str | None, output: str,
            fail_on: str) -> None:
    """Audit TARGET: a root filesystem dir, an OCI layout, an oci-archive or docker-archive
    tarball, or a containerd / containers-storage / Docker store root (kind detected).

    Links are resolved inside the root, as the container sees them, never on the host.
    Exit 0 clean, 1 findings at or above --fail-on, 2 input error.
    """
    if (target is None) == (pid is None):
        raise UsageError("scan: give a TARGET or --pid PID (exactly one)")
    kind: TargetKind | None = None
    if pid is not None:
        target, kind = str(pid), TargetKind.CONTAINER
    assert target is not None  # for mypy: one of the two is set (checked above)
    with progress_callback("scanning") as progress:
        opts = ScanOptions(one_filesystem=one_filesystem, ref=ref, platform=platform, deep=deep,
                           namespace=namespace, progress=progress)
        result = run_scan(target, kind, opts)
    if output == "json":
        print_json(envelope(result), sys.stdout)
    else:
        print_table(result, stdout_console())
    sys.exit(exit_code(result.findings, Severity(fail_on)))
