"""Render scan results: a versioned JSON envelope and a rich table; exit codes from data.

The JSON envelope (schema 1)::

    {"schema": 1, "target": "...", "target_kind": "rootfs",
     "summary": {"total": N, "by_severity": {...}, "by_kind": {...}, "bytes": B, "stats": {...}},
     "findings": [Finding.to_json(), ...]}

Keys are stable; new keys may be added within a schema version, none removed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crilink.doctor import DoctorReport, StoreReport
from crilink.model import Finding, ScanResult, Severity

__all__ = [
    "ROW_KEYS",
    "SCHEMA_VERSION",
    "doctor_envelope",
    "envelope",
    "exit_code",
    "print_doctor",
    "print_json",
    "print_table",
    "safe_text",
    "summary",
    "terminal_text",
]

SCHEMA_VERSION = 1

_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def summary(findings: Sequence[Finding], stats: dict[str, int] | None = None) -> dict[str, Any]:
    """Counts by severity and kind, total bytes, and the scan's own counters."""
    by_sev = Counter(str(f.severity) for f in findings)
    by_kind = Counter(f.kind for f in findings)
    return {
        "total": len(findings),
        "by_severity": {str(s): by_sev.get(str(s), 0) for s in Severity},
        "by_kind": dict(sorted(by_kind.items())),
        "bytes": sum(f.bytes or 0 for f in findings),
        "stats": dict(stats or {}),
    }


def envelope(result: ScanResult) -> dict[str, Any]:
    """The versioned JSON document for one scan."""
    return {
        "schema": SCHEMA_VERSION,
        "target": result.target,
        "target_kind": str(result.target_kind),
        "summary": summary(result.findings, dict(result.stats)),
        "findings": [f.to_json() for f in result.findings],
    }


ROW_KEYS = frozenset({"findings", "snapshots"})  # lists written one object per line


def print_json(doc: Any, out: IO[str]) -> None:
    """Write JSON with a 2-space indent; lone surrogates (non-UTF-8 names) are kept as
    ``\\udcXX`` escapes (``ensure_ascii``).

    Each element of a list under a key in :data:`ROW_KEYS` (findings, snapshots) is one line,
    written as it is encoded: greppable, and encoded by the C encoder (the indenting one is
    pure Python, several times slower and holds the whole text for 100,000 findings).
    """
    _write(doc, out, "")
    out.write("\n")


def _write(value: Any, out: IO[str], pad: str) -> None:
    inner = pad + "  "
    if isinstance(value, dict) and value:
        out.write("{\n")
        for i, (k, v) in enumerate(value.items()):
            out.write(f",\n{inner}" if i else inner)
            out.write(json.dumps(k, ensure_ascii=True) + ": ")
            if k in ROW_KEYS and isinstance(v, list) and v:
                _rows(v, out, inner)
            else:
                _write(v, out, inner)
        out.write(f"\n{pad}}}")
    elif isinstance(value, list | tuple) and value:
        out.write("[\n")
        for i, v in enumerate(value):
            out.write(f",\n{inner}" if i else inner)
            _write(v, out, inner)
        out.write(f"\n{pad}]")
    else:
        out.write(json.dumps(value, ensure_ascii=True))


def _row_encoder() -> Callable[[Any], str]:
    """One object to compact JSON text (``ensure_ascii``). ``JSONEncoder.encode`` builds a new
    C encoder on every call; for 100,000 rows one encoder made once is about twice as fast."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(ensure_ascii=True).encode

    def refuse(value: Any) -> Any:
        raise TypeError(f"not JSON serializable: {type(value).__name__}")

    encoder = make(None, refuse, json.encoder.encode_basestring_ascii, None, ": ", ", ",
                   False, False, True)

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    return encode


def _rows(rows: list[Any], out: IO[str], pad: str) -> None:
    encode = _row_encoder()
    sep = f",\n{pad}  "
    out.write(f"[\n{pad}  ")
    for i, row in enumerate(rows):
        if i:
            out.write(sep)
        out.write(encode(row))
    out.write(f"\n{pad}]")


def exit_code(findings: Iterable[Finding], fail_on: Severity) -> int:
    """0 when no finding is at or above ``fail_on``, else 1."""
    return 1 if any(f.severity.rank >= fail_on.rank for f in findings) else 0


def terminal_text(text: str | None) -> str:
    """Text shown on a terminal unambiguously: control characters (newline, ESC ...) and bytes
    that were not UTF-8 escaped (``\\n``, ``\\x1b``, ``\\udcff``), so a name can neither
    start a line of its own nor drive the terminal."""
    if text is None:
        return ""
    if text.isprintable() and not any(0xDC80 <= ord(c) <= 0xDCFF for c in text):
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def safe_text(text: str | None) -> str:
    """:func:`terminal_text` with rich markup escaped too (``[bold]`` in a name is text)."""
    return escape(terminal_text(text))


TABLE_ROWS_PER_KIND = 200  # a table is for reading; -o json carries every finding


def print_table(result: ScanResult, console: Console,
                rows_per_kind: int | None = TABLE_ROWS_PER_KIND) -> None:
    """Findings grouped by kind (worst first), at most ``rows_per_kind`` rows of each kind
    (``None``: all), then a totals line. The counts always cover every finding."""
    findings = sorted(result.findings, key=lambda f: (-f.severity.rank, f.kind, f.path))
    if not findings:
        console.print(f"[green]no findings[/green] in {safe_text(result.target)} "
                      f"({result.target_kind})")
        return
    table = Table(title=f"{safe_text(result.target)} ({result.target_kind})", show_lines=False)
    for col in ("severity", "kind", "path", "link / id", "detail"):
        table.add_column(col, overflow="fold")
    total = Counter(f.kind for f in findings)
    shown: Counter[str] = Counter()
    for f in findings:
        if shown[f.kind] == rows_per_kind:
            continue
        if shown[f.kind] == 0 and table.row_count:
            table.add_section()
        shown[f.kind] += 1
        ident = f.link if f.link is not None else (f.key or f.id or f.digest or f.layer or "")
        detail = f.message or _detail_text(f)
        table.add_row(f"[{_SEVERITY_STYLE[f.severity]}]{f.severity}[/]", f.kind, safe_text(f.path),
                      safe_text(ident), safe_text(detail))
        if shown[f.kind] == rows_per_kind and total[f.kind] > rows_per_kind:
            table.add_row("", f.kind, f"... and {total[f.kind] - rows_per_kind:,} more "
                          "(-o json lists every finding)", "", "")
    console.print(table)
    s = summary(findings, dict(result.stats))
    kinds = ", ".join(f"{k} {n}" for k, n in s["by_kind"].items())
    sev = s["by_severity"]
    line = f"{s['total']} findings ({sev['error']} error, {sev['warning']} warning, " \
           f"{sev['info']} info): {kinds}"
    if s["bytes"]:
        line += f"; {s['bytes']:,} bytes involved"
    console.print(line)


def _detail_text(f: Finding) -> str:
    parts = []
    if f.resolved is not None:
        parts.append(f"resolved {f.resolved}")
    if f.remaining:
        parts.append(f"remaining {f.remaining}")
    if f.bytes:
        parts.append(f"{f.bytes:,} bytes")
    parts.extend(f"{k}={v}" for k, v in f.detail.items() if not isinstance(v, (list, dict)))
    return "; ".join(parts)


def doctor_envelope(rep: DoctorReport) -> dict[str, Any]:
    """JSON for ``crilink doctor``: host facts, then one entry per runtime store."""
    stores = []
    for s in rep.stores:
        entry: dict[str, Any] = {"runtime": s.runtime, "kind": str(s.kind), "root": s.root,
                                 "source": s.source, "present": s.present}
        if s.status is not None:
            entry.update(running=s.status.running, pid=s.status.pid,
                         evidence=list(s.status.evidence))
        if s.error is not None:
            entry["error"] = s.error
        if s.result is not None:
            entry["summary"] = summary(s.result.findings, dict(s.result.stats))
            entry["findings"] = [f.to_json() for f in s.result.findings]
        stores.append(entry)
    h = rep.host
    return {"schema": SCHEMA_VERSION, "command": "doctor",
            "host": {"kernel": h.kernel, "openat2": h.openat2, "overlayfs": h.overlayfs,
                     "tools": h.tools},
            "stores": stores,
            "summary": summary(rep.findings)}


def print_doctor(rep: DoctorReport, console: Console) -> None:
    """One table of runtimes (status, findings, reclaimable bytes), then host facts."""
    table = Table(title="crilink doctor", show_lines=False)
    for col in ("runtime", "root", "state", "findings", "bytes"):
        # a path is copied from here into the next command: never broken mid-name
        table.add_column(col, overflow="fold", no_wrap=col in ("root", "runtime"))
    for s in rep.stores:
        table.add_row(s.runtime, safe_text(s.root), _store_state(s), _store_findings(s),
                      f"{summary(s.result.findings)['bytes']:,}" if s.result else "")
    console.print(table)
    h = rep.host
    found = ", ".join(k for k, v in h.tools.items() if v) or "none"
    console.print(f"host: kernel {h.kernel}; openat2(RESOLVE_IN_ROOT) "
                  f"{'yes' if h.openat2 else 'no (fd-walk fallback)'}; overlayfs "
                  f"{'yes' if h.overlayfs else 'no'}; runtime tools: {found}")
    if not any(s.present for s in rep.stores):
        console.print("no container runtime store found on this host; "
                      "scan a root filesystem or an image with `crilink scan PATH`")
    for s in rep.stores:
        if s.result and s.result.findings:
            console.print(f"details: crilink scan {safe_text(s.root)}")


def _store_state(s: StoreReport) -> str:
    if s.error is not None:
        return f"[red]error[/]: {safe_text(s.error)}"
    if not s.present:
        return "absent"
    if s.status is None:
        return "present"
    if s.status.running:
        return f"running (pid {s.status.pid})" if s.status.pid else "running"
    return "stopped"


def _store_findings(s: StoreReport) -> str:
    if s.result is None:
        return ""
    sev = summary(s.result.findings)["by_severity"]
    if not s.result.findings:
        return "[green]clean[/]"
    return f"{sev['error']} error, {sev['warning']} warning, {sev['info']} info"
