"""One turn with the integrations: context before the reply, learning after it.

Memory, personality and tools add to the LLM's context once the user's words
are known; afterwards the reply is adapted, memories and traits are learned,
and the turn is synced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coda.core.models import ConversationState, VoiceMessage, VoiceResponse
from coda.integrations.memory import VoiceMemoryIntegration
from coda.integrations.personality import VoicePersonalityIntegration
from coda.integrations.tools import VoiceToolsIntegration, results_context
from coda.modes.responder import TurnPlan
from coda.sync.voice_sync import VoiceConversationSync

if TYPE_CHECKING:
    from coda.voice.manager import VoiceManager
    from coda.voice.outcome import TurnOutcome


@dataclass
class Integrations:
    """The integrations a processor uses; any may be absent (disabled)."""

    memory: VoiceMemoryIntegration | None = None
    personality: VoicePersonalityIntegration | None = None
    tools: VoiceToolsIntegration | None = None
    sync: VoiceConversationSync | None = None

    async def respond(
        self,
        manager: VoiceManager,
        message: VoiceMessage,
        *,
        include_memory: bool,
        include_personality: bool,
        include_tools: bool,
        user_feedback: dict[str, Any] | None = None,
    ) -> VoiceResponse:
        """Answer ``message`` with the chosen integrations.

        Before the reply, once the words are known: relevant memories, the
        personality's instructions and token cap, and any tool results go to the
        LLM. After it: the reply is adapted to the personality, memories and
        traits are learned, and the turn is synced.
        """
        memory = self.memory if include_memory else None
        personality = self.personality if include_personality else None
        tools = self.tools if include_tools else None
        heard: dict[str, Any] = {}

        async def before_reply(words: str, state: ConversationState) -> TurnPlan:
            probe = dataclasses.replace(message, text_content=words)
            heard["message"], heard["state"] = probe, state
            parts: list[str | None] = []
            metadata: dict[str, Any] = {}
            max_tokens = None
            if memory is not None:
                found = await memory.enhance_voice_context(probe, state)
                parts.append(found["system_context"])
                metadata["memories"] = found["memories"]
            if personality is not None:
                style = await personality.enhance_voice_context(probe, state)
                parts.append(style["system_context"])
                max_tokens = style["max_tokens"]
                metadata["personality_traits"] = style["personality"]
            if tools is not None:
                results = await tools.run_tools(words)
                if results:
                    parts.append(results_context(results))
                metadata["tool_results"] = [dataclasses.asdict(r) for r in results]
            context = "\n\n".join(p for p in parts if p) or None
            shape = None
            if personality is not None:

                async def shape(outcome: TurnOutcome) -> TurnOutcome:
                    return await personality.adapt_outcome(outcome, probe)

            return TurnPlan(context, max_tokens, metadata, shape)

        response = await manager.process_voice_message(
            message, context={"before_reply": before_reply}
        )
        probe: VoiceMessage = heard.get("message") or dataclasses.replace(
            message, text_content=response.metadata.get("transcript", "")
        )
        state: ConversationState | None = heard.get("state")
        if personality is not None:  # the reply was shaped before it was stored
            await personality.learn_from_voice_interaction(probe, response, state, user_feedback)
        if memory is not None:
            await memory.learn_from_voice_interaction(probe, response, state)
        if self.sync is not None:
            await self.sync.sync_voice_message(probe, state)
            await self.sync.sync_voice_response(response, state)
        return response

    async def close(self) -> None:
        """Close the integrations' stores (the embedder closes with the memory)."""
        for part in (self.memory, self.personality, self.sync):
            if part is not None:
                await part.close()
