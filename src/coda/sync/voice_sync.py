"""Synchronization of voice conversations with a text conversation manager.

Voice messages become "user" messages and voice responses "assistant" messages of
the text conversation with the same id, written with source "voice". A conflict is
a voice write meeting different content that the text side wrote for the same
message id (or a text edit of content the voice side wrote); it is resolved by
the configured ``ConflictResolutionStrategy`` as documented in
``coda.sync.conflicts``. A voice correction of content the voice side itself
wrote is an ordinary edit, not a conflict.

When the text side wins, or holds messages the voice side lacks, the change is
kept for the voice side to adopt: read it with ``pending_for_voice`` (or drain it
with ``take_pending_for_voice``); ``get_sync_stats()["pending_for_voice"]`` counts it.

Events go to handlers in the order they occur, with a sequence number that grows
by one per event of this instance. A handler that raises is logged and counted,
never propagated. An event raised while another is being delivered (by a handler
that syncs, or by a concurrent sync) is delivered by the coroutine already
delivering, after the events before it.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from coda.core.errors import SyncError
from coda.core.integration_config import VoiceConversationSyncConfig
from coda.core.models import (
    ConversationState,
    ConversationTurn,
    SyncEventType,
    VoiceMessage,
    VoiceResponse,
    new_id,
)
from coda.sync.conflicts import ConflictResolution, MessageVersion, Side, resolve_conflict
from coda.sync.text_conversations import (
    MEMORY,
    Role,
    Source,
    StaleVersionError,
    TextConversationManager,
    TextMessage,
)

log = logging.getLogger(__name__)

Handler = Callable[["SyncEvent"], Any]
Outcome = Literal["added", "identical", "edited", "voice_won", "text_won"]
_WON: dict[Side, Outcome] = {"voice": "voice_won", "text": "text_won"}
_STALE_RETRIES = 3


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


@dataclass(frozen=True)
class SyncEvent:
    """One sync event, as handlers receive it."""

    event_type: SyncEventType
    conversation_id: str
    payload: dict[str, Any]
    timestamp: float
    sequence: int


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
    reason: Literal["conflict", "text_only"]


@dataclass(eq=False)
class _VoiceWrite:
    """One voice-side message to mirror into the text conversation."""

    conversation_id: str
    message_id: str
    role: Role
    content: str
    updated_at: float


@dataclass
class _TextUpdate:
    """A validated update coming from the text side."""

    conversation_id: str
    message_id: str
    content: str
    role: Role | None
    updated_at: float
    created_at: float | None


@dataclass
class _Stats:
    messages_synced: int = 0
    responses_synced: int = 0
    text_updates_applied: int = 0
    queued_total: int = 0
    events_emitted: int = 0
    handler_errors: int = 0
    last_handler_error: str | None = None
    conflicts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "voice_won": 0, "text_won": 0, "unresolved": 0}
    )


def _non_empty_str(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SyncError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _timestamp(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SyncError(f"{what} must be a finite number (epoch seconds), got {value!r}")
    return float(value)


def _turn_id(conversation_id: str, turn: ConversationTurn) -> str:
    """The turn's message id, or one derived from its conversation and timestamp."""
    if turn.message_id:
        return turn.message_id
    digest = hashlib.sha1(
        f"{conversation_id}\0{turn.timestamp!r}".encode(), usedforsecurity=False
    ).hexdigest()
    return f"turn_{digest[:20]}"


def _parse_update(conversation_id: object, update_data: object) -> _TextUpdate:
    """Validate an update from the text side.

    Raises:
        SyncError: If an id or the content is missing or of the wrong type.
    """
    cid = _non_empty_str(conversation_id, "conversation_id")
    if not isinstance(update_data, Mapping):
        raise SyncError(f"update_data must be a dict, got {type(update_data).__name__}")
    for key in ("message_id", "content"):
        if key not in update_data:
            raise SyncError(f"update_data is missing {key!r}")
    message_id = _non_empty_str(update_data["message_id"], "update_data['message_id']")
    content = _non_empty_str(update_data["content"], "update_data['content']")
    role = update_data.get("role")
    if role is not None and role not in ("user", "assistant"):
        raise SyncError(f"update_data['role'] must be 'user' or 'assistant', got {role!r}")
    updated_at = update_data.get("updated_at")
    created_at = update_data.get("created_at")
    return _TextUpdate(
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


class VoiceConversationSync:
    """Synchronizes voice conversations with a text conversation manager.

    Args:
        conversation_manager: The text side; default a ``TextConversationManager``
            over ``store_path``, owned (and closed by ``close()``) by this instance.
        config: Sync settings (default ``VoiceConversationSyncConfig()``).
        store_path: SQLite file of the default manager; the default ``":memory:"``
            keeps the text conversations in this process only.
    """

    def __init__(
        self,
        conversation_manager: ConversationManager | None = None,
        config: VoiceConversationSyncConfig | None = None,
        *,
        store_path: str | Path = MEMORY,
    ) -> None:
        self.config = config or VoiceConversationSyncConfig()
        self._owns_manager = conversation_manager is None
        self.conversation_manager: ConversationManager = (
            conversation_manager or TextConversationManager(store_path)
        )
        self._opened = False
        self._lock = asyncio.Lock()
        self._handlers: dict[SyncEventType, list[Handler]] = {}
        self._events: deque[SyncEvent] = deque()
        self._delivering = False
        self._sequence = 0
        self._queue: list[_VoiceWrite] = []
        self._pending: dict[str, dict[str, VoiceUpdate]] = {}
        self._stats = _Stats()

    async def close(self) -> None:
        """Close the default conversation manager (a caller's manager is left open)."""
        if self._owns_manager and isinstance(self.conversation_manager, TextConversationManager):
            await self.conversation_manager.close()
        self._opened = False

    async def __aenter__(self) -> VoiceConversationSync:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- events -----------------------------------------------------------------

    def add_event_handler(self, event_type: SyncEventType, handler: Callable[..., Any]) -> None:
        """Register a handler (a function or a coroutine function) for an event type.

        Handlers receive one ``SyncEvent`` and run in registration order.

        Raises:
            SyncError: If the event type is unknown or the handler is not callable.
        """
        try:
            kind = SyncEventType(event_type)
        except ValueError as exc:
            raise SyncError(f"unknown sync event type {event_type!r}") from exc
        if not callable(handler):
            raise SyncError(f"event handler must be callable, got {handler!r}")
        self._handlers.setdefault(kind, []).append(handler)

    def _emit(self, event_type: SyncEventType, conversation_id: str, **payload: Any) -> None:
        """Number an event and queue it for delivery (call ``_deliver`` afterwards)."""
        self._sequence += 1
        self._stats.events_emitted += 1
        payload["conversation_id"] = conversation_id
        self._events.append(
            SyncEvent(event_type, conversation_id, payload, time.time(), self._sequence)
        )

    async def _deliver(self) -> None:
        """Deliver queued events in order, unless a delivery is already under way."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._events:
                event = self._events.popleft()
                for handler in list(self._handlers.get(event.event_type, ())):
                    await self._call_handler(handler, event)
        finally:
            self._delivering = False

    async def _call_handler(self, handler: Handler, event: SyncEvent) -> None:
        name = getattr(handler, "__qualname__", repr(handler))
        try:
            result = handler(event)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001 - a handler never breaks the sync
            self._stats.handler_errors += 1
            self._stats.last_handler_error = f"{name}: {type(exc).__name__}: {exc}"
            log.exception("sync event handler %s failed on %s", name, event.event_type.value)

    # -- voice to text ------------------------------------------------------------

    async def sync_voice_message(
        self, voice_message: VoiceMessage, conversation_state: ConversationState | None = None
    ) -> bool:
        """Mirror the user's words into the text conversation (role "user").

        The content is ``text_content``, else ``metadata["transcript"]``; its time is
        ``metadata["updated_at"]``, else ``timestamp``. Emits VOICE_MESSAGE_ADDED
        (and SYNC_CONFLICT_DETECTED first on a conflict), then SYNC_COMPLETED; with
        ``real_time_sync=False`` the write is queued until ``flush``.

        Returns:
            False if sync is disabled, else True once written, identical, resolved
            in the text side's favor, or queued.

        Raises:
            SyncError: If the message has no text, the state is of another
                conversation, or a MERGE conflict cannot be merged (nothing written).
        """
        if not self.config.sync_enabled:
            return False
        if not isinstance(voice_message, VoiceMessage):
            raise SyncError(f"expected a VoiceMessage, got {type(voice_message).__name__}")
        cid = _non_empty_str(voice_message.conversation_id, "conversation_id")
        self._check_state(conversation_state, cid)
        content = voice_message.text_content
        if not isinstance(content, str) or not content.strip():
            content = voice_message.metadata.get("transcript")
        if not isinstance(content, str) or not content.strip():
            raise SyncError(
                f"voice message {voice_message.message_id!r} has no text to sync: "
                "give text_content or metadata['transcript']"
            )
        at = voice_message.metadata.get("updated_at", voice_message.timestamp)
        write = _VoiceWrite(
            cid, voice_message.message_id, "user", content, _timestamp(at, "updated_at")
        )
        return await self._submit(write)

    async def sync_voice_response(
        self, voice_response: VoiceResponse, conversation_state: ConversationState | None = None
    ) -> bool:
        """Mirror Coda's reply into the text conversation (role "assistant").

        Its id is ``metadata["reply_id"]``, else ``metadata["message_id"] + ":reply"``,
        else a fresh one. Emits VOICE_RESPONSE_ADDED; otherwise as ``sync_voice_message``.
        """
        if not self.config.sync_enabled:
            return False
        if not isinstance(voice_response, VoiceResponse):
            raise SyncError(f"expected a VoiceResponse, got {type(voice_response).__name__}")
        cid = _non_empty_str(voice_response.conversation_id, "conversation_id")
        self._check_state(conversation_state, cid)
        content = _non_empty_str(voice_response.text_content, "voice_response.text_content")
        meta = voice_response.metadata
        if meta.get("reply_id") is not None:
            reply_id = _non_empty_str(meta["reply_id"], "metadata['reply_id']")
        elif meta.get("message_id"):
            reply_id = f"{_non_empty_str(meta['message_id'], 'metadata[message_id]')}:reply"
        else:
            reply_id = new_id("reply")
        at = _timestamp(meta.get("updated_at", voice_response.timestamp), "updated_at")
        return await self._submit(_VoiceWrite(cid, reply_id, "assistant", content, at))

    @staticmethod
    def _check_state(state: ConversationState | None, conversation_id: str) -> None:
        if state is not None and state.conversation_id != conversation_id:
            raise SyncError(
                f"conversation_state is of {state.conversation_id!r}, not of {conversation_id!r}"
            )

    async def _submit(self, write: _VoiceWrite) -> bool:
        if not self.config.real_time_sync:
            self._queue.append(write)
            self._stats.queued_total += 1
            return True
        try:
            async with self._lock:
                await self._ensure_open()
                await self._apply_write(write, announce=True)
                trigger = "voice_message" if write.role == "user" else "voice_response"
                self._emit(
                    SyncEventType.SYNC_COMPLETED, write.conversation_id, trigger=trigger, synced=1
                )
        finally:
            await self._deliver()
        return True

    async def flush(self, conversation_id: str | None = None) -> int:
        """Write the queued voice messages and responses (of one conversation, or all).

        Emits each write's events, then SYNC_COMPLETED once per conversation flushed
        without failure. A write that fails (e.g. an unmergeable conflict) is dropped
        from the queue; after the rest are written a SyncError naming it is raised.

        Returns:
            How many queued writes were synced.
        """
        synced: dict[str, int] = {}
        try:
            async with self._lock:
                await self._ensure_open()
                synced, failures = await self._flush_locked(conversation_id)
                failed = {write.conversation_id for write, _ in failures}
                for cid, count in synced.items():
                    if cid not in failed:
                        self._emit(SyncEventType.SYNC_COMPLETED, cid, trigger="flush", synced=count)
                self._raise_failures(failures)
        finally:
            await self._deliver()
        return sum(synced.values())

    async def _flush_locked(
        self, conversation_id: str | None
    ) -> tuple[dict[str, int], list[tuple[_VoiceWrite, SyncError]]]:
        synced: dict[str, int] = {}
        failures: list[tuple[_VoiceWrite, SyncError]] = []
        while True:
            write = next(
                (w for w in self._queue if conversation_id in (None, w.conversation_id)), None
            )
            if write is None:
                return synced, failures
            try:
                await self._apply_write(write, announce=True)
            except SyncError as exc:
                failures.append((write, exc))
            else:
                synced[write.conversation_id] = synced.get(write.conversation_id, 0) + 1
            self._queue.remove(write)

    @staticmethod
    def _raise_failures(failures: list[tuple[_VoiceWrite, SyncError]]) -> None:
        if failures:
            details = "; ".join(str(exc) for _, exc in failures)
            raise SyncError(
                f"{len(failures)} voice write(s) could not be synced: {details}"
            ) from failures[0][1]

    async def sync_conversation_state(self, conversation_state: ConversationState) -> bool:
        """Reconcile a whole voice conversation with the text side.

        Flushes the conversation's queued writes, then mirrors every turn: the user
        text as ``message_id`` (or an id derived from the turn's timestamp) and the
        reply as ``message_id + ":reply"``, resolving conflicts by the strategy. With
        ``bidirectional_sync`` the text-only messages become ``pending_for_voice``
        entries. Emits CONVERSATION_STATE_UPDATED, then SYNC_COMPLETED.

        Returns:
            False if sync is disabled, else True.

        Raises:
            SyncError: After the rest is written, if some messages could not be
                synced (SYNC_COMPLETED is then not emitted).
        """
        if not self.config.sync_enabled:
            return False
        if not isinstance(conversation_state, ConversationState):
            raise SyncError(
                f"expected a ConversationState, got {type(conversation_state).__name__}"
            )
        cid = _non_empty_str(conversation_state.conversation_id, "conversation_id")
        try:
            async with self._lock:
                await self._ensure_open()
                flushed, failures = await self._flush_locked(cid)
                writes = self._turn_writes(conversation_state)
                outcomes: dict[str, list[str]] = {}
                for write in writes:
                    try:
                        outcome = await self._apply_write(write, announce=False)
                    except SyncError as exc:
                        failures.append((write, exc))
                    else:
                        outcomes.setdefault(outcome, []).append(write.message_id)
                text_only = await self._collect_text_only(cid, {w.message_id for w in writes})
                self._emit(
                    SyncEventType.CONVERSATION_STATE_UPDATED,
                    cid,
                    origin="voice",
                    outcomes=outcomes,
                    text_only=text_only,
                    failed=[write.message_id for write, _ in failures],
                )
                self._raise_failures(failures)
                synced = sum(flushed.values()) + sum(len(ids) for ids in outcomes.values())
                self._emit(
                    SyncEventType.SYNC_COMPLETED, cid, trigger="conversation_state", synced=synced
                )
        finally:
            await self._deliver()
        return True

    @staticmethod
    def _turn_writes(state: ConversationState) -> list[_VoiceWrite]:
        cid = state.conversation_id
        writes: list[_VoiceWrite] = []
        for turn in state.turns:
            message_id = _turn_id(cid, turn)
            if turn.user_text.strip():
                writes.append(_VoiceWrite(cid, message_id, "user", turn.user_text, turn.timestamp))
            if turn.assistant_text.strip():
                writes.append(
                    _VoiceWrite(
                        cid, f"{message_id}:reply", "assistant", turn.assistant_text, turn.timestamp
                    )
                )
        return writes

    async def _collect_text_only(self, conversation_id: str, known: set[str]) -> list[str]:
        """Record the text-side messages the voice side lacks (bidirectional only)."""
        if not self.config.bidirectional_sync:
            return []
        text_only = []
        for message in await self.conversation_manager.messages(conversation_id):
            if message.source == "text" and message.message_id not in known:
                self._set_pending(conversation_id, message, "text_only")
                text_only.append(message.message_id)
        return text_only

    async def _apply_write(self, write: _VoiceWrite, *, announce: bool) -> Outcome:
        """Reconcile one voice write with the text side, retrying a stale read."""
        for attempt in range(1, _STALE_RETRIES + 1):
            try:
                outcome, content = await self._reconcile_voice(write)
                break
            except StaleVersionError:
                if attempt == _STALE_RETRIES:
                    raise
        if write.role == "user":
            self._stats.messages_synced += 1
        else:
            self._stats.responses_synced += 1
        if announce:
            kind = (
                SyncEventType.VOICE_MESSAGE_ADDED
                if write.role == "user"
                else SyncEventType.VOICE_RESPONSE_ADDED
            )
            self._emit(
                kind,
                write.conversation_id,
                message_id=write.message_id,
                role=write.role,
                content=content,
                outcome=outcome,
            )
        return outcome

    async def _reconcile_voice(self, write: _VoiceWrite) -> tuple[Outcome, str]:
        """Write one voice message to the text side; returns the outcome and the content."""
        manager, cid, mid = self.conversation_manager, write.conversation_id, write.message_id
        existing = await manager.get_message(cid, mid)
        if existing is None:
            message = TextMessage(
                mid, write.role, write.content, "voice", write.updated_at, write.updated_at
            )
            await manager.add_message(cid, message)
            self._drop_pending(cid, mid)
            return "added", write.content
        if existing.role != write.role:
            raise SyncError(
                f"message {mid!r} is a {existing.role} message on the text side, "
                f"not a {write.role} message"
            )
        if existing.content == write.content:
            self._drop_pending(cid, mid)
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
            self._drop_pending(cid, mid)
            return "edited", write.content
        voice = MessageVersion(write.content, write.updated_at)
        resolution = self._resolve(cid, mid, voice, existing, origin="voice")
        if resolution.voice_won:
            await manager.update_message(
                cid,
                mid,
                resolution.content,
                updated_by="voice",
                updated_at=resolution.updated_at,
                expected_version=existing.version,
            )
            self._drop_pending(cid, mid)
        else:
            self._set_pending(cid, existing, "conflict")
        self._conflict_resolved(cid, voice, existing, resolution, origin="voice")
        return _WON[resolution.winner], resolution.content

    # -- conflicts ------------------------------------------------------------------

    def _resolve(
        self,
        conversation_id: str,
        message_id: str,
        voice: MessageVersion,
        text: MessageVersion | TextMessage,
        *,
        origin: Source,
    ) -> ConflictResolution:
        """Resolve by the configured strategy; an unmergeable conflict is announced, raised."""
        text_version = MessageVersion(text.content, text.updated_at)
        try:
            return resolve_conflict(
                message_id, voice, text_version, self.config.conflict_resolution_strategy
            )
        except SyncError as exc:
            self._stats.conflicts["total"] += 1
            self._stats.conflicts["unresolved"] += 1
            self._emit(
                SyncEventType.SYNC_CONFLICT_DETECTED,
                conversation_id,
                **self._conflict_payload(message_id, voice, text_version, origin),
                winner=None,
                resolved_content=None,
                error=str(exc),
            )
            raise

    def _conflict_resolved(
        self,
        conversation_id: str,
        voice: MessageVersion,
        text: MessageVersion | TextMessage,
        resolution: ConflictResolution,
        *,
        origin: Source,
    ) -> None:
        """Count and announce a conflict once its resolution is written."""
        self._stats.conflicts["total"] += 1
        self._stats.conflicts[_WON[resolution.winner]] += 1
        text_version = MessageVersion(text.content, text.updated_at)
        self._emit(
            SyncEventType.SYNC_CONFLICT_DETECTED,
            conversation_id,
            **self._conflict_payload(resolution.message_id, voice, text_version, origin),
            winner=resolution.winner,
            resolved_content=resolution.content,
            error=None,
        )

    def _conflict_payload(
        self, message_id: str, voice: MessageVersion, text: MessageVersion, origin: Source
    ) -> dict[str, Any]:
        return {
            "message_id": message_id,
            "origin": origin,
            "strategy": self.config.conflict_resolution_strategy.value,
            "voice_content": voice.content,
            "voice_updated_at": voice.updated_at,
            "text_content": text.content,
            "text_updated_at": text.updated_at,
        }

    # -- text to voice ------------------------------------------------------------

    async def handle_conversation_update(
        self, conversation_id: str, update_data: dict[str, Any]
    ) -> bool:
        """Apply an update from the text side: a new message or an edit.

        ``update_data`` holds ``message_id`` and ``content`` (non-empty strings), and
        optionally ``role`` ("user" default for new messages; must match for edits),
        ``updated_at`` and ``created_at`` (epoch seconds; default now). An edit of
        content the voice side wrote is a conflict resolved by the strategy. Emits
        CONVERSATION_STATE_UPDATED with ``action`` one of added, edited, identical,
        voice_won (edit rejected) or text_won (edit applied).

        Returns:
            False (nothing done) if sync or bidirectional sync is disabled, else True.

        Raises:
            SyncError: If ``update_data`` is invalid or the conflict cannot be
                merged; nothing is written then.
        """
        if not (self.config.sync_enabled and self.config.bidirectional_sync):
            return False
        update = _parse_update(conversation_id, update_data)
        try:
            async with self._lock:
                await self._ensure_open()
                for attempt in range(1, _STALE_RETRIES + 1):
                    try:
                        action, message = await self._apply_text_update(update)
                        break
                    except StaleVersionError:
                        if attempt == _STALE_RETRIES:
                            raise
                if action not in ("identical", "voice_won"):
                    self._stats.text_updates_applied += 1
                self._emit(
                    SyncEventType.CONVERSATION_STATE_UPDATED,
                    update.conversation_id,
                    origin="text",
                    message_id=message.message_id,
                    role=message.role,
                    content=message.content,
                    action=action,
                )
        finally:
            await self._deliver()
        return True

    async def _apply_text_update(self, update: _TextUpdate) -> tuple[Outcome, TextMessage]:
        manager, cid, mid = self.conversation_manager, update.conversation_id, update.message_id
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
            self._set_pending(cid, message, "text_only")
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
            resolution = self._resolve(cid, mid, voice, text, origin="text")
            message = existing
            if not resolution.voice_won:
                message = await self._edit(update, existing)
                self._set_pending(cid, message, "conflict")
            self._conflict_resolved(cid, voice, text, resolution, origin="text")
            return _WON[resolution.winner], message
        message = await self._edit(update, existing)
        self._set_pending(cid, message, "text_only" if existing.source == "text" else "conflict")
        return "edited", message

    async def _edit(self, update: _TextUpdate, existing: TextMessage) -> TextMessage:
        return await self.conversation_manager.update_message(
            update.conversation_id,
            update.message_id,
            update.content,
            updated_by="text",
            updated_at=update.updated_at,
            expected_version=existing.version,
        )

    # -- pending changes for the voice side ---------------------------------------

    def _set_pending(
        self, conversation_id: str, message: TextMessage, reason: Literal["conflict", "text_only"]
    ) -> None:
        self._pending.setdefault(conversation_id, {})[message.message_id] = VoiceUpdate(
            conversation_id,
            message.message_id,
            message.role,
            message.content,
            message.updated_at,
            reason,
        )

    def _drop_pending(self, conversation_id: str, message_id: str) -> None:
        pending = self._pending.get(conversation_id)
        if pending is not None:
            pending.pop(message_id, None)
            if not pending:
                del self._pending[conversation_id]

    def pending_for_voice(self, conversation_id: str) -> list[VoiceUpdate]:
        """The text-side changes the voice side should adopt, oldest first (not cleared)."""
        return list(self._pending.get(conversation_id, {}).values())

    def take_pending_for_voice(self, conversation_id: str) -> list[VoiceUpdate]:
        """Return and clear the conversation's ``pending_for_voice`` entries."""
        return list(self._pending.pop(conversation_id, {}).values())

    # -- misc -----------------------------------------------------------------------

    async def _ensure_open(self) -> None:
        if not self._opened:
            await self.conversation_manager.open()
            self._opened = True

    def get_sync_stats(self) -> dict[str, Any]:
        """Counters of this instance.

        Keys: messages_synced, responses_synced, text_updates_applied, conflicts
        (total, voice_won, text_won, unresolved), handler_errors, last_handler_error,
        queued (waiting now), queued_total, events_emitted, pending_for_voice, and
        the settings in force (sync_enabled, real_time_sync, bidirectional_sync, strategy).
        """
        stats = self._stats
        return {
            "messages_synced": stats.messages_synced,
            "responses_synced": stats.responses_synced,
            "text_updates_applied": stats.text_updates_applied,
            "conflicts": dict(stats.conflicts),
            "handler_errors": stats.handler_errors,
            "last_handler_error": stats.last_handler_error,
            "queued": len(self._queue),
            "queued_total": stats.queued_total,
            "events_emitted": stats.events_emitted,
            "pending_for_voice": sum(len(p) for p in self._pending.values()),
            "sync_enabled": self.config.sync_enabled,
            "real_time_sync": self.config.real_time_sync,
            "bidirectional_sync": self.config.bidirectional_sync,
            "strategy": self.config.conflict_resolution_strategy.value,
        }
