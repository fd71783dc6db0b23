"""Pure planning of absolute <-> relative link text over an in-memory tree."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crilink.fix.links import Direction, Verdict, plan_link, relative_text
from crilink.fix.plan import plan_items
from crilink.fix.walk import LinkEntry
from crilink.pathres import MemoryVFS, NodeType, Resolver

D, F, L = NodeType.DIR, NodeType.FILE, NodeType.SYMLINK
REL, ABS = Direction.TO_RELATIVE, Direction.TO_ABSOLUTE


def tree(*spec: str) -> MemoryVFS:
    """One entry per line: ``dir /x``, ``file /x``, ``symlink /x TEXT``."""
    vfs = MemoryVFS()
    for line in spec:
        kind, path, *text = line.split(" ", 2)
        vfs.add(path, {"dir": D, "file": F, "symlink": L}[kind], text[0] if text else None)
    return vfs


def plan(vfs: MemoryVFS, path: str, direction: Direction = REL) -> tuple[Verdict, str | None]:
    node = vfs.get(path)
    assert node is not None and node.link_text is not None
    item = plan_link(Resolver(vfs), path, node.link_text, direction)
    assert item is not None
    return item.verdict, item.new


@pytest.mark.parametrize(("link", "target", "text"), [
    ("/bin/sh", "/bin/busybox", "busybox"),
    ("/usr/bin/x", "/bin/busybox", "../../bin/busybox"),
    ("/sh", "/bin/busybox", "bin/busybox"),
    ("/a/b/c", "/", "../.."),
    ("/x", "/", "."),
    ("/a/x", "/a", "."),
    ("/a/x", "/a/b/c", "b/c"),
])
def test_relative_text(link: str, target: str, text: str) -> None:
    assert relative_text(link, target) == text


def test_busybox_applet_becomes_sibling_name() -> None:
    vfs = tree("file /bin/busybox", "symlink /bin/sh /bin/busybox")
    assert plan(vfs, "/bin/sh") == (Verdict.REWRITE, "busybox")


def test_target_that_is_a_link_is_kept_as_a_link() -> None:
    vfs = tree("file /usr/bin/vim.basic", "symlink /etc/alternatives/vi /usr/bin/vim.basic",
               "symlink /usr/bin/vi /etc/alternatives/vi")
    assert plan(vfs, "/usr/bin/vi") == (Verdict.REWRITE, "../../etc/alternatives/vi")


def test_link_in_root_and_link_to_root() -> None:
    vfs = tree("file /bin/busybox", "symlink /linuxrc /bin/busybox", "symlink /a/b/up /",
               "symlink /top /")
    assert plan(vfs, "/linuxrc") == (Verdict.REWRITE, "bin/busybox")
    assert plan(vfs, "/a/b/up") == (Verdict.REWRITE, "../..")
    assert plan(vfs, "/top") == (Verdict.REWRITE, ".")


def test_dotdot_clamped_at_root_keeps_in_root_meaning() -> None:
    vfs = tree("file /etc/passwd", "symlink /a/l /../../../etc/passwd")
    assert plan(vfs, "/a/l") == (Verdict.REWRITE, "../etc/passwd")


def test_dotdot_after_a_symlinked_dir_is_physical() -> None:
    # /usr/lib -> /opt/x/lib, so /usr/lib/../share is /opt/x/share, not /usr/share
    vfs = tree("dir /opt/x/lib", "file /opt/x/share", "file /usr/share",
               "symlink /usr/lib /opt/x/lib", "symlink /etc/l /usr/lib/../share")
    assert plan(vfs, "/etc/l") == (Verdict.REWRITE, "../opt/x/share")


def test_absolute_text_through_an_absolute_dir_link() -> None:
    vfs = tree("file /usr/lib/x.so", "symlink /lib /usr/lib", "symlink /etc/x /lib/x.so")
    assert plan(vfs, "/etc/x") == (Verdict.REWRITE, "../usr/lib/x.so")


def test_trailing_slash_and_dot_components() -> None:
    vfs = tree("dir /usr/share/doc", "symlink /d1 /usr/share/doc/", "symlink /d2 /usr/./share/")
    assert plan(vfs, "/d1") == (Verdict.REWRITE, "usr/share/doc")
    assert plan(vfs, "/d2") == (Verdict.REWRITE, "usr/share")


def test_dangling_and_loops_are_left_alone() -> None:
    vfs = tree("symlink /a /does/not/exist", "symlink /l1 /l2", "symlink /l2 /l1",
               "file /f", "symlink /nd /f/x")
    assert plan(vfs, "/a")[0] == Verdict.DANGLING
    assert plan(vfs, "/l1")[0] == Verdict.LOOP
    assert plan(vfs, "/nd")[0] == Verdict.DANGLING


def test_relative_links_are_not_candidates_for_to_relative() -> None:
    vfs = tree("file /bin/busybox", "symlink /bin/sh busybox")
    assert plan_link(Resolver(vfs), "/bin/sh", "busybox", REL) is None


def test_to_absolute() -> None:
    vfs = tree("file /bin/busybox", "symlink /bin/sh busybox", "symlink /usr/bin/x ../../bin/sh",
               "symlink /e/up ../../../../bin/busybox", "symlink /r ..")
    assert plan(vfs, "/bin/sh", ABS) == (Verdict.REWRITE, "/bin/busybox")
    assert plan(vfs, "/usr/bin/x", ABS) == (Verdict.REWRITE, "/bin/sh")
    assert plan(vfs, "/e/up", ABS) == (Verdict.REWRITE, "/bin/busybox")  # clamped at the root
    assert plan(vfs, "/r", ABS) == (Verdict.REWRITE, "/")


def test_stale_temp_links_are_planned_for_removal() -> None:
    vfs = tree("file /bin/busybox", "symlink /bin/.crilink-tmp-abc busybox")
    items = plan_items(Resolver(vfs), [LinkEntry("/bin/.crilink-tmp-abc", "busybox")], REL)
    assert [i.verdict for i in items] == [Verdict.STALE_TEMP]


# --- property: on random trees, every absolute link that resolves gets a verified text ---

NAMES = st.sampled_from(["a", "b", "c", "..", "."])


@st.composite
def random_tree(draw: st.DrawFn) -> MemoryVFS:
    vfs = MemoryVFS()
    for _ in range(draw(st.integers(1, 12))):
        parts = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3))
        path = "/" + "/".join(parts)
        kind = draw(st.sampled_from([D, F, L]))
        text = None
        if kind == L:
            comps = draw(st.lists(NAMES, min_size=0, max_size=4))
            text = ("/" if draw(st.booleans()) else "") + "/".join(comps)
            text = text or "/"
        try:
            vfs.add(path, kind, text)
        except ValueError:
            continue  # a parent is not a directory in this draw
    return vfs


@settings(max_examples=300, deadline=None)
@given(random_tree(), st.sampled_from([REL, ABS]))
def test_property_new_text_reaches_the_same_node(vfs: MemoryVFS, direction: Direction) -> None:
    resolver = Resolver(vfs)
    for path, node in vfs.walk():
        if node.type != L or node.link_text is None:
            continue
        item = plan_link(resolver, path, node.link_text, direction)
        if item is None or item.verdict != Verdict.REWRITE:
            assert item is None or item.verdict != Verdict.MISMATCH, item
            continue
        assert item.new is not None
        assert item.new.startswith("/") == (direction == ABS)
        old = resolver.follow(path, node.link_text)
        new = resolver.follow(path, item.new)
        assert new.ok and old.node == new.node
        if direction == REL:  # never climbs above the root from the link's directory
            assert not new.text_clamped
