"""Hostile clients and faults against a real ``coda serve`` with tight limits: one test a finding.

The server here idles sockets out after 3 s, lets a key hold 2 sessions, and takes
2 s of audio at once then 1.5× real time. The throttling of failed keys runs on the
real app with an injected clock, so it locks no shared server out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from coda.audio.frames import pcm16
from coda.core.errors import ConversationError, StoreUnavailableError, client_message
from coda.core.models import ConversationTurn, VoiceProcessingMode
from coda.server.app import create_app
from coda.server.frames import Closed
from coda.server.link import AudioPace
from coda.server.settings import ServerSettings
from coda.testing.postgres import ThrowawayPostgres
from coda.tools import units
from coda.voice import LLMIntegrationError, ValidationError, VoiceConfig
from tests.conftest import KEY, OTHER_KEY, Say, Server, serving
from tests.test_server import active_sessions

STRICT = (
    "idle_timeout_seconds = 3\n"
    "max_sessions_per_key = 2\n"
    "audio_burst_seconds = 2\n"
    "max_throttled_seconds = 1\n"
)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("strict"), STRICT) as running:
        yield running


def rss_kib(server: Server) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def raw_request(server: Server, head: str, start_of_body: bytes) -> bytes:
    """Send ``head`` and the start of a body; the answer's first bytes. A server that read
    the whole body before answering would wait for the rest, and the read times out."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        raw.sendall(head.encode())
        with contextlib.suppress(OSError):  # the server may answer and close first
            raw.sendall(start_of_body)
        return raw.recv(4096)


def ws(server: Server, conversation: str, key: str = KEY, query: str = "rate=16000") -> str:
    return f"{server.ws_url}/v1/conversations/{conversation}/stream?{query}&api_key={key}"


async def closed_with(url: str, send: Any = None, seconds: float = 30) -> tuple[int, str]:
    """Open ``url``, send ``send`` (if any), and read until the server closes."""
    async with connect(url) as socket_:
        if send is not None:
            await send(socket_)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(seconds):
                while True:
                    await socket_.recv()
    assert closed.value.rcvd is not None, "the client closed, not the server"
    return closed.value.rcvd.code, closed.value.rcvd.reason


# -- requests refused before their bodies ---------------------------------------------


def test_an_unauthenticated_64_mib_upload_is_refused_unread(strict: Server) -> None:
    before = rss_kib(strict)
    head = (
        "POST /v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {64 << 20}\r\n\r\n"
    )
    answer = raw_request(strict, head, bytes(1 << 20))
    assert answer.startswith(b"HTTP/1.1 401"), answer[:80]
    assert rss_kib(strict) - before < 10 * 1024  # the body was never read


def test_a_chunked_upload_over_the_limit_is_cut_off(strict: Server) -> None:
    chunk = bytes(64 << 10)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(16))  # 1 MiB
    head = (
        "POST /v1/conversations/big/messages HTTP/1.1\r\nHost: x\r\n"
        f"X-API-Key: {KEY}\r\nContent-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert raw_request(strict, head, chunks).startswith(b"HTTP/1.1 413")


async def test_the_api_documentation_needs_a_key(strict: Server) -> None:
    async with httpx.AsyncClient(base_url=strict.url) as client:
        for path in ("/docs", "/openapi.json"):
            assert (await client.get(path)).status_code == 401
            assert (await client.get(path, headers=strict.headers())).status_code == 200
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/")).status_code == 200  # the browser client's page


def test_public_docs_is_a_setting() -> None:
    from fastapi.testclient import TestClient

    from coda.server.app import create_app

    for public, status in ((True, 200), (False, 401)):
        app = create_app(ServerSettings(api_keys=["k"], public_docs=public))
        assert TestClient(app).get("/openapi.json").status_code == status


async def test_a_rest_key_in_the_query_is_refused_and_keys_are_not_logged(
    strict: Server,
) -> None:
    async with httpx.AsyncClient(base_url=strict.url) as client:
        assert (await client.get(f"/ready?api_key={KEY}")).status_code == 401
    async with connect(ws(strict, "logged")) as socket_:
        assert json.loads(await socket_.recv())["type"] == "ready"
    log = strict.log.read_text()
    assert "api_key=***" in log and KEY not in log


# -- tenants --------------------------------------------------------------------------


async def test_another_keys_conversation_does_not_exist_for_it(strict: Server) -> None:
    mine, theirs = strict.headers(), strict.headers(OTHER_KEY)
    async with httpx.AsyncClient(base_url=strict.url, timeout=120) as client:
        created = await client.post("/v1/conversations", json={"conversation_id": "tenant-a"},
                                    headers=mine)  # fmt: skip
        assert created.status_code == 201
        said = {"text": "Remember that the code is 1234."}
        for method, path, body in (
            ("GET", "/v1/conversations/tenant-a/messages", None),
            ("POST", "/v1/conversations/tenant-a/messages", said),
            ("POST", "/v1/conversations/tenant-a/feedback", {"too_long": True}),
            ("DELETE", "/v1/conversations/tenant-a", None),
        ):
            refused = await client.request(method, path, json=body, headers=theirs)
            assert refused.status_code == 404, (method, path, refused.text)
        taken = await client.post("/v1/conversations", json={"conversation_id": "tenant-a"},
                                  headers=theirs)  # fmt: skip
        assert taken.status_code == 409
        assert (await client.get("/v1/conversations/tenant-a/messages", headers=mine)).json()[
            "turns"
        ] == []  # nothing the other key sent reached it
    for path in ("stream?rate=16000", "events?x=1"):
        url = f"{strict.ws_url}/v1/conversations/tenant-a/{path}&api_key={OTHER_KEY}"
        assert await closed_with(url) == (1008, "conversation not found")
    realtime = f"{strict.ws_url}/v1/realtime?conversation_id=tenant-a&api_key={OTHER_KEY}"
    assert await closed_with(realtime) == (1008, "conversation not found")


# -- websockets -----------------------------------------------------------------------


async def test_messages_are_bounded_before_they_are_read(strict: Server) -> None:
    async with connect(ws(strict, "deflate"), compression="deflate") as socket_:
        await socket_.recv()
        assert socket_.protocol.extensions == []  # no permessage-deflate: no zip bombs

    async def huge(socket_: Any) -> None:
        await socket_.recv()
        await socket_.send(bytes(300_000))  # past ws_max_size (max_event_bytes, 256 KiB)

    code, _ = await closed_with(ws(strict, "huge"), huge)
    assert code == 1009


async def test_an_idle_socket_is_closed(strict: Server) -> None:
    assert await closed_with(ws(strict, "idle")) == (1008, "idle for 3 s")


async def test_audio_far_faster_than_real_time_is_throttled_then_closed(strict: Server) -> None:
    quarter = bytes(8000)  # 250 ms of 16 kHz PCM16 (max_frame_bytes is 8192 here)

    async def flood(socket_: Any) -> None:
        await socket_.recv()
        with contextlib.suppress(ConnectionClosed):
            for _ in range(400):  # 100 s of audio, as fast as the socket takes it
                await socket_.send(quarter)

    code, reason = await closed_with(ws(strict, "flood"), flood)
    assert code == 1008 and "faster than 1.5x real time" in reason


async def test_a_key_holds_at_most_its_sessions(strict: Server) -> None:
    await active_sessions(strict, 0)  # other tests' sockets have gone
    async with connect(ws(strict, "cap-1")) as first, connect(ws(strict, "cap-2")) as second:
        await first.recv()
        await second.recv()
        assert await closed_with(ws(strict, "cap-3")) == (
            1013,
            "this key has 2 sessions open; close one first",
        )
    async with connect(ws(strict, "cap-4")) as again:  # a slot is free again
        assert json.loads(await again.recv())["type"] == "ready"


async def test_bad_query_values_close_with_1008(strict: Server) -> None:
    for query in ("rate=12345", "rate=lots", "rate=16000&mode=fastest", "rate=16000&user=a%20b"):
        code, _ = await closed_with(ws(strict, "query", query=query))
        assert code == 1008, query
    for bad in ("abc%0A", "caf%C3%A9"):  # a trailing newline; not ASCII
        code, _ = await closed_with(ws(strict, bad))
        assert code == 1008, bad
        async with httpx.AsyncClient(base_url=strict.url) as client:
            answer = await client.get(f"/v1/conversations/{bad}/messages", headers=strict.headers())
            assert answer.status_code == 422, bad


# -- live turns -----------------------------------------------------------------------


async def test_a_disconnect_after_the_question_keeps_the_users_words(
    strict: Server, say: Say
) -> None:
    audio = np.concatenate([np.zeros(8000, np.float32), await say("What is the capital of Peru?"),
                            np.zeros(16000, np.float32)])  # fmt: skip
    pcm = pcm16(audio)
    async with connect(ws(strict, "cut")) as socket_:
        await socket_.recv()
        for start in range(0, len(pcm), 640):
            await socket_.send(pcm[start : start + 640])
            await asyncio.sleep(0.01)
        async with asyncio.timeout(60):
            while not isinstance(message := await socket_.recv(), str) or (
                json.loads(message)["type"] != "speech_ended"
            ):
                pass
    # Gone before any reply was heard: the words are kept all the same.
    async with httpx.AsyncClient(base_url=strict.url) as client:
        async with asyncio.timeout(60):
            while True:
                reply = await client.get("/v1/conversations/cut/messages", headers=strict.headers())
                if turns := reply.json()["turns"]:
                    break
                await asyncio.sleep(0.2)
    assert "peru" in turns[0]["user_text"].lower()


async def test_a_client_that_never_reports_playback_gets_whole_turns(
    strict: Server, say: Say
) -> None:
    audio = np.concatenate([np.zeros(8000, np.float32), await say("Say hello to me."),
                            np.zeros(24000, np.float32)])  # fmt: skip
    pcm = pcm16(audio)
    events: list[dict[str, Any]] = []
    async with connect(ws(strict, "silent-player")) as socket_:
        await socket_.recv()

        async def microphone() -> None:
            for start in range(0, len(pcm), 640):
                await socket_.send(pcm[start : start + 640])
                await asyncio.sleep(0.02)
            while True:
                await socket_.send(bytes(640))
                await asyncio.sleep(0.02)

        task = asyncio.create_task(microphone())
        try:
            async with asyncio.timeout(120):
                while not events or events[-1]["type"] != "stored":
                    message = await socket_.recv()
                    if isinstance(message, str):  # audio is received, never reported
                        events.append(json.loads(message))
        finally:
            task.cancel()
    (turn,) = [e for e in events if e["type"] == "turn"]
    assert events[-1]["reply_text"] == turn["reply_text"] != ""


# -- in-process faults ----------------------------------------------------------------


async def test_a_turn_the_store_refuses_leaves_no_ghost() -> None:
    from coda.store.conversations import Conversations

    database = ThrowawayPostgres().start()
    conversations = Conversations(VoiceConfig(store_path=database.url))
    try:
        await conversations.open_store()
        state = await conversations.open("ghost")
        database.halt()  # the store goes down under the turn
        turn = ConversationTurn("Hello.", "Hi!", VoiceProcessingMode.LLM_ENHANCED)
        with pytest.raises(StoreUnavailableError):
            await conversations.commit(state, turn, {})
        assert state.turns == [] and state.metrics.get("turns", 0) == 0
    finally:
        database.stop()
        await conversations.close()


def test_hostile_units_are_refused_and_the_converter_lock_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="unknown unit"):
        units.convert(1, "ft**10000000", "m")
    monkeypatch.setattr(units, "LOCK_SECONDS", 0.05)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with units._registry_lock():
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        with pytest.raises(ValueError, match="busy"):
            units.convert(1, "m", "ft")
    finally:
        release.set()
        holder.join()
    assert units.convert(1, "m", "ft")["value"] == 3.28


def test_clients_hear_what_went_wrong_without_internals() -> None:
    assert client_message(ValidationError("the audio is silent")) == "the audio is silent"
    assert client_message(ConversationError("conversation 'x' has ended")).endswith("ended")
    hidden = client_message(LLMIntegrationError("http://10.0.0.7:11434 refused: secret"))
    assert hidden == "the voice engine could not answer"  # the kind goes in `error`
    assert client_message(RuntimeError("/etc/coda/key")) == "internal error"


async def test_a_client_that_stops_reading_is_closed() -> None:
    from coda.server.link import Link

    class StuckSocketFault:
        """Fault injection: a send that never completes (a client that stopped reading)."""

        async def send_text(self, message: str) -> None:
            await asyncio.Event().wait()

    link = Link(StuckSocketFault(), ServerSettings(send_timeout_seconds=0.05), 1024)  # type: ignore[arg-type]
    with pytest.raises(Closed) as closed:
        await link.send("{}")
    assert (closed.value.code, closed.value.reason) == (1008, "the client is not reading")


async def test_a_session_cancelled_as_a_send_completes_still_ends() -> None:
    """The session's end cancels its writer, perhaps just as a send completes: the
    cancellation must win (on Python 3.11, ``asyncio.wait_for`` swallowed it, and a
    call whose Moshi link had been restored could not be ended)."""
    from coda.server.link import Link

    class SendCompletesOnCueFault:
        """Fault injection: a send that completes exactly when the test says."""

        def __init__(self) -> None:
            self.sending = asyncio.Event()
            self.sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def send_text(self, message: str) -> None:
            self.sending.set()
            await self.sent

    fault = SendCompletesOnCueFault()
    link = Link(fault, ServerSettings(), 1024)  # type: ignore[arg-type]
    went_on = asyncio.Event()

    async def writer() -> None:
        await link.send("{}")
        went_on.set()  # only if the cancellation was lost

    task = asyncio.create_task(writer())
    await fault.sending.wait()
    fault.sent.set_result(None)  # the send completes ...
    task.cancel()  # ... as the session ends
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not went_on.is_set()


async def test_the_audio_pace_on_an_injected_clock() -> None:
    clock, slept = [0.0], []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    pace = AudioPace(1.5, 2.0, 1.0, now=lambda: clock[0], sleep=sleep)
    for _ in range(100):  # real time: 20 ms of audio every 20 ms
        await pace.take(0.02)
        clock[0] += 0.02
    assert slept == []
    await pace.take(2.0)  # the burst
    assert slept == []
    await pace.take(0.6)  # past it: read more slowly
    assert slept == [pytest.approx(0.4)]
    with pytest.raises(Closed, match="faster than 1.5x"):
        for _ in range(10):
            await pace.take(1.0)


def test_capacity_follows_the_session_limit() -> None:
    config = ServerSettings(max_sessions=40).voice_config()
    assert config.max_concurrent_conversations == 80


async def test_failed_keys_are_throttled_per_address_on_the_limiters_clock() -> None:
    clock = [500.0]
    app = create_app(
        ServerSettings(api_keys=[KEY], auth_failures_per_minute=5), now=lambda: clock[0]
    )
    guesser = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    neighbour = httpx.ASGITransport(app=app, client=("203.0.113.8", 40000))
    async with (
        httpx.AsyncClient(transport=guesser, base_url="http://coda") as client,
        httpx.AsyncClient(transport=neighbour, base_url="http://coda") as other,
    ):

        async def get(key: str, via: httpx.AsyncClient = client) -> httpx.Response:
            return await via.get("/metrics", headers={"X-API-Key": key})

        statuses = [(await get(f"guess-{i}")).status_code for i in range(7)]
        assert statuses == [401] * 5 + [429] * 2
        locked = await get(KEY)  # even the right key, from that address
        assert locked.status_code == 429 and "failed attempts" in locked.json()["detail"]
        assert locked.headers["Retry-After"] == "12.0"
        assert (await get(KEY, other)).status_code == 200  # another address is not locked out
        clock[0] += 11.9  # a failure is forgiven every 12 s: not yet
        assert (await get(KEY)).status_code == 429
        clock[0] += 0.2
        assert (await get(KEY)).status_code == 200
        assert (await get("guess-8")).status_code == 401
        assert (await get(KEY)).status_code == 429
