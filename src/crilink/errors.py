"""The one exception tree. Each class carries its exit code; messages say what to do.

Only ``crilink.cli.main`` maps these to exit codes. Re-raise with ``from err``
and a short verb phrase: ``CorruptInputError("read metadata.db: page 7 truncated")``.
"""

from __future__ import annotations

import os

__all__ = [
    "ApplyError",
    "CorruptInputError",
    "CrilinkError",
    "InputError",
    "JournalError",
    "RuntimeBusyError",
    "UnsafeTargetError",
    "UsageError",
    "denied_hint",
]


class CrilinkError(Exception):
    """Base of every error crilink raises on purpose."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CrilinkError):
    """Wrong arguments or options."""

    exit_code = 2


class InputError(CrilinkError):
    """The target cannot be read: missing path, permission denied, unknown kind."""

    exit_code = 2


class CorruptInputError(InputError):
    """The target was read but is malformed (corrupt BoltDB, truncated image ...)."""

    exit_code = 2


class RuntimeBusyError(CrilinkError):
    """The store's runtime is running (or holds its locks); a mutation was refused."""

    exit_code = 3


class UnsafeTargetError(CrilinkError):
    """A change would leave the root, or the target changed under us."""

    exit_code = 4


class ApplyError(CrilinkError):
    """Applying a plan failed part-way; the journal says what was done."""

    exit_code = 5


class JournalError(CrilinkError):
    """A journal cannot be read or undone."""

    exit_code = 6


def denied_hint() -> str:
    """What to add to a "permission denied" message: run as root, or, when already root,
    that something stronger than file modes refuses (an LSM, a mount, a user namespace)."""
    if os.geteuid() != 0:
        return " (run as root?)"
    return " (even for root: a security module, mount option or namespace refuses it)"
