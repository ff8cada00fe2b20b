"""Conversation sync: voice conversations mirrored into the text conversations.

Each test runs over both text stores: SQLite, and a real PostgreSQL server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coda.core.errors import SyncError
from coda.core.integration_config import VoiceConversationSyncConfig
from coda.core.models import (
    ConflictResolutionStrategy,
    ConversationState,
    ConversationTurn,
    SyncEventType,
    VoiceMessage,
    VoiceProcessingMode,
    VoiceResponse,
)
from coda.store.postgres.text_conversations import PostgresTextConversationManager
from coda.store.sqlite import SQLiteConversationStore
from coda.sync.conflicts import MessageVersion, resolve_conflict
from coda.sync.text_conversations import TextConversationManager, TextConversations, TextMessage
from coda.sync.voice_sync import SyncEvent, VoiceConversationSync

Strategy = ConflictResolutionStrategy
CID = "conv-1"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[TextConversationManager]:
    manager: TextConversations = (
        TextConversationManager(tmp_path / "coda.sqlite3")
        if request.param == "sqlite"
        else PostgresTextConversationManager(request.getfixturevalue("pg_url"))
    )
    await manager.open()
    yield manager  # type: ignore[misc]  # both have the same methods
    await manager.close()


def make_sync(store: TextConversationManager, **settings: Any) -> VoiceConversationSync:
    return VoiceConversationSync(store, VoiceConversationSyncConfig(**settings))


def voice(text: str, message_id: str = "m1", at: float = 100.0) -> VoiceMessage:
    return VoiceMessage(
        CID, b"", text_content=text, timestamp=at, message_id=message_id, metadata={}
    )


def record(sync: VoiceConversationSync, *kinds: SyncEventType) -> list[SyncEvent]:
    events: list[SyncEvent] = []
    for kind in kinds or tuple(SyncEventType):
        sync.add_event_handler(kind, events.append)
    return events


async def contents(store: TextConversationManager, cid: str = CID) -> list[str]:
    return [m.content for m in await store.messages(cid)]


# -- the four strategies on a concurrent edit ------------------------------------------

CONCURRENT_EDITS = [
    # strategy, voice edit (content, updated_at), text edit (content, updated_at), winner
    (Strategy.VOICE_PRIORITY, ("kitchen light on", 150.0), ("hall light on", 200.0), "voice"),
    (Strategy.CONVERSATION_PRIORITY, ("kitchen light on", 250.0), ("hall light on", 200.0), "text"),
    (Strategy.TIMESTAMP_PRIORITY, ("kitchen light on", 150.0), ("hall light on", 200.0), "text"),
    (Strategy.TIMESTAMP_PRIORITY, ("kitchen light on", 250.0), ("hall light on", 200.0), "voice"),
    (Strategy.TIMESTAMP_PRIORITY, ("kitchen light on", 200.0), ("hall light on", 200.0), "voice"),
    (Strategy.MERGE, ("Light ON", 250.0), ("the  light on please", 200.0), "text"),
    (Strategy.MERGE, ("please turn the light on now", 150.0), ("The Light  on", 200.0), "voice"),
]


@pytest.mark.parametrize(("strategy", "voice_edit", "text_edit", "winner"), CONCURRENT_EDITS)
async def test_strategy_resolves_a_concurrent_edit(
    store: TextConversationManager,
    strategy: Strategy,
    voice_edit: tuple[str, float],
    text_edit: tuple[str, float],
    winner: str,
) -> None:
    sync = make_sync(store, conflict_resolution_strategy=strategy)
    conflicts = record(sync, SyncEventType.SYNC_CONFLICT_DETECTED)
    assert await sync.sync_voice_message(voice("light on", at=100.0))
    await store.edit_text_message(CID, "m1", text_edit[0], updated_at=text_edit[1])

    edited = voice(voice_edit[0], at=50.0)
    edited.metadata["updated_at"] = voice_edit[1]
    assert await sync.sync_voice_message(edited)

    expected = voice_edit if winner == "voice" else text_edit
    message = await store.get_message(CID, "m1")
    assert message is not None
    assert (message.content, message.updated_at) == expected
    assert message.version == (3 if winner == "voice" else 2)
    assert message.updated_by == winner and message.source == "voice"
    assert [e.payload["winner"] for e in conflicts] == [winner]
    assert conflicts[0].payload["resolved_content"] == expected[0]
    stats = sync.get_sync_stats()
    assert stats["conflicts"]["total"] == 1 and stats["conflicts"][f"{winner}_won"] == 1
    pending = sync.pending_for_voice(CID)
    if winner == "text":
        assert [(p.message_id, p.content, p.reason) for p in pending] == [
            ("m1", text_edit[0], "conflict")
        ]
    else:
        assert pending == []


@pytest.mark.parametrize(("strategy", "voice_edit", "text_edit", "winner"), CONCURRENT_EDITS)
def test_resolve_conflict_is_pure(
    strategy: Strategy,
    voice_edit: tuple[str, float],
    text_edit: tuple[str, float],
    winner: str,
) -> None:
    resolution = resolve_conflict(
        "m1", MessageVersion(*voice_edit), MessageVersion(*text_edit), strategy.value
    )
    expected = voice_edit if winner == "voice" else text_edit
    assert resolution.winner == winner
    assert (resolution.content, resolution.updated_at) == expected
    assert resolution.strategy is strategy


async def test_merge_without_containment_raises_and_writes_nothing(
    store: TextConversationManager,
) -> None:
    sync = make_sync(store, conflict_resolution_strategy=Strategy.MERGE)
    conflicts = record(sync, SyncEventType.SYNC_CONFLICT_DETECTED)
    await sync.sync_voice_message(voice("light on"))
    await store.edit_text_message(CID, "m1", "heating off", updated_at=200.0)
    before = await store.get_message(CID, "m1")

    with pytest.raises(SyncError, match="'m1'"):
        await sync.sync_voice_message(voice("music louder", at=300.0))

    assert await store.get_message(CID, "m1") == before
    assert [e.payload["winner"] for e in conflicts] == [None]
    assert sync.get_sync_stats()["conflicts"]["unresolved"] == 1
    with pytest.raises(SyncError, match="'m1'"):
        resolve_conflict("m1", MessageVersion("a b", 1), MessageVersion("c", 2), Strategy.MERGE)


async def test_voice_correction_of_its_own_content_is_no_conflict(
    store: TextConversationManager,
) -> None:
    sync = make_sync(store, conflict_resolution_strategy=Strategy.CONVERSATION_PRIORITY)
    events = record(sync, SyncEventType.VOICE_MESSAGE_ADDED)
    await sync.sync_voice_message(voice("light of"))
    await sync.sync_voice_message(voice("light off", at=120.0))
    assert await contents(store) == ["light off"]
    assert [e.payload["outcome"] for e in events] == ["added", "edited"]
    assert sync.get_sync_stats()["conflicts"]["total"] == 0


@pytest.mark.parametrize(
    ("strategy", "kept", "action"),
    [
        (Strategy.VOICE_PRIORITY, "light on", "voice_won"),
        (Strategy.CONVERSATION_PRIORITY, "light off", "text_won"),
    ],
)
async def test_text_edit_of_a_voice_message_is_a_conflict(
    store: TextConversationManager, strategy: Strategy, kept: str, action: str
) -> None:
    sync = make_sync(store, conflict_resolution_strategy=strategy)
    updates = record(sync, SyncEventType.CONVERSATION_STATE_UPDATED)
    await sync.sync_voice_message(voice("light on"))
    update = {"message_id": "m1", "content": "light off", "updated_at": 200.0}
    assert await sync.handle_conversation_update(CID, update)
    assert await contents(store) == [kept]
    assert [(e.payload["action"], e.payload["content"]) for e in updates] == [(action, kept)]


# -- events ------------------------------------------------------------------------------


async def test_sync_and_async_handlers_get_events_in_order(store: TextConversationManager) -> None:
    sync = make_sync(store)
    plain: list[SyncEvent] = []
    awaited: list[SyncEvent] = []

    async def async_handler(event: SyncEvent) -> None:
        await asyncio.sleep(0)
        awaited.append(event)

    for kind in SyncEventType:
        sync.add_event_handler(kind, plain.append)
        sync.add_event_handler(kind, async_handler)

    await sync.sync_voice_message(voice("what time is it"))
    reply = VoiceResponse(CID, "It is noon.", metadata={"message_id": "m1"})
    await sync.sync_voice_response(reply)

    kinds = [e.event_type for e in plain]
    assert kinds == [
        SyncEventType.VOICE_MESSAGE_ADDED,
        SyncEventType.SYNC_COMPLETED,
        SyncEventType.VOICE_RESPONSE_ADDED,
        SyncEventType.SYNC_COMPLETED,
    ]
    assert [e.sequence for e in plain] == [1, 2, 3, 4]
    assert awaited == plain
    assert plain[0].payload == {
        "conversation_id": CID,
        "message_id": "m1",
        "role": "user",
        "content": "what time is it",
        "outcome": "added",
    }
    assert plain[2].payload["message_id"] == "m1:reply"
    assert [(m.role, m.content) for m in await store.messages(CID)] == [
        ("user", "what time is it"),
        ("assistant", "It is noon."),
    ]
    assert sync.get_sync_stats()["events_emitted"] == 4


async def test_raising_handler_is_isolated(store: TextConversationManager) -> None:
    sync = make_sync(store)

    def broken(event: SyncEvent) -> None:
        raise RuntimeError("boom")

    async def broken_async(event: SyncEvent) -> None:
        raise ValueError("async boom")

    sync.add_event_handler(SyncEventType.VOICE_MESSAGE_ADDED, broken)
    sync.add_event_handler(SyncEventType.VOICE_MESSAGE_ADDED, broken_async)
    seen = record(sync, SyncEventType.VOICE_MESSAGE_ADDED)

    assert await sync.sync_voice_message(voice("hello"))
    assert [e.payload["message_id"] for e in seen] == ["m1"]
    assert await contents(store) == ["hello"]
    stats = sync.get_sync_stats()
    assert stats["handler_errors"] == 2
    assert "async boom" in stats["last_handler_error"]


async def test_handler_that_syncs_keeps_event_order(store: TextConversationManager) -> None:
    sync = make_sync(store)
    events = record(sync)

    async def reply(event: SyncEvent) -> None:
        await sync.sync_voice_response(VoiceResponse(CID, "hi", metadata={"reply_id": "r1"}))

    sync.add_event_handler(SyncEventType.VOICE_MESSAGE_ADDED, reply)
    await sync.sync_voice_message(voice("hello"))
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    assert [e.event_type for e in events][2] is SyncEventType.VOICE_RESPONSE_ADDED
    assert await contents(store) == ["hello", "hi"]


def test_add_event_handler_checks_its_arguments() -> None:
    sync = VoiceConversationSync()
    with pytest.raises(SyncError, match="unknown sync event type"):
        sync.add_event_handler("nope", print)  # type: ignore[arg-type]
    with pytest.raises(SyncError, match="callable"):
        sync.add_event_handler(SyncEventType.SYNC_COMPLETED, 42)  # type: ignore[arg-type]


# -- settings ----------------------------------------------------------------------------


async def test_disabled_sync_writes_nothing(store: TextConversationManager) -> None:
    sync = make_sync(store, sync_enabled=False)
    events = record(sync)
    state = ConversationState(CID, turns=[turn("hi", "hello", "t1")])
    assert not await sync.sync_voice_message(voice("hello"))
    assert not await sync.sync_voice_response(VoiceResponse(CID, "hi"))
    assert not await sync.sync_conversation_state(state)
    assert not await sync.handle_conversation_update(CID, {"message_id": "x", "content": "y"})
    assert await store.messages(CID) == []
    assert events == []


async def test_queued_until_flush(store: TextConversationManager) -> None:
    sync = make_sync(store, real_time_sync=False)
    events = record(sync)
    assert await sync.sync_voice_message(voice("one", "m1"))
    assert await sync.sync_voice_message(voice("two", "m2", at=101.0))
    other = VoiceMessage("conv-2", b"", text_content="elsewhere", message_id="m9")
    assert await sync.sync_voice_message(other)
    assert await store.messages(CID) == []
    assert sync.get_sync_stats()["queued"] == 3 and events == []

    assert await sync.flush(CID) == 2
    assert await contents(store) == ["one", "two"]
    assert [e.event_type for e in events] == [
        SyncEventType.VOICE_MESSAGE_ADDED,
        SyncEventType.VOICE_MESSAGE_ADDED,
        SyncEventType.SYNC_COMPLETED,
    ]
    assert sync.get_sync_stats()["queued"] == 1
    assert await sync.flush() == 1
    assert await contents(store, "conv-2") == ["elsewhere"]
    assert sync.get_sync_stats()["queued"] == 0


async def test_conversation_state_flushes_the_queue(store: TextConversationManager) -> None:
    sync = make_sync(store, real_time_sync=False)
    events = record(sync, SyncEventType.SYNC_COMPLETED)
    await sync.sync_voice_message(voice("queued", "q1", at=50.0))
    state = ConversationState(CID, turns=[turn("hi", "hello", "t1", at=60.0)])
    assert await sync.sync_conversation_state(state)
    assert await contents(store) == ["queued", "hi", "hello"]
    assert len(events) == 1 and events[0].payload["synced"] == 3


async def test_bidirectional_off_ignores_text_updates(store: TextConversationManager) -> None:
    sync = make_sync(store, bidirectional_sync=False)
    events = record(sync)
    assert not await sync.handle_conversation_update(CID, {"message_id": "t", "content": "x"})
    assert await store.messages(CID) == []
    await store.add_text_message(CID, "user", "typed", message_id="typed-1")
    assert await sync.sync_conversation_state(ConversationState(CID))
    assert sync.pending_for_voice(CID) == []
    assert events[-2].payload["text_only"] == []


@pytest.mark.parametrize(
    ("update", "error"),
    [
        ({}, "missing 'message_id'"),
        ({"message_id": "m1"}, "missing 'content'"),
        ({"content": "hello"}, "missing 'message_id'"),
        ({"message_id": 7, "content": "hello"}, "message_id"),
        ({"message_id": "m1", "content": "   "}, "content"),
        ({"message_id": "m1", "content": ["hello"]}, "content"),
        ({"message_id": "m1", "content": "hi", "role": "system"}, "role"),
        ({"message_id": "m1", "content": "hi", "updated_at": "today"}, "updated_at"),
        ({"message_id": "m1", "content": "hi", "updated_at": True}, "updated_at"),
        ("m1: hello", "must be a dict"),
    ],
)
async def test_invalid_update_data_raises(
    store: TextConversationManager, update: Any, error: str
) -> None:
    sync = make_sync(store)
    with pytest.raises(SyncError, match=error):
        await sync.handle_conversation_update(CID, update)
    assert await store.messages(CID) == []


async def test_text_updates_add_and_edit(store: TextConversationManager) -> None:
    sync = make_sync(store)
    events = record(sync, SyncEventType.CONVERSATION_STATE_UPDATED)
    new = {"message_id": "t1", "content": "typed", "role": "user", "updated_at": 10.0}
    assert await sync.handle_conversation_update(CID, new)
    assert await sync.handle_conversation_update(CID, {"message_id": "t1", "content": "typed!"})
    message = await store.get_message(CID, "t1")
    assert message is not None
    assert (message.content, message.source, message.version) == ("typed!", "text", 2)
    assert [e.payload["action"] for e in events] == ["added", "edited"]
    with pytest.raises(SyncError, match="user message"):
        await sync.handle_conversation_update(
            CID, {"message_id": "t1", "content": "x", "role": "assistant"}
        )
    assert [p.content for p in sync.take_pending_for_voice(CID)] == ["typed!"]
    assert sync.pending_for_voice(CID) == []
    assert sync.get_sync_stats()["text_updates_applied"] == 2


# -- persistence and whole-state reconciliation -----------------------------------------


async def test_synced_messages_persist(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    voice_store = SQLiteConversationStore(path)
    await voice_store.open()
    await voice_store.create(CID)

    async with VoiceConversationSync(store_path=path) as sync:
        await sync.sync_voice_message(voice("remember the milk"))
        await sync.sync_voice_response(VoiceResponse(CID, "Noted.", metadata={"message_id": "m1"}))

    async with TextConversationManager(path) as reopened:
        messages = await reopened.messages(CID)
    assert [(m.message_id, m.role, m.content, m.source, m.version) for m in messages] == [
        ("m1", "user", "remember the milk", "voice", 1),
        ("m1:reply", "assistant", "Noted.", "voice", 1),
    ]
    assert await voice_store.load(CID, 10) is not None
    await voice_store.close()


async def test_text_manager_rejects_duplicates_and_unknown_ids(
    store: TextConversationManager,
) -> None:
    await store.add_message(CID, TextMessage("a", "user", "first", created_at=5.0))
    await store.add_message(CID, TextMessage("b", "assistant", "earlier", created_at=1.0))
    await store.add_message(CID, TextMessage("c", "user", "same time", created_at=5.0))
    assert [m.message_id for m in await store.messages(CID)] == ["b", "a", "c"]
    with pytest.raises(SyncError, match="already has message 'a'"):
        await store.add_message(CID, TextMessage("a", "user", "again"))
    with pytest.raises(SyncError, match="no message 'zz'"):
        await store.update_message(CID, "zz", "x")
    updated = await store.update_message(CID, "a", "first!", updated_at=9.0)
    assert (updated.version, updated.updated_at, updated.updated_by) == (2, 9.0, "text")
    with pytest.raises(SyncError, match="role"):
        TextMessage("d", "system", "x")  # type: ignore[arg-type]


def turn(user: str, reply: str, message_id: str | None, at: float = 100.0) -> ConversationTurn:
    return ConversationTurn(user, reply, VoiceProcessingMode.LLM_ENHANCED, at, message_id)


async def test_conversation_state_adds_missing_turns_and_reports_text_only(
    store: TextConversationManager,
) -> None:
    sync = make_sync(store)
    events = record(sync, SyncEventType.CONVERSATION_STATE_UPDATED, SyncEventType.SYNC_COMPLETED)
    await sync.sync_voice_message(voice("hi", "t1", at=100.0))
    await store.add_text_message(CID, "user", "typed note", message_id="typed-1", created_at=150.0)
    state = ConversationState(
        CID, turns=[turn("hi", "hello", "t1", at=100.0), turn("bye", "see you", None, at=200.0)]
    )

    assert await sync.sync_conversation_state(state)

    messages = await store.messages(CID)
    assert [(m.role, m.content, m.source) for m in messages] == [
        ("user", "hi", "voice"),
        ("assistant", "hello", "voice"),
        ("user", "typed note", "text"),
        ("user", "bye", "voice"),
        ("assistant", "see you", "voice"),
    ]
    assert [e.event_type for e in events] == [
        SyncEventType.SYNC_COMPLETED,
        SyncEventType.CONVERSATION_STATE_UPDATED,
        SyncEventType.SYNC_COMPLETED,
    ]
    outcomes = events[1].payload["outcomes"]
    assert outcomes["identical"] == ["t1"] and len(outcomes["added"]) == 3
    assert events[1].payload["text_only"] == ["typed-1"]
    pending = sync.pending_for_voice(CID)
    assert [(p.message_id, p.content, p.reason) for p in pending] == [
        ("typed-1", "typed note", "text_only")
    ]

    assert await sync.sync_conversation_state(state)
    assert len(await store.messages(CID)) == 5
    assert set(events[-2].payload["outcomes"]) == {"identical"}
