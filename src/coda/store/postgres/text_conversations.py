"""The sync's text conversations in PostgreSQL, and the sync events every instance sees.

The semantics are ``coda.sync.text_conversations``'s: each write is one
transaction, and a versioned update locks its row, so two instances editing one
message meet ``StaleVersionError`` instead of losing a write. Sync events of one
instance are written to ``sync_events`` and announced with NOTIFY; the other
instances read each one back and hand it to their handlers, in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from coda.core.errors import SyncError
from coda.core.models import SyncEventType
from coda.store.postgres.database import PostgresStore, jsonable
from coda.sync.events import SyncEvent
from coda.sync.text_conversations import (
    Source,
    TextConversations,
    TextMessage,
    check_conversation_id,
    check_version,
    row_to_message,
)

_COLUMNS = "message_id, role, content, source, created_at, updated_at, version, updated_by"


class PostgresTextConversationManager(PostgresStore, TextConversations):
    """Text conversations in PostgreSQL, shared by every instance.

    Args:
        url: The database's URL.
    """

    def __init__(self, url: str) -> None:
        super().__init__(
            url, lambda: SyncError("the text conversation store is closed: call open()")
        )
        self._receive: Callable[[SyncEvent], Awaitable[None]] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def close(self) -> None:
        """Stop the events and release the connection."""
        self.stop_events()
        await super().close()

    async def add_message(self, conversation_id: str, message: TextMessage) -> TextMessage:
        """Append a message to a conversation, in one transaction.

        Raises:
            SyncError: If the conversation already has a message with this id.
        """
        check_conversation_id(conversation_id)
        async with self.database.connection() as conn:
            try:
                await conn.execute(
                    f"INSERT INTO text_messages (conversation_id, {_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (conversation_id, message.message_id, message.role, message.content,
                     message.source, message.created_at, message.updated_at, message.version,
                     message.updated_by),
                )  # fmt: skip
            except psycopg.errors.UniqueViolation as exc:
                raise SyncError(
                    f"conversation {conversation_id!r} already has message "
                    f"{message.message_id!r}; use update_message to change it"
                ) from exc
        return message

    async def get_message(self, conversation_id: str, message_id: str) -> TextMessage | None:
        """The message, or None if the conversation has no message with this id."""
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM text_messages "
                "WHERE conversation_id = %s AND message_id = %s",
                (conversation_id, message_id),
            )
            row = await cursor.fetchone()
        return None if row is None else row_to_message(row)

    async def messages(self, conversation_id: str) -> list[TextMessage]:
        """The conversation's messages ordered by ``created_at``, then insertion."""
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM text_messages WHERE conversation_id = %s "
                "ORDER BY created_at, seq",
                (conversation_id,),
            )
            rows = await cursor.fetchall()
        return [row_to_message(row) for row in rows]

    async def _update(
        self,
        conversation_id: str,
        message_id: str,
        content: str,
        updated_by: Source,
        at: float,
        expected_version: int | None,
    ) -> TextMessage:
        async with self.database.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT version FROM text_messages WHERE conversation_id = %s "
                "AND message_id = %s FOR UPDATE",
                (conversation_id, message_id),
            )
            row = await cursor.fetchone()
            check_version(
                conversation_id, message_id, None if row is None else row[0], expected_version
            )
            cursor = await conn.execute(
                "UPDATE text_messages SET content = %s, updated_at = %s, updated_by = %s, "
                f"version = version + 1 WHERE conversation_id = %s AND message_id = %s "
                f"RETURNING {_COLUMNS}",
                (content, at, updated_by, conversation_id, message_id),
            )
            updated = await cursor.fetchone()
        assert updated is not None
        return row_to_message(updated)

    # -- sync events across instances ----------------------------------------------------

    async def publish_event(self, event: SyncEvent) -> None:
        """Keep the event for the other instances and tell them (on commit)."""
        database = self.database
        async with database.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO sync_events (origin, conversation_id, event_type, payload, timestamp)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (database.instance_id, event.conversation_id, event.event_type.value,
                 Jsonb(jsonable(event.payload)), event.timestamp),
            )  # fmt: skip
            row = await cursor.fetchone()
            assert row is not None
            await database.notify(conn, "sync", id=row[0])

    def start_events(self, receive: Callable[[SyncEvent], Awaitable[None]]) -> None:
        """Hand each other instance's event to ``receive``, in the order announced."""
        self.stop_events()
        self._receive = receive
        self._unsubscribe = self.database.subscribe("sync", self._fetch)

    def stop_events(self) -> None:
        """Stop handing them."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = self._receive = None

    async def _fetch(self, message: dict[str, Any]) -> None:
        receive = self._receive
        if receive is None:
            return
        async with self.database.connection() as conn:
            cursor = await conn.execute(
                "SELECT origin, conversation_id, event_type, payload, timestamp "
                "FROM sync_events WHERE id = %s",
                (int(message["id"]),),
            )
            row = await cursor.fetchone()
        if row is not None:  # None: older than the retention, already gone
            origin, cid, kind, payload, timestamp = row
            await receive(SyncEvent(SyncEventType(kind), cid, dict(payload), timestamp, 0, origin))
