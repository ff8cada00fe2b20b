"""Session fixtures: each real model is loaded once, each real peer started once."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jiwer
import numpy as np
import pytest

from coda.audio.decode import decode_audio, resample
from coda.audio.encode import encode_wav
from coda.providers.stt.faster_whisper import FasterWhisperSTT
from coda.providers.tts.piper import PiperTTS
from coda.server.security import digest
from coda.testing.moshi_peer import TinyMoshiServer
from coda.testing.ports import free_port
from coda.testing.postgres import ThrowawayPostgres
from coda.voice import (
    LLMConfig,
    StreamingConfig,
    STTConfig,
    TTSConfig,
    VoiceConfig,
    VoiceManager,
)

HANG_GUARD_SECONDS = 600.0
"""Time limits in tests catch hangs; they never expect a speed."""

Speak = Callable[[str], Awaitable[bytes]]
Say = Callable[[str], Awaitable[np.ndarray]]
Transcribe = Callable[[bytes], Awaitable[str]]


def normalize(text: str) -> str:
    """Lower-case words without punctuation, for word error rates."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` after normalization."""
    return float(jiwer.wer(normalize(reference), normalize(hypothesis)))


@pytest.fixture(scope="session")
def moshi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tiny Moshi model is built (once)."""
    return tmp_path_factory.mktemp("moshi")


@pytest.fixture(scope="session")
def moshi_server(moshi_dir: Path) -> Iterator[TinyMoshiServer]:
    """The genuine ``moshi.server`` with tiny random weights, started once for the session."""
    with TinyMoshiServer(moshi_dir, free_port()) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[ThrowawayPostgres]:
    """A real PostgreSQL server (Debian's), in a throwaway cluster for the session."""
    with ThrowawayPostgres() as cluster:
        yield cluster


_databases = iter(range(1, 10_000))


@pytest.fixture
def pg_url(postgres: ThrowawayPostgres) -> str:
    """A fresh, empty database of the session's PostgreSQL server."""
    return postgres.create_database(f"test_{next(_databases)}")


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


SEED = 20261125


@pytest.fixture(scope="session")
def base_config(store_dir: Path) -> VoiceConfig:
    """The development config ("auto" LLM) with a private store and a fixed sampling seed.

    "auto" probes a closed port for Ollama, so the embedded model answers. The seed
    makes a reply reproducible for the same words, and Piper without sampling noise
    makes its audio reproducible too, so what the listener hears is the same each run.
    """
    closed = f"http://127.0.0.1:{free_port()}"  # no Ollama here, even on a developer's machine
    return VoiceConfig(
        llm=LLMConfig(provider="auto", base_url=closed, seed=SEED),
        tts=TTSConfig(noise_scale=0.0, noise_w_scale=0.0),
        store_path=str(store_dir / "coda.sqlite3"),
        # A turn's time limit catches hangs only: a loaded machine is slow, not broken.
        streaming=StreamingConfig(turn_timeout_seconds=HANG_GUARD_SECONDS),
    )


@pytest.fixture(scope="session")
async def manager(base_config: VoiceConfig) -> AsyncIterator[VoiceManager]:
    """One VoiceManager with the real embedded models for the whole session."""
    voice = VoiceManager(base_config)
    await voice.initialize()
    yield voice
    await voice.cleanup()


@pytest.fixture(scope="session")
async def user_voice() -> AsyncIterator[PiperTTS]:
    """The simulated user: the embedded voice at its natural rate, the same audio every time."""
    tts = PiperTTS(TTSConfig(speaking_rate=1.0, noise_scale=0.0, noise_w_scale=0.0))
    await tts.load()
    yield tts
    await tts.close()


@pytest.fixture(scope="session")
def speak(user_voice: PiperTTS) -> Speak:
    """A user's spoken question, as WAV bytes."""

    async def run(text: str) -> bytes:
        speech = await user_voice.synthesize(text)
        return encode_wav(speech.samples, speech.sample_rate)

    return run


@pytest.fixture(scope="session")
def say(user_voice: PiperTTS) -> Say:
    """The simulated user's speech as float32 at 16 kHz (the front end's rate)."""

    async def run(text: str) -> np.ndarray:
        speech = await user_voice.synthesize(text)
        return resample(speech.samples, speech.sample_rate, 16000)

    return run


@pytest.fixture(scope="session")
async def listener(manager: VoiceManager) -> AsyncIterator[FasterWhisperSTT]:
    """An independent, more accurate recognizer (Whisper base) that checks what Coda said.

    Judging the reply audio with a second, larger model keeps the check independent
    of the recognizer under test (tiny.en hears Piper's "France is" as "Francis").
    """
    stt = FasterWhisperSTT(
        STTConfig(model="base", beam_size=5), manager.config.resolved_model_dir()
    )
    await stt.load()
    yield stt
    await stt.close()


@pytest.fixture(scope="session")
def transcribe(listener: FasterWhisperSTT) -> Transcribe:
    """Recognize the words in WAV bytes with the independent listener."""

    async def run(wav: bytes) -> str:
        decoded = decode_audio(wav, listener.sample_rate)
        return (await listener.transcribe(decoded.samples)).text

    return run


@pytest.fixture(scope="session")
def qwen_path(manager: VoiceManager) -> Path:
    """The assembled embedded GGUF (the manager's initialize() verified it)."""
    return manager.config.resolved_model_dir() / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def start_llama_server(
    model: Path, port: int, log: Path, threads: int = 2
) -> subprocess.Popen[bytes]:
    """``python -m llama_cpp.server`` on loopback ``port``, once it lists its model."""
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--model_alias", "qwen-0.5b", "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", str(threads),
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return process
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("llama_cpp.server did not start within 120 s")
        time.sleep(0.3)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process``; kill it if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def llama_server(qwen_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real OpenAI-compatible server: ``python -m llama_cpp.server`` on loopback."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    process = start_llama_server(qwen_path, port, log)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


# -- the server (`coda serve` as a real process) ------------------------------------------

KEY = "test-key-0123456789"
OTHER_KEY = "other-key-0123456789"
LIMITED_KEY = "limited-key-0123456789"
RATE_LIMIT = 300
MAX_UPLOAD = 512 * 1024


@dataclass
class Server:
    """A running ``coda serve``."""

    url: str
    ws_url: str
    process: subprocess.Popen[bytes]
    log: Path
    store: str
    """The SQLite file's path, or the PostgreSQL URL."""

    def headers(self, key: str = KEY) -> dict[str, str]:
        return {"X-API-Key": key}


@contextlib.contextmanager
def serving(
    folder: Path, extra_settings: str = "", store: str | None = None, rate_limit: int = RATE_LIMIT
) -> Iterator[Server]:
    """``coda serve`` as a real process, with its own store (or ``store``), keys and limits."""
    running = launch(folder, free_port(), extra_settings, store, rate_limit)
    try:
        wait_ready(running)
        yield running
    finally:
        running.process.terminate()
        try:
            running.process.wait(15)
        except subprocess.TimeoutExpired:
            running.process.kill()


def launch(
    folder: Path,
    port: int,
    extra_settings: str = "",
    store: str | None = None,
    rate_limit: int = RATE_LIMIT,
    wrap: tuple[str, ...] = (),
) -> Server:
    """Start ``coda serve`` on ``port`` with the test keys and limits (not yet ready).

    Launched again on the same folder and port, it is the same server restarted.
    ``wrap`` is a command that runs it (a tracer).
    """
    defaults = {
        "api_key_hashes": f'["{digest(LIMITED_KEY)}"]',
        "rate_limit_per_minute": str(rate_limit),
        "max_upload_bytes": str(MAX_UPLOAD),
        "max_frame_bytes": "8192",
        # 20 sockets at once in test_server (the default follows this machine's cores)
        "max_sessions": "24",
        "turn_timeout_seconds": str(HANG_GUARD_SECONDS),
        "llm": '"llamacpp"',
        "store": f'"{store or folder / "server.sqlite3"}"',
    }
    overridden = {line.split("=")[0].strip() for line in extra_settings.splitlines()}
    config = folder / "coda.toml"
    config.write_text(
        "".join(f"{k} = {v}\n" for k, v in defaults.items() if k not in overridden) + extra_settings
    )
    log = folder / "server.log"
    env = {**os.environ, "CODA_API_KEYS": f"{KEY},{OTHER_KEY}"}
    command = [sys.executable, "-m", "coda.cli", "--log-level", "INFO", "--config", str(config)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*wrap, *command, "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    return Server(
        url, f"ws://127.0.0.1:{port}", process, log, store or str(folder / "server.sqlite3")
    )


def wait_ready(running: Server) -> None:
    """Wait until ``running`` answers ``/ready`` (its models are loaded)."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        try:
            response = httpx.get(f"{running.url}/ready", headers=running.headers(), timeout=2)
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if running.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"coda serve did not get ready:\n{running.log.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session."""
    with serving(tmp_path_factory.mktemp("server")) as running:
        yield running
