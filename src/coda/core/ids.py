"""Validation of identifiers that callers pass in."""

from __future__ import annotations

import re

from coda.core.errors import ValidationError

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


def check_conversation_id(conversation_id: object) -> str:
    """Return the id if valid, else raise.

    Raises:
        ValidationError: If the id is not 1-128 characters of letters, digits, ``_.:-``.
    """
    if not isinstance(conversation_id, str) or not _ID_PATTERN.match(conversation_id):
        raise ValidationError(
            f"conversation_id {conversation_id!r} is invalid: use 1-128 letters, digits, "
            "'_', '.', ':' or '-', starting with a letter or digit"
        )
    return conversation_id
