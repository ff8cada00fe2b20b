"""Two real ``coda serve`` processes on one real PostgreSQL behave as one service.

A conversation, a memory, a key's rate limit and the sync's events span both;
``kill -9`` of one instance mid-run loses no turn a client was told about and
leaves the store consistent. Waits are bounded waits for an event (a row, a
message), never a guess of how fast this machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from coda.store.postgres.conversations import PostgresConversationStore
from coda.testing.postgres import ThrowawayPostgres
from tests.conftest import KEY, LIMITED_KEY, Say, Server, serving
from tests.test_server import converse

RATE = 120
"""Requests per key per minute on both instances (LIMITED_KEY's bucket is the one spent)."""


@pytest.fixture(scope="module")
def shared(postgres: ThrowawayPostgres) -> str:
    """The database both instances use."""
    return postgres.create_database("scaleout")


@contextlib.contextmanager
def two_instances(
    shared: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """Instances A and B, each a ``coda serve`` process, on the one database."""
    with (
        serving(tmp_path_factory.mktemp("a"), store=shared, rate_limit=RATE) as a,
        serving(tmp_path_factory.mktemp("b"), store=shared, rate_limit=RATE) as b,
    ):
        yield a, b


@pytest.fixture(scope="module")
def pair(shared: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """The module's two instances."""
    with two_instances(shared, tmp_path_factory) as servers:
        yield servers


@pytest.fixture
def doomed_pair(
    shared: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    """Two instances of the test's own: it kills A, and the module's pair lives on."""
    with two_instances(shared, tmp_path_factory) as servers:
        yield servers


async def say_text(server: Server, cid: str, text: str, **fields: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=180) as client:
        answer = await client.post(
            f"/v1/conversations/{cid}/messages",
            json={"text": text, **fields},
            headers=server.headers(),
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def history(server: Server, cid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        answer = await client.get(f"/v1/conversations/{cid}/messages", headers=server.headers())
    assert answer.status_code == 200, answer.text
    return list(answer.json()["turns"])


async def test_a_conversation_started_on_a_continues_on_b(pair: tuple[Server, Server]) -> None:
    a, b = pair
    first = await say_text(a, "across", "What is the capital of France?")
    assert "paris" in first["text"].lower()
    on_b = await history(b, "across")
    assert [t["user_text"] for t in on_b] == ["What is the capital of France?"]
    second = await say_text(b, "across", "And what is the capital of Italy?")
    assert "rome" in second["text"].lower()
    assert [t["assistant_text"] for t in await history(a, "across")] == [
        first["text"],
        second["text"],
    ]


async def test_a_fact_told_on_a_is_recalled_on_b(pair: tuple[Server, Server], shared: str) -> None:
    a, b = pair
    await say_text(a, "told-on-a", "My sister lives in Lisbon.", user="ines")
    # Learning runs after the reply: wait for the fact to be in the store.
    async with await psycopg.AsyncConnection.connect(shared, autocommit=True) as conn:
        async with asyncio.timeout(120):
            while True:
                cursor = await conn.execute(
                    "SELECT text FROM memories WHERE scope LIKE %s AND status = 'current'",
                    ("%/ines",),
                )
                if [row[0] for row in await cursor.fetchall()] == ["My sister lives in Lisbon."]:
                    break
                await asyncio.sleep(0.2)
    asked = await say_text(b, "asked-on-b", "Where does my sister live?", user="ines")
    assert "lisbon" in asked["text"].lower(), asked["text"]
    assert [m["text"] for m in asked["metadata"]["memories"]] == ["My sister lives in Lisbon."]


async def test_one_key_gets_its_rate_limit_once_across_both(pair: tuple[Server, Server]) -> None:
    a, b = pair
    statuses: list[tuple[str, int]] = []
    async with httpx.AsyncClient(timeout=30) as client:
        started = time.monotonic()
        for i in range(3 * RATE):
            server = (a, b)[i % 2]
            answer = await client.get(f"{server.url}/ready", headers=server.headers(LIMITED_KEY))
            statuses.append((server.url, answer.status_code))
        elapsed = time.monotonic() - started
    accepted = sum(status == 200 for _, status in statuses)
    # The bucket holds RATE tokens and refills RATE a minute: within the run's own
    # window, at most that many more (the bound follows the run, however long it took).
    refilled = int(elapsed * RATE / 60)
    assert RATE - 1 <= accepted <= RATE + refilled + 1, (accepted, refilled)
    refused = {url for url, status in statuses if status == 429}
    assert refused == {a.url, b.url}  # each instance refuses once the shared bucket is empty


async def test_a_sync_handler_on_b_sees_a_turn_answered_on_a(pair: tuple[Server, Server]) -> None:
    a, b = pair
    async with httpx.AsyncClient(base_url=a.url) as client:  # the key's conversation
        created = await client.post(
            "/v1/conversations", json={"conversation_id": "synced"}, headers=a.headers()
        )
        assert created.status_code == 201, created.text
    url = f"{b.ws_url}/v1/conversations/synced/events?api_key={KEY}"
    async with connect(url) as events:
        assert json.loads(await events.recv())["type"] == "ready"
        reply = await say_text(a, "synced", "What is two plus two?")
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(60):
            while not any(e["event"] == "voice_response_added" for e in seen):
                seen.append(json.loads(await events.recv()))
    added = {e["event"]: e for e in seen}
    assert added["voice_message_added"]["payload"]["content"] == "What is two plus two?"
    assert added["voice_response_added"]["payload"]["content"] == reply["text"]
    assert all(e["instance"] for e in seen)  # they happened on A, not on B


async def spoken_turn(server: Server, cid: str, speech: np.ndarray, kill: Any = None) -> str:
    """One utterance over the websocket; the id of the turn once the server has stored it.

    ``kill`` is called when the reply's first audio arrives (the instance dies mid-reply).
    """

    def at_first_audio(event: dict[str, Any]) -> None:
        nonlocal kill
        if event["type"] == "audio" and kill is not None:
            kill()
            kill = None

    received = await converse(server, cid, speech, until="stored", on_event=at_first_audio)
    (stored,) = [e for e in received if isinstance(e, dict) and e["type"] == "stored"]
    return str(stored["message_id"])


async def test_kill_9_mid_run_loses_no_acknowledged_turn(
    doomed_pair: tuple[Server, Server], shared: str, say: Say
) -> None:
    a, b = doomed_pair
    questions = [f"What is {n} plus {n}?" for n in range(1, 11)]
    speech = [await say(q) for q in questions]
    acknowledged: dict[str, list[str]] = {"crash-rest": [], "crash-ws": []}
    answered_by: dict[str, set[str]] = {"crash-rest": set(), "crash-ws": set()}
    retried: list[str] = []
    killed = asyncio.Event()

    def kill_a() -> None:
        a.process.kill()  # SIGKILL: no shutdown, no goodbye
        killed.set()

    async def rest_client() -> None:
        for i, question in enumerate(questions):
            message_id = f"rest-{i}"
            for server in (a, b):  # A first; once A is gone, the same message to B
                if server is a and killed.is_set():
                    continue
                try:
                    await say_text(server, "crash-rest", question, message_id=message_id)
                except (httpx.TransportError, AssertionError):
                    retried.append(message_id)
                    continue
                acknowledged["crash-rest"].append(message_id)
                answered_by["crash-rest"].add(server.url)
                break

    async def websocket_client() -> None:
        for i, utterance in enumerate(speech):
            for server in (a, b):
                if server is a and killed.is_set():
                    continue
                try:
                    kill = kill_a if i == 3 else None
                    stored = await spoken_turn(server, "crash-ws", utterance, kill)
                except (ConnectionClosed, OSError):
                    retried.append(f"spoken-{i}")
                    continue
                acknowledged["crash-ws"].append(stored)
                answered_by["crash-ws"].add(server.url)
                break

    async with asyncio.TaskGroup() as clients:  # one failing stops the other
        clients.create_task(rest_client())
        clients.create_task(websocket_client())
    assert killed.is_set() and a.process.poll() is not None
    assert len(acknowledged["crash-rest"]) == len(acknowledged["crash-ws"]) == 10
    # Both runs span the crash: A answered before it, B after, and the spoken turn
    # that A was saying when it died was said again on B.
    assert answered_by["crash-ws"] == {a.url, b.url} and "spoken-3" in retried
    assert b.url in answered_by["crash-rest"]
    print(f"retried after the crash: {retried}")
    store = PostgresConversationStore(shared)
    await store.open()
    try:
        for cid, ids in acknowledged.items():
            state = await store.load(cid, 100)
            assert state is not None
            stored = [t.message_id for t in state.turns]
            assert set(ids) <= set(stored), (cid, ids, stored)  # nothing acknowledged is lost
        rest = await store.load("crash-rest", 100)
        assert rest is not None
        assert [t.message_id for t in rest.turns] == [f"rest-{i}" for i in range(10)]  # once each
        assert await store.check() == []  # no half-written turn anywhere
    finally:
        await store.close()
    # B served the whole time, and still does.
    assert (await say_text(b, "after-the-crash", "Hello!"))["text"]


async def test_an_instance_rides_out_a_database_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """PostgreSQL goes down under a running instance: clear refusals, then service again."""
    # Durable: a crash of PostgreSQL itself may then lose no committed turn.
    database = ThrowawayPostgres(durable=True).start()
    try:
        with serving(tmp_path_factory.mktemp("outage"), store=database.url) as coda:
            before = await say_text(coda, "outage", "What is the capital of France?")
            database.halt()
            async with httpx.AsyncClient(timeout=60) as client:
                down = await client.get(f"{coda.url}/ready", headers=coda.headers())
            assert down.status_code == 503 and "try again" in down.json()["detail"]
            url = f"{coda.ws_url}/v1/conversations/outage/stream?rate=16000&api_key={KEY}"
            async with connect(url) as socket:
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(socket.recv(), 30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            database.resume()
            async with asyncio.timeout(120):  # the pool reconnects on its own backoff
                while True:
                    try:
                        after = await say_text(coda, "outage", "And of Italy?")
                        break
                    except AssertionError as refused:
                        assert "503" in str(refused) or "cannot" in str(refused), refused
                        await asyncio.sleep(1)
            assert after["text"] and "Traceback" not in after["text"]
            assert [t["assistant_text"] for t in await history(coda, "outage")] == [
                before["text"],
                after["text"],
            ]
    finally:
        database.stop()
