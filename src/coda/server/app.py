"""The FastAPI application: REST, the live websocket, health, metrics and the client.

Every route but ``/health`` needs an API key: the ``X-API-Key`` header, or (for
browsers' websockets, which cannot set headers) the ``api_key`` query parameter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from coda.core.config import default_data_dir
from coda.core.errors import VoiceProcessingError
from coda.server.errors import public_message, status_of
from coda.server.events import router as events_router
from coda.server.guard import Guard
from coda.server.limits import build_limits
from coda.server.live import router as live_router
from coda.server.metrics import Metrics
from coda.server.realtime.endpoint import router as realtime_router
from coda.server.rest import router as rest_router
from coda.server.security import ApiKeys, RateLimiter
from coda.server.settings import ServerSettings
from coda.voice.manager import VoiceManager

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")

PROTOCOL = """
Live conversation over a websocket:
`GET /v1/conversations/{id}/stream?rate=16000&api_key=KEY[&mode=adaptive][&user=NAME]`.

Client → server: binary messages of mono PCM16 little-endian at `rate` (8000–48000 Hz),
at most `max_frame_bytes` each (20 ms frames recommended); JSON text messages
`{"type": "played", "samples": N}` (N more reply samples were heard, for barge-in and
echo cancellation) and `{"type": "end"}`.

Server → client JSON messages: `ready` {conversation_id, input_rate, output_rate},
`speech_started` {at}, `speech_ended` {at, endpointing_ms}, `transcript` {text},
`memory` {memories} (what was remembered), `tool` {name, arguments, success, result,
error}, `text` {delta}, `audio` {seq, samples, text} followed by one binary message of
PCM16 at output_rate, `interrupted` {heard, spoken} (stop playback now), `turn` {mode,
user_text, reply_text, timings_ms, interrupted}, `stored` {message_id, user_text,
reply_text} (the turn is in the store), `error` {code, message}.

Sync events over a websocket: `GET /v1/conversations/{id}/events?api_key=KEY` sends
`{"type": "sync", "event", "payload", "timestamp", "instance"}` for each, from this
instance or any other sharing the PostgreSQL store.

`user=NAME` (query, or a REST field) says who is speaking behind the key: memories
and personality belong to the key and that user.

Close codes: 1008 key, origin, rate or time limit; 1009 message too big; 1003 bad
data; 1011 server error; 1013 too many sessions (here, or of the key everywhere).
"""


def _report_loading(task: asyncio.Task[None]) -> None:
    """Say why the models did not load (``/ready`` then answers "failed")."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("the voice engine failed to start: %s: %s", type(error).__name__, error)


def _generated_key() -> str:
    """A key for this run when none is configured, written where only its owner reads it.

    Keys are never logged: the log says where the key is, not what it is.
    """
    key = secrets.token_urlsafe(24)
    path = default_data_dir() / "generated-api-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(key + "\n")
    log.warning("no API key configured; this run's key is in %s", path)
    if sys.stdout.isatty():  # a person at a terminal, not a log collector
        print(f"No API key configured; this run's key: {key}", flush=True)
    return key


def create_app(
    settings: ServerSettings,
    manager: VoiceManager | None = None,
    now: Callable[[], float] | None = None,
) -> FastAPI:
    """The application; it initializes ``manager`` (or one from ``settings``) at start-up.

    Args:
        settings: What ``coda serve`` reads.
        manager: The engine (None: one from ``settings``).
        now: The rate limits' clock in seconds (None: a monotonic clock here, the
            database's for limits shared over PostgreSQL); tests inject one.
    """
    voice = manager or VoiceManager(settings.voice_config())
    keys = ApiKeys(settings.api_keys, settings.api_key_hashes)
    if not keys:
        keys = ApiKeys([_generated_key()], [])

    limits, sessions = build_limits(settings, now)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await limits.open()  # before the models: requests are limited from the start
        await sessions.open()
        app.state.loading = asyncio.create_task(voice.initialize())
        app.state.loading.add_done_callback(_report_loading)
        try:
            yield
        finally:
            app.state.loading.cancel()
            with contextlib.suppress(BaseException):
                await app.state.loading
            await voice.cleanup()
            await sessions.close()
            await limits.close()

    app = FastAPI(
        title="Coda Voice",
        summary="Real-time spoken conversation: REST and a full-duplex websocket.",
        description=PROTOCOL,
        lifespan=lifespan,
        docs_url="/docs",
    )
    app.state.settings = settings
    app.state.voice = voice
    app.state.keys = keys
    app.state.limits = limits
    app.state.registry = sessions
    app.state.auth_failures = RateLimiter(
        settings.auth_failures_per_minute, now=now or time.monotonic
    )
    app.state.metrics = Metrics(voice.config.metrics_enabled)
    app.state.metrics.background_jobs.set_function(
        lambda: voice.engine.pipeline.background.pending if voice.engine.pipeline else 0
    )
    app.state.sessions = 0
    app.add_middleware(Guard, max_body=settings.max_upload_bytes, public_docs=settings.public_docs)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
        )

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        app.state.metrics.http_requests.labels(route, str(response.status_code)).inc()
        return response

    @app.exception_handler(VoiceProcessingError)
    async def typed_error(request: Request, error: VoiceProcessingError) -> JSONResponse:
        status = status_of(error)
        if status >= 500:
            log.error("turn failed: %s", error, exc_info=error)
        return JSONResponse(
            {"error": type(error).__name__, "message": public_message(error)}, status
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # What was wrong and where, without echoing the input (it may be huge or not text).
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in error.errors()
        ]
        return JSONResponse({"detail": detail}, 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"error": "InternalError", "message": "internal error"}, 500)

    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers (no key needed)."""
        return {"status": "ok"}

    app.include_router(rest_router)
    app.include_router(live_router)
    app.include_router(events_router)
    app.include_router(realtime_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def client() -> FileResponse:
        """The browser client."""
        return FileResponse(STATIC / "index.html")

    return app
