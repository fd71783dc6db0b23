"""Property: the scan's shortcuts give exactly the resolver's answers.

``Resolver.follow_from`` resolves simple link texts lexically, ``Resolver.note_dir`` feeds it
directories a walk has seen, and the walk jumps over whole turns of a link cycle. Each is
compared here with a plain, memo-free resolution (itself checked against the kernel's
openat2 in ``test_pathres_kernel``) on random trees: every field of the result must match,
the cycle members included.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_pathres_kernel import TEXTS, trees
from treespec import parse, to_memory

from crilink.checks.rootfs import _climb_within
from crilink.pathres import NodeType, Resolver

texts = st.lists(st.sampled_from(sorted(TEXTS, key=len)), min_size=4, max_size=16)


def _real_dirs(specs: list[str]) -> list[str]:
    """The link-free directory paths of a spec tree (the places a walk finds links in)."""
    out = {"/"}
    for kind, path, _ in parse(specs):
        parts = path.split("/")
        out.update("/" + "/".join(parts[:i]) for i in range(1, len(parts)))
        if kind == "dir":
            out.add("/" + path)
    return sorted(out)


@settings(max_examples=3000, deadline=None)
@given(specs=trees(), probes=texts, noted=st.booleans())
def test_follow_from_equals_plain_resolution(specs: list[str], probes: list[str],
                                             noted: bool) -> None:
    memory = to_memory(specs)
    fast = Resolver(memory)
    if noted:  # as the directory walk does: every real dir is announced before its links
        for d in _real_dirs(specs):
            node = memory.lstat(d)
            assert node is not None and node.type is NodeType.DIR
            fast.note_dir(d, node)
    for parent in _real_dirs(specs):
        for text in probes:
            plain = Resolver(memory).resolve(text, start=parent, hops=1)
            got = fast.follow_from(parent, text)
            assert got == plain, (parent, text)
            assert fast.follow(parent.rstrip("/") + "/zz", text) == plain, (parent, text)


def test_cycle_skip_keeps_the_reported_cycle() -> None:
    """A two-link cycle reached through a chain: LOOP, the same hops and cycle as ever."""
    specs = ["symlink a b", "symlink b c", "symlink c d", "symlink d c", "dir x"]
    memory = to_memory(specs)
    res = Resolver(memory).resolve("/a")
    assert res.error is not None and res.error.value == "loop"
    assert res.hops == 41
    assert res.cycle == ("/c", "/d")


@settings(max_examples=1000, deadline=None)
@given(specs=trees(), probes=texts)
def test_climb_within_never_hides_an_escape(specs: list[str], probes: list[str]) -> None:
    """The scan skips links the kernel resolves when ``_climb_within`` says the text cannot
    climb above the root; the resolver must then agree that it does not."""
    memory = to_memory(specs)
    resolver = Resolver(memory)
    for parent in _real_dirs(specs):
        depth = 0 if parent == "/" else parent.count("/")
        for text in probes:
            if not text.startswith("/") and _climb_within(text, depth):
                assert not resolver.follow_from(parent, text).text_clamped, (parent, text)
