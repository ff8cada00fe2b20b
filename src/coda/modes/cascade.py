"""The cascade responder: speech recognition, then the LLM, then speech synthesis.

The LLM streams; each sentence is handed to synthesis as soon as it is
complete, so the first audio is ready long before the model has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from coda.audio.decode import resample
from coda.core.config import LLMConfig
from coda.core.errors import ValidationError
from coda.core.models import ConversationTurn
from coda.modes.clock import TurnClock
from coda.modes.events import SpokenPiece, TextDelta, Transcribed, TurnEvent, TurnFinished
from coda.modes.prompt import build_messages
from coda.modes.sentences import SentenceSplitter
from coda.providers.base import (
    GenerationRequest,
    GenerationStats,
    LanguageModel,
    SpeechAudio,
    SpeechToText,
    TextToSpeech,
)

_DONE = object()


@dataclass(frozen=True)
class TurnRequest:
    """What the cascade needs to answer one turn.

    Attributes:
        audio: The user's speech, mono float32 at the STT's rate (None if text given).
        text: The user's words when already known (skips recognition).
        history: Earlier turns of the conversation, oldest first.
        extra_context: Text appended to the system prompt (memory, personality).
    """

    audio: np.ndarray | None
    text: str | None
    history: Sequence[ConversationTurn]
    extra_context: str | None = None


class CascadeResponder:
    """STT → LLM → TTS, streamed sentence by sentence."""

    def __init__(
        self,
        stt: SpeechToText,
        llm: LanguageModel,
        tts: TextToSpeech,
        llm_config: LLMConfig,
        *,
        max_history_turns: int,
        output_rate: int,
    ) -> None:
        self.stt = stt
        self.llm = llm
        self.tts = tts
        self._llm_config = llm_config
        self._max_history = max_history_turns
        self._output_rate = output_rate

    async def respond(self, request: TurnRequest, clock: TurnClock) -> AsyncIterator[TurnEvent]:
        """Answer one turn, yielding events as they happen.

        Raises:
            ValidationError: If no words were recognized in the audio.
            LLMIntegrationError: If the language model fails.
        """
        if request.text is not None and request.text.strip():
            user_text, confidence, source = request.text.strip(), 1.0, "provided"
        elif request.audio is not None:
            started = clock.since()
            transcript = await self.stt.transcribe(request.audio)
            clock.add("asr", clock.stop(started))
            user_text, confidence, source = transcript.text.strip(), transcript.confidence, "asr"
            if not user_text:
                raise ValidationError("no words were recognized in the audio")
        else:
            raise ValidationError("a turn needs audio or text")
        yield Transcribed(user_text, confidence, source)

        messages = build_messages(
            self._llm_config.system_prompt,
            request.history,
            user_text,
            self._max_history,
            request.extra_context,
        )
        generation = GenerationRequest(
            messages,
            max_tokens=self._llm_config.max_tokens,
            temperature=self._llm_config.temperature,
            top_p=self._llm_config.top_p,
            seed=self._llm_config.seed,
        )
        stats = GenerationStats()
        events: asyncio.Queue[object] = asyncio.Queue()
        sentences: asyncio.Queue[object] = asyncio.Queue()
        reply: list[str] = []
        llm_task = asyncio.create_task(self._generate(generation, stats, clock, events, sentences))
        tts_task = asyncio.create_task(self._speak(clock, events, sentences))
        try:
            finished = 0
            while finished < 2:
                event = await events.get()
                if event is _DONE:
                    finished += 1
                elif isinstance(event, BaseException):
                    raise event
                else:
                    if isinstance(event, TextDelta):
                        reply.append(event.text)
                    yield event  # type: ignore[misc]
        finally:
            for task in (llm_task, tts_task):
                task.cancel()
            for task in (llm_task, tts_task):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        details = {
            "transcript": user_text,
            "transcript_confidence": confidence,
            "transcript_source": source,
            "completion_tokens": stats.completion_tokens,
            "llm_stats": stats.extra,
        }
        yield TurnFinished("".join(reply).strip(), stats.finish_reason, dict(clock.marks), details)

    async def _generate(
        self,
        request: GenerationRequest,
        stats: GenerationStats,
        clock: TurnClock,
        events: asyncio.Queue[object],
        sentences: asyncio.Queue[object],
    ) -> None:
        splitter = SentenceSplitter()
        started = clock.since()
        try:
            async for delta in self.llm.stream(request, stats):
                if "llm_first_token" not in clock.marks:
                    clock.marks["llm_first_token"] = clock.stop(started)
                events.put_nowait(TextDelta(delta))
                for sentence in splitter.feed(delta):
                    sentences.put_nowait(sentence)
            tail = splitter.flush()
            if tail:
                sentences.put_nowait(tail)
            clock.marks["llm_total"] = clock.stop(started)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which re-raises
            events.put_nowait(exc)
        finally:
            sentences.put_nowait(_DONE)
            events.put_nowait(_DONE)

    async def _speak(
        self, clock: TurnClock, events: asyncio.Queue[object], sentences: asyncio.Queue[object]
    ) -> None:
        try:
            while (sentence := await sentences.get()) is not _DONE:
                assert isinstance(sentence, str)
                if not any(ch.isalnum() for ch in sentence):
                    continue  # punctuation or emoji alone: nothing to say
                started = clock.since()
                audio = await self.tts.synthesize(sentence)
                audio = SpeechAudio(
                    resample(audio.samples, audio.sample_rate, self._output_rate),
                    self._output_rate,
                )
                spent = clock.stop(started)
                clock.add("tts_total", spent)
                if "tts_first_audio" not in clock.marks:
                    clock.marks["tts_first_audio"] = spent
                    clock.mark("first_audio")
                events.put_nowait(SpokenPiece(sentence, audio))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which re-raises
            events.put_nowait(exc)
        finally:
            events.put_nowait(_DONE)
