"""crilink.stores.usage: hard-link-aware usage equals ``du -sxB1``, whatever the thread count."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from crilink.errors import InputError
from crilink.stores.usage import SPLIT_DIRS, Usage, usage_each, usage_of

WORKERS = (1, 2, 3, 4)


def _du(*paths: Path) -> int:
    out = subprocess.run(["du", "-csxB1", *map(str, paths)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.splitlines()[-1].split()[0])


def _tree(base: Path, dirs: int) -> Path:
    """``dirs`` snapshot-like dirs (enough to split a walk between threads), files of several
    sizes, hard links inside a dir and across dirs, symlinks (never followed), empty dirs."""
    base.mkdir()
    outside = base.parent / "outside.bin"
    outside.write_bytes(b"o" * 9000)
    for i in range(dirs):
        d = base / f"{i}" / "fs" / "a" / "b"
        d.mkdir(parents=True)
        (base / f"{i}" / "work").mkdir()
        (d / "data").write_bytes(b"x" * (i * 700))
        os.link(d / "data", d / "data-link")
        if i % 3 == 0 and i > 0:
            os.link(base / f"{i - 1}" / "fs" / "a" / "b" / "data", d / "from-prev")
        if i % 5 == 0:
            os.link(outside, d / "outside-link")
        (d / "sym").symlink_to("/etc/passwd")
    return base


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("du") is None:
        pytest.skip("du not installed")
    return _tree(tmp_path_factory.mktemp("usage") / "snapshots", SPLIT_DIRS * 4 + 7)


@pytest.mark.parametrize("workers", WORKERS)
def test_total_equals_du(tree: Path, workers: int) -> None:
    u = usage_of([tree], workers=workers)
    assert u.total == _du(tree)
    assert u.errors == 0


def test_result_does_not_depend_on_threads(tree: Path) -> None:
    results = {usage_of([tree], workers=w) for w in WORKERS}
    assert len(results) == 1
    u = results.pop()
    outside = (tree.parent / "outside.bin").stat().st_blocks * 512
    assert u.shared == outside  # linked from outside the tree: shared, counted once
    assert u.exclusive == _du(tree) - outside


def test_union_of_several_trees(tree: Path) -> None:
    parts = [tree / "3", tree / "4", tree / "3" / "fs"]  # overlapping on purpose
    for w in WORKERS:
        assert usage_of(parts, workers=w).total == _du(tree / "3", tree / "4")


def test_each_equals_one_at_a_time(tree: Path) -> None:
    paths = [*sorted(tree.iterdir()), tree / "missing"]
    expected = [usage_of([p], workers=1) for p in paths]
    assert expected[-1] == Usage()
    for w in WORKERS:
        assert usage_each(paths, workers=w) == expected
    # "from-prev" links make a dir's data shared when measured alone, exclusive together
    by_name = {p.name: u for p, u in zip(paths, expected, strict=True)}
    assert by_name["2"].shared > 0
    assert usage_of([tree / "2", tree / "3"]).shared == 0


def test_each_raises_for_first_unreadable(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"x")
    bad = tmp_path / "loop"
    bad.symlink_to("loop")  # lstat works; a symlink is measured, never followed
    assert usage_each([f, bad], workers=2)[1].inodes == 1
    with pytest.raises(InputError):
        usage_of([tmp_path / "missing"], missing_ok=False)


def test_file_and_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for w in WORKERS:
        assert usage_of([tmp_path / "empty"], workers=w).total == _du(tmp_path / "empty")


def test_forked_each_equals_in_process(tree: Path) -> None:
    from crilink.stores.usage import usage_each_forked  # noqa: PLC0415

    paths = [str(p) for p in [*sorted(tree.iterdir()), tree / "missing"]]
    assert usage_each_forked(paths)() == usage_each(paths)


def test_forked_each_gives_none_when_a_tree_is_unreadable(tmp_path: Path) -> None:
    """The in-process fallback then names the dir (the child cannot)."""
    from crilink.stores.usage import usage_each_forked  # noqa: PLC0415

    f = tmp_path / "file"
    f.write_bytes(b"x")
    assert usage_each_forked([str(tmp_path), str(f / "below-a-file")])() is None  # ENOTDIR
    with pytest.raises(InputError):
        usage_each([str(tmp_path), str(f / "below-a-file")])
