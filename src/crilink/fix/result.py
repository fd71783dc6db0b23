"""What applying (or undoing) a plan did: one :class:`Outcome` per action, as data."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crilink.fix.actions import Action

__all__ = ["ApplyResult", "Outcome", "Status"]


class Status(StrEnum):
    """How one action ended.

    - ``done``: changed and re-checked.
    - ``already``: the node was already in the wanted state; nothing to do.
    - ``skipped``: the node was not what the plan (or journal) expected; left untouched.
    - ``refused``: undo only: the node is neither the journal's "after" nor its "before".
    - ``irreversible``: undo only: the action (purge) cannot be reverted.
    - ``failed``: the kernel refused the change or the re-check disagreed (see ``reason``).
    - ``pending``: journal only: an intent without an end record (a crash mid-action).
    """

    DONE = "done"
    ALREADY = "already"
    SKIPPED = "skipped"
    REFUSED = "refused"
    IRREVERSIBLE = "irreversible"
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Outcome:
    seq: int
    action: Action
    status: Status
    reason: str = ""
    bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        out = {"seq": self.seq, "status": str(self.status), **self.action.to_json()}
        if self.reason:
            out["reason"] = self.reason
        if self.bytes:
            out["bytes"] = self.bytes
        return out


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The outcomes of one apply or undo run and the journal that records them."""

    journal: str
    outcomes: tuple[Outcome, ...]

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> bool:
        """Nothing failed, was skipped or refused (``irreversible`` is reported, not an error)."""
        bad = (Status.FAILED, Status.SKIPPED, Status.REFUSED)
        return not any(o.status in bad for o in self.outcomes)

    @property
    def bytes_freed(self) -> int:
        return sum(o.bytes for o in self.outcomes)

    def summary(self) -> dict[str, int]:
        counts = Counter(str(o.status) for o in self.outcomes)
        return {str(s): counts.get(str(s), 0) for s in Status if s != Status.PENDING}
