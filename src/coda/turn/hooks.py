"""The integrations' part of a turn: a typed hook protocol the pipeline calls.

Three moments:

- ``before_reply``: the user's words are known; a hook may add context for the
  LLM (memories, tool results), shape the reply (token and sentence caps, pace,
  volume) and report what it did as events (``MemoryRecalled``, ``ToolCalled``).
- ``before_commit``: the reply is finished but not stored; a hook may reshape it,
  so the history keeps what was actually said.
- ``after_commit``: the turn is stored; a hook learns from it or syncs it. These
  run in the background (``coda.turn.background``) and never delay the next turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from coda.turn.context import TurnContext
from coda.turn.events import FunctionCallRequested, TurnEvent, TurnOutcome


@dataclass
class ReplyPlan:
    """What the ``before_reply`` hooks add to a turn.

    Attributes:
        context: Text for the LLM before the user's words (this turn's).
        reply: The reply itself, when a hook knows it (an answer from memory):
            it is spoken instead of asking the LLM.
        style: Standing instructions for the speaker (opens the system prompt, so
            the LLM's cached prefix survives from turn to turn).
        max_tokens: A token cap for the reply (None: unchanged).
        max_sentences: A sentence cap for the reply (None: unchanged).
        speaking_rate: Speech rate relative to the voice's pace.
        volume_gain: Scale of the reply audio.
        events: What the hooks did, for the transports (memories, tool calls).
        metadata: Recorded in the response's metadata.
        client_call: The client must run one of its tools first: the turn ends
            with this call instead of a reply.
    """

    context: str | None = None
    reply: str | None = None
    style: str | None = None
    max_tokens: int | None = None
    max_sentences: int | None = None
    speaking_rate: float = 1.0
    volume_gain: float = 1.0
    events: list[TurnEvent] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    client_call: FunctionCallRequested | None = None

    def merged(self, other: ReplyPlan) -> ReplyPlan:
        """Both plans: contexts joined, the tighter caps, the other's voice settings."""

        def tighter(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        contexts = [c for c in (self.context, other.context) if c]
        styles = [c for c in (self.style, other.style) if c]
        return replace(
            self,
            context="\n\n".join(contexts) or None,
            reply=self.reply or other.reply,
            style="\n".join(styles) or None,
            max_tokens=tighter(self.max_tokens, other.max_tokens),
            max_sentences=tighter(self.max_sentences, other.max_sentences),
            speaking_rate=self.speaking_rate * other.speaking_rate,
            volume_gain=self.volume_gain * other.volume_gain,
            events=[*self.events, *other.events],
            metadata={**self.metadata, **other.metadata},
            client_call=self.client_call or other.client_call,
        )


class TurnHooks(Protocol):
    """One integration's part in every turn.

    Attributes:
        name: The integration's name ("memory", "personality", "tools", "sync"),
            by which a turn includes or skips it (``TurnOptions.integrations``).
    """

    name: str

    async def open(self) -> None:
        """Load what the hook needs (models, stores) before the first turn."""
        ...

    async def before_reply(self, turn: TurnContext) -> ReplyPlan:
        """Add to the reply once the words are known."""
        ...

    async def before_commit(self, outcome: TurnOutcome) -> TurnOutcome:
        """Reshape the finished reply before it is stored."""
        ...

    async def after_commit(self, outcome: TurnOutcome) -> None:
        """Learn from (or sync) the stored turn; runs in the background."""
        ...

    async def close(self) -> None:
        """Free what ``open`` acquired."""
        ...


class Hook:
    """A ``TurnHooks`` that does nothing at each moment: integrations override what they use."""

    name = "hook"

    async def open(self) -> None:
        """Nothing to load."""

    async def before_reply(self, turn: TurnContext) -> ReplyPlan:
        """Nothing to add."""
        return ReplyPlan()

    async def before_commit(self, outcome: TurnOutcome) -> TurnOutcome:
        """The reply as it is."""
        return outcome

    async def after_commit(self, outcome: TurnOutcome) -> None:
        """Nothing to learn."""

    async def close(self) -> None:
        """Nothing to free."""
