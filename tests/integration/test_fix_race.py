"""A directory swapped for a symlink to the outside while ``fix --apply`` runs: no write escapes.

A thread keeps renaming ``usr/bin`` away, putting a symlink to a directory outside the root
in its place, and putting the real one back. Whatever the interleaving, the outside
directory must stay byte-identical, and every link inside the root must end with either its
old or its new text (never a stray temporary name).
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from crilink.fix.journal import read_journal
from crilink.fix.plan import apply_fix, plan_fix
from crilink.fix.result import Status

pytestmark = pytest.mark.integration

ROUNDS = 25
LINKS = 150


def snapshot(root: Path) -> dict[str, tuple[int, str | None, str | None]]:
    """name -> (mode, link text, content hash) of everything below ``root`` (no following)."""
    out: dict[str, tuple[int, str | None, str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            text = p.readlink().as_posix() if stat.S_ISLNK(st.st_mode) else None
            digest = hashlib.sha256(p.read_bytes()).hexdigest() \
                if stat.S_ISREG(st.st_mode) else None
            out[str(p.relative_to(root))] = (st.st_mode, text, digest)
    return out


def make_root(base: Path) -> tuple[Path, Path]:
    root, outside = base / "root", base / "outside"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"\x7fELF busybox")
    (root / "usr" / "bin").mkdir(parents=True)
    outside.mkdir()
    (outside / "victim").write_bytes(b"must not change")
    for i in range(LINKS):  # same names outside, so a followed swap would find them
        (root / "usr" / "bin" / f"tool{i}").symlink_to("/bin/busybox")
        (outside / f"tool{i}").symlink_to("/bin/busybox")
    return root, outside


class Swapper(threading.Thread):
    """Swaps root/usr/bin for a symlink to ``outside`` and back until stopped."""

    def __init__(self, root: Path, outside: Path) -> None:
        super().__init__(daemon=True)
        self.bin, self.away, self.outside = root / "usr/bin", root / "usr/bin.away", outside
        self.stop = threading.Event()
        self.swaps = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.bin.rename(self.away)
            self.bin.symlink_to(self.outside)
            self.bin.unlink()
            self.away.rename(self.bin)
            self.swaps += 1


@pytest.mark.parametrize("direction_round", range(ROUNDS))
def test_swapped_dir_never_leads_outside(tmp_path: Path, direction_round: int) -> None:
    root, outside = make_root(tmp_path)
    outside_before = snapshot(outside)
    plan = plan_fix(str(root))
    assert len(plan.actions()) == LINKS
    swapper = Swapper(root, outside)
    swapper.start()
    try:
        result = apply_fix(plan, tmp_path / "j.jsonl")
    finally:
        swapper.stop.set()
        swapper.join()
    assert swapper.swaps > 0
    assert snapshot(outside) == outside_before
    assert not (root / "usr" / "bin").is_symlink()
    names = sorted(p.name for p in (root / "usr" / "bin").iterdir())
    assert names == sorted(f"tool{i}" for i in range(LINKS))  # no temporary name left
    texts = {(root / "usr/bin" / n).readlink().as_posix() for n in names}
    assert texts <= {"/bin/busybox", "../../bin/busybox"}
    done = {o.action.path for o in result.outcomes if o.status == Status.DONE}
    for o in result.outcomes:
        assert o.status in (Status.DONE, Status.SKIPPED), o
    for name in names:
        text = (root / "usr/bin" / name).readlink().as_posix()
        assert (text == "../../bin/busybox") == (f"/usr/bin/{name}" in done)
    # and the journal is a faithful account: every done entry is recorded as done
    assert {e.action.path for e in read_journal(tmp_path / "j.jsonl").entries
            if e.status == Status.DONE} == done
