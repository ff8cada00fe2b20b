"""Turn-taking on real human speech: pauses inside a turn, preemptive replies, scheduling.

The speech is Debian's asterisk-core-sounds-en-wav recordings (a real speaker).
The driver waits for the session's recognition after every 20 ms frame, so each
decision depends on the audio alone, never on this machine's speed.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from coda.audio.frames import FRONT_END_RATE
from coda.bench import recordings
from coda.bench.turn_taking import format_turn_taking, listen, run_turn_taking
from coda.core.config import StreamingConfig
from coda.core.enums import VoiceProcessingMode
from coda.providers.llm.llamacpp import LlamaCppLLM
from coda.providers.scheduler import CPU, ComputeScheduler, Priority, Ticket
from coda.streaming.duplex import DuplexSession
from coda.streaming.turn_taking import TurnEndPolicy, TurnShape, text_shape
from coda.turn.context import TurnContext, TurnOptions
from coda.turn.events import ReplyDiscarded, SpeechEnded, SpokenPiece, TurnOutcome
from coda.voice import VoiceManager

UNFINISHED = frozenset(StreamingConfig().unfinished_words)
COUNTING = (("digits/1",), ("digits/2",), ("digits/3",))


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("1.", TurnShape.UNFINISHED),  # Whisper's "one" while counting
        ("1, 2, 3.", TurnShape.UNFINISHED),
        ("My number is 5 5 5.", TurnShape.UNFINISHED),
        ("I'd like to book a table and", TurnShape.UNFINISHED),
        ("I went there because...", TurnShape.UNFINISHED),
        ("So, um", TurnShape.UNFINISHED),
        ("The number I have is.", TurnShape.UNFINISHED),
        ("Where are you from?", TurnShape.COMPLETE),  # a question ends even on "from"
        ("What time is it?", TurnShape.COMPLETE),
        ("Please try again.", TurnShape.COMPLETE),
        ("I was born in 1990.", TurnShape.COMPLETE),
        ("one moment please", TurnShape.UNSURE),
        ("", TurnShape.UNSURE),
    ],
)
def test_the_words_give_the_turn_its_shape(text: str, shape: TurnShape) -> None:
    assert text_shape(text, UNFINISHED)[0] is shape


def test_the_voice_moves_a_turn_between_complete_and_unsure() -> None:
    policy = TurnEndPolicy(StreamingConfig())
    config = StreamingConfig()
    assert policy.decide("Please try again.").silence_ms == config.end_silence_complete_ms
    going_on = policy.decide("Please try again.", audio_complete=0.05)
    assert going_on.shape is TurnShape.UNSURE and "voice goes on" in going_on.reason
    assert policy.decide("one moment please", audio_complete=0.95).shape is TurnShape.COMPLETE
    # The words decide an unfinished shape whatever the voice says.
    assert (
        policy.decide("1, 2,", audio_complete=0.99).silence_ms == config.end_silence_unfinished_ms
    )


async def test_a_counting_turn_with_pauses_is_one_turn(manager: VoiceManager) -> None:
    turn = recordings.continued_turn(COUNTING, pause_ms=700)
    session = DuplexSession(manager.engine, "count-once", FRONT_END_RATE)
    try:
        heard = await listen(session, turn, real_time=False)
    finally:
        await session.close()
    assert heard.cuts == 0, heard.reasons
    assert len(heard.ends) == 1  # one turn, ended after "three"
    assert heard.ends[0] > turn.speech_end


async def test_a_resumed_utterance_discards_the_preemptive_reply(manager: VoiceManager) -> None:
    turn = recordings.continued_turn(COUNTING, pause_ms=600)
    session = DuplexSession(manager.engine, "count-preempted", FRONT_END_RATE)
    audio = np.concatenate([recordings.silence(300), turn.audio, recordings.silence(1600)])
    events = []
    try:
        for position in range(0, len(audio), FRONT_END_RATE // 50):
            await session.feed(audio[position : position + FRONT_END_RATE // 50])
            await session.settle()
            while not session.events.empty():
                events.append(session.events.get_nowait())
        while not any(isinstance(e, TurnOutcome) for e in events):
            events.append(await asyncio.wait_for(session.events.get(), timeout=120))
    finally:
        await session.close()
    kinds = [type(e) for e in events]
    discarded = [e for e in events if isinstance(e, ReplyDiscarded)]
    assert discarded, "a reply was started at a pause and thrown away when counting went on"
    assert session.discarded == len(discarded)
    ended = kinds.index(SpeechEnded)
    assert kinds.count(SpeechEnded) == 1
    assert SpokenPiece not in kinds[:ended]  # nothing of a discarded reply reached the user
    outcome = next(e for e in events if isinstance(e, TurnOutcome))
    numbers = [w for w in outcome.user_text.replace(",", " ").split() if w.strip(".").isdigit()]
    assert len(numbers) >= 2, outcome.user_text  # the whole count, not "1."
    assert all(d.words != outcome.user_text for d in discarded)


async def test_the_recordings_are_taken_without_false_cuts(manager: VoiceManager) -> None:
    """Every continued turn at its longest pause (900 ms), and the finished prompts."""
    turns = recordings.continued_turns((900,)) + recordings.finished_turns()[:4]
    report = await run_turn_taking(manager.engine, turns)
    assert report.pauses == sum(len(parts) - 1 for parts in recordings.CONTINUED)
    assert report.false_cuts <= 0.02 * report.pauses, format_turn_taking(report)
    finished = report.delays(continued=False)
    assert len(finished) == 4
    # The silence rule, in audio time: 120 ms after a complete sentence, with the
    # VAD's own lag (one 32 ms window or two), never the 1.2 s of an unfinished one.
    assert float(np.median(finished)) <= 400


def test_the_scheduler_serves_first_words_before_a_continuation() -> None:
    scheduler = ComputeScheduler()
    speaking, new = Ticket("a", written=True, spoken=True), Ticket("b")
    order: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with scheduler.slice(None, "llm"):
            holding.set()
            release.wait(10)

    def work(ticket: Ticket, kind: str) -> None:
        with scheduler.slice(ticket, kind):
            order.append(f"{ticket.key}:{kind}")

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(10)
    first = threading.Thread(target=work, args=(speaking, "llm"))
    first.start()
    while len(scheduler._waiting) < 1:
        threading.Event().wait(0.001)
    second = threading.Thread(target=work, args=(new, "llm"))
    second.start()
    while len(scheduler._waiting) < 2:
        threading.Event().wait(0.001)
    release.set()
    for thread in (holder, first, second):
        thread.join(10)
    assert order == ["b:llm", "a:llm"]  # the newer turn's first words went first
    assert [g.priority for g in scheduler.grants] == [
        Priority.BACKGROUND,
        Priority.FIRST_WORDS,
        Priority.CONTINUATION,
    ]


async def test_a_new_turn_speaks_before_another_turns_continuation(
    manager: VoiceManager,
) -> None:
    """Two conversations on the real models: B's first clause is not queued behind A."""
    pipeline = manager.engine.require_ready()
    llm = manager.engine.llm
    assert isinstance(llm, LlamaCppLLM)
    async with asyncio.timeout(120):  # the second context loads at the first idle moment
        while llm.slots < 2:
            await asyncio.sleep(0.1)
    for cid in ("sched-a", "sched-b"):
        await manager.start_conversation(cid)
    first_piece = asyncio.Event()
    spoken: list[str] = []

    async def talk(cid: str, text: str) -> None:
        turn = TurnContext(cid, "user", options=TurnOptions(integrations=frozenset()))
        async for event in pipeline.run(
            turn, audio=None, text=text, requested=VoiceProcessingMode.LLM_ENHANCED
        ):
            if isinstance(event, SpokenPiece):
                spoken.append(cid)
                first_piece.set()

    long_reply = talk("sched-a", "Tell me a long story about a dragon and a knight.")
    a = asyncio.create_task(long_reply)
    await first_piece.wait()
    await talk("sched-b", "What is two plus two?")
    await a
    # B's first words came while A was still speaking: not queued behind A's reply.
    first_b = spoken.index("sched-b")
    assert "sched-a" in spoken[first_b + 1 :], spoken
    assert any(g.key == "sched-b" and g.priority is Priority.FIRST_WORDS for g in CPU.grants)
