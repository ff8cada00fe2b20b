"""Resolution of a conflict between the voice and the text version of one message.

A conflict is two different contents for the same ``message_id``: the version the
voice side holds and the version the text side holds. Each strategy is defined as:

- ``VOICE_PRIORITY``: the voice content wins.
- ``CONVERSATION_PRIORITY``: the text content wins.
- ``TIMESTAMP_PRIORITY``: the version with the later ``updated_at`` wins; equal
  timestamps go to the voice side.
- ``MERGE``: contents are compared after case folding and collapsing runs of
  whitespace (``" ".join(text.split()).casefold()``). If one normalized content
  contains the other, the containing (longer) one wins, its original text kept;
  equal normalized contents go to the voice side. If neither contains the other
  the conflict cannot be merged: ``UnresolvableConflictError`` (a ``SyncError``)
  naming the message id is raised.

Whatever the strategy, the resolution carries the winner's content and
``updated_at``. Identical contents are no conflict; they resolve to the voice side.
All functions here are pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from coda.core.errors import SyncError
from coda.core.models import ConflictResolutionStrategy

Side = Literal["voice", "text"]


class UnresolvableConflictError(SyncError):
    """A MERGE conflict whose contents do not contain one another."""

    def __init__(self, message_id: str, voice_content: str, text_content: str) -> None:
        super().__init__(
            f"cannot merge the voice and text versions of message {message_id!r}: neither "
            f"contains the other (voice {voice_content!r}, text {text_content!r})"
        )
        self.message_id = message_id


@dataclass(frozen=True)
class MessageVersion:
    """One side's version of a message: its content and when it was last changed."""

    content: str
    updated_at: float


@dataclass(frozen=True)
class ConflictResolution:
    """The outcome of a conflict: which side won and the resulting content."""

    message_id: str
    strategy: ConflictResolutionStrategy
    winner: Side
    content: str
    updated_at: float

    @property
    def voice_won(self) -> bool:
        """True when the voice version is the result."""
        return self.winner == "voice"


def normalize_content(content: str) -> str:
    """Content for MERGE comparisons: case-folded, whitespace runs collapsed, stripped."""
    return " ".join(content.split()).casefold()


def merge_winner(message_id: str, voice: MessageVersion, text: MessageVersion) -> Side:
    """The side whose content contains the other's, for MERGE.

    Raises:
        UnresolvableConflictError: If neither normalized content contains the other.
    """
    voice_norm, text_norm = normalize_content(voice.content), normalize_content(text.content)
    if text_norm in voice_norm:
        return "voice"
    if voice_norm in text_norm:
        return "text"
    raise UnresolvableConflictError(message_id, voice.content, text.content)


def resolve_conflict(
    message_id: str,
    voice: MessageVersion,
    text: MessageVersion,
    strategy: ConflictResolutionStrategy | str,
) -> ConflictResolution:
    """Resolve a conflict between the voice and text versions of one message.

    Args:
        message_id: The message both versions belong to (named in errors).
        voice: The voice side's version.
        text: The text side's version.
        strategy: A ``ConflictResolutionStrategy`` or its value.

    Returns:
        The winner and its content (see the module docstring for each strategy).

    Raises:
        UnresolvableConflictError: For MERGE when neither content contains the other.
        SyncError: If ``strategy`` is not a known strategy.
    """
    try:
        strategy = ConflictResolutionStrategy(strategy)
    except ValueError as exc:
        raise SyncError(f"unknown conflict resolution strategy {strategy!r}") from exc
    winner: Side
    if voice.content == text.content or strategy is ConflictResolutionStrategy.VOICE_PRIORITY:
        winner = "voice"
    elif strategy is ConflictResolutionStrategy.CONVERSATION_PRIORITY:
        winner = "text"
    elif strategy is ConflictResolutionStrategy.TIMESTAMP_PRIORITY:
        winner = "text" if text.updated_at > voice.updated_at else "voice"
    else:
        winner = merge_winner(message_id, voice, text)
    chosen = voice if winner == "voice" else text
    return ConflictResolution(message_id, strategy, winner, chosen.content, chosen.updated_at)
