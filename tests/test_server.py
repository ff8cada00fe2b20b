"""`coda serve` as a real process on loopback: REST, the live websocket, security, metrics."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from coda.audio.frames import to_int16
from coda.server.app import create_app
from coda.server.settings import ServerSettings
from coda.testing.moshi_peer import TinyMoshiServer
from coda.testing.ports import free_port
from tests.conftest import (
    KEY,
    LIMITED_KEY,
    MAX_UPLOAD,
    OTHER_KEY,
    Say,
    Server,
    Speak,
    serving,
    wer,
)


async def _frames(audio: np.ndarray, rate: int = 16000, ms: int = 20) -> list[bytes]:
    step = rate * ms // 1000
    pcm = to_int16(audio)
    return [pcm[i : i + step].tobytes() for i in range(0, len(pcm) - step + 1, step)]


async def converse(
    server: Server,
    conversation_id: str,
    speech: np.ndarray,
    key: str = KEY,
    query: str = "",
    until: str = "turn",
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> list[Any]:
    """Stream ``speech`` + silence as 20 ms frames; play replies at once; events until
    ``until`` (or ``error``), each also handed to ``on_event``."""
    audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(24000, np.float32)])
    received: list[Any] = []
    url = (
        f"{server.ws_url}/v1/conversations/{conversation_id}/stream?rate=16000&api_key={key}{query}"
    )
    async with connect(url) as socket:
        received.append(json.loads(await socket.recv()))

        async def send() -> None:
            for frame in await _frames(audio):
                await socket.send(frame)
                await asyncio.sleep(0.005)
            while True:  # the microphone keeps sending silence
                await socket.send(bytes(640))
                await asyncio.sleep(0.02)

        sender = asyncio.create_task(send())
        try:
            async with asyncio.timeout(120):
                while True:
                    message = await socket.recv()
                    if isinstance(message, bytes):
                        received.append(message)
                        await socket.send(
                            json.dumps({"type": "played", "samples": len(message) // 2})
                        )
                        continue
                    event = json.loads(message)
                    received.append(event)
                    if on_event is not None:
                        on_event(event)
                    if event["type"] in (until, "error"):
                        break
        finally:
            sender.cancel()
        await socket.send(json.dumps({"type": "end"}))
    return received


async def test_health_needs_no_key_and_everything_else_does(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        assert (await client.get("/ready")).status_code == 401
        wrong = await client.post("/v1/conversations", json={}, headers=server.headers("nope"))
        assert wrong.status_code == 401
        assert "API key" in wrong.json()["detail"]
        hashed = await client.get("/ready", headers=server.headers(LIMITED_KEY))
        assert hashed.status_code == 200  # a key configured only by its digest


async def test_rest_conversation_round_trip(server: Server, speak: Speak) -> None:
    headers = server.headers()
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        created = await client.post("/v1/conversations", json={}, headers=headers)
        assert created.status_code == 201
        cid = created.json()["conversation_id"]
        question = "What is the capital of France?"
        reply = await client.post(
            f"/v1/conversations/{cid}/messages",
            content=await speak(question),
            headers={**headers, "Content-Type": "audio/wav"},
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert wer(question, body["metadata"]["transcript"]) <= 0.1
        assert "paris" in body["text"].lower()
        audio, rate = sf.read(io.BytesIO(base64.b64decode(body["audio_wav_base64"])))
        assert rate == 24000 and len(audio) / rate > 0.5
        assert body["metadata"]["timings_ms"]["first_audio"] > 0
        history = (await client.get(f"/v1/conversations/{cid}/messages", headers=headers)).json()
        assert [t["user_text"] for t in history["turns"]] == [body["metadata"]["transcript"]]
        assert (await client.delete(f"/v1/conversations/{cid}", headers=headers)).status_code == 204
        missing = await client.get("/v1/conversations/nope/messages", headers=headers)
        assert missing.status_code == 404
        odd = await client.get("/v1/conversations/a%20b%3Cc/messages", headers=headers)
        assert odd.status_code == 422
        bad = await client.post(
            f"/v1/conversations/{cid}-2/messages",
            content=b"RIFF not really a wav",
            headers={**headers, "Content-Type": "audio/wav"},
        )
        assert bad.status_code == 422 and bad.json()["error"] == "ValidationError"
        assert "Traceback" not in bad.text


async def test_oversized_upload_is_413(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        big = await client.post(
            "/v1/conversations/big/messages",
            content=bytes(MAX_UPLOAD + 1),
            headers={**server.headers(), "Content-Type": "audio/wav"},
        )
        assert big.status_code == 413


async def test_websocket_turn_in_order(server: Server, say: Say) -> None:
    question = "What is the capital of France?"
    events = await converse(server, "ws-france", await say(question))
    kinds = [e["type"] if isinstance(e, dict) else "pcm" for e in events]
    assert kinds[0] == "ready" and events[0]["output_rate"] == 24000
    assert kinds[-1] == "turn", events[-1]
    order = [
        kinds.index(k) for k in ("speech_started", "speech_ended", "transcript", "text", "audio")
    ]
    assert order == sorted(order)
    transcript = next(e for e in events if isinstance(e, dict) and e["type"] == "transcript")
    assert wer(question, transcript["text"]) <= 0.1
    # Every audio header is followed by its PCM16 payload of the announced length.
    for index, kind in enumerate(kinds):
        if kind == "audio":
            assert kinds[index + 1] == "pcm"
            assert len(events[index + 1]) == 2 * events[index]["samples"]
    turn = events[-1]
    assert "paris" in turn["reply_text"].lower() and turn["timings_ms"]["first_audio"] > 0
    assert not turn["interrupted"]


async def test_metrics_after_a_turn(server: Server, say: Say) -> None:
    await converse(server, "ws-metrics", await say("Hello there."))
    async with httpx.AsyncClient(base_url=server.url) as client:
        text = (await client.get("/metrics", headers=server.headers())).text
    for stage in ("endpointing", "asr", "llm_first_token", "tts_first_chunk", "end_to_end"):
        assert f'coda_turn_stage_seconds_count{{stage="{stage}"}}' in text, stage
    assert "coda_turns_total" in text and "coda_active_sessions" in text
    async with httpx.AsyncClient(base_url=server.url) as client:
        again = (await client.get("/metrics", headers=server.headers())).text
    assert 'coda_http_requests_total{route="/metrics",status="200"}' in again


async def test_bad_frames_close_only_their_socket(server: Server) -> None:
    base = f"{server.ws_url}/v1/conversations/{{}}/stream?rate=16000&api_key={KEY}"
    async with connect(base.format("healthy")) as healthy:
        await healthy.recv()
        for payload, code in ((b"\x01\x02\x03", 1003), (bytes(9000), 1009), ("not json", 1003)):
            async with connect(base.format(f"bad-{code}")) as bad:
                await bad.recv()
                await bad.send(payload)
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(bad.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        await healthy.send(bytes(640))  # the other session is unaffected
        await healthy.send(json.dumps({"type": "played", "samples": 0}))
        await healthy.ping()
    with pytest.raises(ConnectionClosed) as refused:
        async with connect(base.format("nokey").replace(KEY, "wrong")) as socket:
            await socket.recv()
    assert refused.value.rcvd is not None and refused.value.rcvd.code == 1008


QUESTIONS = {
    "What is the capital of France?": "paris",
    "What is the capital of Japan?": "tokyo",
    "What is the capital of Italy?": "rome",
    "What is the capital of Germany?": "berlin",
}
"""Questions spoken at once on their own sockets, and the city each reply must name."""


async def test_turns_on_concurrent_sockets_stay_on_their_own_socket(
    server: Server, say: Say
) -> None:
    """20 sockets at once; 4 ask different questions at the same time, 16 hear room noise.

    Every speaker has streamed its whole question (``speech_started`` seen) before
    any of them sends the silence that ends it, so the four turns are in the
    server at once, and endpointed, recognized and answered side by side. Each
    socket hears only its own turn, and each conversation stores only its own.
    """
    run = uuid.uuid4().hex[:8]
    speakers = list(QUESTIONS)
    total = 20
    await active_sessions(server, 0)  # the sockets of tests before have gone: room for 20
    spoken = await asyncio.gather(*(say(question) for question in speakers))
    all_open = asyncio.Barrier(total)
    all_speaking = asyncio.Barrier(total)
    all_answered = asyncio.Barrier(total)

    async def session(index: int) -> tuple[list[dict[str, Any]], int]:
        url = f"{server.ws_url}/v1/conversations/many-{run}-{index}/stream?rate=16000&api_key={KEY}"
        events: list[dict[str, Any]] = []
        async with connect(url, open_timeout=60) as socket:
            assert json.loads(await socket.recv())["type"] == "ready"
            await all_open.wait()
            if index < len(speakers):
                await _ask(socket, spoken[index], events, all_speaking)
            else:
                noise = np.random.default_rng(index).normal(0, 300, 320).astype("<i2")
                for _ in range(25):  # half a second of quiet room noise
                    await socket.send(noise.tobytes())
                await all_speaking.wait()
            await all_answered.wait()  # the noise sockets stay open all along
            await socket.send(json.dumps({"type": "end"}))
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(60):
                    while True:
                        message = await socket.recv()
                        if isinstance(message, str):
                            events.append(json.loads(message))
            assert closed.value.rcvd is not None
            return events, closed.value.rcvd.code

    results = await asyncio.gather(*(session(i) for i in range(total)))
    assert [code for _, code in results] == [1000] * total
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        for index, (events, _) in enumerate(results):
            kinds = {e["type"] for e in events}
            if index >= len(speakers):  # nobody's turn leaked onto a listening socket
                assert not kinds & {"transcript", "text", "turn", "stored"}, (index, kinds)
                continue
            question, city = speakers[index], QUESTIONS[speakers[index]]
            (transcript,) = [e["text"] for e in events if e["type"] == "transcript"]
            (turn,) = [e for e in events if e["type"] == "turn"]
            assert wer(question, transcript) <= 0.1, (question, transcript)
            reply = turn["reply_text"].lower()
            others = set(QUESTIONS.values()) - {city}
            assert city in reply and not any(o in reply for o in others), (question, reply)
            history = await client.get(
                f"/v1/conversations/many-{run}-{index}/messages", headers=server.headers()
            )
            assert [t["user_text"] for t in history.json()["turns"]] == [transcript]


async def _ask(
    socket: Any, speech: np.ndarray, events: list[dict[str, Any]], all_speaking: asyncio.Barrier
) -> None:
    """Say ``speech`` on ``socket``; once every speaker is mid-question, end it with
    silence and play the reply until the turn is stored. Events go into ``events``."""
    started, stored = asyncio.Event(), asyncio.Event()

    async def listen() -> None:
        while True:
            message = await socket.recv()
            if isinstance(message, bytes):
                await socket.send(json.dumps({"type": "played", "samples": len(message) // 2}))
                continue
            events.append(json.loads(message))
            if events[-1]["type"] == "speech_started":
                started.set()
            elif events[-1]["type"] in ("stored", "error"):
                stored.set()

    listener = asyncio.create_task(listen())
    try:
        audio = np.concatenate([np.zeros(8000, np.float32), speech])
        for frame in await _frames(audio):  # no trailing silence: the turn cannot end yet
            await socket.send(frame)
            await asyncio.sleep(0.005)
        async with asyncio.timeout(120):
            await started.wait()
        await all_speaking.wait()
        async with asyncio.timeout(300):
            while not stored.is_set():  # the microphone goes on with silence
                await socket.send(bytes(640))
                await asyncio.sleep(0.02)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def test_the_rate_limit_is_per_key_on_the_limiters_clock(tmp_path: Path) -> None:
    """The real app with its rate limiter on an injected clock: exact on both sides."""
    clock = [1000.0]
    settings = ServerSettings(
        api_keys=[KEY, OTHER_KEY], rate_limit_per_minute=5, store=str(tmp_path / "s.sqlite3")
    )
    app = create_app(settings, now=lambda: clock[0])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://coda") as client:

        async def get(key: str = KEY) -> httpx.Response:
            return await client.get("/metrics", headers={"X-API-Key": key})

        assert [(await get()).status_code for _ in range(6)] == [200] * 5 + [429]
        limited = await get()
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "12.0"
        assert (await get(OTHER_KEY)).status_code == 200  # another key's bucket is full
        clock[0] += 11.9  # a token comes back every 12 s: not yet
        assert (await get()).status_code == 429
        clock[0] += 0.2
        assert (await get()).status_code == 200
        assert (await get()).status_code == 429


async def test_logs_are_json_with_conversation_ids(server: Server) -> None:
    cid = f"logged-{uuid.uuid4().hex[:8]}"
    url = f"{server.ws_url}/v1/conversations/{cid}/stream?rate=16000&api_key={KEY}"
    async with connect(url) as socket:  # "session opened" is logged before "ready" is sent
        assert json.loads(await socket.recv())["type"] == "ready"
    entries = [
        json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
    ]
    assert entries and all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    opened = [e for e in entries if e["message"].startswith("session opened")]
    assert cid in {e["conversation_id"] for e in opened}


async def test_moshi_only_needs_a_moshi_server(server: Server) -> None:
    url = f"{server.ws_url}/v1/conversations/m/stream?rate=16000&mode=moshi_only&api_key={KEY}"
    async with connect(url) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "Moshi" in closed.value.rcvd.reason


async def test_moshi_only_live_call(
    moshi_server: TinyMoshiServer, tmp_path: Path, say: Say
) -> None:
    """The websocket bridged to the genuine Moshi server: Moshi's voice streams back.

    A second server of the pool is down (on another host: a server on this one
    would reserve GPU memory of its own); the call goes to the live one, and the
    pool's occupancy shows in ``/metrics``.
    """
    dead = "ws://192.0.2.1:8998/api/chat"  # TEST-NET-1: nobody there
    settings = f'moshi_url = "{moshi_server.url}"\nmoshi_urls = ["{dead}"]\n'
    with serving(tmp_path, settings) as moshi_coda:
        url = (
            f"{moshi_coda.ws_url}/v1/conversations/call/stream"
            f"?rate=16000&mode=moshi_only&api_key={KEY}"
        )
        speech = await say("Hello there, how are you?")
        async with connect(url) as socket:
            ready = json.loads(await socket.recv())
            assert ready["type"] == "ready" and ready["output_rate"] == 24000
            for frame in await _frames(np.concatenate([speech, np.zeros(16000, np.float32)])):
                await socket.send(frame)
            headers, payloads, texts = [], [], []
            async with asyncio.timeout(60):
                while len(payloads) < 10:
                    message = await socket.recv()
                    if isinstance(message, bytes):
                        payloads.append(message)
                        continue
                    event = json.loads(message)
                    if event["type"] == "audio":
                        headers.append(event)
                    elif event["type"] == "text":
                        texts.append(event["delta"])
            during = await _moshi_servers(moshi_coda)
            await socket.send(json.dumps({"type": "end"}))
        assert during == {"free": 1.0, "busy": 1.0, "unhealthy": 0.0}
        async with asyncio.timeout(30):  # the call's server is freed once the socket closes
            while (after := await _moshi_servers(moshi_coda))["busy"]:
                await asyncio.sleep(0.1)
        assert after == {"free": 2.0, "busy": 0.0, "unhealthy": 0.0}
        assert [len(p) for p in payloads] == [2 * h["samples"] for h in headers[:10]]
        assert all(h["samples"] == 1920 for h in headers[:10])  # 80 ms Moshi frames


async def _moshi_servers(server: Server) -> dict[str, float]:
    """``coda_moshi_servers`` by state, from the server's ``/metrics``."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        text = (await client.get("/metrics", headers=server.headers())).text
    found = re.findall(r'^coda_moshi_servers\{state="(\w+)"\} ([0-9.]+)$', text, re.MULTILINE)
    return {state: float(value) for state, value in found}


def test_the_rate_limiter_refills_on_its_clock() -> None:
    from coda.server.security import RateLimiter

    clock = [100.0]
    limiter = RateLimiter(per_minute=60, now=lambda: clock[0])
    assert all(limiter.allow("key") for _ in range(60))  # the burst
    assert not limiter.allow("key") and limiter.retry_after("key") == pytest.approx(1.0)
    clock[0] += 1.0  # one token a second comes back
    assert limiter.allow("key") and not limiter.allow("key")
    assert limiter.allow("another key")  # buckets are per key


def test_a_key_lists_its_own_conversations(server: Server) -> None:
    made = httpx.post(f"{server.url}/v1/conversations", headers=server.headers(), json={})
    cid = made.json()["conversation_id"]
    mine = httpx.get(f"{server.url}/v1/conversations", headers=server.headers())
    assert mine.status_code == 200
    listed = {c["conversation_id"]: c for c in mine.json()["conversations"]}
    assert listed[cid]["turns"] == 0 and listed[cid]["active"] is True
    theirs = httpx.get(f"{server.url}/v1/conversations", headers=server.headers(OTHER_KEY))
    assert cid not in {c["conversation_id"] for c in theirs.json()["conversations"]}
    assert httpx.get(f"{server.url}/v1/conversations").status_code == 401
    refused = httpx.get(f"{server.url}/v1/conversations?limit=0", headers=server.headers())
    assert refused.status_code == 422


async def test_json_nested_past_the_parsers_depth_is_bad_data(server: Server) -> None:
    """1,000 levels of nesting fit in a frame but not in the parser: a typed close, no 1011."""
    url = f"{server.ws_url}/v1/conversations/deep-json/stream?rate=16000&api_key={KEY}"
    async with connect(url) as socket:
        assert json.loads(await socket.recv())["type"] == "ready"
        await socket.send("[" * 1000 + "]" * 1000)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


# -- the gates of a live socket: origin, key, session count and length -------------------

APP_ORIGIN = "https://app.example"
ELSEWHERE = "https://elsewhere.example"


async def refused(url: str, **options: Any) -> tuple[int, str]:
    """Open ``url`` (``options`` go to ``connect``): the close code and reason the
    server refuses it with, before any message (a socket let in is sent ``ready``)."""
    async with connect(url, open_timeout=60, **options) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(60):  # guards against a hang only
                message = await socket.recv()
                pytest.fail(f"the socket was let in: {message!r}")
    assert closed.value.rcvd is not None, "the client closed, not the server"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def ready_on(url: str, **options: Any) -> dict[str, Any]:
    """Open ``url`` and return its first message (``ready`` when the socket is let in)."""
    async with connect(url, open_timeout=60, **options) as socket:
        first: dict[str, Any] = json.loads(await socket.recv())
        await socket.send(json.dumps({"type": "end"}))
    return first


async def active_sessions(server: Server, count: int) -> None:
    """Wait until ``server`` holds ``count`` live sessions (its ``/metrics`` say so)."""
    async with httpx.AsyncClient(base_url=server.url) as client, asyncio.timeout(60):
        while True:
            text = (await client.get("/metrics", headers=server.headers())).text
            found = re.search(r"^coda_active_sessions ([0-9.]+)$", text, re.MULTILINE)
            if found and float(found.group(1)) == count:
                return
            await asyncio.sleep(0.5)  # each look spends one of the key's requests


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that lets browsers in from one other origin."""
    with serving(
        tmp_path_factory.mktemp("gated"), f'allowed_origins = ["{APP_ORIGIN}"]\n'
    ) as running:
        yield running


async def test_allowed_origins_let_in_their_browsers_only(gated: Server) -> None:
    url = f"{gated.ws_url}/v1/conversations/origins/stream?rate=16000&api_key={KEY}"
    assert (await ready_on(url, origin=APP_ORIGIN))["type"] == "ready"
    assert (await ready_on(url))["type"] == "ready"  # no Origin: not a browser
    assert (await ready_on(url, origin=gated.url))["type"] == "ready"  # its own page still works
    assert await refused(url, origin=ELSEWHERE) == (1008, "origin not allowed")
    events = f"{gated.ws_url}/v1/conversations/origins/events?api_key={KEY}"
    assert await refused(events, origin=ELSEWHERE) == (1008, "origin not allowed")
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "X-API-Key, Content-Type"}  # fmt: skip
    async with httpx.AsyncClient(base_url=gated.url) as client:
        allowed = await client.options(
            "/v1/conversations", headers={"Origin": APP_ORIGIN, **preflight}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
        assert "X-API-Key" in allowed.headers["access-control-allow-headers"]
        elsewhere = await client.options(
            "/v1/conversations", headers={"Origin": ELSEWHERE, **preflight}
        )
        assert elsewhere.status_code == 400
        assert "access-control-allow-origin" not in elsewhere.headers
        listed = await client.get(
            "/v1/conversations", headers={"Origin": APP_ORIGIN, **gated.headers()}
        )
        assert listed.headers["access-control-allow-origin"] == APP_ORIGIN
        unlisted = await client.get(
            "/v1/conversations", headers={"Origin": ELSEWHERE, **gated.headers()}
        )
        assert "access-control-allow-origin" not in unlisted.headers  # the browser hides it


async def test_without_allowed_origins_only_the_servers_own_origin_is_let_in(
    server: Server,
) -> None:
    url = f"{server.ws_url}/v1/conversations/own-origin/stream?rate=16000&api_key={KEY}"
    assert (await ready_on(url, origin=server.url))["type"] == "ready"
    assert await refused(url, origin=APP_ORIGIN) == (1008, "origin not allowed")
    async with httpx.AsyncClient(base_url=server.url) as client:
        preflight = await client.options(
            "/v1/conversations",
            headers={"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers
        listed = await client.get(
            "/v1/conversations", headers={"Origin": APP_ORIGIN, **server.headers()}
        )
        assert listed.status_code == 200 and "access-control-allow-origin" not in listed.headers


async def test_a_websocket_without_a_key_is_refused(gated: Server) -> None:
    refusal = (1008, "a valid API key is required (X-API-Key or Authorization: Bearer)")
    base = f"{gated.ws_url}/v1/conversations/keyless"
    assert await refused(f"{base}/stream?rate=16000") == refusal
    assert await refused(f"{base}/events") == refusal
    assert await refused(f"{gated.ws_url}/v1/realtime?conversation_id=keyless") == refusal
    keyed = f"{base}/stream?rate=16000&api_key={KEY}"
    assert (await ready_on(keyed))["type"] == "ready"  # the same socket with its key


async def test_the_session_over_max_sessions_is_closed_with_1013(tmp_path: Path) -> None:
    with serving(tmp_path, "max_sessions = 2\n") as small:
        url = f"{small.ws_url}/v1/conversations/{{}}/stream?rate=16000&api_key={KEY}"
        async with connect(url.format("first"), open_timeout=60) as first:
            assert json.loads(await first.recv())["type"] == "ready"
            async with connect(url.format("second"), open_timeout=60) as second:
                assert json.loads(await second.recv())["type"] == "ready"
                third = await refused(url.format("third"))
                assert third == (1013, "too many sessions; try again later")
            await active_sessions(small, 1)  # the second's slot is free again
            assert (await ready_on(url.format("third")))["type"] == "ready"


async def test_a_session_is_ended_at_max_session_seconds(tmp_path: Path) -> None:
    with serving(tmp_path, "max_session_seconds = 2\n") as short:
        url = f"{short.ws_url}/v1/conversations/short/stream?rate=16000&api_key={KEY}"
        opened = time.monotonic()
        async with connect(url, open_timeout=60) as socket:
            assert json.loads(await socket.recv())["type"] == "ready"
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(60):  # guards against a hang only
                    while True:  # the client is no idler: it keeps talking (silence)
                        await socket.send(bytes(640))
                        await asyncio.sleep(0.02)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "session over 2 s")
        # Its clock started after this one: never sooner (later is the machine's business).
        assert time.monotonic() - opened >= 2.0


async def test_a_live_call_that_loses_moshi_says_reconnected_and_goes_on(
    moshi_dir: Path, tmp_path: Path, say: Say
) -> None:
    """The call's Moshi server hangs mid-call, then comes back: the call goes on.

    Coda gives up on the silent session (``receive_timeout_seconds``) and says so
    in its log; the server is resumed then, and the bridge's next attempt gets a
    new session on it. The client's socket stays open all along: it is told
    ``reconnected`` and Moshi's voice goes on, numbered on from before.
    """
    victim = TinyMoshiServer(moshi_dir, free_port())
    await asyncio.to_thread(victim.start)
    try:
        with serving(tmp_path, f'moshi_url = "{victim.url}"\n') as coda:
            url = (
                f"{coda.ws_url}/v1/conversations/call/stream"
                f"?rate=16000&mode=moshi_only&api_key={KEY}"
            )
            speech = await say("Hello there, how are you?")
            events: list[dict[str, Any]] = []
            async with connect(url, open_timeout=60) as socket:
                assert json.loads(await socket.recv())["type"] == "ready"

                async def microphone() -> None:
                    for frame in await _frames(speech):
                        await socket.send(frame)
                    while True:  # then silence, in real time
                        await socket.send(bytes(640))
                        await asyncio.sleep(0.02)

                async def hang_then_resume() -> None:
                    victim.freeze()
                    try:
                        await _logged(coda, "Moshi connection lost")
                    finally:
                        victim.thaw()

                talking = asyncio.create_task(microphone())
                fault: asyncio.Task[None] | None = None
                try:
                    async with asyncio.timeout(180):
                        while len(_after_reconnection(events)) < 5:
                            message = await socket.recv()
                            if isinstance(message, str):
                                events.append(json.loads(message))
                            audio = [e for e in events if e["type"] == "audio"]
                            if len(audio) >= 5 and fault is None:
                                fault = asyncio.create_task(hang_then_resume())
                finally:
                    talking.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await talking
                    if fault is not None:
                        await fault
                await socket.send(json.dumps({"type": "end"}))
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(60):
                        while True:
                            await socket.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    finally:
        victim.stop()
    (reconnected,) = [e for e in events if e["type"] == "reconnected"]
    assert isinstance(reconnected["attempts"], int) and reconnected["attempts"] >= 1
    seqs = [e["seq"] for e in events if e["type"] == "audio"]
    assert seqs == list(range(len(seqs)))  # one stream, numbered on across the reconnection


async def _logged(server: Server, words: str) -> None:
    """Wait until ``server``'s log has a message starting with ``words``."""
    async with asyncio.timeout(120):
        while not any(
            json.loads(line)["message"].startswith(words)
            for line in server.log.read_text().splitlines()
            if line.startswith("{")
        ):
            await asyncio.sleep(0.1)


def _after_reconnection(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``audio`` messages after a ``reconnected`` one."""
    kinds = [e["type"] for e in events]
    if "reconnected" not in kinds:
        return []
    return [e for e in events[kinds.index("reconnected") :] if e["type"] == "audio"]
