"""``crilink doctor``: every runtime store on this host, its runtime's state, one summary."""

from __future__ import annotations

import os
import sys

import click
from click.core import ParameterSource

from crilink.cli.common import fail_on_option, output_option, stdout_console
from crilink.doctor import DoctorConfig, run_doctor
from crilink.errors import UsageError
from crilink.model import Severity
from crilink.report import doctor_envelope, exit_code, print_doctor, print_json

__all__ = ["command"]


def _explicit_configs_exist(ctx: click.Context, names: tuple[str, ...]) -> None:
    """A config path the operator typed must exist: falling back to the defaults would
    report on another store than the one meant (a missing default config is fine)."""
    for name in names:
        value = ctx.params.get(name)
        if value and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE \
                and not os.path.lexists(value):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"doctor {flag} {value}: no such file")


@click.command("doctor")
@click.option("--containerd-config", default="/etc/containerd/config.toml", show_default=True,
              help="containerd's config (its root and state are read from it)")
@click.option("--storage-conf", default=None,
              help="containers-storage config (default: $CONTAINERS_STORAGE_CONF or "
                   "/etc/containers/storage.conf)")
@click.option("--docker-config", default="/etc/docker/daemon.json", show_default=True,
              help="dockerd's daemon.json (data-root)")
@output_option
@fail_on_option
def command(containerd_config: str, storage_conf: str | None, docker_config: str,
            output: str, fail_on: str) -> None:
    """Find containerd, containers-storage (CRI-O, podman) and Docker stores on this host,
    say whether each runtime runs, scan each store read-only and print one summary.

    Exit 0 when nothing at or above --fail-on was found (also when no runtime is
    installed), 1 otherwise.
    """
    _explicit_configs_exist(click.get_current_context(),
                            ("containerd_config", "storage_conf", "docker_config"))
    rep = run_doctor(DoctorConfig(containerd_config, storage_conf, docker_config))
    if output == "json":
        print_json(doctor_envelope(rep), sys.stdout)
    else:
        print_doctor(rep, stdout_console())
    sys.exit(exit_code(rep.findings, Severity(fail_on)))
