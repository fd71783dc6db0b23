"""Snapshot trees and parent cycles: every snapshot shown once, cycles found, walks end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crilink.checks.containerd_snapshots import parent_cycles
from crilink.stores.containerd_tree import NamespaceTree, SnapshotEntry


def _tree(parents: dict[str, str]) -> NamespaceTree:
    kids: dict[str, list[str]] = {}
    for k, p in parents.items():
        if p:
            kids.setdefault(p, []).append(k)
    entries = tuple(SnapshotEntry("ns", "overlayfs", k, p, "committed", i, f"s/{i}", 0, (),
                                  tuple(sorted(kids.get(k, []))), True)
                    for i, (k, p) in enumerate(sorted(parents.items())))
    return NamespaceTree("ns", entries, 0, {})


def test_cycles_self_pair_and_tail() -> None:
    parent = {"self": "self", "a": "b", "b": "a", "tail": "a", "x": "y", "y": "root"}
    rings = parent_cycles(parent)
    assert sorted(sorted(r) for r in rings) == [["a", "b"], ["self"]]


def test_tree_walk_shows_cycles_once() -> None:
    tree = _tree({"root": "", "c1": "root", "self": "self", "a": "b", "b": "a", "tail": "a",
                  "orphan": "gone"})
    walked = [e.key for e, _ in tree.walk()]
    assert sorted(walked) == sorted(e.key for e in tree.entries)
    assert len(walked) == len(set(walked))


@given(st.dictionaries(st.integers(0, 30), st.integers(0, 35), max_size=30))
def test_walk_and_cycles_on_any_parent_relation(raw: dict[int, int]) -> None:
    parents = {f"k{k}": f"k{p}" for k, p in raw.items()}
    tree = _tree(parents)
    walked = [e.key for e, _ in tree.walk()]
    assert sorted(walked) == sorted(parents)  # every entry exactly once
    on_cycle = set()
    for k in parents:  # a key is on a cycle iff following parents comes back to it
        cur, steps = parents.get(k), 0
        while cur is not None and cur != k and steps <= len(parents):
            cur, steps = parents.get(cur), steps + 1
        if cur == k:
            on_cycle.add(k)
    assert {k for r in parent_cycles(parents) for k in r} == on_cycle


def test_deep_chain_walk_is_not_recursive() -> None:
    parents = {f"k{i}": (f"k{i - 1}" if i else "") for i in range(5000)}
    depths = [d for _, d in _tree(parents).walk()]
    assert max(depths) == 4999
