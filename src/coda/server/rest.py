"""REST: conversations, a voice message in → the spoken reply out, history, readiness, metrics."""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from coda.core.ids import CONVERSATION_ID
from coda.core.models import (
    ConversationState,
    VoiceMessage,
    VoiceProcessingMode,
    VoiceResponse,
    new_id,
)
from coda.server import logs
from coda.server.auth import USER, require_key, speaker_of
from coda.server.tenancy import NotFound, owned
from coda.voice.manager import VoiceManager

router = APIRouter(dependencies=[Depends(require_key)])
ConversationId = Annotated[str, PathParam(pattern=CONVERSATION_ID, max_length=128)]


class NewConversation(BaseModel):
    """Body of ``POST /v1/conversations``."""

    conversation_id: str | None = Field(default=None, max_length=128, pattern=CONVERSATION_ID)


class TextMessage(BaseModel):
    """A typed turn (JSON body of ``POST .../messages``)."""

    text: str = Field(min_length=1, max_length=4000)
    user: str | None = Field(default=None, pattern=USER)
    message_id: str | None = Field(default=None, pattern=CONVERSATION_ID, max_length=128)


class Feedback(BaseModel):
    """Feedback about the last reply (body of ``POST .../feedback``)."""

    model_config = {"extra": "forbid"}

    too_long: bool | None = None
    too_short: bool | None = None
    verbosity: str | float | None = None
    formality: str | float | None = None
    warmth: str | float | None = None
    humour: str | float | None = None
    pace: str | float | None = None
    user: str | None = Field(default=None, pattern=USER)


User = Annotated[str | None, Query(pattern=USER, description="who is speaking, behind the key")]
MessageId = Annotated[
    str | None,
    Query(
        pattern=CONVERSATION_ID,
        max_length=128,
        description="the client's id for this message: a retry with the same id is "
        "answered with the stored reply and stored once",
    ),
]
Identity = Annotated[str, Depends(require_key)]


def _voice(request: Request) -> VoiceManager:
    voice: VoiceManager = request.app.state.voice
    if not voice.engine.initialized:
        raise HTTPException(503, "the models are still loading; see /ready")
    return voice


def response_json(response: VoiceResponse) -> dict[str, Any]:
    """A ``VoiceResponse`` as JSON, its WAV audio in base64."""
    return {
        "conversation_id": response.conversation_id,
        "text": response.text_content,
        "mode": response.processing_mode.value if response.processing_mode else None,
        "processing_time_ms": response.processing_time,
        "scores": response.get_quality_metrics()
        | {"audio_quality_score": response.audio_quality_score},
        "metadata": response.metadata,
        "audio_wav_base64": base64.b64encode(response.audio_data).decode()
        if response.audio_data
        else None,
    }


@router.get("/ready", tags=["operations"])
async def ready(request: Request) -> Response:
    """Readiness: 200 once the models are loaded and warmed up, 503 before.

    A load balancer sends turns only to ready instances: one still warming up
    would answer its first turns slowly.
    """
    voice: VoiceManager = request.app.state.voice
    loading = request.app.state.loading
    if loading.done() and not loading.cancelled() and loading.exception() is not None:
        return Response('{"status": "failed"}', 503, media_type="application/json")
    if voice.engine.initialized and loading.done():
        return Response('{"status": "ready"}', 200, media_type="application/json")
    return Response('{"status": "loading"}', 503, media_type="application/json")


@router.get("/metrics", tags=["operations"])
async def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format); 404 when ``metrics_enabled`` is off."""
    collected = request.app.state.metrics
    if not collected.enabled:
        raise HTTPException(404, "metrics are switched off (metrics_enabled)")
    pool = request.app.state.voice.engine.built.moshi_pool
    if pool is not None:
        collected.record_moshi(pool.occupancy())
    return Response(collected.render(), media_type="text/plain; version=0.0.4")


async def _owned(
    voice: VoiceManager, conversation_id: str, tenant: str, *, start: bool = False
) -> ConversationState:
    """The caller's conversation, or 404 (another key's looks like none at all)."""
    try:
        return await owned(voice, conversation_id, tenant, start=start)
    except NotFound:
        raise HTTPException(404, f"no conversation {conversation_id!r}") from None


@router.post("/v1/conversations", status_code=201, tags=["conversations"])
async def create_conversation(
    request: Request, body: NewConversation, identity: Identity
) -> dict[str, str]:
    """Start a conversation of the caller's key (with a fresh id unless one is given)."""
    voice = _voice(request)
    cid = body.conversation_id or new_id("conv")
    state = await voice.start_conversation(cid, owner=identity)
    return {"conversation_id": state.conversation_id}


@router.get("/v1/conversations", tags=["conversations"])
async def list_conversations(
    request: Request, identity: Identity, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> dict[str, Any]:
    """The caller's conversations, most recently active first, to choose one to reopen."""
    store = _voice(request).engine.conversations.store
    return {"conversations": [asdict(c) for c in await store.list_owned(identity, limit)]}


@router.delete("/v1/conversations/{conversation_id}", status_code=204, tags=["conversations"])
async def end_conversation(
    request: Request, conversation_id: ConversationId, identity: Identity
) -> Response:
    """End a conversation (its history stays)."""
    voice = _voice(request)
    await _owned(voice, conversation_id, identity)
    await voice.end_conversation(conversation_id)
    return Response(status_code=204)


@router.get("/v1/conversations/{conversation_id}/messages", tags=["conversations"])
async def history(
    request: Request,
    conversation_id: ConversationId,
    identity: Identity,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The conversation's turns, oldest first."""
    state = await _owned(_voice(request), conversation_id, identity)
    turns = [
        {
            "user_text": t.user_text,
            "assistant_text": t.assistant_text,
            "mode": t.mode.value,
            "timestamp": t.timestamp,
            "message_id": t.message_id,
        }
        for t in state.turns[-limit:]
    ]
    return {"conversation_id": conversation_id, "is_active": state.is_active, "turns": turns}


@router.post(
    "/v1/conversations/{conversation_id}/messages",
    tags=["conversations"],
    openapi_extra={
        "requestBody": {
            "content": {
                "audio/wav": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": TextMessage.model_json_schema()},
            }
        }
    },
)
async def post_message(
    request: Request,
    conversation_id: ConversationId,
    identity: Identity,
    mode: VoiceProcessingMode | None = None,
    user: User = None,
    message_id: MessageId = None,
) -> dict[str, Any]:
    """Answer one message: audio (WAV, FLAC, MP3, OGG) or JSON ``{"text": ..., "user": ...}``.

    Memory, personality, tools and sync take part as the server enables them; the
    memories and personality are the speaker's: the API key's, and ``user``'s.
    Returns the reply: text, mode, timings and scores, what was remembered and
    which tools ran (``metadata``), and WAV audio in base64. A message sent again
    with the same ``message_id`` (query, or JSON field), to this instance or to
    another on the same store, gets the stored reply again and is stored once.
    """
    voice = _voice(request)
    logs.conversation_id.set(conversation_id)
    limit = request.app.state.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"upload over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(413, f"upload over {limit} bytes")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            typed = TextMessage.model_validate_json(bytes(body))
        except PydanticValidationError as exc:
            raise HTTPException(
                422, f'expected {{"text": ...}}: {exc.errors()[0]["msg"]}'
            ) from None
        speaker = speaker_of(identity, typed.user or user)
        message = VoiceMessage(conversation_id, b"", text_content=typed.text, speaker=speaker)
        message_id = typed.message_id or message_id
    else:
        message = VoiceMessage(conversation_id, bytes(body), speaker=speaker_of(identity, user))
    if message_id:
        message.message_id = message_id
    await _owned(voice, conversation_id, identity, start=True)
    metrics = request.app.state.metrics
    try:
        response = await voice.process_voice_message(message, mode)
    except Exception as error:
        metrics.errors.labels(type(error).__name__).inc()
        raise
    metrics.record_turn(
        response.processing_mode.value if response.processing_mode else "?", response.metadata, None
    )
    return response_json(response)


@router.post("/v1/conversations/{conversation_id}/feedback", tags=["conversations"])
async def feedback(
    request: Request, conversation_id: ConversationId, identity: Identity, body: Feedback
) -> dict[str, Any]:
    """Feedback about the last reply: the speaker's personality moves at once.

    ``{"too_long": true}`` makes the next replies shorter; ``{"pace": "slower"}``
    slows the voice. Returns the speaker's traits after the change.
    """
    voice = _voice(request)
    await _owned(voice, conversation_id, identity)
    personality = voice.engine.integrations.personality
    if personality is None:
        raise HTTPException(409, "the personality integration is switched off")
    speaker = speaker_of(identity, body.user)
    given = body.model_dump(exclude_none=True, exclude={"user"})
    if not given:
        raise HTTPException(422, "give at least one of too_long, too_short or a trait")
    moved = await personality.learn(speaker, feedback=given)
    traits = await personality.traits_of(speaker)
    return {"conversation_id": conversation_id, "changed": moved, "traits": traits.as_dict()}
