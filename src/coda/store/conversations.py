"""Conversations: which are active, their history, and their persistence."""

from __future__ import annotations

import asyncio
from typing import Any

from coda.core.config import LLMConfig, VoiceConfig
from coda.core.errors import ConversationError
from coda.core.ids import check_conversation_id
from coda.core.models import ConversationState, ConversationTurn
from coda.store.backends import conversation_store
from coda.store.base import ConversationStore

HEADROOM_TOKENS = 600
"""Context kept free of history for the system prompt, memories and the user's words."""


def _chars(turns: list[ConversationTurn]) -> int:
    return sum(len(t.user_text) + len(t.assistant_text) + len(t.context or "") for t in turns)


def _counted(metrics: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """The conversation's figures with one more turn (its latency from ``metadata``)."""
    counted = dict(metrics)
    count = counted["turns"] = int(metrics.get("turns", 0)) + 1
    latency = metadata.get("timings_ms", {}).get("total")
    if latency is not None:
        mean = float(metrics.get("mean_processing_ms", 0.0))
        counted["mean_processing_ms"] = mean + (latency - mean) / count
    return counted


class Conversations:
    """Active conversations held in memory over the store.

    At most ``max_concurrent_conversations`` are held; at the limit the least
    recently active idle one is released from memory (it stays in the store and
    comes back on its next message). Only when every held one is mid-turn is a
    new one refused. Turns of one conversation run one at a time here. Over a
    shared store (PostgreSQL), another instance may have answered since, so each
    turn and each read starts from what the store holds.
    """

    def __init__(self, config: VoiceConfig) -> None:
        self.config = config
        llm = config.llm or LLMConfig()
        # What the history may take of the LLM's context, at ~3 characters a token.
        self._max_chars = max(1000, (llm.context_tokens - llm.max_tokens - HEADROOM_TOKENS) * 3)
        self.store: ConversationStore = conversation_store(config.store_location())
        self._active: dict[str, ConversationState] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def active(self) -> dict[str, ConversationState]:
        """The conversations held in memory, by id."""
        return self._active

    async def open_store(self) -> None:
        """Open the store."""
        await self.store.open()

    async def close(self) -> None:
        """Close the store and forget what is held (a later ``open_store`` starts afresh)."""
        await self.store.close()
        self.store = conversation_store(self.config.store_location())
        self._active.clear()
        self._locks.clear()

    def lock(self, conversation_id: str) -> asyncio.Lock:
        """The lock that keeps the conversation's turns in order."""
        return self._locks.setdefault(conversation_id, asyncio.Lock())

    async def start(self, conversation_id: str, owner: str | None = None) -> ConversationState:
        """Start a conversation (``owner``: the tenant it belongs to).

        Raises:
            ValidationError: If the id is malformed.
            ConversationError: If it exists already, or every held one is mid-turn.
        """
        check_conversation_id(conversation_id)
        if conversation_id in self._active:
            raise ConversationError(f"conversation {conversation_id!r} already exists")
        self._make_room()
        state = await self.store.create(conversation_id, owner)
        self._active[conversation_id] = state
        return state

    async def end(self, conversation_id: str) -> None:
        """End a conversation; its turns stay in the store.

        Raises:
            ConversationError: If it is unknown or already ended.
        """
        check_conversation_id(conversation_id)
        state = await self.get(conversation_id)
        if state is None:
            raise ConversationError(f"conversation {conversation_id!r} not found")
        if not state.is_active:
            raise ConversationError(f"conversation {conversation_id!r} has already ended")
        async with self.lock(conversation_id):
            await self.store.end(conversation_id)
            self._active.pop(conversation_id, None)
            self._locks.pop(conversation_id, None)

    async def get(self, conversation_id: str) -> ConversationState | None:
        """The conversation's state (active or ended), or None if unknown."""
        if conversation_id in self._active and not self.store.shared:
            return self._active[conversation_id]
        return await self.store.load(conversation_id, self.config.max_conversation_length)

    async def check(self, conversation_id: str) -> ConversationState | None:
        """The conversation if it exists; raise if it may not take a turn.

        Raises:
            ConversationError: If it has ended, or is unknown and may not be auto-started.
        """
        state = await self.get(conversation_id)
        if state is None and not self.config.auto_start_conversations:
            raise ConversationError(
                f"conversation {conversation_id!r} not found; call start_conversation first"
            )
        if state is not None and not state.is_active:
            raise ConversationError(f"conversation {conversation_id!r} has ended")
        return state

    async def open(self, conversation_id: str) -> ConversationState:
        """The active conversation, held in memory, started if it is new."""
        state = await self.check(conversation_id)
        if state is None:
            return await self.start(conversation_id)
        if conversation_id not in self._active:
            self._make_room()
        self._active[conversation_id] = state
        return state

    async def held(self, conversation_id: str) -> ConversationState:
        """The state a turn in progress holds (opened again if it was released)."""
        return self._active.get(conversation_id) or await self.open(conversation_id)

    async def commit(
        self, state: ConversationState, turn: ConversationTurn, metadata: dict[str, Any]
    ) -> list[ConversationTurn] | None:
        """Append a finished turn (bounded in memory, whole in the store).

        Returns:
            The oldest turns, once the history outgrows its budget (``max_conversation_
            length`` turns, or what fits the LLM's context): down to three quarters
            of it, so they are summarized in chunks and the LLM's cached prompt
            changes only now and then. None if the turn was stored already (its
            ``message_id`` retried): nothing changed.
        """
        previous, state.metrics = state.metrics, _counted(state.metrics, metadata)
        stored = False
        try:
            stored = await self.store.add_turn(state, turn, metadata)
        finally:
            if not stored:
                state.metrics = previous  # not stored: the figures stay as they were
        if not stored:
            return None
        state.turns.append(turn)
        dropped: list[ConversationTurn] = []
        if len(state.turns) > self._max_turns or _chars(state.turns) > self._max_chars:
            keep = len(state.turns)
            while keep > 1 and (
                keep > self._max_turns * 3 // 4
                or _chars(state.turns[-keep:]) > self._max_chars * 3 // 4
            ):
                keep -= 1
            dropped, state.turns[:] = state.turns[:-keep], state.turns[-keep:]
        state.current_mode = turn.mode
        state.last_activity = turn.timestamp
        return dropped

    @property
    def _max_turns(self) -> int:
        return self.config.max_conversation_length

    def _make_room(self) -> None:
        if len(self._active) < self.config.max_concurrent_conversations:
            return
        idle = [s for cid, s in self._active.items() if not self.lock(cid).locked()]
        if not idle:
            raise ConversationError(
                f"{len(self._active)} conversations are mid-turn, the maximum "
                "(max_concurrent_conversations); retry when one finishes"
            )
        oldest = min(idle, key=lambda s: s.last_activity)
        self._active.pop(oldest.conversation_id)
        self._locks.pop(oldest.conversation_id, None)
