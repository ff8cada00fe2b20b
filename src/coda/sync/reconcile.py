"""Writing one change into the text conversation, resolving a conflict it meets.

A conflict (defined in ``coda.sync.voice_sync``) is resolved by
``coda.sync.conflicts.resolve_conflict``, counted, and announced as
SYNC_CONFLICT_DETECTED. Where the text side wins, or writes a message of its own,
the change is kept in ``PendingForVoice``. A write that meets a concurrent change
(``StaleVersionError``) is read again and retried, up to three attempts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from coda.core.errors import SyncError
from coda.core.integration_config import VoiceConversationSyncConfig
from coda.core.models import SyncEventType
from coda.sync.conflicts import ConflictResolution, MessageVersion, Side, resolve_conflict
from coda.sync.events import EventDispatcher, SyncEvent
from coda.sync.text_conversations import Source, StaleVersionError, TextMessage
from coda.sync.updates import PendingForVoice, TextUpdate, VoiceWrite

Outcome = Literal["added", "identical", "edited", "voice_won", "text_won"]
_WON: dict[Side, Outcome] = {"voice": "voice_won", "text": "text_won"}
_STALE_RETRIES = 3
T = TypeVar("T")


class ConversationManager(Protocol):
    """What sync needs from a text conversation manager (``TextConversationManager``)."""

    async def open(self) -> None:
        """Make the manager ready; a no-op when it already is."""

    async def get_message(self, conversation_id: str, message_id: str) -> TextMessage | None:
        """The message, or None."""

    async def add_message(self, conversation_id: str, message: TextMessage) -> TextMessage:
        """Append a message."""

    async def update_message(
        self,
        conversation_id: str,
        message_id: str,
        content: str,
        *,
        updated_by: Source = "text",
        updated_at: float | None = None,
        expected_version: int | None = None,
    ) -> TextMessage:
        """Change a message's content (``StaleVersionError`` if not at ``expected_version``)."""

    async def messages(self, conversation_id: str) -> list[TextMessage]:
        """The conversation's messages in order."""


@runtime_checkable
class Closable(Protocol):
    """A manager with resources to release."""

    async def close(self) -> None:
        """Release them."""


@runtime_checkable
class SharedEvents(Protocol):
    """A manager shared by several Coda instances, which carries their sync events."""

    async def publish_event(self, event: SyncEvent) -> None:
        """Tell the other instances of an event of this one."""

    def start_events(self, receive: Callable[[SyncEvent], Awaitable[None]]) -> None:
        """Hand each event of the other instances to ``receive``, in order."""

    def stop_events(self) -> None:
        """Stop handing them."""


async def _retry_stale(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt``, again on ``StaleVersionError``; the last failure propagates."""
    for _ in range(_STALE_RETRIES - 1):
        try:
            return await attempt()
        except StaleVersionError:
            pass
    return await attempt()


class Reconciler:
    """Applies voice writes and text updates to a conversation manager.

    Attributes:
        conflicts: Counts of conflicts: total, voice_won, text_won, unresolved.
    """

    def __init__(self, events: EventDispatcher, pending: PendingForVoice) -> None:
        self._events = events
        self._pending = pending
        self.conflicts = {"total": 0, "voice_won": 0, "text_won": 0, "unresolved": 0}

    async def voice_write(
        self,
        manager: ConversationManager,
        config: VoiceConversationSyncConfig,
        write: VoiceWrite,
    ) -> tuple[Outcome, str]:
        """Write one voice message to the text side; returns the outcome and the content.

        Raises:
            SyncError: If the roles differ or a MERGE conflict cannot be merged.
        """
        return await _retry_stale(lambda: self._voice_write(manager, config, write))

    async def _voice_write(
        self,
        manager: ConversationManager,
        config: VoiceConversationSyncConfig,
        write: VoiceWrite,
    ) -> tuple[Outcome, str]:
        cid, mid = write.conversation_id, write.message_id
        existing = await manager.get_message(cid, mid)
        if existing is None:
            message = TextMessage(
                mid, write.role, write.content, "voice", write.updated_at, write.updated_at
            )
            await manager.add_message(cid, message)
            self._pending.drop(cid, mid)
            return "added", write.content
        if existing.role != write.role:
            raise SyncError(
                f"message {mid!r} is a {existing.role} message on the text side, "
                f"not a {write.role} message"
            )
        if existing.content == write.content:
            self._pending.drop(cid, mid)
            return "identical", write.content
        if existing.source == "voice" and existing.updated_by == "voice":
            await manager.update_message(
                cid,
                mid,
                write.content,
                updated_by="voice",
                updated_at=write.updated_at,
                expected_version=existing.version,
            )
            self._pending.drop(cid, mid)
            return "edited", write.content
        voice = MessageVersion(write.content, write.updated_at)
        text = MessageVersion(existing.content, existing.updated_at)
        resolution = self._resolve(config, cid, mid, voice, text, origin="voice")
        if resolution.voice_won:
            await manager.update_message(
                cid,
                mid,
                resolution.content,
                updated_by="voice",
                updated_at=resolution.updated_at,
                expected_version=existing.version,
            )
            self._pending.drop(cid, mid)
        else:
            self._pending.set(cid, existing, "conflict")
        self._conflict_resolved(config, cid, voice, text, resolution, origin="voice")
        return _WON[resolution.winner], resolution.content

    async def text_update(
        self,
        manager: ConversationManager,
        config: VoiceConversationSyncConfig,
        update: TextUpdate,
    ) -> tuple[Outcome, TextMessage]:
        """Apply one text-side update; returns the action and the resulting message.

        Raises:
            SyncError: If the update changes a message's role or a MERGE conflict
                cannot be merged.
        """
        return await _retry_stale(lambda: self._text_update(manager, config, update))

    async def _text_update(
        self,
        manager: ConversationManager,
        config: VoiceConversationSyncConfig,
        update: TextUpdate,
    ) -> tuple[Outcome, TextMessage]:
        cid, mid = update.conversation_id, update.message_id
        existing = await manager.get_message(cid, mid)
        if existing is None:
            message = TextMessage(
                mid,
                update.role or "user",
                update.content,
                "text",
                update.created_at if update.created_at is not None else update.updated_at,
                update.updated_at,
            )
            await manager.add_message(cid, message)
            self._pending.set(cid, message, "text_only")
            return "added", message
        if update.role is not None and update.role != existing.role:
            raise SyncError(
                f"message {mid!r} is a {existing.role} message; an update cannot make it "
                f"a {update.role} message"
            )
        if existing.content == update.content:
            return "identical", existing
        if existing.source == "voice" and existing.updated_by == "voice":
            voice = MessageVersion(existing.content, existing.updated_at)
            text = MessageVersion(update.content, update.updated_at)
            resolution = self._resolve(config, cid, mid, voice, text, origin="text")
            message = existing
            if not resolution.voice_won:
                message = await _edit(manager, update, existing)
                self._pending.set(cid, message, "conflict")
            self._conflict_resolved(config, cid, voice, text, resolution, origin="text")
            return _WON[resolution.winner], message
        message = await _edit(manager, update, existing)
        self._pending.set(cid, message, "text_only" if existing.source == "text" else "conflict")
        return "edited", message

    def _resolve(
        self,
        config: VoiceConversationSyncConfig,
        conversation_id: str,
        message_id: str,
        voice: MessageVersion,
        text: MessageVersion,
        *,
        origin: Source,
    ) -> ConflictResolution:
        """Resolve by the configured strategy; an unmergeable conflict is announced, raised."""
        try:
            return resolve_conflict(message_id, voice, text, config.conflict_resolution_strategy)
        except SyncError as exc:
            self.conflicts["total"] += 1
            self.conflicts["unresolved"] += 1
            self._events.emit(
                SyncEventType.SYNC_CONFLICT_DETECTED,
                conversation_id,
                **_conflict_payload(config, message_id, voice, text, origin),
                winner=None,
                resolved_content=None,
                error=str(exc),
            )
            raise

    def _conflict_resolved(
        self,
        config: VoiceConversationSyncConfig,
        conversation_id: str,
        voice: MessageVersion,
        text: MessageVersion,
        resolution: ConflictResolution,
        *,
        origin: Source,
    ) -> None:
        """Count and announce a conflict once its resolution is written."""
        self.conflicts["total"] += 1
        self.conflicts[_WON[resolution.winner]] += 1
        self._events.emit(
            SyncEventType.SYNC_CONFLICT_DETECTED,
            conversation_id,
            **_conflict_payload(config, resolution.message_id, voice, text, origin),
            winner=resolution.winner,
            resolved_content=resolution.content,
            error=None,
        )


async def _edit(
    manager: ConversationManager, update: TextUpdate, existing: TextMessage
) -> TextMessage:
    return await manager.update_message(
        update.conversation_id,
        update.message_id,
        update.content,
        updated_by="text",
        updated_at=update.updated_at,
        expected_version=existing.version,
    )


def _conflict_payload(
    config: VoiceConversationSyncConfig,
    message_id: str,
    voice: MessageVersion,
    text: MessageVersion,
    origin: Source,
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "origin": origin,
        "strategy": config.conflict_resolution_strategy.value,
        "voice_content": voice.content,
        "voice_updated_at": voice.updated_at,
        "text_content": text.content,
        "text_updated_at": text.updated_at,
    }
