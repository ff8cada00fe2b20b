"""The live session's bookkeeping of one reply: what was made, held back and played."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

import numpy as np

from coda.core.enums import VoiceProcessingMode
from coda.turn.context import TurnContext
from coda.turn.events import TurnEvent, TurnOutcome


@dataclass
class Reply:
    """The reply in flight: its pieces and how much of them has been played.

    A preemptive reply is ``held``: its events wait in ``buffer`` until the end
    of the user's turn is confirmed, and nothing of it counts as playing.
    """

    turn: TurnContext
    user_text: str = ""
    pieces: list[tuple[str, int]] = field(default_factory=list)  # (text, samples)
    played: int = 0
    outcome: TurnOutcome | None = None
    mode: VoiceProcessingMode = VoiceProcessingMode.LLM_ENHANCED
    held: bool = False
    buffer: list[TurnEvent] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    utterance_samples: int = 0  # the length of the utterance it answers
    started_at: float = 0.0  # session time it was started, in seconds
    audio: np.ndarray | None = None  # the utterance, to recognize if the turn is cut short

    @property
    def queued(self) -> int:
        """Reply samples made so far."""
        return sum(n for _, n in self.pieces)

    @property
    def generating(self) -> bool:
        """The turn is still being made."""
        return self.task is not None and not self.task.done()

    async def cancel(self) -> None:
        """Stop making the reply and wait until it has stopped."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def spoken_text(self) -> str:
        """The words played so far: whole pieces, then the played share of the next."""
        words: list[str] = []
        remaining = self.played
        for text, samples in self.pieces:
            if remaining >= samples:
                words.extend(text.split())
                remaining -= samples
                continue
            piece_words = text.split()
            words.extend(piece_words[: int(len(piece_words) * remaining / max(samples, 1))])
            break
        return " ".join(words)


def is_backchannel(
    words: str, reply: Reply | None, backchannels: set[str], echo_share: float
) -> bool:
    """No words, a backchannel ("okay"), or ``reply``'s own words coming back as echo.

    Args:
        words: What was heard over the reply.
        reply: The reply being played.
        backchannels: Normalized words that never interrupt.
        echo_share: Heard words at least this share of the reply's are its echo (0: off).
    """
    said = normalize(words)
    if not said or said in backchannels:
        return True
    if not echo_share or reply is None:
        return False
    heard = said.split()
    spoken = set(normalize(" ".join(text for text, _ in reply.pieces)).split())
    return sum(word in spoken for word in heard) >= echo_share * len(heard)


def normalize(text: str) -> str:
    """Lower-case words only, for comparing what was said."""
    return " ".join(re.findall(r"[a-z']+(?:-[a-z]+)?", text.lower()))
