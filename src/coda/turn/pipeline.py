"""The turn pipeline: every entry point answers a turn through these stages, in order.

1. intake (``intake``): validate, decode, clean and resample a message's audio;
2. recognition (``recognition``): the words, typed, recognized, or speculative;
3. ``before_reply`` hooks: memories, the personality's style, tool results;
4. responders and selection (``respond``), with the fallback rule;
5. finish (``outcome``): the outcome and its quality scores;
6. ``before_commit`` hooks: the personality shapes what is said;
7. commit: the turn is stored;
8. ``after_commit`` hooks, in the background (``background``): learning and sync;
   and turns that outgrew the history are summarized (``summary``).

Nothing is stored unless the turn finishes. Every failure is one of the spec's
errors: anything else is wrapped in ``VoiceProcessingError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np

from coda.core.config import VoiceConfig
from coda.core.enums import VoiceProcessingMode
from coda.core.errors import VoiceProcessingError
from coda.core.models import ConversationState, ConversationTurn, VoiceMessage
from coda.deadline import LOOP_CLOCK, Clock, with_deadline
from coda.modes.clock import TurnClock
from coda.modes.responder import TurnRequest
from coda.modes.selection import requested_mode
from coda.providers.scheduler import Ticket, current_ticket
from coda.store.conversations import Conversations
from coda.turn.analytics import TurnStats
from coda.turn.background import BackgroundQueue
from coda.turn.context import TurnContext, TurnOptions
from coda.turn.events import Transcribed, TurnEvent, TurnOutcome
from coda.turn.hooks import ReplyPlan, TurnHooks
from coda.turn.intake import Intake
from coda.turn.outcome import build_outcome
from coda.turn.recognition import Recognizer
from coda.turn.respond import Answer, Responders
from coda.turn.summary import Summarizer

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0
"""At shutdown, queued learning gets this long to finish before it is dropped."""

EngineInfo = Callable[[VoiceProcessingMode], dict[str, Any]]
"""The provider, model and reason behind the mode that answered, for metadata."""


class TurnPipeline:
    """Runs turns through the stages; the engine builds one and every entry point uses it."""

    def __init__(
        self,
        config: VoiceConfig,
        conversations: Conversations,
        intake: Intake,
        recognizer: Recognizer,
        responders: Responders,
        hooks: Sequence[TurnHooks],
        engine_info: EngineInfo,
        summarizer: Summarizer | None = None,
        deadline_clock: Clock = LOOP_CLOCK,
    ) -> None:
        self.config = config
        self.deadline_clock = deadline_clock
        """What ``StreamingConfig.turn_timeout_seconds`` is measured on."""
        self.conversations = conversations
        self.intake = intake
        self.recognizer = recognizer
        self.responders = responders
        self.hooks = list(hooks)
        self.engine_info = engine_info
        self.summarizer = summarizer
        self.background = BackgroundQueue(config.background_queue_size)
        self.stats = TurnStats(config.enable_analytics)

    def hook(self, name: str) -> TurnHooks | None:
        """The installed hook called ``name``, if any."""
        return next((h for h in self.hooks if h.name == name), None)

    async def message(
        self,
        message: VoiceMessage,
        mode: VoiceProcessingMode | str | None,
        options: TurnOptions,
        *,
        streamed: bool = False,
    ) -> AsyncIterator[TurnEvent]:
        """Answer a whole message: intake first, then ``run``."""
        clock = TurnClock()
        try:
            requested = requested_mode(mode, message.processing_mode, self.config.default_mode)
            await self.conversations.check(message.conversation_id)  # before costly decoding
            audio = await self.intake.take(message, self.recognizer.sample_rate, clock)
        except VoiceProcessingError as error:
            self.stats.record_error(error)
            raise
        turn = TurnContext(
            message.conversation_id, message.speaker, message.message_id, options, streamed=streamed
        )
        async for event in self.run(
            turn, audio=audio, text=message.text_content, requested=requested, clock=clock
        ):
            yield event

    async def run(
        self,
        turn: TurnContext,
        *,
        audio: np.ndarray | None,
        text: str | None,
        requested: VoiceProcessingMode,
        clock: TurnClock | None = None,
        commit: bool = True,
        transcript: Transcribed | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """Answer recognized or recognizable speech (``audio`` at the recognizer's rate).

        With ``commit=False`` the caller commits (``commit``) once it knows how
        much of the reply was heard. A ``transcript`` recognized ahead of time
        (speculatively) skips recognition.

        Raises:
            ValidationError: If no words were recognized.
            TimeoutError: If the turn outlasts ``StreamingConfig.turn_timeout_seconds``.
            VoiceProcessingError: For any other failure (its cause chained).
        """
        clock = clock or TurnClock()
        # The turn's claim on the embedded models, for every stage's model calls
        # (a tool's LLM call, the reply, its synthesis); set before the deadline's
        # steps start, as each step runs in a copy of this context.
        ticket = Ticket(turn.conversation_id)
        token = current_ticket.set(ticket)
        try:
            async with self.conversations.lock(turn.conversation_id):
                # Inside the lock: over a shared store, the state read is the one
                # the previous turn (here or on another instance) left.
                turn.state = await self.conversations.open(turn.conversation_id)
                stages = self._stages(turn, audio, text, requested, clock, commit, transcript)
                async for event in with_deadline(
                    stages, self.config.streaming.turn_timeout_seconds, self.deadline_clock
                ):
                    yield event
        except VoiceProcessingError as error:
            self.stats.record_error(error)
            raise
        except Exception as error:  # noqa: BLE001 - nothing outside the spec's errors escapes
            self.stats.record_error(error)
            log.exception("turn failed in %s", turn.conversation_id)
            raise VoiceProcessingError(f"the turn failed: {type(error).__name__}") from error
        finally:
            ticket.done = True  # background work need not wait for this turn any more
            with contextlib.suppress(ValueError):  # closed from another context
                current_ticket.reset(token)

    async def _stages(
        self,
        turn: TurnContext,
        audio: np.ndarray | None,
        text: str | None,
        requested: VoiceProcessingMode,
        clock: TurnClock,
        commit: bool,
        transcript: Transcribed | None,
    ) -> AsyncIterator[TurnEvent]:
        assert turn.state is not None
        # 2. recognition (beside Moshi when Moshi listens to the audio itself)
        recognizing = None
        if transcript is None and self.responders.listens_first(requested, audio):
            recognizing = self.recognizer.words(audio, text, clock)
        else:
            transcript = transcript or await self.recognizer.words(audio, text, clock)
            turn.words, turn.confidence = transcript.text, transcript.confidence
            yield transcript
        # 3. before-reply hooks (only with the words: Moshi cannot take text context)
        started = clock.since()
        plan = await self._plan(turn) if transcript is not None else ReplyPlan()
        clock.add("hooks", clock.stop(started))
        turn.reply_context = plan.context
        for event in plan.events:
            yield event
        if plan.client_call is not None:  # the client runs its tool; a later turn answers
            yield plan.client_call
            return
        # 4. responders and selection
        decision = self.responders.decide(
            requested, turn.conversation_id, turn.words, audio is not None, plan.reply is not None
        )
        answer = Answer(decision, transcript)
        request = self._request(turn, audio, plan)
        async for event in self.responders.answer(
            request, answer, clock, turn.conversation_id, recognizing
        ):
            if isinstance(event, Transcribed):
                turn.words, turn.confidence = event.text, event.confidence
            yield event
        assert answer.transcript is not None and answer.finished is not None
        # 5. finish
        clock.marks.update(answer.marks)
        answer.finished.timings_ms = {**clock.marks, **answer.finished.timings_ms}
        outcome = await asyncio.to_thread(
            build_outcome,
            turn,
            answer.decision.as_dict(),
            answer.transcript,
            answer.finished,
            answer.pieces,
            clock.elapsed_ms(),
            self.config.audio.sample_rate,
            self.engine_info(answer.decision.chosen),
        )
        outcome.metadata.update(plan.metadata)
        # 6. before-commit hooks
        for hook in self._included(turn):
            outcome = await hook.before_commit(outcome)
        # 7 + 8. commit, then learning and sync in the background
        if commit:
            await self.commit(outcome)
        yield outcome

    def _included(self, turn: TurnContext) -> list[TurnHooks]:
        return [h for h in self.hooks if turn.options.allows(h.name)]

    async def _plan(self, turn: TurnContext) -> ReplyPlan:
        """The hooks' plan; for a message stored already (a client's retry), its reply."""
        if turn.message_id:
            stored = await self.conversations.store.find_turn(turn.conversation_id, turn.message_id)
            if stored is not None:  # said again; the commit then stores nothing new
                return ReplyPlan(reply=stored.assistant_text, metadata={"replayed": True})
        return await self.before_reply(turn)

    async def before_reply(self, turn: TurnContext) -> ReplyPlan:
        """The ``before_reply`` hooks' plan for ``turn``, its words known (stage 3)."""
        # What the speaker's previous turn is still teaching should be recallable now.
        wait = self.config.learning_wait_ms / 1000  # a model reading it may finish later
        await self.background.settled(turn.speaker, wait, optional=False)
        plan = ReplyPlan(context=turn.options.system_context)
        for hook in self._included(turn):
            try:
                plan = plan.merged(await hook.before_reply(turn))
            except Exception:  # noqa: BLE001 - an integration costs the turn its help, not its answer
                self.stats.hook_failures[hook.name] += 1
                log.exception("the %s hook failed before the reply", hook.name)
        return plan

    def _request(self, turn: TurnContext, audio: np.ndarray | None, plan: ReplyPlan) -> TurnRequest:
        assert turn.state is not None
        return TurnRequest(
            turn.words,
            tuple(turn.state.turns),
            plan.context,
            plan.reply,
            turn.state.summary or None,
            plan.style,
            audio=audio,
            audio_rate=self.recognizer.sample_rate,
            max_tokens=turn.options.max_tokens or plan.max_tokens,
            temperature=turn.options.temperature,
            max_sentences=plan.max_sentences,
            speaking_rate=plan.speaking_rate,
            volume_gain=plan.volume_gain,
            conversation_id=turn.conversation_id,
        )

    async def commit(self, outcome: TurnOutcome) -> None:
        """Store a finished (or interrupted, with what was spoken) turn, then learn from it."""
        turn = outcome.turn
        state = await self.conversations.held(turn.conversation_id)
        stored = ConversationTurn(
            outcome.user_text,
            outcome.reply_text,
            outcome.mode,
            message_id=turn.message_id,
            context=turn.reply_context,
        )
        dropped = await self.conversations.commit(
            state, stored, {"timings_ms": outcome.metadata.get("timings_ms", {})}
        )
        if dropped is None:
            return  # its message was stored before (a retry): learnt from then
        if dropped and self.summarizer is not None:
            self.background.submit(turn.speaker, "summary", _summary(self, state, dropped))
        self.stats.record(outcome)
        timings = outcome.metadata.get("timings_ms", {})
        self.responders.policy.record_success(
            turn.conversation_id,
            outcome.mode,
            timings.get("first_audio", outcome.processing_time_ms),
            (
                outcome.scores.get("relevance_score", 0.0)
                + outcome.scores.get("coherence_score", 0.0)
            )
            / 2,
        )
        for hook in self._included(turn):
            self.background.submit(turn.speaker, f"{hook.name}.after_commit", _after(hook, outcome))

    def forget(self, conversation_id: str) -> None:
        """Drop what was learned about an ended conversation's modes and figures."""
        self.responders.policy.forget(conversation_id)
        self.stats.forget(conversation_id)

    async def close(self) -> None:
        """Let queued learning finish (bounded), then stop the background worker."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                await self.background.drain()
        await self.background.close()


def _summary(
    pipeline: TurnPipeline, state: ConversationState, dropped: list[ConversationTurn]
) -> Callable[[], Any]:
    async def fold() -> None:
        assert pipeline.summarizer is not None
        state.summary = await pipeline.summarizer.summarize(state.summary, dropped)
        await pipeline.conversations.store.set_summary(state.conversation_id, state.summary)

    return fold


def _after(hook: TurnHooks, outcome: TurnOutcome) -> Callable[[], Any]:
    return lambda: hook.after_commit(outcome)
