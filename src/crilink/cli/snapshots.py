"""``crilink snapshots [ROOT]``: the snapshot tree per namespace, offline, with what holds each."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from crilink.checks.containerd import analyze
from crilink.cli.common import output_option, stdout_console
from crilink.errors import UsageError
from crilink.report import SCHEMA_VERSION, print_json, terminal_text
from crilink.stores.containerd_tree import NamespaceTree, SnapshotEntry, build_trees, why

__all__ = ["command"]


def _line(e: SnapshotEntry) -> str:
    size = f"{e.bytes:,}" if e.bytes is not None else "-"
    held = ", ".join(e.held_by) if e.held_by else "NOTHING (GC would delete it)"
    return terminal_text(f"{e.key}  [{e.kind}, id {e.id}, {size} bytes]  held by: {held}")


def _print_tree(tree: NamespaceTree) -> None:
    out = stdout_console()
    out.print(f"namespace {terminal_text(tree.namespace)}", markup=False)
    for e, depth in tree.walk():
        prefix = " " if depth == 0 else "  " * depth + "\\_ "
        out.print(prefix + _line(e), markup=False, soft_wrap=True)
    parts = ", ".join(f"{k} {v:,}" for k, v in tree.reclaimable.items()) or "nothing"
    out.print(f"summary {terminal_text(tree.namespace)}: {tree.bytes_in_use:,} bytes in use; "
              f"reclaimable: {parts}", markup=False)


@click.command("snapshots")
@click.argument("root", required=False)
@click.option("-n", "--namespace", help="only this namespace")
@click.option("--snapshotter", default="overlayfs", show_default=True)
@click.option("--why", "why_key", metavar="KEY", help="print the chain that keeps KEY alive")
@output_option
def command(root: str | None, namespace: str | None, snapshotter: str, why_key: str | None,
            output: str) -> None:
    """Show each namespace's snapshot tree (like `ctr snapshots tree`, offline) with kind,
    exclusive size and what holds each snapshot."""
    if root is None:
        from crilink.stores.containerd import find_containerd  # noqa: PLC0415 - lazy

        root = str(find_containerd().root)
    ix, found = analyze(root, datetime.now(UTC), namespace)
    if why_key is not None:
        names = [namespace] if namespace else [ns.name for ns in ix.state.metadata.namespaces]
        ns_name = next((n for n in names if (n, snapshotter, why_key) in ix.meta_snaps), None)
        if ns_name is None:
            raise UsageError(f"snapshots --why: no snapshot {why_key!r} in {', '.join(names)}")
        chain = why(ix, ns_name, why_key, snapshotter)
        if output == "json":
            print_json({"schema": SCHEMA_VERSION, "namespace": ns_name, "key": why_key,
                        "chain": chain}, sys.stdout)
        else:
            for line in chain or [f"{why_key}: nothing keeps it (GC would delete it)"]:
                stdout_console().print(terminal_text(line), markup=False, soft_wrap=True)
        return
    trees = build_trees(ix, found, namespace)
    if output == "json":
        print_json({"schema": SCHEMA_VERSION, "target": root,
                    "namespaces": [t.to_json() for t in trees]}, sys.stdout)
        sys.stdout.write("\n")
        return
    for tree in trees:
        _print_tree(tree)
