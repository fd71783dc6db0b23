"""The quick paths of ``crilink snapshots`` give what the plain ones gave: memoized broken
ancestors (against the one-record-at-a-time walk, loops included) and the JSON writer (against
``report.print_json``)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from crilink.checks.containerd_snapshots import _ancestor_reasons, _broken_ancestor
from crilink.cli.snapshots import _json
from crilink.report import print_json
from crilink.stores.containerd_index import StoreIndex
from crilink.stores.containerd_model import BackendSnapshot, SnapshotKind


def _index(parents: list[int | None]) -> StoreIndex:
    recs = [BackendSnapshot("overlayfs", f"ns/{i}/k{i}", i, SnapshotKind.COMMITTED,
                            "" if p is None else f"ns/{p}/k{p}", None, None, {})
            for i, p in enumerate(parents)]
    return cast(StoreIndex, SimpleNamespace(backend={(r.snapshotter, r.key): r for r in recs}))


@given(st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.lists(st.none() | st.integers(0, n + 2), min_size=n, max_size=n),
    st.sets(st.integers(0, n - 1)))))
def test_ancestor_reasons_equal_the_walk(case: tuple[list[int | None], set[int]]) -> None:
    parents, broken_ids = case  # parent ids past the end are missing records; loops allowed
    ix = _index(parents)
    broken = {("overlayfs", f"ns/{i}/k{i}"): "dir missing" for i in broken_ids}
    memo = _ancestor_reasons(ix, broken)
    for key, rec in ix.backend.items():
        assert memo[key] == _broken_ancestor(ix, rec, broken)


def _text(write: Any, doc: object) -> str:
    buf = io.StringIO()
    write(doc, buf)
    return buf.getvalue()


def test_json_writer_matches_print_json() -> None:
    row = {"key": "k\udcff\u00e9", "bytes": None, "held_by": [], "children": ["a"], "n": 1.5}
    doc = {"schema": 1, "target": "/r", "empty": {}, "namespaces": [
        {"namespace": "n", "reclaimable": {}, "snapshots": [row, row]},
        {"namespace": "m", "snapshots": []}]}
    mine = _text(_json, doc) + "\n"
    assert json.loads(mine) == json.loads(_text(print_json, doc))
    rows = [line.strip() for line in mine.splitlines() if line.strip().startswith('{"key"')]
    assert len(rows) == 2 and json.loads(rows[1]) == row  # one snapshot per line
    assert "\\udcff" in mine and "\\u00e9" in mine
