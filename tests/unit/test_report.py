"""The JSON envelope: rows encoded like json.dumps, base64 twins for names that need them."""

from __future__ import annotations

import base64
import io
import json
import os

from hypothesis import given
from hypothesis import strategies as st

from crilink.model import Finding, ScanResult, Severity, TargetKind
from crilink.report import envelope, print_json

names = st.binary(min_size=1, max_size=40).map(lambda b: "/" + os.fsdecode(b))


def _doc(findings: list[Finding]) -> dict[str, object]:
    out = io.StringIO()
    print_json(envelope(ScanResult.of("/r", TargetKind.ROOTFS, findings)), out)
    doc: dict[str, object] = json.loads(out.getvalue())
    return doc


@given(st.lists(names, min_size=1, max_size=5), names)
def test_rows_round_trip_every_name(paths: list[str], link: str) -> None:
    findings = [Finding("dangling", Severity.WARNING, p, link=link, bytes=3,
                        detail={"reason": "missing", "n": [1, 2.5, None, True]})
                for p in paths]
    rows = _doc(findings)["findings"]
    assert isinstance(rows, list)
    for row, f in zip(rows, findings, strict=True):
        assert row == json.loads(json.dumps(f.to_json()))
        assert os.fsencode(row["path"]) == os.fsencode(f.path)
        if "path_b64" in row:
            assert base64.b64decode(row["path_b64"]) == os.fsencode(f.path)


def test_b64_only_for_names_that_are_not_plain_printable_utf8() -> None:
    def has_b64(path: str) -> bool:
        return "path_b64" in Finding("k", Severity.INFO, path).to_json()

    assert not has_b64("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert not has_b64("/srv/caf\u00e9/\u65e5\u672c")
    assert has_b64("/a\nb") and has_b64("/a\tb") and has_b64("/a\x1b[31m")
    assert has_b64(os.fsdecode(b"/bad\xff"))


def test_one_row_per_line() -> None:
    out = io.StringIO()
    findings = [Finding("absolute", Severity.INFO, f"/l{i}", link="/x") for i in range(3)]
    print_json(envelope(ScanResult.of("/r", TargetKind.ROOTFS, findings)), out)
    lines = [ln.strip().rstrip(",") for ln in out.getvalue().splitlines()]
    rows = [json.loads(ln) for ln in lines if ln.startswith('{"kind"')]
    assert [r["path"] for r in rows] == ["/l0", "/l1", "/l2"]


def test_table_shows_markup_and_control_characters_as_text() -> None:
    from rich.console import Console  # noqa: PLC0415

    from crilink.report import print_table  # noqa: PLC0415

    findings = [Finding("dangling", Severity.WARNING, "/[/bold]", link="[link=file:~etc]x[~link]"),
                Finding("absolute", Severity.INFO, "/a\nFORGED row\x1b[2K", link="/x")]
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_table(ScanResult.of("/r[b]", TargetKind.ROOTFS, findings), console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "/[/bold]" in text and "[link=file:~etc]x[~link]" in text and "/r[b]" in text
    assert "\x1b" not in text and "FORGED row" in text and "\\nFORGED" in text


def test_table_caps_rows_per_kind_but_counts_all() -> None:
    from rich.console import Console  # noqa: PLC0415

    from crilink.report import print_table  # noqa: PLC0415

    findings = [Finding("dangling", Severity.WARNING, f"/d{i:04}", link="/x") for i in range(250)]
    findings += [Finding("loop", Severity.ERROR, "/l", link="l")]
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_table(ScanResult.of("/r", TargetKind.ROOTFS, findings), console, rows_per_kind=100)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "/d0099" in text and "/d0100" not in text and "/l " in text
    assert "... and 150 more" in text
    assert "251 findings (1 error, 250 warning, 0 info)" in text
