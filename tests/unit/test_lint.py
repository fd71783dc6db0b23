"""Static checks run as part of the suite: ruff, mypy --strict, the import-layer contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_clean() -> None:
    r = _run(sys.executable, "-m", "ruff", "check", "src", "tests", "bench")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict_clean() -> None:
    r = _run(sys.executable, "-m", "mypy", "--strict", "src/crilink")
    assert r.returncode == 0, r.stdout + r.stderr


def test_imports_point_down() -> None:
    r = _run("lint-imports")
    if r.returncode == 127:
        pytest.fail("lint-imports not installed: pip install -e .[test]")
    assert r.returncode == 0, r.stdout + r.stderr
