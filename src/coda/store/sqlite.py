"""Conversations and turns in SQLite, the embedded default store.

A turn is written in one transaction once it has finished, so a crash or a
restart loses no finished turn and never leaves half of one. All SQL runs on
the store's own thread, off the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from coda.core.errors import ConversationError
from coda.core.models import ConversationState, ConversationTurn, VoiceProcessingMode
from coda.store.base import FIRST_WORDS_CHARS, ConversationListing
from coda.store.database import SQLiteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    last_activity REAL NOT NULL,
    ended_at REAL,
    current_mode TEXT,
    metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS turns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    message_id TEXT,
    user_text TEXT NOT NULL,
    assistant_text TEXT NOT NULL,
    mode TEXT NOT NULL,
    timestamp REAL NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns(conversation_id, seq);
"""


class SQLiteConversationStore:
    """SQLite-backed conversation history, for one Coda process."""

    shared = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._database = SQLiteDatabase(
            path,
            _SCHEMA,
            "store",
            lambda: ConversationError("the conversation store is closed: call initialize()"),
        )

    async def open(self) -> None:
        """Open (and create, or bring up to date) the database."""
        await self._database.open()

        def migrate() -> None:
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(conversations)")}
            if "summary" not in columns:  # a store from before summaries
                self._conn.execute(
                    "ALTER TABLE conversations ADD COLUMN summary TEXT NOT NULL DEFAULT ''"
                )
            if "owner" not in columns:  # a store from before tenants
                self._conn.execute("ALTER TABLE conversations ADD COLUMN owner TEXT")
            self._conn.execute(
                "CREATE INDEX IF NOT EXISTS conversations_by_owner "
                "ON conversations(owner, last_activity)"
            )

        await self._database.run(migrate)

    async def close(self) -> None:
        """Close the database."""
        await self._database.close()

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._database.connection

    async def create(self, conversation_id: str, owner: str | None = None) -> ConversationState:
        """Record a new conversation of ``owner``.

        Raises:
            ConversationError: If the id is already used.
        """
        state = ConversationState(conversation_id, owner=owner)

        def insert() -> None:
            try:
                self._conn.execute(
                    "INSERT INTO conversations (id, started_at, last_activity, owner) "
                    "VALUES (?, ?, ?, ?)",
                    (conversation_id, state.started_at, state.last_activity, owner),
                )
            except sqlite3.IntegrityError as exc:
                raise ConversationError(
                    f"conversation {conversation_id!r} already exists; use a new id"
                ) from exc

        await self._database.run(insert)
        return state

    async def load(self, conversation_id: str, max_turns: int) -> ConversationState | None:
        """The conversation with its latest ``max_turns`` turns, or None if unknown."""
        return await self._database.run(self._load, conversation_id, max_turns)

    def _load(self, conversation_id: str, max_turns: int) -> ConversationState | None:
        row = self._conn.execute(
            "SELECT started_at, last_activity, ended_at, current_mode, metrics, summary, owner "
            "FROM conversations WHERE id = ?",
            (conversation_id,),
        ).fetchone()
        if row is None:
            return None
        started_at, last_activity, ended_at, mode, metrics, summary, owner = row
        rows = self._conn.execute(
            "SELECT user_text, assistant_text, mode, timestamp, message_id FROM turns "
            "WHERE conversation_id = ? ORDER BY seq DESC LIMIT ?",
            (conversation_id, max_turns),
        ).fetchall()
        turns = [
            ConversationTurn(user, assistant, VoiceProcessingMode(m), ts, mid)
            for user, assistant, m, ts, mid in reversed(rows)
        ]
        return ConversationState(
            conversation_id=conversation_id,
            is_active=ended_at is None,
            current_mode=VoiceProcessingMode(mode) if mode else None,
            turns=turns,
            started_at=started_at,
            last_activity=last_activity,
            ended_at=ended_at,
            metrics=json.loads(metrics),
            summary=summary,
            owner=owner,
        )

    async def add_turn(
        self, state: ConversationState, turn: ConversationTurn, metadata: dict[str, Any]
    ) -> bool:
        """Append a finished turn and update the conversation, atomically; True."""

        def write() -> None:
            db = self._conn
            with db:
                db.execute("BEGIN")
                db.execute(
                    "INSERT INTO turns (conversation_id, message_id, user_text, assistant_text, "
                    "mode, timestamp, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        state.conversation_id,
                        turn.message_id,
                        turn.user_text,
                        turn.assistant_text,
                        turn.mode.value,
                        turn.timestamp,
                        json.dumps(metadata, default=str),
                    ),
                )
                db.execute(
                    "UPDATE conversations SET last_activity = ?, current_mode = ?, metrics = ? "
                    "WHERE id = ?",
                    (
                        turn.timestamp,
                        turn.mode.value,
                        json.dumps(state.metrics, default=str),
                        state.conversation_id,
                    ),
                )

        await self._database.run(write)
        return True

    async def find_turn(self, conversation_id: str, message_id: str) -> ConversationTurn | None:
        """The stored turn of the message ``message_id``, if any."""

        def find() -> ConversationTurn | None:
            row = self._conn.execute(
                "SELECT user_text, assistant_text, mode, timestamp FROM turns "
                "WHERE conversation_id = ? AND message_id = ? ORDER BY seq LIMIT 1",
                (conversation_id, message_id),
            ).fetchone()
            if row is None:
                return None
            return ConversationTurn(row[0], row[1], VoiceProcessingMode(row[2]), row[3], message_id)

        return await self._database.run(find)

    async def set_summary(self, conversation_id: str, summary: str) -> None:
        """Keep the summary of the conversation's older turns."""

        def update() -> None:
            self._conn.execute(
                "UPDATE conversations SET summary = ? WHERE id = ?", (summary, conversation_id)
            )

        await self._database.run(update)

    async def end(self, conversation_id: str) -> None:
        """Mark the conversation ended."""
        now = time.time()

        def update() -> None:
            self._conn.execute(
                "UPDATE conversations SET ended_at = ?, last_activity = ? WHERE id = ?",
                (now, now, conversation_id),
            )

        await self._database.run(update)

    async def count_turns(self, conversation_id: str) -> int:
        """How many turns the conversation has in total."""

        def count() -> int:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM turns WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            return int(row[0])

        return await self._database.run(count)

    async def list_owned(self, owner: str, limit: int) -> list[ConversationListing]:
        """``owner``'s latest ``limit`` conversations, most recently active first."""
        return await self._database.run(self._list_owned, owner, limit)

    def _list_owned(self, owner: str, limit: int) -> list[ConversationListing]:
        rows = self._conn.execute(
            "SELECT c.id, c.started_at, c.last_activity, c.ended_at IS NULL, "
            "(SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id), "
            "(SELECT substr(user_text, 1, ?) FROM turns t WHERE t.conversation_id = c.id "
            "ORDER BY seq LIMIT 1) "
            "FROM conversations c WHERE c.owner = ? ORDER BY c.last_activity DESC LIMIT ?",
            (FIRST_WORDS_CHARS, owner, limit),
        ).fetchall()
        return [
            ConversationListing(cid, started, last, bool(active), turns, first or "")
            for cid, started, last, active, turns, first in rows
        ]

    async def check(self) -> list[str]:
        """Conversations whose turn count, or last activity, disagrees with their turns."""

        def check() -> list[str]:
            rows = self._conn.execute(
                "SELECT c.id, c.metrics, c.last_activity, COUNT(t.seq), MAX(t.timestamp) "
                "FROM conversations c LEFT JOIN turns t ON t.conversation_id = c.id GROUP BY c.id"
            )
            problems = []
            for cid, metrics, last_activity, count, latest in rows:
                counted = json.loads(metrics).get("turns", 0)
                if counted != count:
                    problems.append(f"{cid}: {count} turns stored, {counted} counted")
                if latest is not None and last_activity < latest:
                    problems.append(f"{cid}: last activity before its last turn")
            orphans = self._conn.execute(
                "SELECT COUNT(*) FROM turns WHERE conversation_id NOT IN "
                "(SELECT id FROM conversations)"
            ).fetchone()[0]
            if orphans:
                problems.append(f"{orphans} turns of no conversation")
            return problems

        return await self._database.run(check)
