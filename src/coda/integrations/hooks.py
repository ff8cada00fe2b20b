"""The integrations as the turn pipeline's hooks (``coda.turn.hooks.TurnHooks``).

- memory: before the reply, what the speaker told Coda before (``MemoryRecalled``),
  and the answer from memory to a question about their own facts or a request
  to forget; after the commit, the facts in what they said are learned.
- personality: before the reply, feedback and requests in the user's words move
  the speaker's traits, which then set the prompt's style, the token and sentence
  caps, the pace and the volume; before the commit, the reply is checked against
  the sentence budget; after it, an interruption makes Coda briefer.
- tools: before the reply, the call the request needs runs (``ToolCalled``) and
  its result goes to the LLM; the tools offered are recorded (``tools_offered``).
- sync: after the commit, the turn is mirrored into the text conversation store
  (queued, with ``real_time_sync`` off, until the conversation ends or Coda stops).
"""

from __future__ import annotations

import dataclasses
import json

from coda.core.models import VoiceMessage, VoiceResponse, new_id
from coda.integrations.memory import VoiceMemoryIntegration
from coda.integrations.personality import VoicePersonalityIntegration
from coda.integrations.tools import VoiceToolsIntegration, results_context
from coda.sync.voice_sync import VoiceConversationSync
from coda.tools.builtin import MEMORY_TOOL
from coda.turn.context import TurnContext
from coda.turn.events import FunctionCallRequested, MemoryRecalled, ToolCalled, TurnOutcome
from coda.turn.hooks import Hook, ReplyPlan


class MemoryHook(Hook):
    """Recall before the reply, learn after the commit."""

    name = "memory"

    def __init__(self, memory: VoiceMemoryIntegration) -> None:
        self.memory = memory

    async def open(self) -> None:
        """Open the memory store and load the embedder."""
        await self.memory.open()

    async def before_reply(self, turn: TurnContext) -> ReplyPlan:
        """The relevant memories, as context and as a ``MemoryRecalled`` event."""
        scope = self.memory.scope_of(turn.speaker, turn.conversation_id)
        earlier = [t.user_text for t in turn.state.turns] if turn.state else []
        found = await self.memory.recall(scope, turn.words, earlier)
        memories = found["memories"]
        recalled = [
            {"text": m["text"], "kind": m["kind"], "relevance": m["relevance"]} for m in memories
        ]
        return ReplyPlan(
            context=found["system_context"],
            reply=found["reply"],
            events=[MemoryRecalled(tuple(recalled))] if recalled else [],
            metadata={"memories": memories, "answered_from_memory": found["reply"] is not None},
        )

    async def after_commit(self, outcome: TurnOutcome) -> None:
        """Learn the facts and preferences in what the user said."""
        turn = outcome.turn
        await self.memory.learn(
            self.memory.scope_of(turn.speaker, turn.conversation_id), outcome.user_text
        )

    async def close(self) -> None:
        """Close the memory store."""
        await self.memory.close()


class PersonalityHook(Hook):
    """Style before the reply, the budget before the commit, learning after it."""

    name = "personality"

    def __init__(self, personality: VoicePersonalityIntegration) -> None:
        self.personality = personality

    async def before_reply(self, turn: TurnContext) -> ReplyPlan:
        """The speaker's traits as instructions, caps, pace and volume.

        Explicit feedback and requests in this turn's words ("shorter please")
        move the traits first, so this reply already follows them.
        """
        integration = self.personality
        await integration.learn(turn.speaker, feedback=turn.options.user_feedback, words=turn.words)
        traits = await integration.traits_of(turn.speaker)
        config = integration.config
        adapt = config.enable_response_adaptation
        return ReplyPlan(
            style=traits.instructions() if config.enable_personality_injection else None,
            max_tokens=traits.max_tokens,
            max_sentences=traits.max_sentences if adapt else None,
            speaking_rate=integration.speaking_rate(traits) if adapt else 1.0,
            volume_gain=integration.volume_gain(turn.confidence) if adapt else 1.0,
            metadata={"personality_traits": traits.as_dict()},
        )

    async def before_commit(self, outcome: TurnOutcome) -> TurnOutcome:
        """Keep the reply within the sentence budget, and record what was applied."""
        return await self.personality.adapt_outcome(outcome)

    async def after_commit(self, outcome: TurnOutcome) -> None:
        """An interrupted reply was too long: Coda becomes briefer."""
        if outcome.interrupted:
            await self.personality.learn(outcome.turn.speaker, interrupted=True)

    async def close(self) -> None:
        """Close the trait store."""
        await self.personality.close()


class ToolsHook(Hook):
    """The tool call a request needs, before the reply.

    Args:
        tools: The tools integration.
        memory_recalls: The memory hook is installed; in a turn it takes part in,
            it has already recalled what is relevant, so the memory-search tool
            (an LLM round trip of a second or more here) is left out.
    """

    name = "tools"

    def __init__(self, tools: VoiceToolsIntegration, memory_recalls: bool = False) -> None:
        self.tools = tools
        self.memory_recalls = memory_recalls

    async def before_reply(self, turn: TurnContext) -> ReplyPlan:
        """Run the call; its result (or failure) goes to the LLM and to the transports.

        A call of one of the client's own tools is not run here: the plan hands it
        to the client (``ReplyPlan.client_call``).
        """
        recalled = self.memory_recalls and turn.options.allows(MemoryHook.name)
        skip = frozenset({MEMORY_TOOL}) if recalled else frozenset()
        client = turn.options.client_tools
        planned, offered = await self.tools.consider(turn.words, skip, client)
        considered = {"tools_offered": [s["name"] for s in offered]}
        if planned is None:
            return ReplyPlan(metadata=considered)
        name, arguments = planned
        if any(tool.name == name for tool in client):
            call = FunctionCallRequested(new_id("call"), name, json.dumps(arguments))
            metadata = {**considered, "client_call": dataclasses.asdict(call)}
            return ReplyPlan(client_call=call, metadata=metadata)
        results = await self.tools.execute(name, arguments)
        if not results:  # not run (auto_execute_tools is off): the caller may run it
            proposed = [{"name": name, "arguments": arguments}]
            return ReplyPlan(metadata={**considered, "tool_calls_proposed": proposed})
        events = [
            ToolCalled(r.tool_name, r.arguments, r.success, r.result, r.error, r.duration_ms)
            for r in results
        ]
        return ReplyPlan(
            context=results_context(results),
            events=list(events),
            metadata={**considered, "tool_results": [dataclasses.asdict(r) for r in results]},
        )


class SyncHook(Hook):
    """Mirror each stored turn into the text conversation store."""

    name = "sync"

    def __init__(self, sync: VoiceConversationSync) -> None:
        self.sync = sync

    async def open(self) -> None:
        """Open the text store (over a shared one, other instances' events flow from now)."""
        await self.sync.open()

    async def after_commit(self, outcome: TurnOutcome) -> None:
        """The user's words, then the reply (if any of it was spoken)."""
        turn = outcome.turn
        message = VoiceMessage(
            turn.conversation_id,
            b"",
            text_content=outcome.user_text,
            speaker=turn.speaker,
            message_id=turn.message_id or new_id("msg"),
        )
        await self.sync.sync_voice_message(message)
        if outcome.reply_text.strip():
            metadata = {"message_id": message.message_id, "interrupted": outcome.interrupted}
            reply = VoiceResponse(
                turn.conversation_id, outcome.reply_text, processing_mode=outcome.mode,
                metadata=metadata,
            )  # fmt: skip
            await self.sync.sync_voice_response(reply)

    async def close(self) -> None:
        """Write what is still queued (``real_time_sync`` off), then close the text store."""
        try:
            await self.sync.flush()
        finally:
            await self.sync.close()
