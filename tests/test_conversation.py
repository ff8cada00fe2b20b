"""The llm_enhanced path end to end with the real embedded models."""

from __future__ import annotations

import io
import time
from dataclasses import replace
from pathlib import Path

import soundfile as sf

from coda.core.errors import LLMIntegrationError
from coda.core.models import ConversationTurn
from coda.turn.summary import Summarizer
from coda.voice import VoiceConfig, VoiceManager, VoiceMessage, VoiceProcessingMode
from tests.conftest import Speak, Transcribe, wer

TIMING_KEYS = {"asr", "llm_first_token", "llm_total", "tts_first_audio", "tts_total", "total"}


async def test_spoken_question_gets_a_spoken_answer(
    manager: VoiceManager, speak: Speak, transcribe: Transcribe
) -> None:
    question = "What is the capital of France?"
    message = VoiceMessage(conversation_id="france", audio_data=await speak(question))
    response = await manager.process_voice_message(message)

    # Recognition: WER <= 10 % against what was said.
    assert wer(question, response.metadata["transcript"]) <= 0.10
    assert response.metadata["transcript_source"] == "asr"
    # The reply answers the question.
    assert "paris" in response.text_content.lower()
    # The reply audio is a WAV at the configured rate that says the reply (WER <= 15 %).
    assert response.audio_data is not None
    audio, rate = sf.read(io.BytesIO(response.audio_data))
    assert rate == manager.config.audio.sample_rate
    assert 0.5 < len(audio) / rate < 20.0
    assert "paris" in (await transcribe(response.audio_data)).lower()
    # Timings: every stage measured, in order, adding up within the total.
    timings = response.metadata["timings_ms"]
    assert set(timings) >= TIMING_KEYS
    assert all(timings[key] > 0 for key in TIMING_KEYS)
    assert timings["llm_first_token"] <= timings["llm_total"] <= timings["total"]
    assert timings["asr"] + timings["llm_total"] <= timings["total"] + 1.0
    assert response.processing_time == timings["total"]
    # The mode actually used, and why.
    assert response.processing_mode is VoiceProcessingMode.LLM_ENHANCED
    assert response.metadata["mode_selection"]["requested"] == "adaptive"
    selection = response.metadata["mode_selection"]
    assert selection["reason"].startswith("llm_enhanced")
    assert "Moshi" in selection["adaptive"]["excluded"]["moshi_only"]
    # Message metadata populated by validation.
    assert message.format == "wav" and message.channels == 1
    assert message.sample_rate is not None and message.duration_seconds is not None
    assert 1.0 < message.duration_seconds < 4.0


async def test_reply_audio_says_the_reply_text(
    manager: VoiceManager, speak: Speak, transcribe: Transcribe
) -> None:
    """Reply audio heard by an independent recognizer: corpus WER <= 15 % over four replies.

    One short reply is too coarse a sample (one merged word in six is 33 %), so the
    threshold applies to the words of four replies together.
    """
    questions = (
        "What is the capital of France?",
        "Can you suggest a quick breakfast idea?",
        "How many legs does a spider have?",
        "Tell me something nice about the ocean.",
    )
    said, heard = [], []
    for question in questions:
        response = await manager.process_voice_message(VoiceMessage("heard", await speak(question)))
        assert response.audio_data is not None
        said.append(response.text_content)
        heard.append(await transcribe(response.audio_data))
    assert sum(len(text.split()) for text in said) >= 20
    assert wer(" ".join(said), " ".join(heard)) <= 0.15


async def test_quality_scores_come_from_the_signals(manager: VoiceManager, speak: Speak) -> None:
    spoken = await manager.process_voice_message(
        VoiceMessage("scores", await speak("What is the capital of France?"))
    )
    typed = await manager.process_voice_message(
        VoiceMessage("scores", b"", text_content="What is the capital of France?")
    )
    for response in (spoken, typed):
        metrics = response.get_quality_metrics()
        assert set(metrics) == {
            "confidence_score",
            "relevance_score",
            "coherence_score",
            "audio_quality_score",
        }
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
        assert metrics["audio_quality_score"] > 0.3  # Piper's speech: not clipped, not silent
    # Recognition confidence is Whisper's; typed text is certain.
    assert spoken.confidence_score == spoken.metadata["transcript_confidence"]
    assert 0.5 < spoken.confidence_score < 1.0  # type: ignore[operator]
    assert typed.confidence_score == 1.0
    # "capital" and "France" come back in "The capital of France is Paris."
    assert spoken.relevance_score >= 0.6  # type: ignore[operator]


async def test_second_turn_uses_the_first(manager: VoiceManager, speak: Speak) -> None:
    first = await manager.process_voice_message(VoiceMessage("ada", await speak("My name is Ada.")))
    assert first.text_content
    second = await manager.process_voice_message(
        VoiceMessage("ada", await speak("What is my name?"))
    )
    assert "ada" in second.text_content.lower()
    state = await manager.get_conversation_state("ada")
    assert state is not None and [t.user_text for t in state.turns] == [
        first.metadata["transcript"],
        second.metadata["transcript"],
    ]


async def test_history_survives_a_restart(base_config: VoiceConfig, speak: Speak) -> None:
    first = VoiceManager(base_config)
    await first.initialize()
    try:
        await first.process_voice_message(
            VoiceMessage("restart", b"", text_content="My name is Ada.")
        )
    finally:
        await first.cleanup()

    second = VoiceManager(base_config)
    await second.initialize()
    try:
        state = await second.get_conversation_state("restart")
        assert state is not None and state.is_active and state.turn_count == 1
        reply = await second.process_voice_message(
            VoiceMessage("restart", await speak("What is my name?"))
        )
        assert "ada" in reply.text_content.lower()
    finally:
        await second.cleanup()


STORY = (
    "My sister lives in Lisbon. "
    + "Last spring we walked along the river every morning, stopped at a small bakery for "
    "custard tarts, watched the yellow trams climb the hills, listened to a guitarist play "
    "in the square, and talked about old friends until the sun went down over the bridge. " * 5
)
"""A first turn of some 300 tokens: while it is in the LLM's prompt, the prompt is long."""


async def test_the_llms_history_is_bounded_by_max_conversation_length(
    base_config: VoiceConfig, tmp_path: Path
) -> None:
    """Past ``max_conversation_length``, the oldest turns leave the prompt for the summary.

    What the LLM received is read from the real model (``prompt_tokens``: the
    tokens it evaluated for the reply). The integrations are off, so the history
    and the summary are all that can carry what was said.
    """
    config = replace(
        base_config,
        llm=replace(base_config.llm, max_tokens=48),  # short replies: the story dominates
        # Only a guard against a hang: the story's turn must not be cut on a loaded machine.
        streaming=replace(base_config.streaming, turn_timeout_seconds=600.0),
        store_path=str(tmp_path / "bounded.sqlite3"),
        max_conversation_length=4,
        enable_optimization=False,
        enable_memory_integration=False,
        enable_personality_integration=False,
        enable_tools_integration=False,
        enable_conversation_sync=False,
    )
    voice = VoiceManager(config)
    await voice.initialize()
    try:
        prompts = []
        for text in (STORY, "Two.", "Three.", "Four.", "Five."):
            reply = await voice.process_voice_message(
                VoiceMessage("bounded", b"", text_content=text)
            )
            prompts.append(reply.metadata["prompt_tokens"])
        # Up to four turns the prompt holds them all, the story included: it grows.
        assert prompts[0] > 250 and prompts == sorted(prompts), prompts
        await voice.wait_for_learning()  # the summary is written after the turn
        state = await voice.get_conversation_state("bounded")
        assert state is not None
        # Five turns outgrew four: the history went down to three, the oldest two summarized.
        assert [t.user_text for t in state.turns] == ["Three.", "Four.", "Five."]
        assert "lisbon" in state.summary.lower()
        assert await voice.engine.store.count_turns("bounded") == 5  # the store keeps all
        reloaded = await voice.engine.store.load("bounded", 4)
        assert reloaded is not None and reloaded.summary == state.summary
        # The next prompt holds the summary (at most 160 tokens) instead of the story: it
        # is shorter than the last one, though it has one more turn.
        asked = await voice.process_voice_message(
            VoiceMessage("bounded", b"", text_content="Which city does my sister live in?")
        )
        assert asked.metadata["prompt_tokens"] < prompts[-1], (prompts, asked.metadata)
        # What the story said still reaches the LLM, through the summary.
        assert "lisbon" in asked.text_content.lower()
    finally:
        await voice.cleanup()


async def test_a_summary_keeps_the_users_words_when_the_model_fails() -> None:
    class FailingLLMFault:
        """Injects a fault no real model produces on demand: every call fails."""

        name = model = "failing"

        async def load(self) -> None:
            raise LLMIntegrationError("down")

    summarizer = Summarizer(FailingLLMFault())  # type: ignore[arg-type]
    turns = [
        ConversationTurn("I'm allergic to peanuts.", "Noted.", VoiceProcessingMode.LLM_ENHANCED)
    ]
    summary = await summarizer.summarize("The user lives in Paris.", turns)
    assert summary == "The user lives in Paris. The user said: I'm allergic to peanuts."


async def test_streaming_yields_transcript_text_and_audio(
    manager: VoiceManager, speak: Speak
) -> None:
    message = VoiceMessage("stream", await speak("What is the capital of France?"))
    chunks = [chunk async for chunk in manager.process_streaming(message)]
    kinds = [chunk.kind for chunk in chunks]
    assert kinds[0] == "transcript" and kinds[-1] == "final" and chunks[-1].is_final
    assert "text" in kinds and "audio" in kinds
    assert [chunk.sequence for chunk in chunks] == list(range(len(chunks)))
    deltas = "".join(c.text_content or "" for c in chunks if c.kind == "text")
    assert deltas.strip() == chunks[-1].text_content
    spoken = " ".join(c.text_content or "" for c in chunks if c.kind == "audio")
    assert spoken.split() == deltas.split()
    for chunk in chunks:
        if chunk.kind == "audio":
            assert chunk.audio_data is not None
            audio, _ = sf.read(io.BytesIO(chunk.audio_data))
            assert len(audio) > 0
    elapsed = [chunk.elapsed_ms for chunk in chunks]
    assert elapsed == sorted(elapsed)
    assert chunks[-1].metadata["timings_ms"]["total"] > 0


async def test_voice_processor_is_the_same_engine(
    base_config: VoiceConfig, manager: VoiceManager
) -> None:
    from coda.voice import VoiceProcessingConfig, VoiceProcessor

    processor = VoiceProcessor(
        VoiceProcessingConfig(default_mode=VoiceProcessingMode.LLM_ENHANCED, sample_rate=16000),
        voice_config=base_config,
    )
    await processor.start()
    try:
        started = time.perf_counter()
        response = await processor.process_voice_message(
            VoiceMessage(
                "processor",
                b"",
                text_content="What is the capital of France?",
                processing_mode=VoiceProcessingMode.LLM_ENHANCED,
            )
        )
        assert (time.perf_counter() - started) * 1000 >= response.processing_time  # type: ignore[operator]
        assert "paris" in response.text_content.lower()
        assert response.audio_data is not None
        assert sf.info(io.BytesIO(response.audio_data)).samplerate == 16000
        plain = await processor.process_with_integrations(
            VoiceMessage("processor", b"", text_content="Thanks!"),
            include_memory=False,
            include_personality=False,
            include_tools=False,
        )
        assert plain.text_content
    finally:
        await processor.stop()
