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

Events go to handlers in the order they occur, numbered one by one per instance;
a handler that raises is logged and counted, never propagated (details in
``coda.sync.events``). The other parts are ``coda.sync.updates`` (validated writes
and updates, pending changes) and ``coda.sync.reconcile`` (writing one change and
resolving its conflict); the public names used here are re-exported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coda.core.errors import SyncError
from coda.core.integration_config import VoiceConversationSyncConfig
from coda.core.models import ConversationState, SyncEventType, VoiceMessage, VoiceResponse
from coda.sync.events import EventDispatcher, Handler, SyncEvent
from coda.sync.reconcile import Closable, ConversationManager, Outcome, Reconciler, SharedEvents
from coda.sync.text_conversations import MEMORY, TextConversationManager
from coda.sync.updates import (
    PendingForVoice,
    VoiceUpdate,
    VoiceWrite,
    non_empty_str,
    parse_update,
    turn_writes,
    voice_message_write,
    voice_response_write,
)

__all__ = [
    "ConversationManager",
    "Handler",
    "Outcome",
    "SyncEvent",
    "VoiceConversationSync",
    "VoiceUpdate",
]


@dataclass
class _Stats:
    messages_synced: int = 0
    responses_synced: int = 0
    text_updates_applied: int = 0
    queued_total: int = 0


class VoiceConversationSync:
    """Synchronizes voice conversations with a text conversation manager.

    Args:
        conversation_manager: The text side; default a ``TextConversationManager``
            over ``store_path``, owned (and closed by ``close()``) by this instance.
        config: Sync settings (default ``VoiceConversationSyncConfig()``).
        store_path: SQLite file of the default manager; the default ``":memory:"``
            keeps the text conversations in this process only.
        owned: ``close()`` closes ``conversation_manager`` too.

    A manager that shares events (``SharedEvents``: the PostgreSQL one) relays this
    instance's events to the other instances and theirs to this one's handlers,
    from ``open()`` on.
    """

    def __init__(
        self,
        conversation_manager: ConversationManager | None = None,
        config: VoiceConversationSyncConfig | None = None,
        *,
        store_path: str | Path = MEMORY,
        owned: bool = False,
    ) -> None:
        self.config = config or VoiceConversationSyncConfig()
        self._owns_manager = owned or conversation_manager is None
        self.conversation_manager: ConversationManager = (
            conversation_manager or TextConversationManager(store_path)
        )
        self._opened = False
        self._lock = asyncio.Lock()
        self._events = EventDispatcher()
        self._pending = PendingForVoice()
        self._reconciler = Reconciler(self._events, self._pending)
        self._queue: list[VoiceWrite] = []
        self._stats = _Stats()

    async def open(self) -> None:
        """Open the text side now (writes open it when first needed).

        Over a shared store, other instances' events reach the handlers from now on.
        """
        async with self._lock:
            await self._ensure_open()

    async def close(self) -> None:
        """Close the conversation manager if this instance owns it."""
        if isinstance(self.conversation_manager, SharedEvents):
            self.conversation_manager.stop_events()
            self._events.relay = None
        if self._owns_manager and isinstance(self.conversation_manager, Closable):
            await self.conversation_manager.close()
        self._opened = False

    async def __aenter__(self) -> VoiceConversationSync:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def add_event_handler(self, event_type: SyncEventType, handler: Callable[..., Any]) -> None:
        """Register a handler (a function or a coroutine function) for an event type.

        Handlers receive one ``SyncEvent`` and run in registration order.

        Raises:
            SyncError: If the event type is unknown or the handler is not callable.
        """
        self._events.add_handler(event_type, handler)

    def remove_event_handler(self, event_type: SyncEventType, handler: Callable[..., Any]) -> None:
        """Unregister a handler (nothing happens if it is not registered)."""
        self._events.remove_handler(event_type, handler)

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
        return await self._submit(voice_message_write(voice_message, conversation_state))

    async def sync_voice_response(
        self, voice_response: VoiceResponse, conversation_state: ConversationState | None = None
    ) -> bool:
        """Mirror Coda's reply into the text conversation (role "assistant").

        Its id is ``metadata["reply_id"]``, else ``metadata["message_id"] + ":reply"``,
        else a fresh one. Emits VOICE_RESPONSE_ADDED; otherwise as ``sync_voice_message``.
        """
        if not self.config.sync_enabled:
            return False
        return await self._submit(voice_response_write(voice_response, conversation_state))

    async def _submit(self, write: VoiceWrite) -> bool:
        if not self.config.real_time_sync:
            self._queue.append(write)
            self._stats.queued_total += 1
            return True
        try:
            async with self._lock:
                await self._ensure_open()
                await self._apply_write(write, announce=True)
                trigger = "voice_message" if write.role == "user" else "voice_response"
                self._events.emit(
                    SyncEventType.SYNC_COMPLETED, write.conversation_id, trigger=trigger, synced=1
                )
        finally:
            await self._events.deliver()
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
                        self._events.emit(
                            SyncEventType.SYNC_COMPLETED, cid, trigger="flush", synced=count
                        )
                self._raise_failures(failures)
        finally:
            await self._events.deliver()
        return sum(synced.values())

    async def _flush_locked(
        self, conversation_id: str | None
    ) -> tuple[dict[str, int], list[tuple[VoiceWrite, SyncError]]]:
        synced: dict[str, int] = {}
        failures: list[tuple[VoiceWrite, SyncError]] = []
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
    def _raise_failures(failures: list[tuple[VoiceWrite, SyncError]]) -> None:
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
        cid = non_empty_str(conversation_state.conversation_id, "conversation_id")
        try:
            async with self._lock:
                await self._ensure_open()
                flushed, failures = await self._flush_locked(cid)
                writes = turn_writes(conversation_state)
                outcomes: dict[str, list[str]] = {}
                for write in writes:
                    try:
                        outcome = await self._apply_write(write, announce=False)
                    except SyncError as exc:
                        failures.append((write, exc))
                    else:
                        outcomes.setdefault(outcome, []).append(write.message_id)
                text_only = await self._collect_text_only(cid, {w.message_id for w in writes})
                self._events.emit(
                    SyncEventType.CONVERSATION_STATE_UPDATED,
                    cid,
                    origin="voice",
                    outcomes=outcomes,
                    text_only=text_only,
                    failed=[write.message_id for write, _ in failures],
                )
                self._raise_failures(failures)
                synced = sum(flushed.values()) + sum(len(ids) for ids in outcomes.values())
                self._events.emit(
                    SyncEventType.SYNC_COMPLETED, cid, trigger="conversation_state", synced=synced
                )
        finally:
            await self._events.deliver()
        return True

    async def _collect_text_only(self, conversation_id: str, known: set[str]) -> list[str]:
        """Record the text-side messages the voice side lacks (bidirectional only)."""
        if not self.config.bidirectional_sync:
            return []
        text_only = []
        for message in await self.conversation_manager.messages(conversation_id):
            if message.source == "text" and message.message_id not in known:
                self._pending.set(conversation_id, message, "text_only")
                text_only.append(message.message_id)
        return text_only

    async def _apply_write(self, write: VoiceWrite, *, announce: bool) -> Outcome:
        """Write one voice message to the text side, count it, and announce it if asked."""
        outcome, content = await self._reconciler.voice_write(
            self.conversation_manager, self.config, write
        )
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
            self._events.emit(
                kind,
                write.conversation_id,
                message_id=write.message_id,
                role=write.role,
                content=content,
                outcome=outcome,
            )
        return outcome

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
        update = parse_update(conversation_id, update_data)
        try:
            async with self._lock:
                await self._ensure_open()
                action, message = await self._reconciler.text_update(
                    self.conversation_manager, self.config, update
                )
                if action not in ("identical", "voice_won"):
                    self._stats.text_updates_applied += 1
                self._events.emit(
                    SyncEventType.CONVERSATION_STATE_UPDATED,
                    update.conversation_id,
                    origin="text",
                    message_id=message.message_id,
                    role=message.role,
                    content=message.content,
                    action=action,
                )
        finally:
            await self._events.deliver()
        return True

    def pending_for_voice(self, conversation_id: str) -> list[VoiceUpdate]:
        """The text-side changes the voice side should adopt, oldest first (not cleared)."""
        return self._pending.peek(conversation_id)

    def take_pending_for_voice(self, conversation_id: str) -> list[VoiceUpdate]:
        """Return and clear the conversation's ``pending_for_voice`` entries."""
        return self._pending.take(conversation_id)

    # -- misc -----------------------------------------------------------------------

    async def _ensure_open(self) -> None:
        if not self._opened:
            await self.conversation_manager.open()
            manager = self.conversation_manager
            if isinstance(manager, SharedEvents):
                self._events.relay = manager.publish_event
                manager.start_events(self._events.receive)
            self._opened = True

    def get_sync_stats(self) -> dict[str, Any]:
        """Counters of this instance.

        Keys: messages_synced, responses_synced, text_updates_applied, conflicts
        (total, voice_won, text_won, unresolved), handler_errors, last_handler_error,
        queued (waiting now), queued_total, events_emitted, pending_for_voice, and
        the settings in force (sync_enabled, real_time_sync, bidirectional_sync, strategy).
        """
        stats, events = self._stats, self._events
        return {
            "messages_synced": stats.messages_synced,
            "responses_synced": stats.responses_synced,
            "text_updates_applied": stats.text_updates_applied,
            "conflicts": dict(self._reconciler.conflicts),
            "handler_errors": events.handler_errors,
            "last_handler_error": events.last_handler_error,
            "queued": len(self._queue),
            "queued_total": stats.queued_total,
            "events_emitted": events.emitted,
            "pending_for_voice": len(self._pending),
            "sync_enabled": self.config.sync_enabled,
            "real_time_sync": self.config.real_time_sync,
            "bidirectional_sync": self.config.bidirectional_sync,
            "strategy": self.config.conflict_resolution_strategy.value,
        }
