"""The stores a location names: SQLite files (embedded) or one PostgreSQL database (shared).

Each role has one protocol and one implementation per backend:

| role | protocol | SQLite | PostgreSQL |
| --- | --- | --- | --- |
| conversations, turns | ``store.base.ConversationStore`` | ``store.sqlite`` | ``store.postgres.conversations`` |
| memories | ``memory.store.MemoryStore`` | ``memory.store`` | ``store.postgres.memories`` |
| personality traits | ``personality.store.TraitStore`` | ``personality.store`` | ``store.postgres.traits`` |
| text conversations (sync) | ``sync.reconcile.ConversationManager`` | ``sync.text_conversations`` | ``store.postgres.text_conversations`` |
"""  # noqa: E501

from __future__ import annotations

from coda.memory.store import MemoryStore, SQLiteMemoryStore
from coda.personality.store import SQLiteTraitStore, TraitStore
from coda.store.base import ConversationStore
from coda.store.location import StoreLocation
from coda.store.sqlite import SQLiteConversationStore
from coda.sync.reconcile import ConversationManager
from coda.sync.text_conversations import TextConversationManager


def conversation_store(location: StoreLocation) -> ConversationStore:
    """Where conversations and turns persist."""
    if location.kind == "postgresql":
        from coda.store.postgres.conversations import PostgresConversationStore

        return PostgresConversationStore(location.target)
    return SQLiteConversationStore(location.path)


def memory_store(location: StoreLocation) -> MemoryStore:
    """Where memories persist."""
    if location.kind == "postgresql":
        from coda.store.postgres.memories import PostgresMemoryStore

        return PostgresMemoryStore(location.target)
    return SQLiteMemoryStore(location.path)


def trait_store(location: StoreLocation) -> TraitStore:
    """Where personality traits persist."""
    if location.kind == "postgresql":
        from coda.store.postgres.traits import PostgresTraitStore

        return PostgresTraitStore(location.target)
    return SQLiteTraitStore(location.path)


def text_conversations(location: StoreLocation) -> ConversationManager:
    """Where the sync's text conversations persist."""
    if location.kind == "postgresql":
        from coda.store.postgres.text_conversations import PostgresTextConversationManager

        return PostgresTextConversationManager(location.target)
    return TextConversationManager(location.path)
