"""Conversations and turns in PostgreSQL, shared by every Coda instance that names the URL.

A turn is written with its conversation's update in one transaction: the
conversation's row is locked, the turn takes the next index, and the count moves
with it, so a crash (even ``kill -9`` of an instance mid-write) leaves either the
whole turn or none of it. A turn whose ``message_id`` is stored already is not
written again, so a client that retries on another instance is stored once.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from coda.core.errors import ConversationError
from coda.core.models import ConversationState, ConversationTurn, VoiceProcessingMode
from coda.store.base import FIRST_WORDS_CHARS, ConversationListing
from coda.store.postgres.database import PostgresStore, jsonable


class PostgresConversationStore(PostgresStore):
    """Conversation history in PostgreSQL.

    Args:
        url: The database's URL.
    """

    shared = True

    def __init__(self, url: str) -> None:
        super().__init__(
            url, lambda: ConversationError("the conversation store is closed: call initialize()")
        )

    async def create(self, conversation_id: str, owner: str | None = None) -> ConversationState:
        """Record a new conversation of ``owner``.

        Raises:
            ConversationError: If the id is already used.
        """
        state = ConversationState(conversation_id, owner=owner)
        async with self.database.connection() as conn:
            try:
                await conn.execute(
                    "INSERT INTO conversations (id, started_at, last_activity, owner) "
                    "VALUES (%s, %s, %s, %s)",
                    (conversation_id, state.started_at, state.last_activity, owner),
                )
            except psycopg.errors.UniqueViolation as exc:
                raise ConversationError(
                    f"conversation {conversation_id!r} already exists; use a new id"
                ) from exc
        return state

    async def load(self, conversation_id: str, max_turns: int) -> ConversationState | None:
        """The conversation with its latest ``max_turns`` turns, or None if unknown."""
        async with self.database.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT started_at, last_activity, ended_at, current_mode, metrics, summary, "
                "owner FROM conversations WHERE id = %s",
                (conversation_id,),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            cursor = await conn.execute(
                "SELECT user_text, assistant_text, mode, timestamp, message_id FROM turns "
                "WHERE conversation_id = %s ORDER BY turn_index DESC LIMIT %s",
                (conversation_id, max_turns),
            )
            rows = await cursor.fetchall()
        started_at, last_activity, ended_at, mode, metrics, summary, owner = row
        return ConversationState(
            conversation_id=conversation_id,
            is_active=ended_at is None,
            current_mode=VoiceProcessingMode(mode) if mode else None,
            turns=[
                ConversationTurn(user, assistant, VoiceProcessingMode(m), ts, mid)
                for user, assistant, m, ts, mid in reversed(rows)
            ],
            started_at=started_at,
            last_activity=last_activity,
            ended_at=ended_at,
            metrics=dict(metrics),
            summary=summary,
            owner=owner,
        )

    async def add_turn(
        self, state: ConversationState, turn: ConversationTurn, metadata: dict[str, Any]
    ) -> bool:
        """Append a finished turn and update the conversation, in one transaction.

        Returns:
            False if the conversation already has a turn with this ``message_id``.

        Raises:
            ConversationError: If the conversation is not in the store.
        """
        cid = state.conversation_id
        async with self.database.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT turn_count FROM conversations WHERE id = %s FOR UPDATE", (cid,)
            )
            row = await cursor.fetchone()
            if row is None:
                raise ConversationError(f"conversation {cid!r} is not in the store")
            index = int(row[0]) + 1
            cursor = await conn.execute(
                "INSERT INTO turns (conversation_id, turn_index, message_id, user_text, "
                "assistant_text, mode, timestamp, metadata) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (conversation_id, message_id) WHERE message_id IS NOT NULL DO NOTHING",
                (cid, index, turn.message_id, turn.user_text, turn.assistant_text,
                 turn.mode.value, turn.timestamp, Jsonb(jsonable(metadata))),
            )  # fmt: skip
            if cursor.rowcount == 0:
                return False
            await conn.execute(
                "UPDATE conversations SET turn_count = %s, last_activity = GREATEST(last_activity,"
                " %s), current_mode = %s, metrics = %s WHERE id = %s",
                (index, turn.timestamp, turn.mode.value,
                 Jsonb({**jsonable(state.metrics), "turns": index}), cid),
            )  # fmt: skip
        state.metrics["turns"] = index
        return True

    async def find_turn(self, conversation_id: str, message_id: str) -> ConversationTurn | None:
        """The stored turn of the message ``message_id``, if any."""
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT user_text, assistant_text, mode, timestamp FROM turns "
                "WHERE conversation_id = %s AND message_id = %s",
                (conversation_id, message_id),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        return ConversationTurn(row[0], row[1], VoiceProcessingMode(row[2]), row[3], message_id)

    async def set_summary(self, conversation_id: str, summary: str) -> None:
        """Keep the summary of the conversation's older turns."""
        async with self.database.connection() as conn:
            await conn.execute(
                "UPDATE conversations SET summary = %s WHERE id = %s", (summary, conversation_id)
            )

    async def end(self, conversation_id: str) -> None:
        """Mark the conversation ended."""
        now = time.time()
        async with self.database.connection() as conn:
            await conn.execute(
                "UPDATE conversations SET ended_at = %s, last_activity = GREATEST(last_activity, "
                "%s) WHERE id = %s",
                (now, now, conversation_id),
            )

    async def count_turns(self, conversation_id: str) -> int:
        """How many turns the conversation has in total."""
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT COUNT(*) FROM turns WHERE conversation_id = %s", (conversation_id,)
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def list_owned(self, owner: str, limit: int) -> list[ConversationListing]:
        """``owner``'s latest ``limit`` conversations, most recently active first."""
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT c.id, c.started_at, c.last_activity, c.ended_at IS NULL, c.turn_count, "
                "(SELECT left(user_text, %s) FROM turns t WHERE t.conversation_id = c.id "
                "ORDER BY turn_index LIMIT 1) "
                "FROM conversations c WHERE c.owner = %s ORDER BY c.last_activity DESC LIMIT %s",
                (FIRST_WORDS_CHARS, owner, limit),
            )
            rows = await cursor.fetchall()
        return [
            ConversationListing(cid, started, last, active, turns, first or "")
            for cid, started, last, active, turns, first in rows
        ]

    async def check(self) -> list[str]:
        """Conversations whose turns are not exactly 1..turn_count, or disagree with it."""
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT c.id, c.turn_count, COUNT(t.turn_index), COALESCE(MAX(t.turn_index), 0), "
                "COALESCE((c.metrics->>'turns')::int, 0), c.last_activity, MAX(t.timestamp) "
                "FROM conversations c LEFT JOIN turns t ON t.conversation_id = c.id "
                "GROUP BY c.id"
            )
            rows = await cursor.fetchall()
        problems = []
        for cid, count, stored, highest, counted, last_activity, latest in rows:
            if not count == stored == highest == counted:
                problems.append(
                    f"{cid}: turn_count {count}, {stored} turns stored (highest index "
                    f"{highest}), metrics count {counted}"
                )
            if latest is not None and last_activity < latest:
                problems.append(f"{cid}: last activity before its last turn")
        return problems
