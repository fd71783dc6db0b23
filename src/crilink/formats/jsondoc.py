"""JSON documents from untrusted files: one parser that fails with a message, never a crash.

``json.loads`` raises ``ValueError`` on bad text, ``UnicodeDecodeError`` on bad bytes and
``RecursionError`` on deeply nested arrays (a few thousand ``[``): all three become
:class:`crilink.errors.CorruptInputError` naming the document and, when given, what to do.
"""

from __future__ import annotations

import json
from typing import Any

from crilink.errors import CorruptInputError

__all__ = ["parse_json"]


def parse_json(data: bytes | str, what: str, hint: str = "") -> Any:
    """The document in ``data``, or CorruptInputError ``read WHAT: not valid JSON (...)``."""
    try:
        return json.loads(data)
    except RecursionError as err:
        reason = "nested too deeply"
        raise CorruptInputError(f"read {what}: not valid JSON ({reason}){hint}") from err
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptInputError(f"read {what}: not valid JSON ({str(err)[:80]}){hint}") from err
