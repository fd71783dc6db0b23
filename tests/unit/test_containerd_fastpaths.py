"""The quick paths give what the plain ones gave: memoized broken ancestors (against the
one-record-at-a-time walk, loops included) and ``report.print_json``'s row-per-line writer
(against ``json.dumps``)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from crilink.checks.containerd_snapshots import _ancestor_reasons, _broken_ancestor
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


def test_json_writer_puts_each_row_on_a_line() -> None:
    row = {"key": "k\udcff\u00e9", "bytes": None, "held_by": [], "children": ["a"], "n": 1.5}
    doc = {"schema": 1, "target": "/r", "empty": {}, "namespaces": [
        {"namespace": "n", "reclaimable": {}, "snapshots": [row, row]},
        {"namespace": "m", "snapshots": []}]}
    mine = _text(print_json, doc)
    assert json.loads(mine) == doc
    rows = [line.strip() for line in mine.splitlines() if line.strip().startswith('{"key"')]
    assert len(rows) == 2 and json.loads(rows[1].rstrip(",")) == row  # one snapshot per line
    assert "\\udcff" in mine and "\\u00e9" in mine


_scalars = st.none() | st.booleans() | st.integers() | st.text() | \
    st.floats(allow_nan=False, allow_infinity=False)
_docs = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["findings", "snapshots", "a", "b\udcfe", ""]), inner, max_size=4),
    max_leaves=30)


@given(_docs)
def test_json_writer_is_the_same_document(doc: Any) -> None:
    text = _text(print_json, doc)
    assert json.loads(text) == json.loads(json.dumps(doc))
    assert text.isascii()
    if '"findings"' not in text and '"snapshots"' not in text:  # no rows: byte for byte
        assert text == json.dumps(doc, indent=2, ensure_ascii=True) + "\n"
