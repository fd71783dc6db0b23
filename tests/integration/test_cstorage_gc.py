"""``crilink gc`` on containers-storage stores written by the real podman 4.3 (fixture copies)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from fixture_ids import busybox_layers

from crilink.fix.gc_cstorage import GcHow, apply_gc, plan_gc
from crilink.fix.undo import undo_journal
from crilink.scan import run_scan
from crilink.stores.usage import tree_usage

pytestmark = pytest.mark.integration

CS = "containers-storage"
LOST_TOP = busybox_layers()["v2_top"]  # looked up: fixture builds are not byte-reproducible


@pytest.fixture
def rolled_back(copy_fixture: Callable[[str], Path]) -> Path:
    """partial-delete with its layers.json rolled back to the next version (dangling-layer's):
    the half-deleted layer's dir is known to no record (see test_cstorage_scan)."""
    root = copy_fixture(f"{CS}/partial-delete/root")
    other = copy_fixture(f"{CS}/dangling-layer/root")
    shutil.copy2(other / "overlay-layers/layers.json", root / "overlay-layers/layers.json")
    return root


def test_gc_quarantines_and_purges_orphan_dir(rolled_back: Path, tmp_path: Path) -> None:
    root = rolled_back
    plan = plan_gc(str(root), "stamp")
    by_kind = {i.finding.kind: i for i in plan.items}
    orphan = by_kind["orphan_layer_dir"]
    assert orphan.how is GcHow.CRILINK and orphan.finding.id == LOST_TOP
    assert by_kind["unreferenced_layer"].how is GcHow.MANUAL
    expected = tree_usage(root / "overlay" / LOST_TOP).exclusive
    assert orphan.bytes == expected > 0
    result, notes, podman_failed = apply_gc(plan, tmp_path / "gc.jsonl")
    assert result.ok and notes == [] and not podman_failed and result.bytes_freed == expected
    assert not (root / "overlay" / LOST_TOP).exists()
    kinds = {f.kind for f in run_scan(str(root)).findings}
    assert kinds == {"unreferenced_layer"}  # reported, never removed by crilink
    # the purge is irreversible; undo puts back what can be put back and says so
    undone = undo_journal(result.journal, tmp_path / "undo.jsonl")
    assert "irreversible" in {str(o.status) for o in undone.outcomes}


def test_gc_leaves_incomplete_layers_to_podman(copy_fixture: Callable[[str], Path]) -> None:
    root = copy_fixture(f"{CS}/incomplete-layer/root")
    plan = plan_gc(str(root), "stamp")
    (item,) = plan.items
    assert item.how is GcHow.PODMAN and item.actions == ()
    assert item.command[:3] == ("podman", "--root", str(root)) and item.command[-1] == "images"
    # podman reads the store's runroot from its own database (naming another is refused);
    # with no database, a store that is not the host's gets a private runroot
    has_db = (root / "libpod/bolt_state.db").is_file()
    assert ("--runroot" in item.command) is not has_db
    if not has_db:
        assert item.command[item.command.index("--runroot") + 1].startswith("/run/crilink-")
