"""``VoiceMemoryIntegration``: remember what the user says, and recall it when relevant."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coda.core.config import default_data_dir
from coda.core.integration_config import VoiceMemoryConfig
from coda.core.models import ConversationState, VoiceMessage, VoiceResponse
from coda.memory.answers import from_memory
from coda.memory.embedder import MiniLMEmbedder
from coda.memory.extraction import extract
from coda.memory.facts import owner_key
from coda.memory.model_extractor import ModelExtractor, worth_a_model
from coda.memory.perspective import second_person, third_person
from coda.memory.questions import forget_request, likely_questions, personal_question
from coda.memory.relevance import relevance, same_subject
from coda.memory.store import MemoryStore, NewMemory, SQLiteMemoryStore

log = logging.getLogger(__name__)

current_scope: ContextVar[str] = ContextVar("current_memory_scope", default="user:user")
"""The memory scope of the turn being answered (for the memory-search tool)."""

MERGE_COSINE = 0.9
"""Two memories this similar say the same thing: the newer wording replaces the older."""
_COUNTED = {"new": "learned", "merged": "merged", "updated": "updated"}


@dataclass
class VoiceMemory:
    """The memory system: a store and the embedder that indexes it."""

    store: MemoryStore
    embedder: MiniLMEmbedder = field(default_factory=MiniLMEmbedder)

    @classmethod
    def at(cls, path: Path | str) -> VoiceMemory:
        """SQLite memory at ``path``."""
        return cls(SQLiteMemoryStore(Path(path)))

    async def open(self) -> None:
        """Open the store and load the embedder."""
        await self.store.open()
        await self.embedder.load()

    async def close(self) -> None:
        """Close both."""
        await self.store.close()
        await self.embedder.close()


def user_words(message: VoiceMessage) -> str:
    """The user's words: given text, else the transcript recorded in the metadata."""
    return (message.text_content or message.metadata.get("transcript") or "").strip()


class VoiceMemoryIntegration:
    """Integrates voice processing with the memory system.

    Args:
        memory_manager: The memory system (default: SQLite in Coda's data folder).
        config: Retrieval and learning settings.
    """

    def __init__(
        self, memory_manager: VoiceMemory | None = None, config: VoiceMemoryConfig | None = None
    ) -> None:
        self.memory_manager = memory_manager or VoiceMemory.at(
            default_data_dir() / "memory.sqlite3"
        )
        self.config = config or VoiceMemoryConfig()
        self._opened = False
        self.extractor: ModelExtractor | None = None
        self._stats = dict.fromkeys(
            ("retrievals", "injected", "answered", "learned", "merged", "updated", "forgotten",
             "model_extracted"),
            0,
        )  # fmt: skip

    async def _ready(self) -> VoiceMemory:
        if not self._opened:
            await self.memory_manager.open()
            self._opened = True
        return self.memory_manager

    def scope(self, message: VoiceMessage) -> str:
        """Where the message's memories live: the speaker's, or the conversation's."""
        return self.scope_of(message.speaker, message.conversation_id)

    def scope_of(self, speaker: str, conversation_id: str) -> str:
        """Where a speaker's memories live in a conversation (``VoiceMemoryConfig.scope``)."""
        if self.config.scope == "conversation":
            return f"conversation:{conversation_id}"
        return f"user:{speaker}"

    async def open(self) -> None:
        """Open the store and load the embedder (otherwise done at first use)."""
        await self._ready()

    async def search(
        self, scope: str, query: str, limit: int, threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """Current memories of ``scope`` relevant to ``query`` (above the threshold), best first.

        A memory is found by its sentence or by a question it answers, and only
        if it is about whom the query asks (``coda.memory.relevance.same_subject``).
        """
        memory = await self._ready()
        (vector,) = await memory.embedder.embed([query])
        found = await memory.store.search(scope, vector, limit * 4)
        scored: list[dict[str, Any]] = []
        for f in found:
            relation = f.memory.relation
            text = f"{f.memory.text} {f.memory.questions}"
            scored.append(
                {
                    "id": f.memory.id,
                    "text": f.memory.text,
                    "kind": f.memory.kind,
                    "subject": f.memory.subject,
                    "relation": relation,
                    "importance": round(f.memory.importance, 3),
                    "cosine": round(f.cosine, 3),
                    "relevance": round(relevance(query, text, f.cosine, relation), 3)
                    if same_subject(query, f.memory.subject)
                    else 0.0,
                }
            )
        floor = self.config.memory_relevance_threshold if threshold is None else threshold
        kept = [m for m in scored if m["relevance"] >= floor]
        kept.sort(key=lambda m: (m["relevance"], m["importance"]), reverse=True)
        return kept[:limit]

    async def enhance_voice_context(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> dict[str, Any]:
        """Relevant memories for the message, and the text that puts them in the prompt.

        Returns:
            ``{"memories": [...], "system_context": str | None, "reply": str | None}``;
            each memory has its text, kind, importance, cosine and relevance;
            ``reply`` is the answer from memory to a question about the user's
            own facts (or to a request to forget), if there is one.
        """
        earlier = [t.user_text for t in conversation_state.turns] if conversation_state else []
        return await self.recall(self.scope(voice_message), user_words(voice_message), earlier)

    async def recall(
        self, scope: str, words: str, earlier_words: Sequence[str] = ()
    ) -> dict[str, Any]:
        """``enhance_voice_context`` for words already recognized, in ``scope``."""
        empty: dict[str, Any] = {"memories": [], "system_context": None, "reply": None}
        if not words:
            return empty
        current_scope.set(scope)
        forgotten = forget_request(words) if self.config.enable_learning else None
        if forgotten is not None:
            return {**empty, "reply": await self.forget(scope, forgotten)}
        if not self.config.enable_context_injection:
            return empty
        memories = await self.search(scope, words, self.config.max_relevant_memories)
        self._stats["retrievals"] += 1
        self._stats["injected"] += len(memories)
        if memories:
            memory = await self._ready()
            await memory.store.reinforce([m["id"] for m in memories], self.config.learning_rate)
        asked = personal_question(words) if self.config.answer_from_memory else None
        answer = (
            from_memory(asked, memories, self.config.memory_answer_threshold, earlier_words)
            if asked is not None
            else None
        )
        if answer is not None:  # the LLM is not asked: what counts is what the answer tells
            memories = list(answer.used)
            self._stats["answered"] += 1
        context = (
            "Facts the user told you in earlier conversations. They are about the user, the "
            'person you are talking to: tell them back with "you" and "your".\n'
            + "\n".join(f"- {third_person(m['text'])}" for m in memories)
            if memories
            else None
        )
        reply = answer.text if answer is not None else None
        return {"memories": memories, "system_context": context, "reply": reply}

    async def forget(self, scope: str, what: str) -> str:
        """Delete the memories about ``what`` ("my wifi password"); the reply that says so."""
        found = await self.search(scope, what, self.config.max_relevant_memories)
        memory = await self._ready()
        removed = await memory.store.forget(scope, [m["id"] for m in found])
        self._stats["forgotten"] += removed
        log.info("forgot %d memories about %r", removed, what)
        told = second_person(what)
        if not found:
            return f"I didn't have anything saved about {told}."
        return f"Okay, I've forgotten {told}."

    async def learn_from_voice_interaction(
        self,
        voice_message: VoiceMessage,
        voice_response: VoiceResponse,
        conversation_state: ConversationState | None = None,
    ) -> None:
        """Store the facts in what the user said; repeats merge, new values supersede."""
        words = user_words(voice_message) or str(voice_response.metadata.get("transcript", ""))
        await self.learn(self.scope(voice_message), words)

    async def learn(self, scope: str, words: str) -> int:
        """Store the facts in ``words`` under ``scope``; how many.

        The rules read what they can; the statements they cannot go to the
        model-based extractor, if there is one (this runs in the background).
        """
        if not self.config.enable_learning or not words or forget_request(words):
            return 0
        facts = extract(words)
        if not facts and self.extractor is not None and worth_a_model(words):
            facts = await self.extractor.extract(words)
            self._stats["model_extracted"] += len(facts)
        if not facts:
            return 0
        memory = await self._ready()
        for fact in facts:
            questions = [q.strip() + "?" for q in likely_questions(fact).split("?") if q.strip()]
            vectors = await memory.embedder.embed([fact.text, *questions])
            new = NewMemory(
                fact.kind,
                fact.text,
                vectors[0],
                key=fact.key if fact.relation else None,
                subject=owner_key(fact.subject),
                questions=" ".join(questions),
                question_vectors=vectors[1:] if questions else None,
            )
            _, outcome = await memory.store.remember(
                scope, new, MERGE_COSINE, self.config.learning_rate
            )
            self._stats[_COUNTED[outcome]] += 1
            log.info("%s memory: %s", outcome, fact.text)
        return len(facts)

    def get_integration_stats(self) -> dict[str, Any]:
        """Counters of retrievals, answers from memory, learning and forgetting."""
        return dict(self._stats)

    async def close(self) -> None:
        """Close the memory system, also after an open that did not finish."""
        self._opened = False
        await self.memory_manager.close()
