"""The link repair plan on hostile short names and on dirs no record knows: it converges,
never repeats an action, and never points ``l/`` at an orphan dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from crilink.checks.overlaylinks import Expectations, check_links, read_overlay, valid_short_name
from crilink.fix import actions as A
from crilink.fix.overlaylinks import plan_link_repair

BASE, MID, TOP = "A" * 26, "B" * 26, "C" * 26
CHAINS = {"base": (), "mid": ("base",), "top": ("mid", "base")}
KNOWN = frozenset(CHAINS)
NEW = "N" * 26


def tree(root: Path, base_link: str | bytes, *, alias: bool = True) -> Path:
    drv = root / "overlay"
    (drv / "l").mkdir(parents=True)
    for lid, name, lower in (("base", base_link, None), ("mid", MID, f"l/{base_link!s}"),
                             ("top", TOP, f"l/{MID}:l/{base_link!s}")):
        (drv / lid / "diff").mkdir(parents=True)
        link = name.encode() if isinstance(name, str) else name
        (drv / lid / "link").write_bytes(link)
        if lower is not None and isinstance(base_link, str):
            (drv / lid / "lower").write_text(lower)
    for lid, name in (("mid", MID), ("top", TOP)):
        (drv / "l" / name).symlink_to(f"../{lid}/diff")
    if alias and isinstance(base_link, str) and len(base_link) < 200 and base_link != "..":
        (drv / "l" / base_link).symlink_to("../base/diff")
    return root


def plan(root: Path) -> tuple[list[tuple[str, str]], list[A.Action], tuple[str, ...]]:
    state = read_overlay(str(root), "overlay")
    p = plan_link_repair(state, Expectations(chains=CHAINS, known=KNOWN), mint=lambda _: NEW)
    return [(str(a.kind), a.path) for a in p.actions], list(p.actions), p.manual


@pytest.mark.parametrize("name", ["ab:cd", "Q" * 300, "a b", "..", "x..y", "-lead", "é" * 5])
def test_invalid_short_name_is_replaced_by_a_minted_one(tmp_path: Path, name: str) -> None:
    steps, actions, manual = plan(tree(tmp_path, name))
    assert not valid_short_name(name)
    assert len(set(steps)) == len(steps) and not manual
    assert ("write_file", "/overlay/base/link") in steps
    assert ("create_symlink", f"/overlay/l/{NEW}") in steps
    written = {a.path: a.after.content().decode() for a in actions if a.kind == "write_file"}
    assert written["/overlay/base/link"] == NEW
    assert written["/overlay/mid/lower"] == f"l/{NEW}"
    assert written["/overlay/top/lower"] == f"l/{MID}:l/{NEW}"


def test_huge_link_file_is_invalid_and_left_to_a_human(tmp_path: Path) -> None:
    root = tree(tmp_path, b"Q" * 3_000_000)
    for lid, lower in (("mid", f"l/{NEW}"), ("top", f"l/{MID}:l/{NEW}")):
        (root / "overlay" / lid / "lower").write_text(lower)
    state = read_overlay(str(root), "overlay")
    assert state.layers["base"].link_size == 3_000_000
    assert [f.detail["reason"] for f in check_links(state, Expectations(chains=CHAINS))
            if f.kind == "missing_link_file"] == ["malformed"]
    steps, _, manual = plan(root)
    assert steps == [("create_symlink", f"/overlay/l/{NEW}")]
    assert any("/overlay/base/link" in m and "too big to journal" in m for m in manual)


def test_valid_names_real_engines_write() -> None:
    assert all(valid_short_name(n) for n in ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "A2345670" * 3,
                                             "Z" * 64, "abc_def-1.2"))
    assert not any(valid_short_name(n) for n in ("", None, "Z" * 65, "a/b", "a\nb", "l:x"))


def test_orphan_dir_never_gets_a_short_link(tmp_path: Path) -> None:
    root = tree(tmp_path, BASE)
    stray = root / "overlay/stray"
    (stray / "diff").mkdir(parents=True)
    (stray / "link").write_text("S" * 26)  # its l/ entry is gone: fix must not recreate it
    other = root / "overlay/other"
    (other / "diff").mkdir(parents=True)
    (other / "link").write_text(BASE)  # an orphan claiming a live layer's name
    steps, actions, manual = plan(root)
    assert steps == [] and not manual
    assert not any("stray" in (a.after.text or "") or "other" in (a.after.text or "")
                   for a in actions)


def test_live_link_pointing_at_an_orphan_goes_back_to_the_layer(tmp_path: Path) -> None:
    root = tree(tmp_path, BASE)
    other = root / "overlay/other"
    (other / "diff").mkdir(parents=True)
    (other / "link").write_text(BASE)
    (root / "overlay/l" / BASE).unlink()
    (root / "overlay/l" / BASE).symlink_to("../other/diff")
    steps, actions, _ = plan(root)
    assert steps == [("replace_symlink", f"/overlay/l/{BASE}")]
    assert actions[0].after.text == "../base/diff"
