"""The conversation store, SQLite and PostgreSQL alike: persistence and atomic turns.

Atomicity is shown by making a turn's write fail between its two statements (the
turn's row, then its conversation's update): a trigger installed in the real
database raises there, or stalls there while the writing process is killed with
SIGKILL. Either way, nothing of the turn may be visible afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest

from coda.core.errors import ConfigurationError, ConversationError
from coda.core.models import ConversationTurn, VoiceProcessingMode
from coda.store.backends import conversation_store
from coda.store.base import ConversationStore
from coda.store.conversations import Conversations
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


# -- atomic turns: a fault between a turn's row and its conversation's update ----------------

FAULT = "injected fault: the conversation update fails after the turn row was written"
STALL_KEY = 4217
"""The advisory lock a stalled PostgreSQL writer waits for (the test holds it)."""


def is_postgres(where: str) -> bool:
    return where.startswith("postgresql")


def execute(where: str, *statements: str) -> None:
    """Run SQL on the store's database over a connection of the test's own, committed."""
    if is_postgres(where):
        with psycopg.connect(where, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]
        return
    with contextlib.closing(sqlite3.connect(where, isolation_level=None)) as db:
        for statement in statements:
            db.execute(statement)


def install_failing_conversation_update(where: str) -> None:
    """A trigger that raises on the conversation's update, which follows the turn's insert."""
    if is_postgres(where):
        execute(
            where,
            "CREATE FUNCTION failing_conversation_update() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN RAISE EXCEPTION '{FAULT}'; END $$",
            "CREATE TRIGGER failing_conversation_update BEFORE UPDATE ON conversations "
            "FOR EACH ROW EXECUTE FUNCTION failing_conversation_update()",
        )
    else:
        execute(
            where,
            "CREATE TRIGGER failing_conversation_update BEFORE UPDATE ON conversations "
            f"BEGIN SELECT RAISE(ABORT, '{FAULT}'); END",
        )


def remove_trigger(where: str, name: str) -> None:
    if is_postgres(where):
        execute(where, f"DROP TRIGGER {name} ON conversations", f"DROP FUNCTION {name}()")
    else:
        execute(where, f"DROP TRIGGER {name}")


async def until(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    """Poll ``condition`` (another process's progress); the bound only guards against a hang."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


class Seen(NamedTuple):
    """What a fresh reader sees of a conversation."""

    turns: list[tuple[str, str, str | None]]
    count: int
    counted: object
    last_activity: float
    problems: list[str]


async def stored(where: str, conversation_id: str) -> Seen:
    """What a fresh reader sees of a conversation: its turns, figures and consistency."""
    store = store_at(where)
    await store.open()
    try:
        state = await store.load(conversation_id, 100)
        assert state is not None
        return Seen(
            [(t.user_text, t.assistant_text, t.message_id) for t in state.turns],
            await store.count_turns(conversation_id),
            state.metrics.get("turns"),
            state.last_activity,
            await store.check(),
        )
    finally:
        await store.close()


async def test_a_turn_whose_write_fails_midway_leaves_nothing_behind(where: str) -> None:
    conversations = Conversations(VoiceConfig(store_path=where))
    await conversations.open_store()
    try:
        state = await conversations.start("atomic")
        assert await conversations.commit(state, turn(0, "m0"), {}) == []
        before = await stored(where, "atomic")
        assert before.turns == [("user 0", "coda 0", "m0")] and before.count == before.counted == 1
        install_failing_conversation_update(where)
        mode = VoiceProcessingMode.LLM_ENHANCED
        failing = ConversationTurn("user 1", "coda 1", mode, before.last_activity + 60.0, "m1")
        error = psycopg.errors.RaiseException if is_postgres(where) else sqlite3.IntegrityError
        with pytest.raises(error, match="injected fault"):
            await conversations.commit(state, failing, {})
        # Neither the turn's row (written first) nor the conversation's figures changed.
        assert await stored(where, "atomic") == before
        assert await conversations.store.find_turn("atomic", "m1") is None
        # Nor what this process holds in memory.
        assert [t.message_id for t in state.turns] == ["m0"] and state.metrics["turns"] == 1
        remove_trigger(where, "failing_conversation_update")
        # The store still works: the same message is stored now, as new (not as a retry).
        assert await conversations.commit(state, failing, {}) == []
        after = await stored(where, "atomic")
        assert after.turns == [("user 0", "coda 0", "m0"), ("user 1", "coda 1", "m1")]
        assert (after.count, after.counted, after.problems) == (2, 2, [])
        assert after.last_activity == failing.timestamp
    finally:
        await conversations.close()


WRITER = """
import asyncio, sys
from coda.core.models import ConversationTurn, VoiceProcessingMode
from coda.store.conversations import Conversations
from coda.voice import VoiceConfig

async def main(where):
    conversations = Conversations(VoiceConfig(store_path=where))
    await conversations.open_store()
    state = await conversations.open("crash")
    turn = ConversationTurn("user 1", "coda 1", VoiceProcessingMode.LLM_ENHANCED, message_id="m1")
    print("writing", flush=True)
    await conversations.commit(state, turn, {})
    print("written", flush=True)

asyncio.run(main(sys.argv[1]))
"""


def install_stalled_conversation_update(where: str) -> Callable[[], bool]:
    """A trigger that holds the writer between the turn's row and the conversation's update.

    Returns:
        A check that is true once a writer is held there.
    """
    if is_postgres(where):
        execute(
            where,
            "CREATE FUNCTION stalled_conversation_update() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN PERFORM pg_advisory_xact_lock({STALL_KEY}); RETURN NEW; END $$",
            "CREATE TRIGGER stalled_conversation_update BEFORE UPDATE ON conversations "
            "FOR EACH ROW EXECUTE FUNCTION stalled_conversation_update()",
        )

        def waiting() -> bool:
            with psycopg.connect(where, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND objid = %s AND NOT granted",
                    (STALL_KEY,),
                ).fetchone()
            return bool(row and row[0])

        return waiting
    # SQLite cannot block on a lock inside a trigger: a query that runs for hours holds it.
    execute(
        where,
        "CREATE TABLE stall (n INTEGER)",
        "INSERT INTO stall WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
        "WHERE n < 1000) SELECT n FROM c",
        "CREATE TRIGGER stalled_conversation_update BEFORE UPDATE ON conversations "
        "BEGIN SELECT count(*) FROM stall a, stall b, stall c, stall d; END",
    )

    def writing() -> bool:
        # The writer holds SQLite's write lock from its turn's insert until it commits.
        with contextlib.closing(sqlite3.connect(where, isolation_level=None, timeout=0)) as db:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                return "locked" in str(exc)
            db.execute("ROLLBACK")
            return False

    return writing


async def test_a_writer_killed_mid_turn_leaves_nothing_behind(where: str) -> None:
    conversations = Conversations(VoiceConfig(store_path=where))
    await conversations.open_store()
    try:
        state = await conversations.start("crash")
        assert await conversations.commit(state, turn(0, "m0"), {}) == []
    finally:
        await conversations.close()
    before = await stored(where, "crash")
    held = install_stalled_conversation_update(where)
    holder = psycopg.connect(where, autocommit=True) if is_postgres(where) else None
    if holder is not None:
        holder.execute("SELECT pg_advisory_lock(%s)", (STALL_KEY,))
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, where, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert writer.stdout is not None
        async with asyncio.timeout(120):
            assert await writer.stdout.readline() == b"writing\n"
        await until(held)
        writer.kill()  # SIGKILL: no rollback, no close, no goodbye
        await writer.wait()
    finally:
        if writer.returncode is None:
            writer.kill()
            await writer.wait()
        if holder is not None:
            backend = holder.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s "
                "AND NOT granted",
                (STALL_KEY,),
            ).fetchall()
            holder.execute("SELECT pg_advisory_unlock(%s)", (STALL_KEY,))
            # The orphaned backend goes on, finds its client gone, and rolls back.
            await until(lambda: not _alive(holder, [pid for (pid,) in backend]))
            holder.close()
    remove_trigger(where, "stalled_conversation_update")
    assert await stored(where, "crash") == before
    # The store still works, and the killed writer's message is new to it.
    conversations = Conversations(VoiceConfig(store_path=where))
    await conversations.open_store()
    try:
        state = await conversations.open("crash")
        again = ConversationTurn(
            "user 1", "coda 1", VoiceProcessingMode.LLM_ENHANCED, message_id="m1"
        )
        assert await conversations.commit(state, again, {}) == []
    finally:
        await conversations.close()
    after = await stored(where, "crash")
    assert [message for *_, message in after.turns] == ["m0", "m1"]
    assert (after.count, after.counted, after.problems) == (2, 2, [])


def _alive(conn: psycopg.Connection[tuple[object, ...]], pids: list[int]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
    ).fetchone()
    return bool(row and row[0])
