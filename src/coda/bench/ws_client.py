"""`coda bench latency --transport ws`: turns spoken into a running `coda serve`.

Each turn opens the live websocket of a new conversation, streams the clip as
20 ms PCM16 frames at real-time pace, plays the reply as it arrives (telling the
server what was played) and times, on the client's clock, the true end of speech
(known from the clip), the ``speech_ended`` message and the first reply audio.
Without ``--url`` the bench starts `coda serve` itself, as a separate process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import numpy as np
import websockets

from coda.audio.frames import FRONT_END_RATE, to_int16
from coda.bench.recordings import MIC_STEP
from coda.testing.ports import free_port

LEAD_SECONDS = 0.5
WARM_SECONDS = 6.0
TAIL_SECONDS = 2.5


@dataclass(frozen=True)
class Server:
    """Where a `coda serve` listens, and a key it accepts."""

    url: str
    api_key: str
    pid: int | None = None
    """The server's process, when it runs on this machine."""


@dataclass
class WsTurn:
    """One turn's client-side times (seconds after the true end of speech) and timings."""

    ended: float
    first_audio: float
    timings_ms: dict[str, float]


@contextlib.asynccontextmanager
async def started_server(
    extra_args: list[str], settings: dict[str, str] | None = None, key: str | None = None
) -> AsyncIterator[Server]:
    """Start `coda serve` on a free loopback port and wait until its models are loaded.

    Args:
        extra_args: Flags of ``serve``.
        settings: ``CODA_*`` variables (e.g. ``{"CODA_STORE": url}``).
        key: Its API key (default: a fresh one).
    """
    port, key = free_port(), key or secrets.token_urlsafe(16)
    env = {**os.environ, **(settings or {}), "CODA_API_KEYS": key}
    command = [sys.executable, "-c", "from coda.cli import main; main()", "serve"]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), *extra_args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(f"http://127.0.0.1:{port}", key, process.pid)
    try:
        await wait_ready(server, process)
        # Ready means answering; the LLM's other contexts load at the first idle
        # moments just after (a few seconds), as on a server that has been up a while.
        await asyncio.sleep(WARM_SECONDS)
        yield server
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()


async def wait_ready(server: Server, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``/ready`` until the server answers 200 (at most five minutes)."""
    deadline = time.monotonic() + 300
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"coda serve exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                answer = await client.get(
                    f"{server.url}/ready", headers={"X-API-Key": server.api_key}
                )
                if answer.status_code == 200:
                    return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{server.url} was not ready within 300 s")


async def ws_turn(
    server: Server, conversation: str, clip: np.ndarray, speech_end: float, mode: str, user: str
) -> WsTurn:
    """Speak ``clip`` into a new conversation as ``user``; time its end and first reply audio."""
    url = server.url.replace("http", "ws", 1) + f"/v1/conversations/{conversation}/stream"
    pcm = np.concatenate(
        [
            np.zeros(int(LEAD_SECONDS * FRONT_END_RATE)),
            clip,
            np.zeros(int(TAIL_SECONDS * FRONT_END_RATE)),
        ]
    )
    frames = to_int16(pcm)
    async with websockets.connect(
        f"{url}?rate={FRONT_END_RATE}&mode={mode}&user={user}",
        additional_headers={"X-API-Key": server.api_key},
    ) as socket:
        ready = json.loads(await socket.recv())
        assert ready["type"] == "ready", ready
        loop = asyncio.get_running_loop()
        started = loop.time()
        true_end = started + LEAD_SECONDS + speech_end
        seen: dict[str, float] = {}
        timings: dict[str, float] = {}

        async def send() -> None:
            for index, position in enumerate(range(0, len(frames), MIC_STEP)):
                await socket.send(frames[position : position + MIC_STEP].tobytes())
                await asyncio.sleep(max(0.0, started + (index + 1) * 0.02 - loop.time()))
            while "turn" not in seen:  # keep the microphone open, silent, until the reply
                await socket.send(np.zeros(MIC_STEP, "<i2").tobytes())
                await asyncio.sleep(0.02)

        async def receive() -> None:
            while "turn" not in seen or "audio" not in seen:
                message = await socket.recv()
                if isinstance(message, bytes):
                    samples = len(message) // 2  # played at once: the client has no speaker
                    await socket.send(json.dumps({"type": "played", "samples": samples}))
                    continue
                event = json.loads(message)
                kind = event["type"]
                if kind == "error":
                    raise RuntimeError(event["message"])
                seen.setdefault(kind, loop.time())
                if kind == "turn":
                    timings.update(event["timings_ms"])

        sender = asyncio.create_task(send())
        try:
            await asyncio.wait_for(receive(), timeout=120)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        with contextlib.suppress(websockets.ConnectionClosed):
            await socket.send(json.dumps({"type": "end"}))
    return WsTurn(seen["speech_ended"] - true_end, seen["audio"] - true_end, timings)
