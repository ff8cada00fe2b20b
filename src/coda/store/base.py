"""The conversation store's protocol, which SQLite (``sqlite``) and PostgreSQL follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from coda.core.models import ConversationState, ConversationTurn

FIRST_WORDS_CHARS = 80
"""How much of a conversation's first words its summary in a list keeps."""


@dataclass(frozen=True)
class ConversationListing:
    """One conversation in a list of them: enough to choose one to reopen.

    Attributes:
        conversation_id: Its id.
        started_at: When it started (Unix seconds).
        last_activity: When it last had a turn (Unix seconds).
        active: False once it was ended.
        turns: How many turns it has.
        first_words: The start of its first user turn ("" before any).
    """

    conversation_id: str
    started_at: float
    last_activity: float
    active: bool
    turns: int
    first_words: str


class ConversationStore(Protocol):
    """Where conversations and their turns persist.

    Attributes:
        shared: Other Coda instances may write the same store, so what a process
            holds in memory can be stale and is read again for each turn.
    """

    shared: bool

    async def open(self) -> None:
        """Open (and create, or bring up to date) the store."""

    async def close(self) -> None:
        """Close the store."""

    async def create(self, conversation_id: str, owner: str | None = None) -> ConversationState:
        """Record a new conversation of ``owner`` (``ConversationError`` if the id is taken)."""
        ...

    async def load(self, conversation_id: str, max_turns: int) -> ConversationState | None:
        """The conversation with its latest ``max_turns`` turns, or None if unknown."""
        ...

    async def add_turn(
        self, state: ConversationState, turn: ConversationTurn, metadata: dict[str, Any]
    ) -> bool:
        """Append a finished turn and update the conversation, in one transaction.

        Returns:
            False if a turn with the same ``message_id`` was stored already (a
            retried message is stored once).
        """
        ...

    async def find_turn(self, conversation_id: str, message_id: str) -> ConversationTurn | None:
        """The stored turn of the message ``message_id``, if any."""
        ...

    async def set_summary(self, conversation_id: str, summary: str) -> None:
        """Keep the summary of the conversation's older turns."""

    async def end(self, conversation_id: str) -> None:
        """Mark the conversation ended."""

    async def count_turns(self, conversation_id: str) -> int:
        """How many turns the conversation has in total."""
        ...

    async def list_owned(self, owner: str, limit: int) -> list[ConversationListing]:
        """``owner``'s latest ``limit`` conversations, most recently active first."""
        ...

    async def check(self) -> list[str]:
        """Consistency problems found in the whole store (none: an empty list)."""
        ...
