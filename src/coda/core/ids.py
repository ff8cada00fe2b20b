"""Validation of identifiers that callers pass in."""

from __future__ import annotations

import re
from typing import TypeGuard

from coda.core.errors import ValidationError

_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
CONVERSATION_ID = rf"^{_ID}$"
"""A conversation (or message) id, for pydantic's patterns, whose ``$`` is the very end:
1-128 ASCII letters, digits, ``_.:-``, starting with a letter or digit."""
_ID_PATTERN = re.compile(rf"\A{_ID}\Z")  # \Z: Python's $ would let a trailing newline in


def is_conversation_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a well-formed conversation id."""
    return isinstance(value, str) and _ID_PATTERN.match(value) is not None


def check_conversation_id(conversation_id: object) -> str:
    """Return the id if valid, else raise.

    Raises:
        ValidationError: If the id is not 1-128 characters of letters, digits, ``_.:-``.
    """
    if not isinstance(conversation_id, str) or not is_conversation_id(conversation_id):
        raise ValidationError(
            f"conversation_id {conversation_id!r} is invalid: use 1-128 letters, digits, "
            "'_', '.', ':' or '-', starting with a letter or digit"
        )
    return conversation_id
