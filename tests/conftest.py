"""Shared test fixtures.

``real_fixtures`` is the directory built by tests/fixtures/make-real-stores.sh (scripts/test
builds it once into $CRILINK_FIXTURES). Tests must never modify it: copy what you change
(``copy_fixture``) into a tmp dir with ``cp -a`` (keeps hard links, xattrs, owners).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURES_ENV = "CRILINK_FIXTURES"
DEFAULT_FIXTURES = "/var/tmp/crilink-fixtures"
HOST_JOURNAL_DIR = Path("/var/lib/crilink/journal")


STRICT_SKIPS_ENV = "CRILINK_STRICT_SKIPS"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under scripts/test (which installs every tool and runs as root) a skipped test is a
    failure: a missing runtime must never turn an acceptance test into a silent pass."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get(STRICT_SKIPS_ENV) == "1" and report.skipped \
            and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped where nothing may be skipped ({STRICT_SKIPS_ENV}=1): {reason}"


@pytest.fixture(autouse=True, scope="session")
def private_journal_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every journal a test writes without naming a directory goes to a private dir (the
    env var reaches the crilink subprocesses too): never among an operator's journals."""
    path = tmp_path_factory.mktemp("journals")
    path.chmod(0o700)
    old = os.environ.get("CRILINK_JOURNAL_DIR")
    os.environ["CRILINK_JOURNAL_DIR"] = str(path)
    before = set(HOST_JOURNAL_DIR.iterdir()) if HOST_JOURNAL_DIR.is_dir() else set()
    yield path
    if old is None:
        del os.environ["CRILINK_JOURNAL_DIR"]
    else:
        os.environ["CRILINK_JOURNAL_DIR"] = old
    after = set(HOST_JOURNAL_DIR.iterdir()) if HOST_JOURNAL_DIR.is_dir() else set()
    ours = [p for p in after - before if str(path.parent) in p.read_text(errors="replace")]
    assert not ours, f"tests wrote journals among the host's: {sorted(ours)}"


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    path = Path(os.environ.get(FIXTURES_ENV, DEFAULT_FIXTURES))
    if not (path / "MANIFEST.md").is_file():
        pytest.fail(f"real fixtures missing in {path}: run scripts/test (it builds them)")
    return path


@pytest.fixture
def copy_fixture(tmp_path: Path, real_fixtures: Path) -> Callable[[str], Path]:
    """copy_fixture("containerd/clean/root") -> a private cp -a copy under tmp_path."""

    def copy(rel: str) -> Path:
        src = real_fixtures / rel
        dst = tmp_path / "copy" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
        return dst

    return copy
