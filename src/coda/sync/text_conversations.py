"""The default text conversation manager: text conversations persisted in SQLite.

Messages live in the ``text_messages`` table, created with ``IF NOT EXISTS`` so the
manager can share one database file with the voice ``ConversationStore``. Each
write is one transaction and all SQL runs on the manager's own worker thread,
off the event loop.

Each message records its ``source`` (the side that created it, never changed) and
``updated_by`` (the side that wrote its current content); ``version`` starts at 1
and grows by one with each content change.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self, TypeVar, get_args

from coda.core.errors import SyncError
from coda.core.models import new_id
from coda.store.database import MEMORY, SQLiteDatabase

Role = Literal["user", "assistant"]
Source = Literal["voice", "text"]
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS text_messages (
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('voice', 'text')),
    updated_by TEXT NOT NULL CHECK (updated_by IN ('voice', 'text')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX IF NOT EXISTS text_messages_by_order
    ON text_messages(conversation_id, created_at, seq);
"""
_COLUMNS = "message_id, role, content, source, created_at, updated_at, version, updated_by"


class StaleVersionError(SyncError):
    """The message changed since it was read (optimistic concurrency check failed)."""


@dataclass
class TextMessage:
    """One message of a text conversation.

    Attributes:
        message_id: Unique within its conversation.
        role: "user" or "assistant".
        content: The message text.
        source: The side that created the message: "voice" or "text".
        created_at: Creation time (epoch seconds); orders the conversation.
        updated_at: Time of the current content; 0.0 means ``created_at``.
        version: 1, plus one per content change.
        updated_by: The side that wrote the current content (default: ``source``).
    """

    message_id: str
    role: Role
    content: str
    source: Source = "text"
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    version: int = 1
    updated_by: Source | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.message_id, str) or not self.message_id:
            raise SyncError(f"message_id must be a non-empty string, got {self.message_id!r}")
        if self.role not in get_args(Role):
            raise SyncError(f"role must be 'user' or 'assistant', got {self.role!r}")
        if self.source not in get_args(Source):
            raise SyncError(f"source must be 'voice' or 'text', got {self.source!r}")
        if not isinstance(self.content, str):
            raise SyncError(f"content must be a string, got {type(self.content).__name__}")
        if not self.updated_at:
            self.updated_at = self.created_at
        if self.updated_by is None:
            self.updated_by = self.source


def check_conversation_id(conversation_id: object) -> str:
    """The id if it is a non-empty string (``SyncError`` if not)."""
    if not isinstance(conversation_id, str) or not conversation_id:
        raise SyncError(f"conversation_id must be a non-empty string, got {conversation_id!r}")
    return conversation_id


def row_to_message(row: tuple[Any, ...]) -> TextMessage:
    """A message from a row of its columns, in the stores' order."""
    message_id, role, content, source, created_at, updated_at, version, updated_by = row
    return TextMessage(
        message_id, role, content, source, created_at, updated_at, version, updated_by
    )


class TextConversations:
    """What every text conversation manager adds to its storage: typed messages, edits."""

    async def open(self) -> None:
        """Open (and create if needed) the storage; a no-op when already open."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the storage."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def add_message(self, conversation_id: str, message: TextMessage) -> TextMessage:
        """Append a message (``SyncError`` if its id is taken)."""
        raise NotImplementedError

    async def update_message(
        self,
        conversation_id: str,
        message_id: str,
        content: str,
        *,
        updated_by: Source = "text",
        updated_at: float | None = None,
        expected_version: int | None = None,
    ) -> TextMessage:
        """Change a message's content, bumping its version, in one transaction.

        Args:
            conversation_id: The conversation.
            message_id: The message to change.
            content: The new content.
            updated_by: The side writing the content.
            updated_at: Time of the new content (default: now).
            expected_version: If given, the update applies only to this version.

        Returns:
            The updated message.

        Raises:
            SyncError: If the message does not exist or the arguments are invalid.
            StaleVersionError: If ``expected_version`` is not the current version.
        """
        check_update(content, updated_by)
        at = time.time() if updated_at is None else float(updated_at)
        return await self._update(
            conversation_id, message_id, content, updated_by, at, expected_version
        )

    async def _update(
        self,
        conversation_id: str,
        message_id: str,
        content: str,
        updated_by: Source,
        at: float,
        expected_version: int | None,
    ) -> TextMessage:
        """Write the change in one transaction, its version checked by ``check_version``."""
        raise NotImplementedError

    async def add_text_message(
        self,
        conversation_id: str,
        role: Role,
        content: str,
        *,
        message_id: str | None = None,
        created_at: float | None = None,
    ) -> TextMessage:
        """Add a message typed in a text UI (source "text")."""
        message = TextMessage(
            message_id=message_id or new_id("txt"),
            role=role,
            content=content,
            source="text",
            created_at=time.time() if created_at is None else created_at,
        )
        return await self.add_message(conversation_id, message)

    async def edit_text_message(
        self,
        conversation_id: str,
        message_id: str,
        content: str,
        *,
        updated_at: float | None = None,
    ) -> TextMessage:
        """Edit a message from a text UI (``updated_by`` "text"), without conflict checks."""
        return await self.update_message(
            conversation_id, message_id, content, updated_by="text", updated_at=updated_at
        )


def check_update(content: object, updated_by: object) -> None:
    """Refuse an update's content or side before anything is written.

    Raises:
        SyncError: If ``content`` is not a string or ``updated_by`` not a side.
    """
    if not isinstance(content, str):
        raise SyncError(f"content must be a string, got {type(content).__name__}")
    if updated_by not in get_args(Source):
        raise SyncError(f"updated_by must be 'voice' or 'text', got {updated_by!r}")


def check_version(
    conversation_id: str, message_id: str, found: int | None, expected: int | None
) -> None:
    """Refuse an update of a missing message, or of one no longer at ``expected``.

    Raises:
        SyncError: If there is no such message (``found`` is None).
        StaleVersionError: If ``expected`` is given and is not ``found``.
    """
    if found is None:
        raise SyncError(f"conversation {conversation_id!r} has no message {message_id!r}")
    if expected is not None and found != expected:
        raise StaleVersionError(
            f"message {message_id!r} is at version {found}, not {expected}: it changed meanwhile"
        )


class TextConversationManager(TextConversations):
    """Text conversations in SQLite: a file path, or ``":memory:"`` for this process only."""

    def __init__(self, path: str | Path = MEMORY) -> None:
        self.path = path
        self._database = SQLiteDatabase(
            path,
            _SCHEMA,
            "text-conversations",
            lambda: SyncError("the text conversation store is closed: call open()"),
        )

    async def open(self) -> None:
        """Open (and create if needed) the database; a no-op when already open."""
        await self._database.open()

    async def close(self) -> None:
        """Close the database and stop the worker thread."""
        await self._database.close()

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._database.connection

    async def _run(self, fn: Callable[[], T]) -> T:
        return await self._database.run(fn)

    async def add_message(self, conversation_id: str, message: TextMessage) -> TextMessage:
        """Append a message to a conversation, in one transaction.

        Raises:
            SyncError: If the conversation already has a message with this id.
        """
        check_conversation_id(conversation_id)

        def insert() -> None:
            db = self._conn
            try:
                with db:
                    db.execute("BEGIN IMMEDIATE")
                    db.execute(
                        f"INSERT INTO text_messages (conversation_id, seq, {_COLUMNS}) "
                        "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM text_messages), "
                        "?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            conversation_id,
                            message.message_id,
                            message.role,
                            message.content,
                            message.source,
                            message.created_at,
                            message.updated_at,
                            message.version,
                            message.updated_by,
                        ),
                    )
            except sqlite3.IntegrityError as exc:
                raise SyncError(
                    f"conversation {conversation_id!r} already has message "
                    f"{message.message_id!r}; use update_message to change it"
                ) from exc

        await self._run(insert)
        return message

    async def get_message(self, conversation_id: str, message_id: str) -> TextMessage | None:
        """The message, or None if the conversation has no message with this id."""

        def select() -> TextMessage | None:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM text_messages "
                "WHERE conversation_id = ? AND message_id = ?",
                (conversation_id, message_id),
            ).fetchone()
            return None if row is None else row_to_message(row)

        return await self._run(select)

    async def messages(self, conversation_id: str) -> list[TextMessage]:
        """The conversation's messages ordered by ``created_at``, then insertion."""

        def select() -> list[TextMessage]:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM text_messages WHERE conversation_id = ? "
                "ORDER BY created_at, seq",
                (conversation_id,),
            ).fetchall()
            return [row_to_message(row) for row in rows]

        return await self._run(select)

    async def _update(
        self,
        conversation_id: str,
        message_id: str,
        content: str,
        updated_by: Source,
        at: float,
        expected_version: int | None,
    ) -> TextMessage:
        def update() -> TextMessage:
            db = self._conn
            with db:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute(
                    "SELECT version FROM text_messages "
                    "WHERE conversation_id = ? AND message_id = ?",
                    (conversation_id, message_id),
                ).fetchone()
                check_version(
                    conversation_id, message_id, None if row is None else row[0], expected_version
                )
                db.execute(
                    "UPDATE text_messages SET content = ?, updated_at = ?, updated_by = ?, "
                    "version = version + 1 WHERE conversation_id = ? AND message_id = ?",
                    (content, at, updated_by, conversation_id, message_id),
                )
                updated = db.execute(
                    f"SELECT {_COLUMNS} FROM text_messages "
                    "WHERE conversation_id = ? AND message_id = ?",
                    (conversation_id, message_id),
                ).fetchone()
            return row_to_message(updated)

        return await self._run(update)
