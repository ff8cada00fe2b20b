"""The cascade responder: the LLM, then speech synthesis (recognition runs before it).

The LLM streams; each sentence is handed to synthesis as soon as it is
complete, so the first audio is ready long before the model has finished. A
reply already known (an answer from memory) is spoken the same way, without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
from collections.abc import AsyncGenerator, AsyncIterator

import numpy as np

from coda.audio.decode import resample
from coda.audio.frames import apply_gain
from coda.core.config import LLMConfig, StreamingConfig
from coda.core.enums import VoiceProcessingMode
from coda.modes.clock import TurnClock
from coda.modes.prompt import build_messages
from coda.modes.responder import TurnRequest
from coda.modes.sentences import SentenceSplitter
from coda.providers.base import (
    GenerationRequest,
    GenerationStats,
    LanguageModel,
    SpeechAudio,
    TextToSpeech,
)
from coda.providers.scheduler import Ticket, current_ticket
from coda.turn.events import SpokenPiece, TextDelta, TurnEvent, TurnFinished

_DONE = object()
_SENTENCE_END = (".", "?", "!")


def _shape(samples: np.ndarray, rate: int, output_rate: int, gain: float) -> np.ndarray:
    """Resample one piece to the output rate and scale it by ``gain``, never clipping."""
    audio = resample(samples, rate, output_rate)
    return apply_gain(audio, gain) if gain != 1.0 else audio


class CascadeResponder:
    """LLM → TTS on recognized words, streamed sentence by sentence."""

    mode = VoiceProcessingMode.LLM_ENHANCED

    def __init__(
        self,
        llm: LanguageModel,
        tts: TextToSpeech,
        llm_config: LLMConfig,
        streaming: StreamingConfig,
        *,
        max_history_turns: int,
        output_rate: int,
    ) -> None:
        self.llm = llm
        self.name = f"cascade:{llm.name}"
        self.tts = tts
        self._llm_config = llm_config
        self._streaming = streaming
        self._max_history = max_history_turns
        self._output_rate = output_rate

    async def respond(self, request: TurnRequest, clock: TurnClock) -> AsyncIterator[TurnEvent]:
        """Answer one turn, yielding text deltas and spoken pieces as they are ready.

        Raises:
            LLMIntegrationError: If the language model fails.
        """
        user_text = request.text
        messages = build_messages(
            self._llm_config.system_prompt,
            request.history,
            user_text,
            self._max_history,
            request.extra_context,
            request.style,
            request.summary,
        )
        generation = GenerationRequest(
            messages,
            max_tokens=request.max_tokens or self._llm_config.max_tokens,
            temperature=(
                self._llm_config.temperature if request.temperature is None else request.temperature
            ),
            top_p=self._llm_config.top_p,
            seed=self._llm_config.seed,
        )
        stats = GenerationStats()
        events: asyncio.Queue[object] = asyncio.Queue()
        sentences: asyncio.Queue[object] = asyncio.Queue()
        reply: list[str] = []
        spoken: list[str] = []
        # The turn's claim on the embedded models (the pipeline's, or one of its
        # own when used alone), seen by the providers' calls in these two tasks.
        ticket = current_ticket.get()
        own = ticket is None
        ticket = ticket or Ticket(request.conversation_id)
        context = contextvars.copy_context()
        context.run(current_ticket.set, ticket)
        llm_task = asyncio.create_task(
            self._generate(
                generation,
                stats,
                clock,
                (events, sentences),
                request.max_sentences,
                request.reply,
                ticket,
            ),
            context=context,
        )
        tts_task = asyncio.create_task(
            self._speak(request, clock, events, sentences, spoken, ticket), context=context
        )
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
            if own:  # the pipeline's ticket ends with the turn, this one with the reply
                ticket.done = True
            for task in (llm_task, tts_task):
                task.cancel()
            for task in (llm_task, tts_task):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        details = {
            "responder": self.name,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "llm_stats": stats.extra,
        }
        if stats.finish_reason == "sentence_budget":
            # Cut at the personality's sentence budget: the reply is what was said.
            reply = [" ".join(spoken)]
        yield TurnFinished("".join(reply).strip(), stats.finish_reason, dict(clock.marks), details)

    async def _deltas(
        self, request: GenerationRequest, stats: GenerationStats, known: str | None
    ) -> AsyncGenerator[str, None]:
        """The LLM's reply, or the one already known (from memory), as text deltas."""
        if known is None:
            # Closed at once when the consumer stops early (the sentence budget), so
            # the model stops and its slot is free for the next turn.
            async with contextlib.aclosing(self.llm.stream(request, stats)) as deltas:
                async for delta in deltas:
                    yield delta
            return
        stats.finish_reason = "memory"
        for word in re.findall(r"\S+\s*", known):
            yield word

    async def _generate(
        self,
        request: GenerationRequest,
        stats: GenerationStats,
        clock: TurnClock,
        queues: tuple[asyncio.Queue[object], asyncio.Queue[object]],
        max_sentences: int | None,
        known: str | None,
        ticket: Ticket,
    ) -> None:
        events, sentences = queues
        ended = 0
        splitter = SentenceSplitter(
            self._streaming.max_sentence_chars,
            self._streaming.first_clause_min_words,
            self._streaming.first_piece_max_words,
        )
        started = clock.since()
        try:
            async with contextlib.aclosing(self._deltas(request, stats, known)) as deltas:
                async for delta in deltas:
                    if "llm_first_token" not in clock.marks:
                        clock.marks["llm_first_token"] = clock.stop(started)
                        clock.mark("llm_first_token_at")
                    events.put_nowait(TextDelta(delta))
                    for sentence in splitter.feed(delta):
                        clock.mark("llm_first_clause")
                        ticket.written = True  # the rest of the reply can wait its turn
                        sentences.put_nowait(sentence)
                        ended += sentence.rstrip().endswith(_SENTENCE_END)
                    if max_sentences is not None and ended >= max_sentences:
                        stats.finish_reason = "sentence_budget"
                        break
            tail = None if stats.finish_reason == "sentence_budget" else splitter.flush()
            if tail:
                clock.mark("llm_first_clause")
                sentences.put_nowait(tail)
            clock.marks["llm_total"] = clock.stop(started)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which re-raises
            events.put_nowait(exc)
        finally:
            sentences.put_nowait(_DONE)
            events.put_nowait(_DONE)

    async def _speak(
        self,
        request: TurnRequest,
        clock: TurnClock,
        events: asyncio.Queue[object],
        sentences: asyncio.Queue[object],
        spoken: list[str],
        ticket: Ticket,
    ) -> None:
        try:
            while (sentence := await sentences.get()) is not _DONE:
                assert isinstance(sentence, str)
                if not any(ch.isalnum() for ch in sentence):
                    continue  # punctuation or emoji alone: nothing to say
                started = clock.since()
                audio = await self.tts.synthesize(sentence, request.speaking_rate)
                samples = await asyncio.to_thread(
                    _shape, audio.samples, audio.sample_rate, self._output_rate, request.volume_gain
                )
                audio = SpeechAudio(samples, self._output_rate)
                spent = clock.stop(started)
                clock.add("tts_total", spent)
                if "tts_first_audio" not in clock.marks:
                    clock.marks["tts_first_audio"] = spent
                    clock.mark("first_audio")
                ticket.spoken = True
                spoken.append(sentence.strip())
                events.put_nowait(SpokenPiece(sentence, audio))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which re-raises
            events.put_nowait(exc)
        finally:
            events.put_nowait(_DONE)
