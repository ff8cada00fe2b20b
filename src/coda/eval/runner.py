"""Run the eval's cases against a real engine, through the turn pipeline every transport uses.

Each case gets a speaker of its own, so its memories start empty, and every
conversation in it is a new one. Between turns the speaker's background
learning is allowed to finish, as it would while a person pauses or comes back
later; the time a turn took is recorded, not judged.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from coda.core.models import VoiceMessage
from coda.eval.cases import EvalCase, EvalTurn
from coda.eval.voices import speak
from coda.memory.questions import SHARED
from coda.memory.relevance import content_stems
from coda.voice.manager import VoiceManager

SETTLE_SECONDS = 120.0
"""How long a turn's background learning may take before the next turn goes on."""
_OWNED = re.compile(r"\b(?:my|our)\s+([a-z'-]+)", re.IGNORECASE)
_RELATION_STEMS = content_stems(
    "live lives work works study have has like love eat drink support speak come born grew "
    "moved call really just remember"
)


@dataclass(frozen=True)
class TurnResult:
    """What happened in one turn."""

    turn: EvalTurn
    heard: str
    reply: str
    memories: tuple[str, ...]
    failures: tuple[str, ...]
    unrelated: tuple[str, ...]
    perspective_error: bool
    answered_from_memory: bool
    milliseconds: float
    first_audio_ms: float | None


@dataclass
class CaseResult:
    """A case's turns, and whether every checked one passed."""

    case: EvalCase
    turns: list[TurnResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every checked turn passed."""
        return all(not t.failures for t in self.turns if t.turn.checked)


def perspective_error(said: str, reply: str) -> bool:
    """The reply says back "my X" for the user's "my X" (it should say "your X")."""
    owned = {m.group(1).lower() for m in _OWNED.finditer(said)} - SHARED
    return any(m.group(1).lower() in owned for m in _OWNED.finditer(reply))


async def _say(
    manager: VoiceManager, speaker: str, conversation_id: str, turn: EvalTurn, voice: str
) -> tuple[TurnResult, list[str]]:
    """One turn, typed or spoken in ``voice``, judged; and the memories it was given."""
    engine = manager.engine
    assert engine.tts is not None and engine.pipeline is not None
    typed = voice == "typed"
    audio = b"" if typed else await speak(turn.say, voice, engine.tts)
    message = VoiceMessage(
        conversation_id, audio, text_content=turn.say if typed else None, speaker=speaker
    )
    started = time.perf_counter()
    response = await manager.process_voice_message(message)
    spent = (time.perf_counter() - started) * 1000
    await engine.pipeline.background.settled(speaker, SETTLE_SECONDS)
    metadata = response.metadata
    memories = [m["text"] for m in metadata.get("memories", [])]
    unrelated = [m for m in memories if turn.recall is None or not re.search(turn.recall, m, re.I)]
    reply = response.text_content or ""
    result = TurnResult(
        turn,
        str(metadata.get("transcript", turn.say)),
        reply,
        tuple(memories),
        tuple(turn.failures(reply)) if turn.checked else (),
        tuple(unrelated) if turn.checked else (),
        turn.checked and perspective_error(turn.say, reply),
        bool(metadata.get("answered_from_memory")),
        spent,
        metadata.get("timings_ms", {}).get("first_audio"),
    )
    return result, memories


def _new_conversation(speaker: str) -> str:
    return f"{speaker}-{uuid.uuid4().hex[:6]}"


async def run_case(manager: VoiceManager, case: EvalCase) -> CaseResult:
    """Hold the case's conversations with a fresh speaker; judge each checked turn."""
    speaker = f"eval-{uuid.uuid4().hex[:10]}"
    result = CaseResult(case)
    for conversation in case.conversations:
        conversation_id = _new_conversation(speaker)
        for turn in conversation:
            said, _ = await _say(manager, speaker, conversation_id, turn, case.voice)
            result.turns.append(said)
        await manager.end_conversation(conversation_id)
    return result


def _related(memory: str, told: str) -> bool:
    """``memory`` came from what was told (as heard): they share a distinctive word."""
    return bool((content_stems(memory) & content_stems(told)) - _RELATION_STEMS)


async def run_pairs(manager: VoiceManager, cases: list[EvalCase]) -> list[CaseResult]:
    """Recall pairs in one voice, as one speaker's life: all told, then all asked.

    Every fact is told in a conversation of its own, then every question is
    asked in a new one. So each question is answered with all the other facts in memory too, and a
    memory given to it that did not come from its own fact counts as unrelated.
    """
    speaker = f"eval-{uuid.uuid4().hex[:10]}"
    results = [CaseResult(case) for case in cases]
    for phase in (0, 1):
        for case, result in zip(cases, results, strict=True):
            conversation_id = _new_conversation(speaker)
            for turn in case.conversations[phase]:
                said, memories = await _say(manager, speaker, conversation_id, turn, case.voice)
                if phase == 1:
                    told = result.turns[0].heard
                    said = replace(
                        said, unrelated=tuple(m for m in memories if not _related(m, told))
                    )
                result.turns.append(said)
            await manager.end_conversation(conversation_id)
    return results


async def run_eval(
    manager: VoiceManager,
    cases: list[EvalCase],
    progress: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every case: the recall pairs of each voice together (``run_pairs``), the rest alone."""
    results: list[CaseResult] = []
    pairs: dict[str, list[EvalCase]] = {}
    for case in cases:
        if case.category.startswith("recall/"):
            pairs.setdefault(case.category, []).append(case)
    for group in pairs.values():
        for result in await run_pairs(manager, group):
            results.append(result)
            if progress is not None:
                progress(result)
    for case in cases:
        if not case.category.startswith("recall/"):
            results.append(await run_case(manager, case))
            if progress is not None:
                progress(results[-1])
    return results
