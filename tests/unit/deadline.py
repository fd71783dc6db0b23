"""A guard for tests whose regression would be a hang (a FIFO read, /dev/zero, a loop)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    """Raise TimeoutError in the test after ``seconds`` instead of blocking the suite."""

    def fail(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"hung: {what}")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
