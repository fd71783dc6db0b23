"""The merged layer view: whiteouts, opaque dirs, hard links, unsafe names, symlinked parents.

Entries are built directly as TarEntry records (hand-made; the real-tool cases are in
tests/integration/test_scan_image.py).
"""

from __future__ import annotations

import pytest

from crilink.formats.imageview import ImageView, IssueKind, clean_name
from crilink.formats.layertar import EntryType, TarEntry
from crilink.pathres.base import NodeType

F, D, S, H = EntryType.FILE, EntryType.DIR, EntryType.SYMLINK, EntryType.HARDLINK


def e(name: str, etype: EntryType = F, link: str = "", size: int = 0) -> TarEntry:
    return TarEntry(name, etype, size, link)


def paths(view: ImageView) -> set[str]:
    return {p for p, _ in view.vfs.walk()}


@pytest.mark.parametrize(("name", "want"), [
    ("a/b", "/a/b"), ("./a//b/", "/a/b"), ("/abs/x", "/abs/x"), ("a/../b", "/b"),
    (".", "/"), ("a/../..", None), ("../x", None), ("a/../../x", None),
])
def test_clean_name(name: str, want: str | None) -> None:
    assert clean_name(name) == want


def test_whiteout_hides_lower_and_applies_to_lower_only() -> None:
    v = ImageView()
    v.apply_layer("L1", [e("etc/", D), e("etc/a"), e("etc/b"), e("etc/sub/", D), e("etc/sub/x")])
    # same layer re-adds etc/a before its whiteout: the whiteout hits the lower etc/a only
    v.apply_layer("L2", [e("etc/a", size=9), e("etc/.wh.a"), e("etc/.wh.sub")])
    assert paths(v) == {"/etc", "/etc/a", "/etc/b"}
    node = v.vfs.get("/etc/a")
    assert node is not None and node.layer == "L2" and node.size == 9


def test_opaque_dir_keeps_this_layers_children_wherever_the_marker_is() -> None:
    v = ImageView()
    v.apply_layer("L1", [e("opt/app/", D), e("opt/app/old"), e("opt/app/sub/x")])
    # buildah writes the marker after the dir entry; umoci insert writes it first
    v.apply_layer("L2", [e("opt/app/", D), e("opt/app/new"), e("opt/app/.wh..wh..opq")])
    assert paths(v) == {"/opt", "/opt/app", "/opt/app/new"}


def test_aufs_meta_names_are_ignored() -> None:
    v = ImageView()
    v.apply_layer("L1", [e("a"), e(".wh..wh.plnk/123.4"), e(".wh..wh.aufs")])
    assert paths(v) == {"/a"}


def test_hardlink_same_layer_cross_layer_and_missing() -> None:
    v = ImageView()
    v.apply_layer("L1", [e("usr/lib/x.so", size=100), e("gone")])
    issues = v.apply_layer("L2", [
        e("own", size=5), e("own-link", H, "own"),
        e("rel", H, "usr/lib/x.so"), e("abs", H, "/usr/lib/x.so"),
        e(".wh.gone"), e("to-gone", H, "gone"), e("to-none", H, "no/such"),
        e("to-dir", H, "usr/lib")])
    got = [(i.kind, i.path, i.reason, i.size, i.target_layer) for i in issues]
    assert got == [
        (IssueKind.HARDLINK_CROSS_LAYER, "/rel", "", 100, "L1"),
        (IssueKind.HARDLINK_CROSS_LAYER, "/abs", "", 100, "L1"),
        (IssueKind.HARDLINK_MISSING_TARGET, "/to-gone", "whited_out", None, None),
        (IssueKind.HARDLINK_MISSING_TARGET, "/to-none", "absent", None, None),
        (IssueKind.HARDLINK_MISSING_TARGET, "/to-dir", "target_is_directory", None, None),
    ]
    rel, lower = v.vfs.get("/rel"), v.vfs.get("/usr/lib/x.so")
    assert rel is not None and lower is not None and rel.ino == lower.ino
    assert v.vfs.get("/to-gone") is None  # not applied


def test_hardlink_before_its_target_in_the_same_layer_is_missing() -> None:
    v = ImageView()
    issues = v.apply_layer("L1", [e("link", H, "later"), e("later")])
    assert [(i.kind, i.reason) for i in issues] == [
        (IssueKind.HARDLINK_MISSING_TARGET, "absent")]


def test_unsafe_names_are_reported_not_applied() -> None:
    v = ImageView()
    issues = v.apply_layer("L1", [e("../../etc/evil"), e("ok"),
                                  e("steal", H, "../../etc/shadow"), e("a/../b")])
    assert [(i.kind, i.path, i.reason) for i in issues] == [
        (IssueKind.UNSAFE_ENTRY, "/../../etc/evil", "name_climbs_out"),
        (IssueKind.UNSAFE_ENTRY, "/steal", "link_target_climbs_out")]
    assert paths(v) == {"/ok", "/b"}


def test_entry_under_a_lower_symlinked_dir_lands_in_its_target() -> None:
    v = ImageView()
    v.apply_layer("L1", [e("usr/lib/", D), e("lib", S, "usr/lib")])
    v.apply_layer("L2", [e("lib/x.so"), e("lib/.wh.nothing")])
    assert "/usr/lib/x.so" in paths(v)
    node = v.vfs.get("/lib")
    assert node is not None and node.type is NodeType.SYMLINK


def test_whiteout_is_never_resolved_through_a_symlink() -> None:
    v = ImageView()
    v.apply_layer("L1", [e("x/", D), e("x/f", S, "/gone"), e("x/g"), e("d", S, "/x"),
                         e("l", S, "x")])
    # d becomes a real dir in the same layer as d/.wh.f; l/.wh.g goes through a kept symlink
    v.apply_layer("L2", [e("d/", D), e("d/.wh.f"), e("l/.wh.g"), e("l/.wh..wh..opq")])
    assert paths(v) == {"/x", "/x/f", "/x/g", "/d", "/l"}
    d = v.vfs.get("/d")
    assert d is not None and d.type is NodeType.DIR


def test_file_replaced_by_dir_and_back() -> None:
    v = ImageView()
    v.apply_layer("L1", [e("a"), e("d/", D), e("d/child")])
    v.apply_layer("L2", [e("a/inner"), e("d")])
    assert paths(v) == {"/a", "/a/inner", "/d"}
    d = v.vfs.get("/d")
    assert d is not None and d.type is NodeType.FILE


def test_symlinks_lists_layer_of_last_writer() -> None:
    v = ImageView()
    v.apply_layer("L1", [e("s", S, "/x"), e("t", S, "y")])
    v.apply_layer("L2", [e("t", S, "z")])
    assert sorted(v.symlinks()) == [("/s", "/x", "L1"), ("/t", "z", "L2")]


@pytest.mark.parametrize("name", [".wh...", "etc/.wh...", "etc/.wh..", ".wh.", "etc/.wh."])
def test_whiteout_of_dot_names_is_unsafe_and_never_applied(name: str) -> None:
    v = ImageView()
    v.apply_layer("L1", [e("etc/", D), e("etc/passwd"), e("top")])
    issues = v.apply_layer("L2", [e(name)])
    assert [(i.kind, i.path, i.reason) for i in issues] == [
        (IssueKind.UNSAFE_ENTRY, "/" + name, "bad_whiteout_name")]
    assert paths(v) == {"/etc", "/etc/passwd", "/top"}
