"""``coda wyoming`` as a real process, driven by the ``wyoming`` package's own client.

Home Assistant's Assist talks to it the same way: ``describe``, speech to text
(``transcribe`` + audio), text to speech (``synthesize``) and the conversation
(``transcript`` → ``handled``, as Home Assistant sends a handle program the
user's words).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import wave
from collections.abc import Iterator

import jiwer
import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.handle import Handled
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize

from coda.bench.latency import PROMPTS, TYPED
from coda.bench.recordings import sound_dir
from coda.testing.ports import free_port
from tests.conftest import normalize, wer

WER_BOUND = 0.2
"""Whisper tiny.en on Allison's 8 kHz telephone prompts, corpus WER (measured here: 0.04)."""


@pytest.fixture(scope="module")
def wyoming_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``coda wyoming`` on a free loopback port, with a store of its own."""
    folder = tmp_path_factory.mktemp("wyoming")
    uri = f"tcp://127.0.0.1:{free_port()}"
    log = folder / "wyoming.log"
    command = [sys.executable, "-m", "coda.cli", "--store", str(folder / "coda.sqlite3"),
               "--llm", "llamacpp", "wyoming", "--uri", uri]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
    try:
        deadline = time.monotonic() + 180
        while b"listening" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"coda wyoming did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


async def exchange(uri: str, *events: Event, until: str | None = None) -> list[Event]:
    """Send ``events`` on a fresh connection; read the answers up to one of type ``until``."""
    answers: list[Event] = []
    async with AsyncClient.from_uri(uri) as client:
        for event in events:
            await client.write_event(event)
        async with asyncio.timeout(120):
            while until is not None:
                answer = await client.read_event()
                assert answer is not None, "the server closed the connection"
                answers.append(answer)
                if answer.type in (until, "error"):
                    break
    return answers


def audio_events(pcm: bytes, rate: int, chunk_samples: int = 1024) -> list[Event]:
    """``audio-start``, 16-bit mono chunks, ``audio-stop``."""
    step = chunk_samples * 2
    chunks = [
        AudioChunk(rate=rate, width=2, channels=1, audio=pcm[i : i + step]).event()
        for i in range(0, len(pcm), step)
    ]
    return [AudioStart(rate=rate, width=2, channels=1).event(), *chunks, AudioStop().event()]


async def test_describe_lists_what_it_serves(wyoming_uri: str) -> None:
    (answer,) = await exchange(wyoming_uri, Describe().event(), until="info")
    info = Info.from_event(answer)
    assert [p.name for p in info.asr] == ["coda-stt"] and info.asr[0].installed
    assert info.asr[0].models[0].languages == ["en"]
    assert info.tts[0].voices[0].name == "en_US-joe-medium"
    assert [p.name for p in info.handle] == ["coda"]


async def test_real_recordings_are_transcribed(wyoming_uri: str) -> None:
    heard = []
    for name in PROMPTS:
        with wave.open(str(sound_dir() / f"{name}.wav")) as recording:
            rate, pcm = recording.getframerate(), recording.readframes(recording.getnframes())
        answers = await exchange(
            wyoming_uri, Transcribe().event(), *audio_events(pcm, rate), until="transcript"
        )
        heard.append(Transcript.from_event(answers[-1]).text)
    error_rate = jiwer.wer([normalize(t) for t in TYPED], [normalize(h) for h in heard])
    print(f"Wyoming ASR on {len(PROMPTS)} real recordings: WER {error_rate:.2f}")
    assert error_rate <= WER_BOUND, list(zip(TYPED, heard, strict=True))


async def test_synthesized_speech_says_the_words(wyoming_uri: str) -> None:
    text = "The kitchen light is on, and the front door is locked."
    answers = await exchange(wyoming_uri, Synthesize(text=text).event(), until="audio-stop")
    start = AudioStart.from_event(answers[0])
    assert (start.width, start.channels) == (2, 1) and answers[-1].type == "audio-stop"
    pcm = b"".join(AudioChunk.from_event(a).audio for a in answers if a.type == "audio-chunk")
    assert len(pcm) / 2 / start.rate > 1.5
    answers = await exchange(
        wyoming_uri, Transcribe().event(), *audio_events(pcm, start.rate), until="transcript"
    )
    assert wer(text, Transcript.from_event(answers[-1]).text) <= 0.2


async def test_a_conversation_through_handle_events(wyoming_uri: str) -> None:
    context = {"conversation_id": "ha-kitchen"}
    (tool,) = await exchange(
        wyoming_uri, Transcript("What is 17 times 23?", context=context).event(), until="handled"
    )
    handled = Handled.from_event(tool)
    assert handled.text is not None and "391" in handled.text
    assert handled.context == context
    await exchange(wyoming_uri, Transcript("My sister lives in Lisbon.", context=context).event(),
                   until="handled")  # fmt: skip
    (recalled,) = await exchange(
        wyoming_uri, Transcript("Where does my sister live?", context=context).event(),
        until="handled",
    )  # fmt: skip
    assert "lisbon" in (Handled.from_event(recalled).text or "").lower()


async def test_bad_events_get_errors_and_the_link_goes_on(wyoming_uri: str) -> None:
    stray = AudioChunk(rate=16000, width=2, channels=1, audio=bytes(640)).event()
    async with AsyncClient.from_uri(wyoming_uri) as client:
        for event in (stray, Event(type="mystery"), Describe().event()):
            await client.write_event(event)
        async with asyncio.timeout(30):
            answers = [await client.read_event() for _ in range(3)]
    assert [a.type if a else None for a in answers] == ["error", "error", "info"]
    codes = [Error.from_event(a).code for a in answers[:2] if a is not None]
    assert codes == ["ValidationError", "unsupported"]
