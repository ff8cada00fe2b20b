"""`coda serve` as a real process on loopback: REST, the live websocket, security, metrics."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from coda.testing.moshi_peer import TinyMoshiServer
from tests.conftest import (
    KEY,
    LIMITED_KEY,
    MAX_UPLOAD,
    OTHER_KEY,
    RATE_LIMIT,
    Say,
    Server,
    Speak,
    serving,
    wer,
)


async def _frames(audio: np.ndarray, rate: int = 16000, ms: int = 20) -> list[bytes]:
    step = rate * ms // 1000
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
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


async def test_twenty_concurrent_sockets(server: Server) -> None:
    async def session(index: int) -> int:
        url = f"{server.ws_url}/v1/conversations/many-{index}/stream?rate=16000&api_key={KEY}"
        async with connect(url) as socket:
            ready = json.loads(await socket.recv())
            assert ready["type"] == "ready"
            for _ in range(25):  # half a second of quiet room noise
                noise = np.random.default_rng(index).normal(0, 300, 320).astype("<i2")
                await socket.send(noise.tobytes())
            await socket.send(json.dumps({"type": "end"}))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code

    codes = await asyncio.gather(*(session(i) for i in range(20)))
    assert codes == [1000] * 20


async def test_rate_limit_is_per_key(server: Server) -> None:
    # The bucket refills while the requests go out (5 a second), so the first 429
    # comes after at least RATE_LIMIT requests, however long they take; the loop
    # stops at it (the limiter's arithmetic is tested with an injected clock).
    async with httpx.AsyncClient(base_url=server.url) as client:
        statuses: list[int] = []
        while 429 not in statuses and len(statuses) < 4 * RATE_LIMIT:
            answer = await client.get("/ready", headers=server.headers(LIMITED_KEY))
            statuses.append(answer.status_code)
        assert 429 in statuses and statuses.index(429) >= RATE_LIMIT - 5
        limited = await client.get("/ready", headers=server.headers(LIMITED_KEY))
        assert limited.status_code == 429 and "Retry-After" in limited.headers
        assert (await client.get("/ready", headers=server.headers())).status_code == 200


def test_logs_are_json_with_conversation_ids(server: Server) -> None:
    entries = [
        json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
    ]
    assert entries and all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    opened = [e for e in entries if e["message"].startswith("session opened")]
    assert {e["conversation_id"] for e in opened} >= {"ws-france", "healthy"}


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
