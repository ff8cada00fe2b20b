"""The PostgreSQL store on a real server: migrations, and what several instances share.

Two instances in one process are two ``PostgresDatabase``s: the same database
under two URLs (``?application_name=…``), each with its own instance id, pool and
LISTEN connection, as two ``coda serve`` processes would have. Waits for a
notification are bounded waits for an event, never sleeps.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from coda.core.errors import ConfigurationError
from coda.core.models import ConversationTurn, SyncEventType, VoiceMessage, VoiceProcessingMode
from coda.memory.store import NewMemory
from coda.personality.traits import Traits
from coda.store.conversations import Conversations
from coda.store.postgres.conversations import PostgresConversationStore
from coda.store.postgres.database import PostgresDatabase
from coda.store.postgres.memories import PostgresMemoryStore
from coda.store.postgres.migrations import LATEST, migrate, schema_version
from coda.store.postgres.server_state import PostgresRateLimits, PostgresSessions
from coda.store.postgres.text_conversations import PostgresTextConversationManager
from coda.store.postgres.traits import PostgresTraitStore
from coda.sync.events import SyncEvent
from coda.sync.voice_sync import VoiceConversationSync
from coda.voice import VoiceConfig

SCOPE = "user:key-0123/ada"


def instance(url: str, name: str) -> str:
    """The same database as another instance would name it."""
    return f"{url}?application_name={name}"


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return vector / np.linalg.norm(vector)


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for ``condition`` (an event from another connection), at most ``seconds``."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
async def two_memories(pg_url: str) -> AsyncIterator[tuple[PostgresMemoryStore, ...]]:
    a, b = PostgresMemoryStore(instance(pg_url, "a")), PostgresMemoryStore(instance(pg_url, "b"))
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


# -- migrations ------------------------------------------------------------------------


async def test_a_database_at_the_previous_version_upgrades_in_place(pg_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        assert await migrate(conn, target=LATEST - 1) == list(range(1, LATEST))
        await conn.execute(
            "INSERT INTO conversations (id, started_at, last_activity, metrics, turn_count) "
            "VALUES ('old', 1, 2, '{\"turns\": 2}', 2)"
        )
        for index in (1, 2):
            await conn.execute(
                "INSERT INTO turns (conversation_id, turn_index, message_id, user_text, "
                "assistant_text, mode, timestamp) VALUES ('old', %s, %s, %s, %s, "
                "'llm_enhanced', %s)",
                (index, f"m{index}", f"question {index}", f"answer {index}", index),
            )
        await conn.execute(
            "INSERT INTO memories (scope, kind, text, embedding, created_at, updated_at) "
            "VALUES (%s, 'fact', 'I live in Rome.', %s, 0, 0)",
            (SCOPE, unit(1).tobytes()),
        )
        await conn.execute(
            "INSERT INTO personality VALUES (%s, '{\"verbosity\": 0.2}', 0)", (SCOPE,)
        )
    store = PostgresConversationStore(pg_url)
    await store.open()  # the current code migrates the rest
    memories, traits = PostgresMemoryStore(pg_url), PostgresTraitStore(pg_url)
    await memories.open()
    try:
        async with store.database.connection() as conn:
            assert await schema_version(conn) == LATEST
        old = await store.load("old", 10)
        assert old is not None and [t.assistant_text for t in old.turns] == ["answer 1", "answer 2"]
        old.metrics["turns"] = 3
        assert await store.add_turn(old, ConversationTurn("q", "a", VoiceProcessingMode.HYBRID), {})
        assert await store.count_turns("old") == 3 and await store.check() == []
        (found,) = await memories.search(SCOPE, unit(1), 5)
        assert found.memory.text == "I live in Rome." and found.cosine == pytest.approx(1.0)
        assert (await traits.load(SCOPE)).verbosity == pytest.approx(0.2)
    finally:
        await traits.close()
        await memories.close()
        await store.close()


async def test_a_newer_database_is_refused(pg_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await migrate(conn)
        await conn.execute("INSERT INTO coda_schema (version, name) VALUES (99, 'future')")
        with pytest.raises(ConfigurationError, match="newer than this Coda"):
            await migrate(conn)


# -- memories --------------------------------------------------------------------------


async def test_memories_written_on_one_instance_are_found_on_the_other(
    two_memories: tuple[PostgresMemoryStore, PostgresMemoryStore],
) -> None:
    a, b = two_memories
    assert await b.search(SCOPE, unit(1), 5) == []  # b now holds the scope's index
    lisbon, outcome = await a.remember(
        SCOPE, NewMemory("fact", "My sister lives in Lisbon.", unit(1), key="sister|live in")
    )
    assert outcome == "new"
    # The NOTIFY brings b's index up to date without a search (white box: its cache).
    await until(lambda: lisbon.id in b._indexes[SCOPE].index.ids)
    (found,) = await b.search(SCOPE, unit(1), 5)
    assert found.memory.text == "My sister lives in Lisbon."
    porto, outcome = await a.remember(
        SCOPE, NewMemory("fact", "My sister lives in Porto.", unit(2), key="sister|live in")
    )
    assert outcome == "updated"
    assert [f.memory.text for f in await b.search(SCOPE, unit(1), 5)] == [
        "My sister lives in Porto."
    ]  # the superseded one is history, on every instance
    assert [m.text for m in await b.history(SCOPE)] == ["My sister lives in Lisbon."]
    again, outcome = await b.remember(
        SCOPE, NewMemory("fact", "my sister lives in porto.", unit(2), key="sister|live in")
    )
    assert outcome == "merged" and again.id == porto.id and again.mentions == 2
    assert await b.forget(SCOPE, [porto.id]) == 2  # the fact and its history
    assert await a.search(SCOPE, unit(2), 5) == [] and await a.count(SCOPE) == 0
    assert await a.history(SCOPE) == []


async def test_near_duplicates_merge_and_search_is_exact(
    two_memories: tuple[PostgresMemoryStore, PostgresMemoryStore],
) -> None:
    a, b = two_memories
    await a.add_many(SCOPE, "fact", [f"memory {i}" for i in range(500)], np.stack(
        [unit(i) for i in range(500)]
    ))  # fmt: skip
    near = unit(7) + 0.05 * unit(9999)
    merged, outcome = await b.remember(SCOPE, NewMemory("fact", "memory seven", near))
    assert outcome == "merged" and merged.text == "memory seven"
    query = unit(123)
    found = await b.search(SCOPE, query, 5)
    vectors = np.stack([unit(i) for i in range(500)])
    expected = [f"memory {i}" for i in np.argsort(-(vectors @ query))[:5]]
    assert [f.memory.text for f in found] == expected  # exact cosine, best first
    assert await a.count(SCOPE) == 500


# -- personality -----------------------------------------------------------------------


async def test_traits_learned_on_one_instance_shape_the_other(pg_url: str) -> None:
    a, b = PostgresTraitStore(instance(pg_url, "a")), PostgresTraitStore(instance(pg_url, "b"))
    try:
        await a.save(SCOPE, Traits(verbosity=0.1, pace=0.9))
        traits = await b.load(SCOPE)
        assert (traits.verbosity, traits.pace) == (pytest.approx(0.1), pytest.approx(0.9))
        assert await b.load("user:nobody") == Traits()
    finally:
        await a.close()
        await b.close()


# -- conversations ---------------------------------------------------------------------


async def test_a_conversation_continues_on_the_other_instance(pg_url: str) -> None:
    a = Conversations(VoiceConfig(store_path=instance(pg_url, "a")))
    b = Conversations(VoiceConfig(store_path=instance(pg_url, "b")))
    await a.open_store()
    await b.open_store()
    try:
        state = await a.open("kitchen")
        await a.commit(
            state, ConversationTurn("Hi.", "Hello!", VoiceProcessingMode.LLM_ENHANCED), {}
        )
        on_b = await b.open("kitchen")
        assert [t.user_text for t in on_b.turns] == ["Hi."]
        await b.commit(
            on_b, ConversationTurn("Bye.", "See you.", VoiceProcessingMode.LLM_ENHANCED), {}
        )
        back_on_a = await a.open("kitchen")  # a held the conversation: it reads it again
        assert [t.user_text for t in back_on_a.turns] == ["Hi.", "Bye."]
        history = await a.get("kitchen")
        assert history is not None and history.metrics["turns"] == 2
        await b.end("kitchen")
        ended = await a.get("kitchen")
        assert ended is not None and not ended.is_active
        assert await a.store.check() == []
    finally:
        await a.close()
        await b.close()


# -- limits ----------------------------------------------------------------------------


async def test_instances_share_one_rate_limit_on_an_injected_clock(pg_url: str) -> None:
    clock = [1_000.0]
    a = PostgresRateLimits(instance(pg_url, "a"), per_minute=10, now=lambda: clock[0])
    b = PostgresRateLimits(instance(pg_url, "b"), per_minute=10, now=lambda: clock[0])
    await a.open()
    await b.open()
    try:
        waits = [await (a if i % 2 else b).take("key") for i in range(12)]
        assert waits[:10] == [0.0] * 10  # the burst, taken from both instances
        assert waits[10] == pytest.approx(6.0) and waits[11] == pytest.approx(6.0)
        assert await a.take("other key") == 0.0  # buckets are per key
        clock[0] += 6.0  # one token every 6 s comes back
        assert await b.take("key") == 0.0 and await a.take("key") > 0
        clock[0] -= 60.0  # an instance whose clock is behind mints no tokens
        assert await a.take("key") > 0
    finally:
        await a.close()
        await b.close()


async def test_sessions_of_a_key_count_on_every_live_instance(pg_url: str) -> None:
    a = PostgresSessions(instance(pg_url, "a"), per_key=2)
    b = PostgresSessions(instance(pg_url, "b"), per_key=2)
    await a.open()
    await b.open()
    try:
        first = await a.begin("key", "c1")
        assert first is not None and await b.begin("key", "c2") is not None
        assert await a.begin("key", "c3") is None and await b.begin("key", "c3") is None
        assert await a.begin("other", "c4") is not None
        await a.end(first)
        assert await b.begin("key", "c5") is not None
        # b goes silent (killed): once its heartbeat is old, its sessions stop counting.
        async with a.database.connection() as conn:
            await conn.execute(
                "UPDATE instances SET heartbeat_at = now() - interval '1 hour' WHERE id = %s",
                (b.database.instance_id,),
            )
        assert await a.begin("key", "c6") is not None
    finally:
        await a.close()
        await b.close()


# -- sync events -----------------------------------------------------------------------


async def test_sync_events_reach_handlers_on_other_instances(pg_url: str) -> None:
    a = VoiceConversationSync(PostgresTextConversationManager(instance(pg_url, "a")), owned=True)
    b = VoiceConversationSync(PostgresTextConversationManager(instance(pg_url, "b")), owned=True)
    await b.open()
    seen: list[SyncEvent] = []
    for kind in SyncEventType:
        b.add_event_handler(kind, seen.append)
    try:
        said = VoiceMessage("shared", b"", text_content="Turn on the hall light.", message_id="m1")
        assert await a.sync_voice_message(said)
        await until(lambda: any(e.event_type is SyncEventType.SYNC_COMPLETED for e in seen))
        kinds = [e.event_type for e in seen]
        assert kinds == [SyncEventType.VOICE_MESSAGE_ADDED, SyncEventType.SYNC_COMPLETED]
        added = seen[0]
        assert added.conversation_id == "shared" and added.payload["content"] == said.text_content
        assert added.instance is not None and added.instance != _instance_of(b)
        assert [e.sequence for e in seen] == [1, 2]  # numbered by b, in order
        mirrored = await b.conversation_manager.messages("shared")
        assert [m.content for m in mirrored] == ["Turn on the hall light."]
    finally:
        await a.close()
        await b.close()


def _instance_of(sync: VoiceConversationSync) -> Any:
    manager = sync.conversation_manager
    assert isinstance(manager, PostgresTextConversationManager)
    return manager.database.instance_id


async def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    from coda.core.errors import VoiceInitializationError
    from coda.testing.ports import free_port

    store = PostgresConversationStore(f"postgresql://coda:secret@127.0.0.1:{free_port()}/coda")
    with pytest.raises(VoiceInitializationError, match="cannot reach the PostgreSQL") as raised:
        await store.open()
    assert "secret" not in str(raised.value)
    assert not PostgresDatabase._shared  # nothing half-open is left behind


def test_coda_store_check_reports_a_miscounted_conversation(pg_url: str) -> None:
    async def fill() -> None:
        store = PostgresConversationStore(pg_url)
        await store.open()
        state = await store.create("counted")
        await store.add_turn(state, ConversationTurn("a", "b", VoiceProcessingMode.HYBRID), {})
        await store.close()

    asyncio.run(fill())
    command = [sys.executable, "-m", "coda.cli", "--store", pg_url, "store", "check"]
    healthy = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert healthy.returncode == 0 and "consistent" in healthy.stdout, healthy.stderr
    with psycopg.connect(pg_url, autocommit=True) as conn:  # a count no turn backs
        conn.execute("UPDATE conversations SET turn_count = 2 WHERE id = 'counted'")
    broken = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1
    assert "counted: turn_count 2, 1 turns stored" in broken.stdout


def test_a_store_url_of_another_kind_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    env = {**os.environ, "CODA_STORE": "mysql://db.internal/coda", "CODA_API_KEYS": "k"}
    served = subprocess.run(
        [sys.executable, "-m", "coda.cli", "serve", "--port", "1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert served.returncode != 0
    assert "mysql://… is not supported" in served.stderr and "postgresql://" in served.stderr
    assert list(tmp_path.iterdir()) == []  # no SQLite file named after the URL


async def test_an_instance_keeps_a_bounded_number_of_indexes(
    two_memories: tuple[PostgresMemoryStore, PostgresMemoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    from coda.store.postgres import memories

    monkeypatch.setattr(memories, "MAX_SCOPES", 2)
    a, _ = two_memories
    for user in ("ana", "ben", "cy"):
        await a.remember(f"user:{user}", NewMemory("fact", f"I am {user}.", unit(len(user))))
        await a.search(f"user:{user}", unit(1), 1)
    assert list(a._indexes) == ["user:ben", "user:cy"]  # the least recent went
    (found,) = await a.search("user:ana", unit(3), 1)  # and comes back from the database
    assert found.memory.text == "I am ana." and list(a._indexes) == ["user:cy", "user:ana"]
