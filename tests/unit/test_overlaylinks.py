"""The shared overlay link checks and their repair plan, on small trees built from specs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crilink.checks.overlaylinks import (
    DOCKER_MAX_LOWERS,
    Expectations,
    LinkDirState,
    check_layer_dirs,
    check_links,
    lower_text,
    parse_lower,
    read_overlay,
    target_layer,
)
from crilink.fix import actions as A
from crilink.fix.overlaylinks import mint_short_name, plan_link_repair

NAMES = {"base": "AAAAAAAAAAAAAAAAAAAAAAAAAA", "mid": "BBBBBBBBBBBBBBBBBBBBBBBBBB",
         "top": "CCCCCCCCCCCCCCCCCCCCCCCCCC"}
CHAINS = {"base": (), "mid": ("base",), "top": ("mid", "base")}


def build(root: Path, spec: list[str]) -> Path:
    """One line per entry: ``layer ID [LINK|-] [LOWER|-]``, ``symlink NAME TEXT``,
    ``file REL CONTENT``."""
    drv = root / "overlay"
    (drv / "l").mkdir(parents=True)
    for line in spec:
        kind, *args = line.split(" ")
        if kind == "layer":
            lid, link, lower = args
            (drv / lid / "diff").mkdir(parents=True)
            if link != "-":
                (drv / lid / "link").write_text("" if link == "''" else link)
            if lower != "-":
                (drv / lid / "lower").write_text("" if lower == "''" else lower)
        elif kind == "symlink":
            (drv / "l" / args[0]).symlink_to(args[1])
        elif kind == "file":
            (drv / args[0]).write_text(args[1])
    return root


def healthy_spec() -> list[str]:
    n = NAMES
    return [f"layer base {n['base']} -", f"layer mid {n['mid']} l/{n['base']}",
            f"layer top {n['top']} {lower_text([n['mid'], n['base']])}",
            *(f"symlink {n[k]} ../{k}/diff" for k in n)]


def kinds(root: Path, exp: Expectations | None = None) -> list[tuple[str, str]]:
    state = read_overlay(str(root), "overlay")
    exp = exp or Expectations(chains=CHAINS)
    return sorted((f.kind, f.path) for f in check_links(state, exp))


def test_healthy_tree_has_no_findings(tmp_path: Path) -> None:
    assert kinds(build(tmp_path, healthy_spec())) == []


def test_missing_short_link(tmp_path: Path) -> None:
    root = build(tmp_path, healthy_spec())
    (root / "overlay/l" / NAMES["base"]).unlink()
    found = kinds(root)
    assert ("missing_short_link", f"overlay/l/{NAMES['base']}") in found
    # the descendants' lowers name it, so they no longer resolve
    assert ("bad_lower", "overlay/mid/lower") in found
    assert ("bad_lower", "overlay/top/lower") in found


@pytest.mark.parametrize("text,reason", [
    ("../mid/diff", "other_layer"), ("/etc", "not_a_layer_diff"),
    ("../../../../etc", "not_a_layer_diff"), ("../base/work", "not_a_layer_diff")])
def test_wrong_short_link(tmp_path: Path, text: str, reason: str) -> None:
    root = build(tmp_path, healthy_spec())
    link = root / "overlay/l" / NAMES["base"]
    link.unlink()
    link.symlink_to(text)
    state = read_overlay(str(root), "overlay")
    wrong = [f for f in check_links(state, Expectations(chains=CHAINS))
             if f.kind == "wrong_short_link"]
    assert [(f.path, f.link, f.detail["reason"]) for f in wrong] == [
        (f"overlay/l/{NAMES['base']}", text, reason)]


def test_dangling_short_link_and_stray_file_in_l(tmp_path: Path) -> None:
    root = build(tmp_path, [*healthy_spec(), "symlink ZZZZZZZZZZZZZZZZZZZZZZZZZZ ../gone/diff",
                            "file l/NOTALINK x"])
    found = kinds(root)
    assert ("dangling_short_link", "overlay/l/ZZZZZZZZZZZZZZZZZZZZZZZZZZ") in found
    assert ("wrong_short_link", "overlay/l/NOTALINK") in found


@pytest.mark.parametrize("content,reason", [(None, "absent"), ("", "empty"), ("a/b", "malformed")])
def test_missing_link_file(tmp_path: Path, content: str | None, reason: str) -> None:
    root = build(tmp_path, healthy_spec())
    link = root / "overlay/mid/link"
    if content is None:
        link.unlink()
    else:
        link.write_text(content)
    state = read_overlay(str(root), "overlay")
    found = [f for f in check_links(state, Expectations(chains=CHAINS))
             if f.kind == "missing_link_file"]
    assert [(f.path, f.id, f.detail["reason"]) for f in found] == [
        ("overlay/mid/link", "mid", reason)]


@pytest.mark.parametrize("lower,reason", [
    ("''", "empty"), ("l", "bare_l"), ("l/", "bare_l"), ("x/" + NAMES["base"], "malformed_entry"),
    ("l/QQQQQQQQQQQQQQQQQQQQQQQQQQ", "unresolved"), (f"l/{NAMES['top']}", "not_the_parent_chain")])
def test_bad_lower(tmp_path: Path, lower: str, reason: str) -> None:
    n = NAMES
    spec = [f"layer base {n['base']} -", f"layer mid {n['mid']} {lower}",
            f"layer top {n['top']} {lower_text([n['mid'], n['base']])}",
            *(f"symlink {n[k]} ../{k}/diff" for k in n)]
    state = read_overlay(str(build(tmp_path, spec)), "overlay")
    found = [f for f in check_links(state, Expectations(chains=CHAINS)) if f.kind == "bad_lower"]
    assert [f.path for f in found] == ["overlay/mid/lower"]
    assert reason in found[0].detail["reason"]


def test_bad_lower_too_many_and_missing(tmp_path: Path) -> None:
    count = DOCKER_MAX_LOWERS + 1
    spec = [f"layer p{i:03d} P{i:025d} -" for i in range(count)]
    spec = [s.replace(" P", " " + "P") for s in spec]
    names = [f"P{i:025d}" for i in range(count)]
    spec += [f"symlink {names[i]} ../p{i:03d}/diff" for i in range(count)]
    spec += [f"layer top {NAMES['top']} {lower_text(names)}", f"symlink {NAMES['top']} ../top/diff"]
    state = read_overlay(str(build(tmp_path, spec)), "overlay")
    exp = Expectations(chains={"lonely": ("p000",)}, max_lowers=DOCKER_MAX_LOWERS)
    assert [f.detail["reason"] for f in check_links(state, exp) if f.kind == "bad_lower"] == [
        ["too_many"]]
    # a layer with parents but no lower file
    exp2 = Expectations(chains={"p001": ("p000",)})
    assert [(f.path, f.detail["reason"]) for f in check_links(state, exp2)
            if f.kind == "bad_lower"] == [("overlay/p001/lower", ["missing"])]


def test_l_is_a_file_and_non_utf8_names(tmp_path: Path) -> None:
    root = build(tmp_path, healthy_spec())
    bad = os.fsencode(str(root / "overlay/l")) + b"/\xff\xfe"
    os.symlink(b"../gone/diff", bad)
    state = read_overlay(str(root), "overlay")
    assert "\udcff\udcfe" in state.short_links
    dangling = [f for f in check_links(state, Expectations(chains=CHAINS))
                if f.kind == "dangling_short_link"]
    assert dangling[0].to_json()["path_b64"]
    for entry in (root / "overlay/l").iterdir():
        entry.unlink()
    (root / "overlay/l").rmdir()
    (root / "overlay/l").write_text("not a dir")
    state = read_overlay(str(root), "overlay")
    assert state.link_dir is LinkDirState.NOT_A_DIR
    found = kinds(root)
    assert {k for k, _ in found} == {"missing_short_link", "bad_lower"}


def test_layer_dirs(tmp_path: Path) -> None:
    root = build(tmp_path, [*healthy_spec(), "layer stray XXXXXXXXXXXXXXXXXXXXXXXXXX -",
                            "symlink XXXXXXXXXXXXXXXXXXXXXXXXXX ../stray/diff"])
    state = read_overlay(str(root), "overlay")
    found = list(check_layer_dirs(state, frozenset({"base", "mid", "top", "gone"}),
                                  lambda rel: 7))
    assert [(f.kind, f.id, f.bytes) for f in found] == [
        ("orphan_layer_dir", "stray", 7), ("missing_layer_dir", "gone", None)]


def test_parse_helpers() -> None:
    assert parse_lower("l/A:l:/abs/x:l/") == ["A", None, "/abs/x", None]
    assert target_layer("../abc/diff") == "abc"
    assert target_layer("../../abc/diff") is None
    assert target_layer("/x/abc/diff") is None
    name = mint_short_name(set())
    assert len(name) == 26 and set(name) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


# ---------------------------------------------------------------- repair plans

def plan_for(root: Path) -> tuple[list[tuple[str, str]], list[A.Action]]:
    state = read_overlay(str(root), "overlay")
    plan = plan_link_repair(state, Expectations(chains=CHAINS),
                            mint=lambda taken: "MMMMMMMMMMMMMMMMMMMMMMMMMM")
    return [(str(a.kind), a.path) for a in plan.actions], list(plan.actions)


def test_plan_recreates_missing_short_link(tmp_path: Path) -> None:
    root = build(tmp_path, healthy_spec())
    (root / "overlay/l" / NAMES["base"]).unlink()
    steps, actions = plan_for(root)
    assert steps == [("create_symlink", f"/overlay/l/{NAMES['base']}")]
    assert actions[0].after.text == "../base/diff"


def test_plan_recovers_lost_link_name_from_descendants(tmp_path: Path) -> None:
    root = build(tmp_path, healthy_spec())
    (root / "overlay/l" / NAMES["base"]).unlink()
    (root / "overlay/base/link").write_text("")
    steps, actions = plan_for(root)
    assert steps == [("write_file", "/overlay/base/link"),
                     ("create_symlink", f"/overlay/l/{NAMES['base']}")]
    assert actions[0].after.content() == NAMES["base"].encode()


def test_plan_uses_surviving_alias(tmp_path: Path) -> None:
    root = build(tmp_path, healthy_spec())
    (root / "overlay/top/link").unlink()
    steps, actions = plan_for(root)
    assert steps == [("write_file", "/overlay/top/link")]
    assert actions[0].after.content() == NAMES["top"].encode()


def test_plan_mints_and_rewrites_lowers(tmp_path: Path) -> None:
    n = NAMES
    root = build(tmp_path, [f"layer base {n['base']} -", f"layer mid '' l/{n['base']}",
                            f"layer top {n['top']} l/{n['base']}",
                            f"symlink {n['base']} ../base/diff", f"symlink {n['top']} ../top/diff",
                            "symlink DANGLING ../nothing/diff", "symlink EVIL /etc"])
    steps, actions = plan_for(root)
    assert steps == [("write_file", "/overlay/mid/link"),
                     ("remove_symlink", "/overlay/l/DANGLING"),
                     ("remove_symlink", "/overlay/l/EVIL"),
                     ("create_symlink", "/overlay/l/MMMMMMMMMMMMMMMMMMMMMMMMMM"),
                     ("write_file", "/overlay/top/lower")]
    assert actions[-1].after.content() == lower_text(["MMMMMMMMMMMMMMMMMMMMMMMMMM",
                                                      n["base"]]).encode()


def test_plan_recovers_name_by_position_in_lower(tmp_path: Path) -> None:
    n = NAMES
    root = build(tmp_path, [f"layer base {n['base']} -", f"layer mid - l/{n['base']}",
                            f"layer top {n['top']} l/GONEGONEGONEGONEGONEGONE22:l/{n['base']}",
                            f"symlink {n['base']} ../base/diff", f"symlink {n['top']} ../top/diff"])
    steps, _ = plan_for(root)
    assert steps == [("write_file", "/overlay/mid/link"),
                     ("create_symlink", "/overlay/l/GONEGONEGONEGONEGONEGONE22")]


def test_plan_replaces_wrong_link_and_never_touches_l(tmp_path: Path) -> None:
    root = build(tmp_path, healthy_spec())
    link = root / "overlay/l" / NAMES["mid"]
    link.unlink()
    link.symlink_to("../top/diff")
    steps, _ = plan_for(root)
    assert steps == [("replace_symlink", f"/overlay/l/{NAMES['mid']}")]
    (root / "overlay/l/file").write_text("x")
    state = read_overlay(str(root), "overlay")
    plan = plan_link_repair(state, Expectations(chains=CHAINS))
    assert any("not a symlink" in m for m in plan.manual)
    assert all(a.path != "/overlay/l" for a in plan.actions)
