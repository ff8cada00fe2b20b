"""Full-duplex sessions with real audio and real models: turns, barge-in, backchannels.

Session time is the captured audio fed so far; the simulated player plays 20 ms
of reply per 20 ms captured. While Coda is still generating and nothing is left
to play, the driver waits for the next event without feeding audio, so the
decisions depend on the audio alone, not on how fast this machine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from coda.audio.frames import FRONT_END_RATE
from coda.streaming.duplex import DuplexSession
from coda.turn.events import (
    Interrupted,
    SpeechEnded,
    SpeechStarted,
    SpokenPiece,
    TextDelta,
    Transcribed,
    TurnEvent,
    TurnFailed,
    TurnOutcome,
)
from coda.voice import VoiceManager
from tests.conftest import Say
from tests.test_frontend import noise

STEP = FRONT_END_RATE // 50  # 20 ms at 16 kHz
KINDS = {
    SpeechStarted: "speech_started",
    SpeechEnded: "speech_ended",
    Transcribed: "transcript",
    TextDelta: "text",
    SpokenPiece: "audio",
    TurnOutcome: "turn_finished",
    Interrupted: "interrupted",
    TurnFailed: "error",
}
OUT_STEP = 24000 // 50


@dataclass
class Player:
    """Plays reply audio in step with capture, and stops when told to."""

    session: DuplexSession
    queue: list[np.ndarray] = field(default_factory=list)
    log: list[TurnEvent] = field(default_factory=list)
    played_seconds: float = 0.0
    played_after_stop: float = 0.0
    stopped: bool = False

    def drain(self) -> None:
        while not self.session.events.empty():
            self.take(self.session.events.get_nowait())

    def take(self, event: TurnEvent) -> None:
        self.log.append(event)
        if isinstance(event, SpokenPiece):
            self.queue.append(event.audio.samples)
            self.stopped = False
        elif isinstance(event, Interrupted):
            self.queue.clear()
            self.stopped = True

    def play(self) -> None:
        if not self.queue:
            return
        head = self.queue[0]
        chunk, rest = head[:OUT_STEP], head[OUT_STEP:]
        self.queue[0:1] = [rest] if len(rest) else []
        self.session.played(chunk)
        self.played_seconds += len(chunk) / 24000
        if self.stopped:
            self.played_after_stop += len(chunk) / 24000

    def kinds(self) -> list[str]:
        return [KINDS.get(type(e), type(e).__name__) for e in self.log]


async def drive(
    session: DuplexSession,
    mic: Callable[[Player], np.ndarray | None],
    max_seconds: float = 40.0,
) -> Player:
    """Feed ``mic(player)`` frames (None: silence) until the mic is done and Coda is quiet."""
    player = Player(session)
    silence = np.zeros(STEP, np.float32)
    mic_done = False
    for _ in range(int(max_seconds * 50)):
        frame = mic(player)
        mic_done = frame is None
        await session.feed(silence if frame is None else frame)
        await session.settle()  # decisions depend on the audio fed, not on this machine
        player.drain()
        while session.replying and not player.queue:
            player.take(await asyncio.wait_for(session.events.get(), timeout=60))
            player.drain()
        player.play()
        if mic_done and not session.replying and not session.frontend.endpointer.in_speech:
            await asyncio.sleep(0)  # let the store task run
            player.drain()
            return player
    raise AssertionError(f"the session did not go quiet: {player.kinds()[-10:]}")


def script(*parts: np.ndarray) -> Callable[[Player], np.ndarray | None]:
    """A mic that plays ``parts`` back to back, then stays silent."""
    audio = np.concatenate(parts)
    position = 0

    def mic(_: Player) -> np.ndarray | None:
        nonlocal position
        if position >= len(audio):
            return None
        frame = audio[position : position + STEP]
        position += STEP
        return np.pad(frame, (0, STEP - len(frame)))

    return mic


def after_playing(seconds: float, then: np.ndarray, before: Callable[[Player], np.ndarray | None]):
    """A mic that runs ``before``, then plays ``then`` once ``seconds`` of reply were played."""
    later = script(then)

    def mic(player: Player) -> np.ndarray | None:
        if player.played_seconds < seconds:
            frame = before(player)
            return np.zeros(STEP, np.float32) if frame is None else frame
        return later(player)

    return mic


QUESTION = "Tell me three interesting facts about the ocean."
pause = np.zeros(FRONT_END_RATE // 2, np.float32)


async def test_a_spoken_turn_streams_and_is_stored(manager: VoiceManager, say: Say) -> None:
    session = DuplexSession(manager.engine, "duplex-turn", FRONT_END_RATE)
    try:
        player = await drive(
            session, script(pause, await say("What is the capital of France?"), pause)
        )
    finally:
        await session.close()
    kinds = player.kinds()
    order = ["speech_started", "speech_ended", "transcript", "text", "audio", "turn_finished"]
    assert [k for k in dict.fromkeys(kinds) if k in order] == order
    assert "interrupted" not in kinds
    finished = next(e for e in player.log if isinstance(e, TurnOutcome))
    assert "paris" in finished.reply_text.lower()
    assert finished.metadata["transcript_source"] == "asr"  # recognized at the tentative end
    state = await manager.get_conversation_state("duplex-turn")
    assert state is not None and state.turns[-1].assistant_text == finished.reply_text


async def test_barge_in_stops_the_reply_and_keeps_what_was_heard(
    manager: VoiceManager, say: Say
) -> None:
    interruption = await say("Wait, what time is it in Tokyo?")
    session = DuplexSession(manager.engine, "duplex-barge", FRONT_END_RATE)
    try:
        first = script(pause, await say(QUESTION), pause)
        player = await drive(session, after_playing(1.5, interruption, first))
    finally:
        await session.close()
    kinds = player.kinds()
    assert kinds.count("interrupted") == 1 and session.interruptions == 1
    stop = kinds.index("interrupted")
    interrupted = player.log[stop]
    # The cut-off reply stops at once: nothing of it is played after the event.
    assert player.played_after_stop <= 0.1
    assert isinstance(interrupted, Interrupted)
    assert 1.5 <= interrupted.played_seconds <= 1.5 + 1.0
    # Nothing more of the cancelled reply is produced after the interruption...
    next_transcript = kinds.index("transcript", stop)
    assert "audio" not in kinds[stop:next_transcript] and "text" not in kinds[stop:next_transcript]
    # ...and the interruption became the next turn.
    said = player.log[next_transcript]
    assert isinstance(said, Transcribed) and "tokyo" in said.text.lower()

    state = await manager.get_conversation_state("duplex-barge")
    assert state is not None and len(state.turns) == 2
    heard = state.turns[0].assistant_text
    full = "".join(e.text for e in player.log[:stop] if isinstance(e, TextDelta)).split()
    assert heard == interrupted.spoken
    assert 0 < len(heard.split()) < len(full)  # only what was played
    assert full[: len(heard.split())] == heard.split()


async def test_noise_burst_and_backchannel_do_not_interrupt(
    manager: VoiceManager, say: Say
) -> None:
    burst = noise(0.15, -20, seed=7)  # 150 ms of loud noise
    backchannel = await say("Okay.")
    gap = np.zeros(FRONT_END_RATE, np.float32)
    session = DuplexSession(manager.engine, "duplex-polite", FRONT_END_RATE)
    try:
        first = script(pause, await say(QUESTION), pause)
        during = np.concatenate([burst, gap, backchannel])
        player = await drive(session, after_playing(1.0, during, first))
    finally:
        await session.close()
    assert "interrupted" not in player.kinds()
    assert player.kinds().count("turn_finished") == 1  # "Okay." did not become a turn
    finished = next(e for e in player.log if isinstance(e, TurnOutcome))
    state = await manager.get_conversation_state("duplex-polite")
    assert state is not None and state.turns[-1].assistant_text == finished.reply_text
    assert player.played_seconds >= 2.0  # the whole reply was played


async def test_coda_hearing_itself_is_not_an_interruption(manager: VoiceManager) -> None:
    from coda.streaming.barge_in import BargeIn
    from coda.streaming.reply import Reply
    from coda.turn.context import TurnContext

    rules = BargeIn(manager.engine.require_ready().recognizer, manager.config.streaming)
    reply = Reply(
        TurnContext("duplex-echo", "user"), "Hi", [("The capital of France is Paris.", 24000)]
    )
    assert rules.is_backchannel("the capital of France", reply)  # its own words: echo
    assert rules.is_backchannel("Okay.", reply)  # a backchannel
    assert rules.is_backchannel("", reply)  # nothing recognizable
    assert not rules.is_backchannel("What time is it in Tokyo?", reply)  # a real question
    assert not rules.is_backchannel("No, the capital of Spain", reply)  # mostly new words
    assert not rules.due(0.2) and rules.due(0.35)  # 300 ms of speech before the first check
    assert not rules.due(0.45) and rules.due(0.6)  # then every 200 ms of speech
    rules.new_utterance()
    assert rules.due(0.35)
