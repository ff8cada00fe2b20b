"""The changes sync moves between the voice and the text side, validated.

``VoiceWrite`` is one voice-side message to mirror into the text conversation,
built from a ``VoiceMessage``, a ``VoiceResponse`` or the turns of a
``ConversationState``; ``TextUpdate`` is a validated ``update_data`` from the text
side. ``VoiceUpdate`` is a text-side message the voice side should adopt, kept
per conversation by ``PendingForVoice``. Invalid input raises ``SyncError``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from coda.core.errors import SyncError
from coda.core.models import (
    ConversationState,
    ConversationTurn,
    VoiceMessage,
    VoiceResponse,
    new_id,
)
from coda.sync.text_conversations import Role, TextMessage

Reason = Literal["conflict", "text_only"]


@dataclass(frozen=True)
class VoiceUpdate:
    """A text-side message the voice side should adopt.

    Attributes:
        reason: "conflict" (the text version won a conflict) or "text_only"
            (the message exists only on the text side).
    """

    conversation_id: str
    message_id: str
    role: Role
    content: str
    updated_at: float
    reason: Reason


@dataclass(eq=False)
class VoiceWrite:
    """One voice-side message to mirror into the text conversation (compared by identity)."""

    conversation_id: str
    message_id: str
    role: Role
    content: str
    updated_at: float


@dataclass
class TextUpdate:
    """A validated update coming from the text side."""

    conversation_id: str
    message_id: str
    content: str
    role: Role | None
    updated_at: float
    created_at: float | None


def non_empty_str(value: object, what: str) -> str:
    """``value`` if it is a string with more than whitespace, else a ``SyncError``."""
    if not isinstance(value, str) or not value.strip():
        raise SyncError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _timestamp(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SyncError(f"{what} must be a finite number (epoch seconds), got {value!r}")
    return float(value)


def _check_state(state: ConversationState | None, conversation_id: str) -> None:
    if state is not None and state.conversation_id != conversation_id:
        raise SyncError(
            f"conversation_state is of {state.conversation_id!r}, not of {conversation_id!r}"
        )


def voice_message_write(
    voice_message: VoiceMessage, conversation_state: ConversationState | None
) -> VoiceWrite:
    """The user's words as a "user" write (see ``VoiceConversationSync.sync_voice_message``)."""
    if not isinstance(voice_message, VoiceMessage):
        raise SyncError(f"expected a VoiceMessage, got {type(voice_message).__name__}")
    cid = non_empty_str(voice_message.conversation_id, "conversation_id")
    _check_state(conversation_state, cid)
    content = voice_message.text_content
    if not isinstance(content, str) or not content.strip():
        content = voice_message.metadata.get("transcript")
    if not isinstance(content, str) or not content.strip():
        raise SyncError(
            f"voice message {voice_message.message_id!r} has no text to sync: "
            "give text_content or metadata['transcript']"
        )
    at = voice_message.metadata.get("updated_at", voice_message.timestamp)
    return VoiceWrite(cid, voice_message.message_id, "user", content, _timestamp(at, "updated_at"))


def voice_response_write(
    voice_response: VoiceResponse, conversation_state: ConversationState | None
) -> VoiceWrite:
    """Coda's reply as an "assistant" write (see ``sync_voice_response``)."""
    if not isinstance(voice_response, VoiceResponse):
        raise SyncError(f"expected a VoiceResponse, got {type(voice_response).__name__}")
    cid = non_empty_str(voice_response.conversation_id, "conversation_id")
    _check_state(conversation_state, cid)
    content = non_empty_str(voice_response.text_content, "voice_response.text_content")
    meta = voice_response.metadata
    if meta.get("reply_id") is not None:
        reply_id = non_empty_str(meta["reply_id"], "metadata['reply_id']")
    elif meta.get("message_id"):
        reply_id = f"{non_empty_str(meta['message_id'], 'metadata[message_id]')}:reply"
    else:
        reply_id = new_id("reply")
    at = _timestamp(meta.get("updated_at", voice_response.timestamp), "updated_at")
    return VoiceWrite(cid, reply_id, "assistant", content, at)


def _turn_id(conversation_id: str, turn: ConversationTurn) -> str:
    """The turn's message id, or one derived from its conversation and timestamp."""
    if turn.message_id:
        return turn.message_id
    digest = hashlib.sha1(
        f"{conversation_id}\0{turn.timestamp!r}".encode(), usedforsecurity=False
    ).hexdigest()
    return f"turn_{digest[:20]}"


def turn_writes(state: ConversationState) -> list[VoiceWrite]:
    """The writes of every turn: its user text, then its reply (``<id>:reply``)."""
    cid = state.conversation_id
    writes: list[VoiceWrite] = []
    for turn in state.turns:
        message_id = _turn_id(cid, turn)
        if turn.user_text.strip():
            writes.append(VoiceWrite(cid, message_id, "user", turn.user_text, turn.timestamp))
        if turn.assistant_text.strip():
            writes.append(
                VoiceWrite(
                    cid, f"{message_id}:reply", "assistant", turn.assistant_text, turn.timestamp
                )
            )
    return writes


def parse_update(conversation_id: object, update_data: object) -> TextUpdate:
    """Validate an update from the text side.

    Raises:
        SyncError: If an id or the content is missing or of the wrong type.
    """
    cid = non_empty_str(conversation_id, "conversation_id")
    if not isinstance(update_data, Mapping):
        raise SyncError(f"update_data must be a dict, got {type(update_data).__name__}")
    for key in ("message_id", "content"):
        if key not in update_data:
            raise SyncError(f"update_data is missing {key!r}")
    message_id = non_empty_str(update_data["message_id"], "update_data['message_id']")
    content = non_empty_str(update_data["content"], "update_data['content']")
    role = update_data.get("role")
    if role is not None and role not in ("user", "assistant"):
        raise SyncError(f"update_data['role'] must be 'user' or 'assistant', got {role!r}")
    updated_at = update_data.get("updated_at")
    created_at = update_data.get("created_at")
    return TextUpdate(
        conversation_id=cid,
        message_id=message_id,
        content=content,
        role=role,
        updated_at=time.time()
        if updated_at is None
        else _timestamp(updated_at, "update_data['updated_at']"),
        created_at=None
        if created_at is None
        else _timestamp(created_at, "update_data['created_at']"),
    )


class PendingForVoice:
    """The ``VoiceUpdate``s waiting for the voice side, per conversation, oldest first."""

    def __init__(self) -> None:
        self._pending: dict[str, dict[str, VoiceUpdate]] = {}

    def __len__(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def set(self, conversation_id: str, message: TextMessage, reason: Reason) -> None:
        """Keep ``message`` for the voice side, replacing an entry of the same id."""
        self._pending.setdefault(conversation_id, {})[message.message_id] = VoiceUpdate(
            conversation_id,
            message.message_id,
            message.role,
            message.content,
            message.updated_at,
            reason,
        )

    def drop(self, conversation_id: str, message_id: str) -> None:
        """Forget the entry of a message the voice side now agrees with."""
        pending = self._pending.get(conversation_id)
        if pending is not None:
            pending.pop(message_id, None)
            if not pending:
                del self._pending[conversation_id]

    def peek(self, conversation_id: str) -> list[VoiceUpdate]:
        """The conversation's entries (not cleared)."""
        return list(self._pending.get(conversation_id, {}).values())

    def take(self, conversation_id: str) -> list[VoiceUpdate]:
        """Return and clear the conversation's entries."""
        return list(self._pending.pop(conversation_id, {}).values())
