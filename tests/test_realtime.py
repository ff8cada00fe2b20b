"""``/v1/realtime`` of a real ``coda serve``, driven by the official ``openai`` SDK.

The SDK (``openai[realtime]``, pinned) connects with ``websocket_base_url`` and a
Bearer key, and parses every server event itself; the audio Coda sends back is
checked by an independent recognizer (Whisper base).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from coda.audio.decode import resample
from coda.audio.encode import encode_wav
from coda.audio.frames import pcm16, to_float
from tests.conftest import KEY, Say, Server, Transcribe, wer

RATE = 24000
CHUNKS_MS = (20, 40, 60, 100)
"""Appends cycle through these sizes: a client sends what its audio callback gives."""


def pcm24(audio16: np.ndarray, lead_ms: int = 300, tail_ms: int = 1500) -> bytes:
    """16 kHz speech as the 24 kHz PCM16 a Realtime client sends, with silence around it."""
    audio = resample(audio16, 16000, RATE)
    lead, tail = np.zeros(RATE * lead_ms // 1000), np.zeros(RATE * tail_ms // 1000)
    padded = np.concatenate([lead, audio, tail])
    return pcm16(padded)


async def append(connection: Any, pcm: bytes) -> None:
    """Append ``pcm`` in chunks of 20-100 ms."""
    start, index = 0, 0
    while start < len(pcm):
        size = RATE * 2 * CHUNKS_MS[index % len(CHUNKS_MS)] // 1000
        chunk = base64.b64encode(pcm[start : start + size]).decode()
        await connection.input_audio_buffer.append(audio=chunk)
        start, index = start + size, index + 1


@contextlib.asynccontextmanager
async def microphone(connection: Any) -> AsyncIterator[None]:
    """A live microphone: 20 ms of silence every 20 ms while the block runs (server VAD
    ends a turn on the silence it hears, as a person's microphone keeps sending it)."""
    silence = base64.b64encode(bytes(RATE * 2 // 50)).decode()

    async def capture() -> None:
        while True:
            await connection.input_audio_buffer.append(audio=silence)
            await asyncio.sleep(0.02)

    task = asyncio.create_task(capture())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(connection: Any, kind: str, seconds: float = 120) -> list[Any]:
    """Server events up to and including the first of type ``kind`` (or an error)."""
    received = []
    async with asyncio.timeout(seconds):
        async for event in connection:
            received.append(event)
            if event.type in (kind, "error"):
                return received
    raise AssertionError(f"the connection closed before {kind}")


def audio_of(events: list[Any]) -> np.ndarray:
    pcm = b"".join(
        base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta"
    )
    return to_float(np.frombuffer(pcm, "<i2"))


def transcript_of(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")


@pytest.fixture
async def realtime(server: Server) -> AsyncIterator[Any]:
    """A Realtime session with the SDK, past ``session.created``."""
    client = AsyncOpenAI(api_key=KEY, websocket_base_url=f"{server.ws_url}/v1")
    async with client.realtime.connect(model="coda") as connection:
        created = await connection.recv()
        assert created.type == "session.created"
        assert created.session.audio.input.format.rate == RATE
        assert created.session.audio.input.turn_detection.type == "server_vad"
        yield connection


async def text_item(connection: Any, text: str) -> None:
    await connection.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )


async def test_a_spoken_question_with_server_vad(
    realtime: Any, say: Say, transcribe: Transcribe
) -> None:
    question = "What is the capital of France?"
    await append(realtime, pcm24(await say(question)))
    async with microphone(realtime):
        events = await until(realtime, "response.done")
    kinds = [e.type for e in events]
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    assert [k for k in dict.fromkeys(kinds) if k in order] == order
    (heard,) = [e for e in events if e.type.endswith("input_audio_transcription.completed")]
    assert wer(question, heard.transcript) <= 0.1, heard.transcript
    done = events[-1]
    assert done.response.status == "completed"
    said = transcript_of(events)
    assert "paris" in said.lower()
    assert done.response.output[0].content[0].transcript == said
    audio = audio_of(events)
    assert len(audio) / RATE > 0.5
    listened = await transcribe(encode_wav(audio, RATE))
    # The words match the audio sent. The server's voice varies its prosody each run, and
    # the listener once heard its "Paris is" as "terraces": two words of six.
    assert wer(said, listened) <= 0.35, (said, listened)


async def test_manual_commit_and_response_create(realtime: Any, say: Say) -> None:
    await realtime.session.update(
        session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
    )
    updated = await until(realtime, "session.updated")
    assert updated[-1].session.audio.input.turn_detection is None
    await realtime.input_audio_buffer.commit()  # nothing appended yet
    (refused,) = await until(realtime, "error")
    assert refused.error.code == "input_audio_buffer_commit_empty"
    await append(realtime, pcm24(await say("How many legs does a spider have?"), 0, 300))
    await realtime.input_audio_buffer.commit()
    committed = await until(realtime, "input_audio_buffer.committed")
    assert committed[-1].item_id
    await realtime.response.create()
    events = await until(realtime, "response.done")
    (heard,) = [e for e in events if e.type.endswith("input_audio_transcription.completed")]
    assert heard.item_id == committed[-1].item_id and "spider" in heard.transcript.lower()
    assert events[-1].response.status == "completed"
    assert len(audio_of(events)) / RATE > 0.5 and transcript_of(events)


async def turns_counted(server: Server) -> float:
    """``coda_turns_total``, all modes, from the server's ``/metrics``."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        text = (await client.get("/metrics", headers=server.headers())).text
    return sum(float(v) for v in re.findall(r"^coda_turns_total\{[^}]*\} ([0-9.]+)$", text, re.M))


async def test_a_text_item_gives_an_audio_reply(
    realtime: Any, server: Server, transcribe: Transcribe
) -> None:
    before = await turns_counted(server)
    await text_item(realtime, "What is 17 times 23?")
    created = await until(realtime, "conversation.item.created")
    assert [e.type for e in created] == ["conversation.item.added", "conversation.item.created"]
    assert created[-1].item.content[0].text == "What is 17 times 23?"
    await realtime.response.create()
    events = await until(realtime, "response.done")
    said = transcript_of(events)
    assert "391" in said, said  # Coda's own calculator ran on the server
    listened = await transcribe(encode_wav(audio_of(events), RATE))
    assert "391" in listened.replace(",", "") or "three hundred" in listened.lower(), listened
    assert await turns_counted(server) == before + 1  # in /metrics, as every transport's turns


async def test_a_client_tool_round_trip(realtime: Any) -> None:
    thermostat = {
        "type": "function",
        "name": "set_thermostat",
        "description": "Set the home thermostat to a temperature in degrees",
        "parameters": {
            "type": "object",
            "properties": {"degrees": {"type": "number"}},
            "required": ["degrees"],
        },
    }
    await realtime.session.update(session={"type": "realtime", "tools": [thermostat]})
    updated = await until(realtime, "session.updated")
    assert [t.name for t in updated[-1].session.tools] == ["set_thermostat"]
    await text_item(realtime, "Please set the thermostat to 21 degrees.")
    await realtime.response.create()
    events = await until(realtime, "response.done")
    (call,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert call.name == "set_thermostat" and json.loads(call.arguments) == {"degrees": 21}
    assert events[-1].response.output[0].type == "function_call"
    assert not audio_of(events).size  # the client acts first; nothing is said yet
    await realtime.conversation.item.create(
        item={
            "type": "function_call_output",
            "call_id": call.call_id,
            "output": "The thermostat is now set to 21 degrees.",
        }
    )
    await realtime.response.create()
    answer = await until(realtime, "response.done")
    assert answer[-1].response.status == "completed"
    assert "21" in transcript_of(answer), transcript_of(answer)


async def test_response_cancel_stops_the_audio(realtime: Any) -> None:
    await text_item(realtime, "Tell me a long story about a dragon and a knight.")
    await realtime.response.create()
    events = await until(realtime, "response.output_audio.delta")
    await realtime.response.cancel()
    events += await until(realtime, "response.done")
    done = events[-1]
    assert done.response.status == "cancelled"
    assert done.response.status_details.reason == "client_cancelled"
    cancelled = done.response.id
    # Nothing more of it comes; the session goes on.
    await text_item(realtime, "What is the capital of Italy?")
    await realtime.response.create()
    after = await until(realtime, "response.done")
    assert all(getattr(e, "response_id", None) != cancelled for e in after)
    assert after[-1].response.status == "completed" and "rome" in transcript_of(after).lower()


async def test_an_unknown_event_is_an_error_and_the_session_goes_on(realtime: Any) -> None:
    await realtime.send({"type": "session.teleport", "event_id": "evt_unknown"})  # type: ignore[arg-type]
    (refused,) = await until(realtime, "error")
    assert refused.error.code == "unknown_event_type"
    assert refused.error.event_id == "evt_unknown"
    await realtime.send({"type": "conversation.item.delete", "item_id": "item_none"})
    (missing,) = await until(realtime, "error")
    assert missing.error.code == "item_not_found" and missing.error.param == "item_id"
    await realtime.session.update(session={"type": "realtime", "audio": {"output": {
        "format": {"type": "audio/pcmu"}}}})  # fmt: skip
    (unsupported,) = await until(realtime, "error")
    assert "PCM16 at 24 kHz" in unsupported.error.message
    await text_item(realtime, "Say hello.")
    await realtime.response.create()
    assert (await until(realtime, "response.done"))[-1].response.status == "completed"


async def test_a_wrong_key_is_refused(server: Server) -> None:
    client = AsyncOpenAI(api_key="not-a-key", websocket_base_url=f"{server.ws_url}/v1")
    with pytest.raises(ConnectionClosed) as closed:
        async with client.realtime.connect(model="coda") as connection:
            await connection.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "API key" in closed.value.rcvd.reason


async def test_beta_clients_get_the_beta_event_names(server: Server) -> None:
    url = f"{server.ws_url}/v1/realtime?model=coda"
    headers = {"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "realtime=v1"}
    async with connect(url, additional_headers=headers) as socket:
        assert json.loads(await socket.recv())["type"] == "session.created"
        await socket.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Hello!"}]}}))  # fmt: skip
        await socket.send(json.dumps({"type": "response.create"}))
        kinds = []
        async with asyncio.timeout(120):
            while not kinds or kinds[-1] != "response.done":
                kinds.append(json.loads(await socket.recv())["type"])
    assert "conversation.item.created" in kinds and "response.audio.delta" in kinds
    assert "response.audio_transcript.done" in kinds
    assert "response.output_audio.delta" not in kinds


async def test_speech_over_a_reply_cancels_and_truncates_it(realtime: Any, say: Say) -> None:
    await append(realtime, pcm24(await say("Tell me a long story about a dragon and a knight.")))
    async with microphone(realtime):
        events = await until(realtime, "response.output_audio.delta")
    reply_item = next(e.item.id for e in events if e.type == "response.output_item.added")
    await append(realtime, pcm24(await say("Wait, what time is it in Tokyo?"), 0))
    async with microphone(realtime):
        events += await until(realtime, "response.done")
        after: list[Any] = []
        for _ in range(3):  # "Wait," may be a turn of its own, cut off by the rest
            after += await until(realtime, "response.done")
            if _completed(after):
                break
    done = events[-1]
    assert done.response.status == "cancelled"
    assert done.response.status_details.reason == "turn_detected"
    (truncated,) = [e for e in events if e.type == "conversation.item.truncated"]
    assert truncated.item_id == reply_item and truncated.audio_end_ms > 0
    kept = done.response.output[0].content[0].transcript
    assert transcript_of(events).startswith(kept)  # what was heard, no more
    # The interruption is the next turn, answered in a response of its own.
    heard = [e.transcript for e in after if e.type.endswith("input_audio_transcription.completed")]
    assert "tokyo" in " ".join(heard).lower(), heard
    assert _completed(after)


def _completed(events: list[Any]) -> bool:
    last = events[-1] if events else None
    return last is not None and last.type == "response.done" and last.response.status == "completed"


async def test_without_create_response_the_words_wait_for_response_create(
    realtime: Any, say: Say
) -> None:
    detection = {"type": "server_vad", "create_response": False}
    await realtime.session.update(
        session={"type": "realtime", "audio": {"input": {"turn_detection": detection}}}
    )
    updated = await until(realtime, "session.updated")
    assert updated[-1].session.audio.input.turn_detection.create_response is False
    await append(realtime, pcm24(await say("What is the capital of Spain?")))
    async with microphone(realtime):
        heard = await until(realtime, "conversation.item.input_audio_transcription.completed")
        assert "spain" in heard[-1].transcript.lower()
        assert "response.created" not in [e.type for e in heard]
        await realtime.response.create()
        answer = await until(realtime, "response.done")
    assert [e.type for e in answer].count("response.created") == 1
    assert answer[-1].response.status == "completed"
    assert "madrid" in transcript_of(answer).lower(), transcript_of(answer)


async def test_without_interrupt_response_a_reply_is_kept_whole(realtime: Any, say: Say) -> None:
    detection = {"type": "server_vad", "interrupt_response": False}
    await realtime.session.update(
        session={"type": "realtime", "audio": {"input": {"turn_detection": detection}}}
    )
    await until(realtime, "session.updated")
    await append(realtime, pcm24(await say("Tell me a long story about a dragon and a knight.")))
    async with microphone(realtime):
        events = await until(realtime, "response.output_audio.delta")
    await append(realtime, pcm24(await say("What time is it in Tokyo?"), 0))
    async with microphone(realtime):
        events += await until(realtime, "response.done")
        after = await until(realtime, "response.done")
    assert events[-1].response.status == "completed"  # the story went on to its end
    assert "conversation.item.truncated" not in [e.type for e in events]
    heard = [e.transcript for e in after if e.type.endswith("input_audio_transcription.completed")]
    assert "tokyo" in " ".join(heard).lower() and after[-1].response.status == "completed"
