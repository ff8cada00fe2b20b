"""Conversations belong to the API key (tenant) that created them through the server.

Another key gets 404 (a websocket: 1008 "conversation not found") for all of
them, exactly as for an id nobody uses, so ids are not even confirmed to exist,
except when it tries to create one with a taken id (409). Conversations started
through the Python API or the CLI have no owner, and any key may use them.
"""

from __future__ import annotations

from coda.core.errors import ConversationError
from coda.core.models import ConversationState
from coda.voice.manager import VoiceManager


class NotFound(Exception):
    """The conversation does not exist for this tenant."""


async def owned(
    voice: VoiceManager, conversation_id: str, tenant: str, *, start: bool = False
) -> ConversationState:
    """The tenant's conversation; with ``start``, a new one is started as theirs.

    Raises:
        NotFound: If it is another tenant's, or unknown (and not to be started).
        ConversationError: If it may not be auto-started (``auto_start_conversations``).
    """
    state = await voice.get_conversation_state(conversation_id)
    if state is None and start:
        if not voice.config.auto_start_conversations:
            raise NotFound(conversation_id)
        try:
            state = await voice.start_conversation(conversation_id, owner=tenant)
        except ConversationError:  # started meanwhile (by this tenant, or another)
            state = await voice.get_conversation_state(conversation_id)
    if state is None or not state.owned_by(tenant):
        raise NotFound(conversation_id)
    return state
