"""``VoiceMemoryIntegration``: remember what the user says, and recall it when relevant."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coda.core.config import default_data_dir
from coda.core.integration_config import VoiceMemoryConfig
from coda.core.models import ConversationState, VoiceMessage, VoiceResponse
from coda.memory.embedder import MiniLMEmbedder
from coda.memory.extraction import extract
from coda.memory.perspective import second_person
from coda.memory.relevance import relevance
from coda.memory.store import MemoryStore, SQLiteMemoryStore

log = logging.getLogger(__name__)

current_scope: ContextVar[str] = ContextVar("current_memory_scope", default="user:user")
"""The memory scope of the turn being answered (for the memory-search tool)."""

MERGE_COSINE = 0.9
"""Two memories this similar say the same thing: the newer wording replaces the older."""


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
        self._stats = {"retrievals": 0, "injected": 0, "learned": 0, "merged": 0}

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

    async def search(self, scope: str, query: str, limit: int) -> list[dict[str, Any]]:
        """Memories of ``scope`` relevant to ``query`` (above the threshold), best first."""
        memory = await self._ready()
        (vector,) = await memory.embedder.embed([query])
        found = await memory.store.search(scope, vector, limit * 4)
        scored: list[dict[str, Any]] = [
            {
                "id": f.memory.id,
                "text": f.memory.text,
                "kind": f.memory.kind,
                "importance": round(f.memory.importance, 3),
                "cosine": round(f.cosine, 3),
                "relevance": round(relevance(query, f.memory.text, f.cosine), 3),
            }
            for f in found
        ]
        kept = [m for m in scored if m["relevance"] >= self.config.memory_relevance_threshold]
        kept.sort(key=lambda m: (m["relevance"], m["importance"]), reverse=True)
        return kept[:limit]

    async def enhance_voice_context(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> dict[str, Any]:
        """Relevant memories for the message, and the text that puts them in the prompt.

        Returns:
            ``{"memories": [...], "system_context": str | None}``; each memory has
            its text, kind, importance, cosine and relevance.
        """
        return await self.recall(self.scope(voice_message), user_words(voice_message))

    async def recall(self, scope: str, words: str) -> dict[str, Any]:
        """``enhance_voice_context`` for words already recognized, in ``scope``."""
        if not self.config.enable_context_injection or not words:
            return {"memories": [], "system_context": None}
        current_scope.set(scope)
        memories = await self.search(scope, words, self.config.max_relevant_memories)
        self._stats["retrievals"] += 1
        self._stats["injected"] += len(memories)
        if memories:
            memory = await self._ready()
            await memory.store.reinforce([m["id"] for m in memories], self.config.learning_rate)
        # Told back in the second person, so the reply says "your sister", not "my".
        context = (
            "What you know about the user from earlier conversations (use it if it "
            "helps; tell it back to them as you/your):\n"
            + "\n".join(f"- {second_person(m['text'])}" for m in memories)
            if memories
            else None
        )
        return {"memories": memories, "system_context": context}

    async def learn_from_voice_interaction(
        self,
        voice_message: VoiceMessage,
        voice_response: VoiceResponse,
        conversation_state: ConversationState | None = None,
    ) -> None:
        """Store the facts and preferences in what the user said; merge repeats."""
        words = user_words(voice_message) or str(voice_response.metadata.get("transcript", ""))
        await self.learn(self.scope(voice_message), words)

    async def learn(self, scope: str, words: str) -> int:
        """Store the facts and preferences in ``words`` under ``scope``; how many."""
        if not self.config.enable_learning or not words:
            return 0
        candidates = extract(words)
        if not candidates:
            return 0
        memory = await self._ready()
        vectors = await memory.embedder.embed([c.text for c in candidates])
        for candidate, vector in zip(candidates, vectors, strict=True):
            _, merged = await memory.store.remember(
                scope,
                candidate.kind,
                candidate.text,
                vector,
                MERGE_COSINE,
                self.config.learning_rate,
            )
            self._stats["merged" if merged else "learned"] += 1
            log.info("%s memory: %s", "merged" if merged else "new", candidate.text)
        return len(candidates)

    def get_integration_stats(self) -> dict[str, Any]:
        """Counters: retrievals, memories injected, learned and merged."""
        return dict(self._stats)

    async def close(self) -> None:
        """Close the memory system."""
        if self._opened:
            await self.memory_manager.close()
            self._opened = False
