"""Hand-made hostile images (tests/data/hostile/, written by make_hostile.py with Python's
tarfile -- no real tool produces them) scanned through the real CLI; findings compared with
the ``*.expected.json`` written from each case's definition."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HOSTILE = Path(__file__).resolve().parents[1] / "data" / "hostile"
CASES = sorted(p.name.removesuffix(".expected.json") for p in HOSTILE.glob("*.expected.json"))

pytestmark = pytest.mark.integration


def _key(f: dict[str, Any]) -> tuple[str, str, str, str]:
    reason = f.get("reason", f.get("detail", {}).get("reason", ""))
    return f["kind"], f["path"], f["severity"], str(reason)


def test_cases_exist() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES)
def test_hostile_case(case: str) -> None:
    want = json.loads((HOSTILE / f"{case}.expected.json").read_text())
    proc = subprocess.run([sys.executable, "-m", "crilink.cli.main", "scan",
                           str(HOSTILE / want["target"]), "-o", "json"],
                          capture_output=True, text=True, check=False)
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert sorted(map(_key, doc["findings"])) == sorted(map(_key, want["findings"]))
    worst = {f["severity"] for f in want["findings"]}
    assert proc.returncode == (1 if worst & {"warning", "error"} else 0)
    assert all(f["path"].startswith("/") and f["layer"].startswith("sha256:")
               for f in doc["findings"])
