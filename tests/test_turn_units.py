"""The turn pipeline's stages piece by piece: options, plans, outcomes, figures, background.

No model is loaded: recognition is given the words, the language model that fails
is a real client against a closed port, and the audio is the sample conversation's.
Each test pins a value or boundary a changed operator would move (``make mutation``).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from coda.audio.frames import to_int16
from coda.core.config import AudioConfig, LLMConfig, StreamingConfig, STTConfig, TTSConfig
from coda.core.errors import (
    LLMIntegrationError,
    MoshiConnectionError,
    TimeoutError,
    ValidationError,
)
from coda.core.models import ConversationTurn, VoiceMessage
from coda.modes.adaptive import AdaptivePolicy
from coda.modes.cascade import CascadeResponder
from coda.modes.clock import TurnClock
from coda.modes.moshi import SPEECH_NEEDED
from coda.modes.responder import TurnRequest
from coda.modes.selection import ModeDecision
from coda.providers.llm.openai_compat import OpenAICompatLLM
from coda.providers.scheduler import Priority, Ticket, current_ticket
from coda.providers.stt.faster_whisper import FasterWhisperSTT
from coda.providers.tts.piper import PiperTTS
from coda.testing.ports import free_port
from coda.turn.analytics import TurnStats
from coda.turn.background import BackgroundQueue
from coda.turn.context import TurnContext, TurnOptions
from coda.turn.events import (
    FunctionCallRequested,
    MemoryRecalled,
    SpokenPiece,
    ToolCalled,
    Transcribed,
    TurnFinished,
    TurnOutcome,
)
from coda.turn.hooks import Hook, ReplyPlan
from coda.turn.intake import Intake
from coda.turn.outcome import build_outcome, partial_outcome, to_response
from coda.turn.recognition import Recognizer
from coda.turn.respond import Answer, Responders
from coda.turn.summary import MAX_CHARS, Summarizer, kept_words
from coda.voice import VoiceProcessingMode

MOSHI = VoiceProcessingMode.MOSHI_ONLY
CASCADE = VoiceProcessingMode.LLM_ENHANCED
HYBRID = VoiceProcessingMode.HYBRID
ADAPTIVE = VoiceProcessingMode.ADAPTIVE
SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "conversation"


# -- options and plans -------------------------------------------------------------------


def test_turn_options_from_the_spec_context() -> None:
    options = TurnOptions.from_context(
        {
            "system_context": "be kind",
            "max_tokens": 1,
            "temperature": 0.2,
            "integrations": ["memory", "tools"],
            "user_feedback": {"too_long": True},
            "unknown": "ignored",
        }
    )
    assert options == TurnOptions(
        "be kind", 1, 0.2, frozenset({"memory", "tools"}), {"too_long": True}
    )
    assert options.allows("memory") and not options.allows("personality")
    assert TurnOptions.from_context(None) == TurnOptions()
    assert TurnOptions().allows("sync")
    assert not TurnOptions.from_context({"integrations": []}).allows("memory")


@pytest.mark.parametrize(
    ("context", "words"),
    [
        ({"integrations": ["memory", "weather"]}, "integrations"),
        ({"integrations": "memory"}, "integrations"),
        ({"user_feedback": "too long"}, "user_feedback"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "5"}, "max_tokens"),
    ],
)
def test_turn_options_refuse_wrong_types(context: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        TurnOptions.from_context(context)


def test_plans_merge_contexts_caps_and_voice_settings() -> None:
    memory = MemoryRecalled(({"text": "likes tea"},))
    call = FunctionCallRequested("c1", "lookup", "{}")
    first = ReplyPlan(
        context="memories", style="warm", max_tokens=80, speaking_rate=1.2, events=[memory],
        metadata={"a": 1, "b": 1},
    )  # fmt: skip
    second = ReplyPlan(
        context="tools", reply="42", style="brief", max_tokens=40, max_sentences=2,
        speaking_rate=0.5, volume_gain=0.8, metadata={"b": 2}, client_call=call,
        events=[call],
    )  # fmt: skip
    merged = first.merged(second)
    assert merged.context == "memories\n\ntools" and merged.style == "warm\nbrief"
    assert merged.reply == "42" and merged.client_call is call
    assert (merged.max_tokens, merged.max_sentences) == (40, 2)
    assert merged.speaking_rate == pytest.approx(0.6) and merged.volume_gain == pytest.approx(0.8)
    assert merged.events == [memory, call] and merged.metadata == {"a": 1, "b": 2}
    assert second.merged(first).max_tokens == 40 and second.merged(first).reply == "42"
    empty = ReplyPlan().merged(ReplyPlan())
    assert (empty.context, empty.style, empty.max_tokens, empty.reply) == (None, None, None, None)
    assert ReplyPlan(max_sentences=3).merged(ReplyPlan()).max_sentences == 3


async def test_the_default_hook_adds_nothing() -> None:
    hook = Hook()
    await hook.open()
    assert await hook.before_reply(TurnContext("c", "ana")) == ReplyPlan()
    outcome = partial_outcome(TurnContext("c", "ana"), "hi", "hello", CASCADE, 24000)
    assert await hook.before_commit(outcome) is outcome
    await hook.after_commit(outcome)
    await hook.close()
    assert hook.name == "hook"


# -- the outcome -------------------------------------------------------------------------


def _finished(reply: str = "Paris is the capital.", reason: str | None = "stop") -> TurnFinished:
    return TurnFinished(reply, reason, {"llm_total": 120.04, "first_audio": 80.06}, {"x": 1})


def test_the_outcome_scores_and_records_the_turn() -> None:
    turn = TurnContext("conv", "ana", "msg_1")
    heard = Transcribed("What is the capital of France?", 0.9, "asr")
    pieces = [np.full(500, 0.5, np.float32), np.full(500, 0.5, np.float32)]
    selection = {"requested": "adaptive", "chosen": "llm_enhanced", "reason": "why"}
    outcome = build_outcome(
        turn, selection, heard, _finished(), pieces, 345.67, 1000, {"model": "qwen"}
    )
    assert outcome.mode is CASCADE and outcome.conversation_id == "conv"
    assert outcome.user_text == heard.text and outcome.reply_text == "Paris is the capital."
    assert len(outcome.audio) == 1000 and outcome.sample_rate == 1000
    assert outcome.processing_time_ms == 345.7 and not outcome.interrupted
    assert outcome.scores == {
        "confidence_score": 0.9,
        "relevance_score": pytest.approx(2 / 3),
        "coherence_score": 1.0,
        "audio_quality_score": 1.0,
    }
    meta = outcome.metadata
    assert meta["timings_ms"] == {
        "llm_total": 120.0,
        "first_audio": 80.1,
        "asr": 0.0,
        "total": 345.7,
    }
    assert (meta["transcript"], meta["transcript_confidence"], meta["transcript_source"]) == (
        heard.text,
        0.9,
        "asr",
    )
    assert meta["x"] == 1 and meta["mode_selection"] is selection
    assert meta["llm"] == {"model": "qwen", "finish_reason": "stop"}
    assert meta["audio"] == {"sample_rate": 1000, "duration_seconds": 1.0}
    assert (meta["message_id"], meta["speaker"]) == ("msg_1", "ana")
    # A truncated reply without audio: the finish reason and the empty audio count.
    bare = build_outcome(turn, selection, heard, _finished(reason="length"), [], 1.0, 1000, {})
    assert bare.scores["coherence_score"] == pytest.approx(0.6)
    assert bare.scores["audio_quality_score"] == 0.0 and bare.audio.size == 0
    timed = TurnFinished("Hi.", "stop", {"asr": 33.0})
    assert (
        build_outcome(turn, selection, heard, timed, [], 1.0, 1000, {}).metadata["timings_ms"][
            "asr"
        ]
        == 33.0
    )


def test_a_cut_off_turn_keeps_what_was_spoken() -> None:
    turn = TurnContext("conv", "ana", "msg_2")
    outcome = partial_outcome(turn, "tell me more", "Sure, the", MOSHI, 24000)
    assert outcome.interrupted and outcome.reply_text == "Sure, the"
    assert outcome.mode is MOSHI and outcome.sample_rate == 24000 and outcome.audio.size == 0
    assert outcome.scores == {} and outcome.processing_time_ms == 0.0
    assert outcome.metadata == {"transcript": "tell me more", "message_id": "msg_2"}


@pytest.mark.parametrize(
    ("bits", "subtype"), [(16, "PCM_16"), (24, "PCM_24"), (32, "PCM_32"), (8, "PCM_16")]
)
def test_the_response_carries_wav_at_the_bit_depth(bits: int, subtype: str) -> None:
    turn = TurnContext("conv", "ana", "msg_3")
    heard = Transcribed("Hi.", 1.0, "provided")
    tone = (0.5 * np.sin(np.arange(2400) / 5)).astype(np.float32)
    selection = {"chosen": "moshi_only"}
    outcome = build_outcome(turn, selection, heard, _finished("Hello."), [tone], 50.0, 24000, {})
    response = to_response(outcome, bits)
    assert response.audio_data is not None
    info = sf.info(io.BytesIO(response.audio_data))
    assert (info.subtype, info.samplerate, info.frames) == (subtype, 24000, 2400)
    assert response.conversation_id == "conv" and response.text_content == "Hello."
    assert response.processing_mode is MOSHI and response.processing_time == 50.0
    assert response.confidence_score == 1.0 and response.coherence_score == 1.0
    assert response.relevance_score == outcome.scores["relevance_score"]
    assert response.audio_quality_score == outcome.scores["audio_quality_score"]
    assert response.metadata is outcome.metadata
    silent = partial_outcome(turn, "hi", "", MOSHI, 24000)
    assert to_response(silent, bits).audio_data is None


def test_a_tool_call_shows_its_result_or_error() -> None:
    call = ToolCalled("clock", {"zone": "UTC"}, False, None, "no such zone", 12.0)
    assert call.as_dict() == {
        "name": "clock",
        "arguments": {"zone": "UTC"},
        "success": False,
        "result": None,
        "error": "no such zone",
    }


# -- figures -----------------------------------------------------------------------------


def _outcome(conversation: str, mode: VoiceProcessingMode, **metadata: object) -> TurnOutcome:
    turn = TurnContext(conversation, "ana")
    return TurnOutcome(turn, mode, "q", "a", np.zeros(0), 24000, 1.0, {}, dict(metadata))


def test_turn_stats_average_timings_and_keep_conversation_figures() -> None:
    stats = TurnStats(analytics=True)
    stats.record(_outcome("a", CASCADE, timings_ms={"first_audio": 100.0, "asr": 10.0}))
    stats.record(
        _outcome("a", MOSHI, timings_ms={"first_audio": 300.0}, memories=[1, 2], tool_results=[1])
    )
    interrupted = _outcome("b", CASCADE, timings_ms={"asr": 30.0})
    interrupted.interrupted = True
    stats.record(interrupted)
    stats.record_error(ValidationError("bad"))
    stats.record_error(ValidationError("worse"))
    stats.record_error(LLMIntegrationError("down"))
    snapshot = stats.snapshot()
    assert snapshot["turns"] == 3 and snapshot["errors"] == 3
    assert snapshot["errors_by_type"] == {"ValidationError": 2, "LLMIntegrationError": 1}
    assert snapshot["mean_timings_ms"] == {"first_audio": 200.0, "asr": 20.0}
    assert snapshot["analytics"]["a"] == {
        "turns": 2,
        "interrupted": 0,
        "modes": {"llm_enhanced": 1, "moshi_only": 1},
        "mean_first_audio_ms": 200.0,
        "memories_recalled": 2,
        "tool_calls": 1,
    }
    assert snapshot["analytics"]["b"]["interrupted"] == 1
    assert snapshot["analytics"]["b"]["mean_first_audio_ms"] is None
    stats.forget("a")
    stats.forget("never")
    assert list(stats.snapshot()["analytics"]) == ["b"]
    off = TurnStats(analytics=False)
    off.record(_outcome("a", CASCADE, timings_ms={"asr": 5.0}))
    assert off.snapshot()["analytics"] is None and off.snapshot()["turns"] == 1
    assert off.snapshot()["mean_timings_ms"] == {"asr": 5.0}


# -- recognition, intake, summaries ---------------------------------------------------------


async def test_given_words_skip_recognition() -> None:
    recognizer = Recognizer(FasterWhisperSTT(STTConfig()))
    clock = TurnClock()
    assert recognizer.sample_rate == 16000
    assert await recognizer.words(None, "  Hello there. ", clock) == Transcribed(
        "Hello there.", 1.0, "provided"
    )
    assert clock.marks == {}  # no recognition ran
    with pytest.raises(ValidationError, match="needs audio or text"):
        await recognizer.words(None, "   ", clock)


async def test_intake_decodes_cleans_and_resamples_a_message() -> None:
    data = (SAMPLES / "01.wav").read_bytes()
    intake = Intake(AudioConfig())
    try:
        await intake.open()
        ticks = iter([10.0, 10.0, 10.25])
        clock = TurnClock(lambda: next(ticks))
        audio = await intake.take(VoiceMessage("c", data), 24000, clock)
        assert audio is not None and audio.dtype == np.float32
        # Trimmed to the speech (1.85 s recorded, with its silent edges), at 24 kHz.
        assert 1.0 * 24000 < len(audio) < 1.85 * 24000
        assert clock.marks == {"frontend": 250.0}
        assert await intake.take(VoiceMessage("c", b"", text_content="hi"), 24000, clock) is None
        with pytest.raises(ValidationError):
            await intake.take(VoiceMessage("c", b"RIFF" + bytes(100)), 24000, clock)
    finally:
        intake.close()
    # Without VAD no detector is loaded and nothing is trimmed.
    plain = Intake(AudioConfig(enable_vad=False))
    try:
        await plain.open()
        audio = await plain.take(VoiceMessage("c", data), 16000, TurnClock())
        assert audio is not None and abs(len(audio) - round(1.8459864 * 16000)) <= 160
    finally:
        plain.close()


def _turns(*said: str) -> list[ConversationTurn]:
    return [ConversationTurn(text, f"reply to {text}", CASCADE) for text in said]


def test_kept_words_hold_the_users_sentences_within_the_limit() -> None:
    assert kept_words("Before.", _turns("I like tea.", "  ", "I live in Lyon.")) == (
        "Before. The user said: I like tea. I live in Lyon."
    )
    assert kept_words("", _turns("Hi.")) == "The user said: Hi."
    assert kept_words("Before.", _turns("   ")) == "Before."
    long = kept_words("x" * MAX_CHARS, _turns("the end"))
    assert len(long) == MAX_CHARS and long.endswith("The user said: the end")


async def test_a_summary_without_its_model_keeps_the_users_words() -> None:
    closed = LLMConfig(provider="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    llm = OpenAICompatLLM(closed)
    try:
        summarizer = Summarizer(llm, max_tokens=50)
        assert summarizer.max_tokens == 50
        assert await summarizer.summarize("Before.", []) == "Before."
        folded = await summarizer.summarize("Before.", _turns("I like tea."))
        assert folded == "Before. The user said: I like tea."
    finally:
        await llm.close()


# -- responders and fallback ----------------------------------------------------------------


def _responders(
    unavailable: dict[VoiceProcessingMode, str], moshi: bool = True, fallback: bool = False
) -> Responders:
    from coda.modes.moshi import MoshiResponder
    from coda.providers.s2s.moshi import MoshiSpeechToSpeech
    from coda.providers.s2s.moshi_pool import MoshiPool
    from coda.voice import MoshiConfig

    config = MoshiConfig(server_url=f"ws://127.0.0.1:{free_port()}/api/chat")
    by_mode = {}
    if moshi:
        by_mode[MOSHI] = MoshiResponder(MoshiSpeechToSpeech(config, MoshiPool(config)), 24000)
    return Responders(by_mode, unavailable, AdaptivePolicy(), allow_fallback=fallback)


def test_moshi_listens_first_only_when_asked_and_able() -> None:
    audio = np.ones(160, np.float32)
    assert _responders({}).listens_first(MOSHI, audio)
    assert not _responders({}).listens_first(MOSHI, None)
    assert not _responders({}).listens_first(ADAPTIVE, audio)
    assert not _responders({MOSHI: "off"}).listens_first(MOSHI, audio)


def test_a_typed_turn_never_goes_to_moshi() -> None:
    responders = _responders({HYBRID: "off"})
    assert responders.decide(ADAPTIVE, "c", "Hi there", has_audio=True).chosen is MOSHI
    typed = responders.decide(ADAPTIVE, "c", "Hi there", has_audio=False)
    assert typed.chosen is CASCADE
    assert typed.details["adaptive"]["excluded"] == {"moshi_only": SPEECH_NEEDED, "hybrid": "off"}
    known = responders.decide(HYBRID, "c", "Hi", has_audio=True, known_reply=True)
    assert known.chosen is CASCADE
    with pytest.raises(Exception, match="moshi_only cannot answer: no server"):
        _responders({MOSHI: "no server"}).decide(MOSHI, "c", "Hi", has_audio=True)


def _fallback(
    responders: Responders,
    error: Exception,
    requested: VoiceProcessingMode,
    chosen: VoiceProcessingMode,
    audio: np.ndarray | None = None,
    spoken: bool = False,
) -> VoiceProcessingMode | None:
    answer = Answer(ModeDecision(requested, chosen, "test"))
    if spoken:
        answer.pieces.append(np.ones(10, np.float32))
    request = TurnRequest("hi", (), audio=audio)
    return responders._fallback(answer, request, error)  # type: ignore[arg-type]


def test_the_fallback_rules() -> None:
    speech = np.ones(1600, np.float32)
    strict, lenient = _responders({}), _responders({}, fallback=True)
    moshi_down = MoshiConnectionError("gone")
    # Moshi failing: the cascade answers, unless Moshi was asked for without fallback.
    assert _fallback(strict, moshi_down, ADAPTIVE, MOSHI) is CASCADE
    assert _fallback(strict, moshi_down, MOSHI, MOSHI) is None
    assert _fallback(lenient, moshi_down, MOSHI, MOSHI) is CASCADE
    assert _fallback(strict, LLMIntegrationError("x"), ADAPTIVE, MOSHI) is None
    # The LLM failing in an adaptive turn: Moshi answers the speech, if nothing was said.
    for error in (LLMIntegrationError("down"), TimeoutError("slow")):
        assert _fallback(strict, error, ADAPTIVE, CASCADE, speech) is MOSHI
    assert _fallback(strict, ValidationError("bad"), ADAPTIVE, CASCADE, speech) is None
    assert _fallback(strict, LLMIntegrationError("down"), CASCADE, CASCADE, speech) is None
    assert _fallback(strict, LLMIntegrationError("down"), ADAPTIVE, CASCADE, None) is None
    empty = np.zeros(0, np.float32)
    assert _fallback(strict, LLMIntegrationError("down"), ADAPTIVE, CASCADE, empty) is None
    assert _fallback(strict, LLMIntegrationError("d"), ADAPTIVE, CASCADE, speech, True) is None
    no_moshi = _responders({}, moshi=False)
    assert _fallback(no_moshi, LLMIntegrationError("d"), ADAPTIVE, CASCADE, speech) is None
    resting = _responders({MOSHI: "unavailable"})
    assert _fallback(resting, LLMIntegrationError("d"), ADAPTIVE, CASCADE, speech) is None


async def test_a_failed_answer_is_learned_and_raised() -> None:
    responders = _responders({})
    answer = Answer(ModeDecision(MOSHI, MOSHI, "asked"))
    request = TurnRequest("hi", ())  # no audio: Moshi cannot answer
    with pytest.raises(ValidationError, match=SPEECH_NEEDED):
        async for _ in responders.answer(request, answer, TurnClock(), "conv"):
            pass
    stats = responders.policy.stats[("conv", MOSHI)]
    assert stats.failures == 1 and stats.failed_at is not None


# -- the background queue -------------------------------------------------------------------


async def test_background_jobs_run_in_order_per_key_and_full_queues_drop() -> None:
    queue = BackgroundQueue(max_size=3)
    order: list[str] = []
    gate = asyncio.Event()

    def job(name: str, wait: bool = False):  # type: ignore[no-untyped-def]
        async def run() -> None:
            if wait:
                await gate.wait()
            order.append(name)

        return run

    assert queue.submit("ana", "a1", job("a1", wait=True))
    assert queue.submit("ana", "a2", job("a2"))
    assert queue.submit("bob", "b1", job("b1"))
    assert queue.snapshot()["waiting"] == 3
    assert not queue.submit("bob", "b2", job("b2"))  # three waiting: the fourth is dropped
    assert await queue.settled("bob", timeout=30)  # bob's job does not wait for ana's
    assert order == ["b1"]
    assert not await queue.settled("ana", timeout=0)
    gate.set()
    assert await queue.settled("ana", timeout=30)
    assert order == ["b1", "a1", "a2"]
    await queue.drain()
    snapshot = queue.snapshot()
    assert snapshot == {
        "queued": 3,
        "done": 3,
        "failed": 0,
        "dropped": 1,
        "waiting": 0,
        "failures": {},
    }
    await queue.close()


async def test_an_optional_rest_runs_detached_and_settled_can_wait_for_it() -> None:
    queue = BackgroundQueue(max_size=10)
    release = asyncio.Event()
    seen: list[str] = []

    async def learning() -> None:
        ticket = current_ticket.get()
        assert ticket is not None and ticket.background and ticket.key == "ana"
        seen.append("rules")
        ticket.optional = True  # the model's part is best effort
        await release.wait()
        seen.append("model")

    async def failing() -> None:
        raise RuntimeError("a learning bug")

    async def next_job() -> None:
        seen.append("next")

    queue.submit("ana", "learn", learning)
    queue.submit("ana", "broken", failing)
    queue.submit("ana", "next", next_job)
    # What a turn needs (the rules) is done; the detached rest does not hold it up.
    assert await queue.settled("ana", timeout=30, optional=False)
    assert seen == ["rules", "next"]
    assert not await queue.settled("ana", timeout=0)  # the optional rest is still running
    release.set()
    assert await queue.settled("ana", timeout=30)
    assert seen == ["rules", "next", "model"]
    await queue.drain()
    snapshot = queue.snapshot()
    assert (snapshot["done"], snapshot["failed"], snapshot["failures"]) == (2, 1, {"broken": 1})
    await queue.close()


async def test_closing_the_queue_drops_waiting_jobs() -> None:
    queue = BackgroundQueue(max_size=10)
    never = asyncio.Event()
    ran: list[str] = []

    async def stuck() -> None:
        await never.wait()

    async def later() -> None:
        ran.append("later")

    queue.submit("ana", "stuck", stuck)
    queue.submit("ana", "later", later)
    await queue.close()
    assert ran == [] and queue.snapshot()["waiting"] == 0


# -- boundaries the first mutation run found unguarded -----------------------------------


async def test_intake_applies_its_own_input_policy_and_raw_formats() -> None:
    rate = 12000  # not among the default input rates
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, tone, rate, format="WAV", subtype="PCM_16")
    allowing = replace(AudioConfig(enable_vad=False), input_sample_rates=(rate, 16000))
    intake = Intake(allowing)
    try:
        await intake.open()
        audio = await intake.take(VoiceMessage("c", buffer.getvalue()), 16000, TurnClock())
        assert audio is not None and abs(len(audio) - 16000) <= 16
    finally:
        intake.close()
    plain = Intake(AudioConfig(enable_vad=False))
    try:
        with pytest.raises(ValidationError, match="sample rate 12000"):
            await plain.take(VoiceMessage("c", buffer.getvalue()), 16000, TurnClock())
        raw = VoiceMessage(
            "c", to_int16(tone[:8000]).tobytes(), format="pcm_s16le", sample_rate=8000, channels=1
        )
        audio = await plain.take(raw, 8000, TurnClock())
        assert audio is not None and len(audio) == 8000
    finally:
        plain.close()


def test_conversation_figures_add_up_over_turns() -> None:
    stats = TurnStats(analytics=True)
    for first_audio in (100.5, 100.02):
        outcome = _outcome("a", CASCADE, timings_ms={"first_audio": first_audio}, memories=[1])
        outcome.metadata["tool_results"] = [1, 2]
        outcome.interrupted = True
        stats.record(outcome)
    stats.record(_outcome("a", CASCADE))  # no timings at all
    stats.hook_failures["memory"] += 1
    snapshot = stats.snapshot()
    figures = snapshot["analytics"]["a"]
    assert (figures["turns"], figures["interrupted"], figures["modes"]) == (
        3,
        2,
        {"llm_enhanced": 3},
    )
    assert (figures["memories_recalled"], figures["tool_calls"]) == (2, 4)
    assert figures["mean_first_audio_ms"] == 100.3  # 100.26, to a tenth
    assert snapshot["mean_timings_ms"] == {"first_audio": 100.3}
    assert snapshot["hook_failures"] == {"memory": 1}


def test_outcomes_hold_float32_audio_the_users_words_and_the_time() -> None:
    turn = TurnContext("conv", "ana", "msg_4")
    cut = partial_outcome(turn, "tell me more", "Sure", CASCADE, 24000)
    assert cut.user_text == "tell me more" and cut.audio.dtype == np.float32
    heard = Transcribed("Hi.", 1.0, "provided")
    bare = build_outcome(turn, {"chosen": "llm_enhanced"}, heard, _finished(), [], 1.0, 24000, {})
    assert bare.audio.dtype == np.float32
    before = time.time()
    response = to_response(bare, 16)
    assert before <= response.timestamp <= time.time()


def test_the_fallback_setting_reaches_the_decision() -> None:
    lenient = _responders({MOSHI: "no server"}, fallback=True)
    decision = lenient.decide(MOSHI, "c", "Hi", has_audio=True)
    assert decision.chosen is CASCADE and decision.details == {"fallback": True}
    for _ in range(2):
        lenient.policy.record_failure("c", CASCADE)
    # The cascade rests in conversation "c" only.
    assert lenient.decide(ADAPTIVE, "c", "Hi there", has_audio=False).chosen is not CASCADE
    assert lenient.decide(ADAPTIVE, "d", "Hi there", has_audio=False).chosen is CASCADE


@pytest.fixture(scope="module")
async def piper() -> AsyncIterator[PiperTTS]:
    """The embedded voice (the one model this module loads: a cascade must speak)."""
    tts = PiperTTS(TTSConfig(noise_scale=0.0, noise_w_scale=0.0))
    await tts.load()
    yield tts
    await tts.close()


async def test_moshi_failing_mid_turn_falls_back_to_the_cascade(piper: PiperTTS) -> None:
    """Moshi's server is gone; the cascade speaks the reply once recognition has the words."""
    closed = LLMConfig(provider="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    llm = OpenAICompatLLM(closed)  # never asked: the reply is known (from memory)
    cascade = CascadeResponder(
        llm, piper, closed, StreamingConfig(), max_history_turns=4, output_rate=24000
    )
    responders = _responders({})
    responders.by_mode[CASCADE] = cascade
    answer = Answer(ModeDecision(ADAPTIVE, MOSHI, "fastest"))
    speech = np.full(16000, 0.1, np.float32)
    request = TurnRequest("", (), reply="Paris is the capital.", audio=speech)
    recognizer = Recognizer(FasterWhisperSTT(STTConfig()))
    words = recognizer.words(None, "What is the capital of France?", TurnClock())
    try:
        events = [e async for e in responders.answer(request, answer, TurnClock(), "c", words)]
    finally:
        await llm.close()
    assert isinstance(events[0], Transcribed) and events[0].text.startswith("What is")
    assert answer.transcript == events[0]
    spoken = [e for e in events if isinstance(e, SpokenPiece)]
    assert [p.text for p in spoken] == ["Paris is the capital."]
    assert len(answer.pieces) == 1 and answer.pieces[0] is spoken[0].audio.samples
    assert answer.finished is not None and answer.finished.reply_text == "Paris is the capital."
    assert answer.decision.chosen is CASCADE and answer.decision.requested is ADAPTIVE
    assert answer.decision.reason.startswith("fell back to llm_enhanced: moshi_only failed: ")
    assert answer.decision.details["failed"] == "moshi_only"
    assert "first_audio" in answer.marks  # the cascade's own stopwatch
    assert responders.policy.stats[("c", MOSHI)].failures == 1
    assert ("c", CASCADE) not in responders.policy.stats  # it did not fail


async def test_with_the_llm_and_moshi_both_down_a_turn_falls_back_once_and_fails(
    piper: PiperTTS,
) -> None:
    """Each failure could hand the turn to the other: it may, once, then the turn fails."""
    closed = LLMConfig(provider="openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    llm = OpenAICompatLLM(closed)
    cascade = CascadeResponder(
        llm, piper, closed, StreamingConfig(), max_history_turns=4, output_rate=24000
    )
    responders = _responders({})
    responders.by_mode[CASCADE] = cascade
    answer = Answer(ModeDecision(ADAPTIVE, CASCADE, "strongest"))
    request = TurnRequest("What is the capital of France?", (), audio=np.full(16000, 0.1))
    try:
        with pytest.raises(MoshiConnectionError):
            async for _ in responders.answer(request, answer, TurnClock(), "c"):
                pass
    finally:
        await llm.close()
    assert answer.decision.chosen is MOSHI  # the one fallback, which failed too
    assert responders.policy.stats[("c", CASCADE)].failures == 1
    assert responders.policy.stats[("c", MOSHI)].failures == 1


async def test_a_strict_moshi_turn_fails_and_recognition_stops(piper: PiperTTS) -> None:
    responders = _responders({})
    answer = Answer(ModeDecision(MOSHI, MOSHI, "asked"))
    request = TurnRequest("", (), audio=np.full(16000, 0.1, np.float32))
    started = asyncio.Event()
    never = asyncio.Event()

    async def recognizing() -> Transcribed:
        started.set()
        await never.wait()  # recognition still going when Moshi fails
        raise AssertionError("not reached")

    with pytest.raises(MoshiConnectionError):
        async for _ in responders.answer(request, answer, TurnClock(), "c", recognizing()):
            pass
    assert started.is_set() and answer.finished is None


async def test_a_waiting_turn_makes_the_speakers_learning_urgent() -> None:
    queue = BackgroundQueue(max_size=10)
    assert await queue.settled("ana", timeout=0)  # nothing queued: settled at once
    tickets: list[Ticket] = []
    running, release = asyncio.Event(), asyncio.Event()

    async def learning() -> None:
        ticket = current_ticket.get()
        assert ticket is not None
        tickets.append(ticket)
        running.set()
        await release.wait()

    queue.submit("ana", "first", learning)
    await running.wait()
    assert not tickets[0].awaited and tickets[0].priority("llm") is Priority.BACKGROUND
    waiter = asyncio.create_task(queue.settled("ana", timeout=30))
    await asyncio.sleep(0)  # the waiter marks ana's work urgent before it first waits
    assert tickets[0].awaited and tickets[0].priority("llm") is Priority.FIRST_WORDS
    running.clear()
    queue.submit("ana", "second", learning)  # queued while the turn waits: urgent too
    release.set()
    await running.wait()
    assert tickets[1].awaited
    assert await waiter
    running.clear()
    queue.submit("ana", "third", learning)  # no turn waits any more: background again
    await running.wait()
    assert not tickets[2].awaited
    await queue.close()


async def test_drain_waits_for_detached_rests_and_failures_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = BackgroundQueue(max_size=2)
    release = asyncio.Event()
    seen: list[str] = []

    async def learning() -> None:
        ticket = current_ticket.get()
        assert ticket is not None
        ticket.optional = True
        await release.wait()
        for _ in range(3):  # the model's part takes a few steps of the loop
            await asyncio.sleep(0)
        seen.append("model")

    async def failing() -> None:
        raise RuntimeError("a learning bug")

    queue.submit("ana", "learn", learning)
    assert await queue.settled("ana", timeout=30, optional=False)
    for _ in range(2):
        queue.submit("bob", "broken", failing)
    assert not queue.submit("bob", "extra", failing)
    assert not queue.submit("bob", "extra", failing)
    assert await queue.settled("bob", timeout=30)
    draining = asyncio.create_task(queue.drain())
    release.set()
    await draining
    assert seen == ["model"]  # drained only once the detached rest had run
    snapshot = queue.snapshot()
    assert (snapshot["failed"], snapshot["dropped"], snapshot["failures"]) == (2, 2, {"broken": 2})
    failures = [r for r in caplog.records if r.getMessage() == "background job broken failed"]
    assert len(failures) == 2 and failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)
    assert "background queue full: dropped extra" in caplog.messages
    await queue.close()
