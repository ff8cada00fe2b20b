"""10,000 hostile inputs to a running ``coda serve``: only typed errors, never a 5xx.

A seeded generator mutates every way in: JSON bodies (3,000), query strings and
paths (2,000), audio uploads (2,000), and websocket frames (3,000, on Coda's
live socket and on ``/v1/realtime``). Every HTTP answer is below 500 and, when
it is an error, a JSON object that says what was wrong; every websocket ends
with a protocol close code (1000, 1003, 1008, 1009), never 1011 or a dropped
connection; the server logs no error. Afterwards it is alive and answers a
normal turn.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import struct
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from coda.audio.encode import encode_wav
from tests.conftest import HANG_GUARD_SECONDS, KEY, OTHER_KEY, SEED, Server, serving

COUNTS = {"json": 3000, "query": 2000, "audio": 2000, "live": 1500, "realtime": 1500}
WORKERS = 4
"""HTTP requests in flight at once."""
PROTOCOL_CLOSES = {1000, 1003, 1008, 1009}
ABNORMAL = 1006
"""The client's code for a connection that ended without a close frame."""

HOSTILE = [
    "", " ", "\x00", "\n", "a" * 129, "a" * 5000, "é", "😀" * 40, "../../etc/passwd",
    "%00", "%2e%2e%2f", "null", "-1", "0", "1e309", "NaN", "<script>alert(1)</script>",
    "' OR 1=1 --", "\u202e", "\ud7ff", "kitchen", "fuzz-json", "x" * 128, "a b", "a/b",
    "llm_enhanced", "moshi_only", "adaptive", "hybrid", "audio/wav", "{}", "[]",
]  # fmt: skip


def value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of any type, often hostile."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice(HOSTILE)
    if kind == 1:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(12)))
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 10**30, 3.5, -0.0, 1e308])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind in (4, 5):
        return rng.choice(HOSTILE[:20])
    if kind == 6:
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(FIELDS): value(rng, depth + 1) for _ in range(rng.randrange(4))}


FIELDS = ["text", "user", "message_id", "mode", "conversation_id", "too_long", "pace",
          "warmth", "samples", "type", "audio", "item", "session", "event_id", "x"]  # fmt: skip


def json_body(rng: random.Random) -> bytes:
    """A body for a JSON endpoint: an object with hostile fields, or not JSON at all."""
    shape = rng.randrange(10)
    if shape == 0:
        return rng.choice([b"", b"{", b"[1,", b"\xff\xfe", b"null", b"{}" * 10, b'{"text": }'])
    if shape == 1:  # deep nesting: a parser's recursion
        depth = rng.choice([100, 1000, 50000])
        return b"[" * depth + b"]" * depth
    if shape == 2:
        return json.dumps(value(rng)).encode()
    body = {rng.choice(FIELDS): value(rng) for _ in range(rng.randrange(1, 5))}
    if rng.random() < 0.6:
        body["text"] = value(rng)
    if isinstance(body.get("text"), str) and body["text"].strip() and rng.random() < 0.9:
        body["x"] = 1  # a valid turn costs seconds: most are made invalid (extra field)
    return json.dumps(body).encode()


def conversation(rng: random.Random, own: str) -> str:
    """A path segment: the key's own conversation, another's, or a hostile id."""
    choice = rng.randrange(4)
    if choice == 0:
        return own
    if choice == 1:
        return "theirs"  # OTHER_KEY's: as if it did not exist
    return urllib.parse.quote(rng.choice(HOSTILE) or "%", safe="")


def wav(rng: random.Random) -> bytes:
    """An upload: a WAV mutated in its header or body, truncated, or no audio at all."""
    rate = rng.choice([16000, 8000, 44100, 1, 3, 96000, 192000])
    samples = rng.choice([0, 1, 80, 4000])
    audio = np.random.default_rng(rng.randrange(2**32)).normal(0, 0.001, samples)
    data = bytearray(encode_wav(audio.astype(np.float32), max(rate, 8000)))
    shape = rng.randrange(8)
    if shape == 0:
        return bytes(rng.randbytes(rng.randrange(2000)))
    if shape == 1:
        for _ in range(rng.randrange(1, 6)):  # header bytes flipped
            data[rng.randrange(min(44, len(data)))] = rng.randrange(256)
    elif shape == 2:
        return bytes(data[: rng.randrange(len(data))])
    elif shape == 3:  # declared sizes and rates that lie
        struct.pack_into("<I", data, 40, rng.choice([0, 2**31, 2**32 - 1]))
        struct.pack_into("<I", data, 24, rng.choice([0, 1, 2**32 - 1]))
    elif shape == 4:  # channels, bits
        struct.pack_into("<HH", data, 22, rng.choice([0, 3, 65535]), 0)
    elif shape == 5:
        nan = np.array([np.nan, np.inf, -np.inf] * 100, np.float32).tobytes()
        return bytes(data[:44]) + nan
    return bytes(data)


AUDIO_TYPES = ["audio/wav", "audio/x-wav", "audio/ogg", "audio/mpeg", "audio/flac",
               "application/octet-stream", "audio/wav; rate=8000", "text/plain", ""]  # fmt: skip


def http_case(rng: random.Random, kind: str) -> tuple[str, str, dict[str, str], bytes]:
    """One request: method, path with query, headers, body."""
    headers = {"X-API-Key": KEY if rng.random() < 0.95 else rng.choice(["", "wrong", "w" * 500])}
    own = f"fuzz-{kind}"
    if kind == "json":
        path = rng.choice(
            [
                "/v1/conversations",
                f"/v1/conversations/{conversation(rng, own)}/messages",
                f"/v1/conversations/{conversation(rng, own)}/feedback",
            ]
        )
        headers["Content-Type"] = rng.choice(["application/json"] * 4 + ["text/plain", ""])
        return "POST", path, headers, json_body(rng)
    if kind == "audio":
        headers["Content-Type"] = rng.choice(AUDIO_TYPES)
        return "POST", f"/v1/conversations/{conversation(rng, own)}/messages", headers, wav(rng)
    params = {
        rng.choice(["limit", "mode", "user", "message_id", "api_key", "x", "rate"]): str(value(rng))
        for _ in range(rng.randrange(1, 4))
    }
    query = urllib.parse.urlencode(params)
    method, path = rng.choice(
        [
            ("GET", f"/v1/conversations/{conversation(rng, own)}/messages"),
            ("POST", f"/v1/conversations/{conversation(rng, own)}/messages"),
            ("DELETE", f"/v1/conversations/{conversation(rng, 'fuzz-ended')}"),
            ("GET", "/ready"),
            ("GET", "/metrics"),
        ]
    )
    body = b'{"text": ""}' if method == "POST" else b""
    headers["Content-Type"] = "application/json"
    return method, f"{path}?{query}", headers, body


def typed(answer: httpx.Response) -> bool:
    """An error answer says what was wrong, as JSON (``detail`` or ``error``)."""
    if answer.status_code < 400:
        return True
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("detail") or body.get("error"))


async def fuzz_http(server: Server, rng: random.Random, kind: str, count: int) -> list[str]:
    """``count`` requests of ``kind``; what went wrong (5xx, or untyped errors)."""
    cases = [http_case(rng, kind) for _ in range(count)]
    problems: list[str] = []
    queue: asyncio.Queue[tuple[str, str, dict[str, str], bytes]] = asyncio.Queue()
    for case in cases:
        queue.put_nowait(case)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            method, path, headers, body = queue.get_nowait()
            try:
                answer = await client.request(method, path, headers=headers, content=body)
            except httpx.TransportError as error:
                problems.append(f"{method} {path[:99]} {headers} {body[:60]!r} -> {error!r}")
                continue
            if answer.status_code >= 500 or not typed(answer):
                problems.append(
                    f"{method} {path[:120]} -> {answer.status_code} {answer.text[:200]}"
                )

    # Valid text among the cases is a real turn, queued behind the other workers':
    # the client waits as long as a hang takes, not as long as a fast machine would.
    # One failing worker stops the others.
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=HANG_GUARD_SECONDS) as client,
        asyncio.TaskGroup() as workers,
    ):
        for _ in range(WORKERS):
            workers.create_task(worker(client))
    return problems


def live_frame(rng: random.Random) -> str | bytes:
    """A frame for Coda's live socket: audio, protocol JSON, or neither."""
    shape = rng.randrange(6)
    if shape == 0:  # PCM16, sometimes of odd length
        return rng.randbytes(rng.choice([0, 1, 3, 320, 640, 641, 8192, 9000]))
    if shape == 1:
        return rng.choice(["", "{", "[]", "null", "x" * 9000, '{"type": 1}'])
    kind = rng.choice(["played", "played", "end", "config", "text", "?", None])
    fields = {rng.choice(FIELDS): value(rng) for _ in range(rng.randrange(3))}
    return json.dumps({"type": kind, **fields})


def realtime_event(rng: random.Random) -> str | bytes:
    """A Realtime client event with hostile fields (never one that starts a reply)."""
    if rng.random() < 0.05:
        return rng.choice([b"\x00\x01", "{", "[]", "x" * 300000])
    kind = rng.choice(
        [
            "session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
            "input_audio_buffer.clear", "conversation.item.create", "conversation.item.delete",
            "conversation.item.truncate", "conversation.item.retrieve", "response.cancel",
            "transcription_session.update", "nope", 7,
        ]
    )  # fmt: skip
    event: dict[str, Any] = {"type": kind, "event_id": value(rng)}
    for _ in range(rng.randrange(4)):
        event[rng.choice(["item", "session", "audio", "item_id", "content_index", "audio_end_ms",
                          "previous_item_id", "response_id"])] = value(rng)  # fmt: skip
    if kind == "input_audio_buffer.append" and rng.random() < 0.5:
        event["audio"] = base64.b64encode(rng.randbytes(rng.choice([0, 1, 480, 4801]))).decode()
    if kind == "session.update" and isinstance(event.get("session"), dict):
        event["session"].pop("turn_detection", None)  # keep VAD off: noise is not a turn
    return json.dumps(event)


async def fuzz_socket(
    url: str,
    frames: list[str | bytes],
    opening: list[str],
    closing: str | None,
) -> tuple[int | None, list[dict[str, Any]]]:
    """Send ``frames`` on one socket; its close code and the JSON events it sent."""
    events: list[dict[str, Any]] = []
    async with connect(url, max_size=None, open_timeout=60) as socket:

        async def read(socket: ClientConnection) -> None:
            with contextlib.suppress(ConnectionClosed):
                async for message in socket:
                    if isinstance(message, str):
                        events.append(json.loads(message))

        reader = asyncio.create_task(read(socket))
        try:
            for frame in [*opening, *frames] + ([closing] if closing else []):
                await socket.send(frame)
            if closing is None:
                await socket.close()
            async with asyncio.timeout(60):
                await asyncio.shield(reader)
        except ConnectionClosed:
            async with asyncio.timeout(60):
                await asyncio.shield(reader)
        code = socket.close_code
    return code, events


async def fuzz_ws(
    server: Server, rng: random.Random, kind: str, count: int
) -> tuple[list[str], int]:
    """``count`` frames of ``kind`` over as many sockets as it takes; problems, sockets."""
    problems: list[str] = []
    sent = sockets = 0
    make: Callable[[random.Random], str | bytes] = live_frame if kind == "live" else realtime_event
    while sent < count:
        frames = [make(rng) for _ in range(min(count - sent, rng.randrange(1, 25)))]
        sent += len(frames)
        sockets += 1
        if kind == "live":
            query = urllib.parse.urlencode(
                {"rate": rng.choice(["16000", "16000", "48000", "12345", "x", "-1"]),
                 "mode": rng.choice(["llm_enhanced", "adaptive", "?"]), "api_key": KEY}
            )  # fmt: skip
            url = f"{server.ws_url}/v1/conversations/fuzz-live/stream?{query}"
            opening: list[str] = []
            closing: str | None = json.dumps({"type": "end"})
        else:
            url = f"{server.ws_url}/v1/realtime?api_key={KEY}&conversation_id=fuzz-rt-{sockets}"
            opening = [json.dumps({"type": "session.update", "session": {"turn_detection": None}})]
            closing = None
        code, events = await fuzz_socket(url, frames, opening, closing)
        if code == ABNORMAL:
            # No close frame reached the client: a server fault, or the race in which
            # the client's last frames meet the server's close and the reset drops it.
            # A fault happens again for the same frames; the race almost never does.
            code, events = await fuzz_socket(url, frames, opening, closing)
        if code not in PROTOCOL_CLOSES:
            problems.append(f"{kind} socket closed {code}: {frames[:3]!r:.300}")
        for event in (e for e in events if e.get("type") == "error"):
            # Coda's socket: {"code", "message"}; Realtime: {"error": {"type", "message"}}.
            said = event if kind == "live" else event.get("error")
            if not isinstance(said, dict) or not said.get("code" if kind == "live" else "type"):
                problems.append(f"untyped error event {event}")
    return problems, sockets


@pytest.mark.slow
async def test_ten_thousand_hostile_inputs_get_typed_errors_only(tmp_path: Path) -> None:
    settings = (
        "rate_limit_per_minute = 1000000\nauth_failures_per_minute = 1000000\n"
        "max_sessions_per_key = 64\n"
    )
    rng = random.Random(SEED)
    with serving(tmp_path, settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            for cid, key in [(f"fuzz-{k}", KEY) for k in ("json", "query", "audio", "ended")] + [
                ("theirs", OTHER_KEY)
            ]:
                made = await client.post(
                    "/v1/conversations", json={"conversation_id": cid}, headers={"X-API-Key": key}
                )
                assert made.status_code == 201, made.text
        problems: list[str] = []
        for kind in ("json", "query", "audio"):
            problems += await fuzz_http(server, rng, kind, COUNTS[kind])
        sockets = 0
        for kind in ("live", "realtime"):
            found, opened = await fuzz_ws(server, rng, kind, COUNTS[kind])
            problems += found
            sockets += opened
        assert server.process.poll() is None, "the server died"
        async with httpx.AsyncClient(base_url=server.url, timeout=HANG_GUARD_SECONDS) as client:
            assert (await client.get("/health")).status_code == 200
            answer = await client.post(
                "/v1/conversations/after-fuzz/messages",
                json={"text": "What is the capital of France?"},
                headers=server.headers(),
            )
        assert answer.status_code == 200 and "paris" in answer.json()["text"].lower()
        errors = [
            line
            for line in server.log.read_text().splitlines()
            if '"level": "ERROR"' in line or '"level": "CRITICAL"' in line
        ]
    print(f"fuzz cases {sum(COUNTS.values())}, sockets {sockets}, problems {len(problems)}")
    assert sum(COUNTS.values()) == 10_000
    assert problems == [], "\n".join(problems[:30])
    assert errors == [], "\n".join(errors[:10])
