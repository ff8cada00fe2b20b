"""Timing logic, deterministically: a controllable clock, sample-counted endpointing,
the turn deadline, and streaming order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from coda.audio.endpointing import Endpointer, SpeechEnded, SpeechPaused, SpeechStarted
from coda.deadline import ManualClock as ManualDeadlineClock
from coda.deadline import within
from coda.modes.clock import TurnClock
from coda.voice import AudioConfig, TimeoutError, VoiceManager, VoiceMessage

WINDOW = 512  # 32 ms at 16 kHz
HANG_GUARD_SECONDS = 300.0
"""Only guards against a hang: no test waits for this, however loaded the machine."""


async def _until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` holds; the timeout only guards against a hang."""
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not condition():
            await asyncio.sleep(0.01)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_turn_clock_marks_offsets_and_durations() -> None:
    time = ManualClock()
    clock = TurnClock(time)
    time.now += 0.120
    started = clock.since()
    time.now += 0.080
    clock.add("asr", clock.stop(started))
    assert clock.mark("first_audio") == pytest.approx(200.0)
    time.now += 1.0
    assert clock.mark("first_audio") == pytest.approx(200.0)  # marks are set once
    child = clock.child()
    time.now += 0.5
    assert child.elapsed_ms() == clock.elapsed_ms() == pytest.approx(1700.0)
    assert clock.marks == {"asr": pytest.approx(80.0), "first_audio": pytest.approx(200.0)}


def _run(probabilities: list[float], config: AudioConfig, tentative_ms: int | None = None):
    endpointer = Endpointer(config, 16000, WINDOW, tentative_ms)
    events = []
    for index, probability in enumerate(probabilities):
        window = np.full(WINDOW, index, np.float32)  # each window's samples carry its index
        events.extend(endpointer.feed(window, probability))
    return events + endpointer.flush()


def test_endpointing_counts_samples_exactly() -> None:
    config = AudioConfig(min_speech_ms=96, vad_hangover_ms=320, pre_roll_ms=64)
    # 10 silent windows, 20 speech windows, 20 silent windows (32 ms each).
    events = _run([0.0] * 10 + [0.9] * 20 + [0.0] * 20, config, tentative_ms=96)
    started, paused, ended = events
    assert isinstance(started, SpeechStarted) and started.at_seconds == pytest.approx(10 * 0.032)
    assert isinstance(paused, SpeechPaused) and paused.at_seconds == pytest.approx(30 * 0.032)
    assert isinstance(ended, SpeechEnded) and ended.at_seconds == pytest.approx(30 * 0.032)
    utterance = ended.utterance
    # Two windows of pre-roll (64 ms) before the onset, nothing of the hangover after.
    kept = sorted(set(utterance.samples.astype(int).tolist()))
    assert kept == list(range(8, 30))
    assert utterance.start_seconds == pytest.approx(8 * 0.032)
    assert utterance.onset_seconds == pytest.approx(10 * 0.032)


def test_short_bursts_and_dips_are_ignored() -> None:
    config = AudioConfig(min_speech_ms=96, vad_hangover_ms=320)
    # A 64 ms burst (shorter than min_speech_ms) starts nothing.
    assert _run([0.0] * 5 + [0.9] * 2 + [0.0] * 20, config) == []
    # A 96 ms dip inside speech (shorter than the hangover) does not end it.
    events = _run([0.9] * 10 + [0.0] * 3 + [0.9] * 10 + [0.0] * 15, config)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    # Probabilities between the end and start thresholds keep speech going (hysteresis).
    events = _run([0.9] * 10 + [0.4] * 30 + [0.0] * 15, config)
    assert events[-1].at_seconds == pytest.approx(40 * 0.032)


def _reply_work(task: asyncio.Task[object]) -> str | None:
    """Which of a cascade reply's two workers ``task`` runs (the LLM's, the TTS's), if any."""
    name = getattr(task.get_coro(), "__qualname__", "")
    return name if name in ("CascadeResponder._generate", "CascadeResponder._speak") else None


async def test_turn_timeout_raises_and_leaves_nothing_running(manager: VoiceManager) -> None:
    """The turn deadline runs on a manual clock, moved past it mid-reply: the turn fails
    there with TimeoutError, whatever the machine's speed, and the reply's LLM and TTS
    tasks are cancelled before the error surfaces, not left to run on."""
    pipeline = manager.engine.pipeline
    assert pipeline is not None
    limit = manager.config.streaming.turn_timeout_seconds
    clock, original = ManualDeadlineClock(), pipeline.deadline_clock
    pipeline.deadline_clock = clock  # at rest, no turn times out however slow it is
    try:
        await manager.process_voice_message(VoiceMessage("deadline", b"", text_content="Hi."))
        state = await manager.get_conversation_state("deadline")
        assert state is not None
        before_turns = state.turns[:]
        tasks_before = asyncio.all_tasks()
        running: set[asyncio.Task[object]] = set()
        message = VoiceMessage("deadline", b"", text_content="Tell me a long story about the sea.")
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            with pytest.raises(TimeoutError, match="turn_timeout_seconds"):
                async for chunk in manager.process_streaming(message):
                    if chunk.kind == "text" and not running:  # the LLM is mid-reply
                        running = {t for t in asyncio.all_tasks() if _reply_work(t)}
                        clock.advance(limit)  # the turn's time is up
        assert {_reply_work(t) for t in running} == {
            "CascadeResponder._generate",
            "CascadeResponder._speak",
        }
        assert all(task.cancelled() for task in running)  # stopped, not left to finish
        await _until(lambda: asyncio.all_tasks() <= tasks_before)  # nothing of the turn remains
        after = await manager.get_conversation_state("deadline")
        assert after is not None and after.turns == before_turns  # nothing half-stored
        # The engine is fine afterwards.
        reply = await manager.process_voice_message(
            VoiceMessage("deadline", b"", text_content="Hi.")
        )
        assert reply.text_content
    finally:
        pipeline.deadline_clock = original


async def test_first_audio_arrives_before_the_last_text_delta(manager: VoiceManager) -> None:
    message = VoiceMessage(
        "early", b"", text_content="Tell me three interesting facts about the ocean."
    )
    chunks = [chunk async for chunk in manager.process_streaming(message)]
    kinds = [chunk.kind for chunk in chunks]
    last_text = len(kinds) - 1 - kinds[::-1].index("text")
    assert kinds.index("audio") < last_text
    first_audio = next(c for c in chunks if c.kind == "audio")
    assert len((first_audio.text_content or "").split()) <= 25  # a clause, not the whole reply


def test_adaptive_policy_forgets_an_ended_conversation() -> None:
    from coda.modes.adaptive import AdaptivePolicy
    from coda.voice import VoiceProcessingMode

    policy = AdaptivePolicy()
    policy.record_success("a", VoiceProcessingMode.LLM_ENHANCED, 500.0, 0.9)
    policy.record_success("b", VoiceProcessingMode.LLM_ENHANCED, 700.0, 0.8)
    policy.forget("a")
    assert [key[0] for key in policy.stats] == ["b"]


async def test_a_result_that_comes_as_its_wait_is_cancelled_is_discarded() -> None:
    """A connection made just as its caller gives up is closed, not left to the collector.

    (A Moshi socket dropped this way held the server's only session: the next turn's
    handshake timed out.)
    """
    clock = ManualDeadlineClock()
    ready = asyncio.Event()
    discarded: list[str] = []

    async def connect() -> str:
        await ready.wait()
        return "socket"

    async def close(result: str) -> None:
        discarded.append(result)

    waiting = asyncio.create_task(within(connect(), 1.0, clock, discard=close))
    await asyncio.wait_for(clock.sleeping(1.0), HANG_GUARD_SECONDS)
    ready.set()  # the result comes in the same step as the caller's cancellation
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert discarded == ["socket"]
    ready.clear()  # and a result that is received is never discarded
    delivered = asyncio.create_task(within(connect(), 1.0, clock, discard=close))
    ready.set()
    assert await asyncio.wait_for(delivered, HANG_GUARD_SECONDS) == "socket"
    assert discarded == ["socket"]
