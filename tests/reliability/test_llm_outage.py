"""The remote LLM server dies mid-turn: each mode does what it promises, and the call goes on.

``coda serve`` talks to a real ``llama_cpp.server`` (its only LLM) and to the
genuine ``moshi.server`` with tiny random weights. Each live session speaks a
turn with the LLM up, then one during which the LLM server is killed (at the
turn's transcript, as the LLM is asked), then one more, on the same websocket:

- ``llm_enhanced`` has no other way to answer: the turn fails with
  ``LLMIntegrationError`` (the outage itself, not the ``voice_timeout_seconds``
  timeout), and once the server is back the session answers again;
- ``adaptive`` and ``hybrid`` answer through Moshi while the LLM is down.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from coda.audio.encode import encode_wav
from coda.bench.load import Reply, TurnError, speak_turn
from coda.testing.moshi_peer import TinyMoshiServer
from coda.testing.ports import free_port
from tests.conftest import KEY, Say, Server, serving, start_llama_server, stop

QUESTIONS = (
    "What is the capital city of France, do you know?",
    "What is two plus two?",
    "What is five plus five?",
)
"""Questions that want the strongest answer: ``adaptive`` gives them to a mode with the LLM."""


class LLMServer:
    """A ``llama_cpp.server`` on one port, killed and started again by the tests."""

    def __init__(self, model: Path, folder: Path) -> None:
        self.model, self.log, self.port = model, folder / "llama.log", free_port()
        self.process = start_llama_server(model, self.port, self.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # SIGKILL: connections drop mid-stream
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.process = start_llama_server(self.model, self.port, self.log)

    def ensure_up(self) -> None:
        if self.process.poll() is not None:
            self.restart()


@pytest.fixture(scope="module")
def llm(qwen_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMServer]:
    server = LLMServer(qwen_path, tmp_path_factory.mktemp("outage-llm"))
    yield server
    stop(server.process)


@pytest.fixture(scope="module")
def coda(
    llm: LLMServer, moshi_server: TinyMoshiServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    settings = f'llm = "openai"\nllm_url = "{llm.url}"\nmoshi_url = "{moshi_server.url}"\n'
    with serving(tmp_path_factory.mktemp("outage-coda"), settings) as server:
        yield server


@pytest.fixture(scope="module")
async def questions(say: Say) -> list[Any]:
    return [await say(q) for q in QUESTIONS]


@asynccontextmanager
async def session(coda: Server, cid: str, mode: str) -> AsyncIterator[ClientConnection]:
    url = f"{coda.ws_url}/v1/conversations/{cid}/stream?rate=16000&mode={mode}"
    async with connect(url, additional_headers=coda.headers(KEY)) as socket:
        assert json.loads(await socket.recv())["type"] == "ready"
        yield socket


async def killed_during(socket: ClientConnection, clip: Any, llm: LLMServer) -> Reply:
    """Speak ``clip``; the LLM server dies as the turn's words are recognized."""

    def at_transcript(event: dict[str, Any]) -> None:
        if event["type"] == "transcript":
            llm.kill()

    return await speak_turn(socket, clip, on_event=at_transcript)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["adaptive", "hybrid"])
async def test_a_mode_with_a_fallback_answers_through_moshi(
    coda: Server, llm: LLMServer, questions: list[Any], mode: str
) -> None:
    llm.ensure_up()
    async with session(coda, f"outage-{mode}", mode) as socket:
        replies = [await speak_turn(socket, questions[0])]
        replies.append(await killed_during(socket, questions[1], llm))
        replies.append(await speak_turn(socket, questions[2]))  # the LLM is still down
    for reply in replies:  # each turn said, and stored with the user's words
        assert reply.event("stored")["user_text"] and reply.event("turn")["reply_text"]
    # The same words as a REST upload while the LLM is down: its metadata shows the
    # cascade tried and failed, and Moshi chosen.
    async with httpx.AsyncClient(base_url=coda.url, timeout=120) as client:
        answer = await client.post(
            f"/v1/conversations/outage-{mode}/messages",
            params={"mode": mode},
            content=encode_wav(questions[2], 16000),
            headers={**coda.headers(), "Content-Type": "audio/wav"},
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if body["mode"] == "moshi_only":
        # Adaptive may already have measured the hybrid turns that waited on a dead
        # LLM as slower than Moshi alone (a busy machine makes them so): it then goes
        # straight to Moshi, which is the fallback asked for, never to the cascade.
        assert mode == "adaptive", body
        assert body["text"] and body["audio_wav_base64"], body
        return
    hybrid = body["metadata"]["hybrid"]
    failed = {c["responder"]: c["error"] for c in hybrid["candidates"] if c["error"]}
    assert [e.split(":")[0] for e in failed.values()] == ["LLMIntegrationError"], hybrid
    assert hybrid["chosen"].startswith("moshi"), hybrid


@pytest.mark.slow
async def test_llm_enhanced_fails_typed_and_the_session_goes_on(
    coda: Server, llm: LLMServer, questions: list[Any]
) -> None:
    llm.ensure_up()
    async with session(coda, "outage-cascade", "llm_enhanced") as socket:
        first = await speak_turn(socket, questions[0])
        assert "paris" in first.event("turn")["reply_text"].lower()
        with pytest.raises(TurnError) as failed:
            await killed_during(socket, questions[1], llm)
        # The outage, said at once: not the voice timeout, and nothing internal.
        assert failed.value.event["error"] == "LLMIntegrationError", failed.value.event
        assert "127.0.0.1" not in failed.value.event["message"]
        llm.restart()
        after = await speak_turn(socket, questions[2])
        turn = after.event("turn")
        assert turn["mode"] == "llm_enhanced" and re.search(r"\b(10|ten)\b", turn["reply_text"])
