"""The conversation store, SQLite and PostgreSQL alike: persistence and atomic turns."""

from __future__ import annotations

from pathlib import Path

import pytest

from coda.core.errors import ConfigurationError, ConversationError
from coda.core.models import ConversationTurn, VoiceProcessingMode
from coda.store.backends import conversation_store
from coda.store.base import ConversationStore
from coda.store.location import parse_store
from coda.voice import VoiceConfig


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each kind: an SQLite file, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "c.sqlite3")
    return str(request.getfixturevalue("pg_url"))


def store_at(where: str) -> ConversationStore:
    return conversation_store(parse_store(where, Path("unused")))


def turn(i: int, message_id: str | None = None) -> ConversationTurn:
    return ConversationTurn(
        f"user {i}", f"coda {i}", VoiceProcessingMode.LLM_ENHANCED, message_id=message_id
    )


async def test_turns_persist_across_reopen(where: str) -> None:
    store = store_at(where)
    await store.open()
    state = await store.create("c1")
    for i in range(3):
        state.metrics["turns"] = i + 1
        assert await store.add_turn(state, turn(i, f"m{i}"), {"i": i})
    await store.close()

    reopened = store_at(where)
    await reopened.open()
    try:
        loaded = await reopened.load("c1", max_turns=2)
        assert loaded is not None and loaded.is_active
        assert [t.user_text for t in loaded.turns] == ["user 1", "user 2"]
        assert loaded.current_mode is VoiceProcessingMode.LLM_ENHANCED
        assert await reopened.count_turns("c1") == 3
        found = await reopened.find_turn("c1", "m1")
        assert found is not None and found.assistant_text == "coda 1"
        assert await reopened.find_turn("c1", "m9") is None
        assert await reopened.load("unknown", 10) is None
        assert await reopened.check() == []
        with pytest.raises(ConversationError, match="already exists"):
            await reopened.create("c1")
        await reopened.end("c1")
        ended = await reopened.load("c1", 10)
        assert ended is not None and not ended.is_active and ended.ended_at is not None
    finally:
        await reopened.close()


async def test_closed_store_raises_a_typed_error(where: str) -> None:
    with pytest.raises(ConversationError, match="closed"):
        await store_at(where).create("c")


async def test_a_retried_message_is_stored_once_in_postgres(pg_url: str) -> None:
    store = store_at(pg_url)
    await store.open()
    try:
        state = await store.create("retry")
        assert await store.add_turn(state, turn(0, "m0"), {})
        assert not await store.add_turn(state, turn(0, "m0"), {})  # the client's retry
        assert await store.add_turn(state, turn(1), {})  # no id: nothing to compare
        assert await store.count_turns("retry") == 2
        assert state.metrics["turns"] == 2 and await store.check() == []
        with pytest.raises(ConversationError, match="not in the store"):
            await store.add_turn(type(state)("never-created"), turn(2), {})
    finally:
        await store.close()


def test_store_settings_name_a_file_or_postgresql() -> None:
    default = Path("/data/coda.sqlite3")
    assert parse_store("", default).target == str(default)
    assert parse_store("sqlite:///var/lib/coda.db", default).path == Path("/var/lib/coda.db")
    assert parse_store("relative/coda.db", default).kind == "sqlite"
    shared = parse_store("postgresql://coda:secret@db:5432/coda", default)
    assert shared.kind == "postgresql" and shared.shared
    assert "secret" not in shared.redacted() and "***" in shared.redacted()
    assert parse_store("postgres://db/coda", default).kind == "postgresql"
    for wrong in ("mysql://db/coda", "postgresq://db/coda", "redis://cache"):
        with pytest.raises(ConfigurationError, match="not supported"):
            parse_store(wrong, default)
        with pytest.raises(ConfigurationError, match="not supported"):
            VoiceConfig(store_path=wrong).validate()
    with pytest.raises(ConfigurationError, match="needs a path"):
        parse_store("sqlite://", default)


async def test_a_key_lists_only_its_own_conversations_latest_first(where: str) -> None:
    store = store_at(where)
    await store.open()
    try:
        later = 2_000_000_000.0  # after every create() below, so it decides the order
        for cid, owner, said in (("a1", "alice", "first words of a1"), ("b1", "bob", "hi"),
                                 ("a2", "alice", "x" * 300), ("a3", "alice", None)):  # fmt: skip
            state = await store.create(cid, owner)
            if said is not None:
                later += 10
                mode = VoiceProcessingMode.LLM_ENHANCED
                await store.add_turn(state, ConversationTurn(said, "ok", mode, later), {})
                await store.add_turn(state, ConversationTurn("more", "ok", mode, later + 1), {})
        listed = await store.list_owned("alice", 10)
        assert [c.conversation_id for c in listed] == ["a2", "a1", "a3"]
        assert [c.turns for c in listed] == [2, 2, 0]
        assert listed[1].first_words == "first words of a1" and listed[2].first_words == ""
        assert len(listed[0].first_words) == 80 and all(c.active for c in listed)
        assert [c.conversation_id for c in await store.list_owned("alice", 1)] == ["a2"]
        assert [c.conversation_id for c in await store.list_owned("bob", 10)] == ["b1"]
        assert await store.list_owned("nobody", 10) == []
    finally:
        await store.close()
