"""The key check, the throttling of failed attempts, and the rate limit of each key.

Keys come in the ``X-API-Key`` header or as ``Authorization: Bearer``; websockets,
which browsers cannot give headers, may also name it in ``?api_key=`` (never
logged: ``coda.server.logs`` hides it). An address whose attempts keep failing
is refused for a while (``auth_failures_per_minute``), whatever key it sends.
"""

from __future__ import annotations

import logging
import re

from fastapi import HTTPException, Request, WebSocket

from coda.server.limits import RateLimits
from coda.server.security import ApiKeys, RateLimiter

log = logging.getLogger(__name__)
USER = r"^[A-Za-z0-9_.@:-]{1,64}$"
"""What a ``user`` (one person behind an API key) may look like."""


def speaker_of(identity: str | None, user: str | None) -> str:
    """Who is speaking: the key's identity, and the optional ``user`` behind it.

    Memories and personality belong to the speaker, so one key never sees another
    key's, and each user of a shared key has their own.

    Raises:
        ValueError: If ``user`` is not 1-64 of ``[A-Za-z0-9_.@:-]``.
    """
    if user is not None and not re.match(USER, user):
        raise ValueError("user must be 1-64 of [A-Za-z0-9_.@:-]")
    return f"key-{(identity or 'anonymous')[:16]}/{user or 'default'}"


def presented_key(connection: Request | WebSocket) -> str | None:
    """The key: ``X-API-Key``, ``Authorization: Bearer``, or (websockets) ``?api_key=``."""
    bearer = connection.headers.get("authorization", "")
    scheme, _, token = bearer.partition(" ")
    in_query = connection.scope["type"] == "websocket"
    return (
        connection.headers.get("x-api-key")
        or (token.strip() if scheme.lower() == "bearer" else None)
        or (connection.query_params.get("api_key") if in_query else None)
    )


def identify(connection: Request | WebSocket) -> tuple[str | None, int, str]:
    """(key digest, status, reason): 0 for a valid key, else 401 (or 429: too many failures)."""
    failures: RateLimiter = connection.app.state.auth_failures
    address = connection.client.host if connection.client else "unknown"
    wait = failures.blocked(address)
    if wait > 0:
        return None, 429, f"too many failed attempts from this address; retry in {wait:.1f} s"
    keys: ApiKeys = connection.app.state.keys
    identity = keys.identify(presented_key(connection))
    if identity is None:
        failures.allow(address)  # one failure spent
        return None, 401, "a valid API key is required (X-API-Key or Authorization: Bearer)"
    return identity, 0, ""


async def check(connection: Request | WebSocket) -> tuple[str | None, int, str]:
    """(key digest, status, reason): status 0 when allowed, else 401, 429 or 503.

    503: the limits live in a shared store that cannot be reached just now; the
    request is refused rather than let through unlimited.
    """
    identity, status, reason = identify(connection)
    if identity is None:
        return None, status, reason
    limits: RateLimits = connection.app.state.limits
    try:
        wait = await limits.take(identity)
    except Exception:  # noqa: BLE001 - an outage of the shared store, said as 503
        log.exception("the rate limits could not be checked")
        return identity, 503, "the rate limits cannot be checked just now; try again"
    if wait > 0:
        return identity, 429, f"rate limit exceeded; retry in {wait:.1f} s"
    return identity, 0, ""


async def require_key(request: Request) -> str:
    """FastAPI dependency: the caller's key digest, or 401/429."""
    identity, status, reason = await check(request)
    if status:
        headers = {"Retry-After": reason.split("retry in ")[-1].split()[0]} if status == 429 else {}
        raise HTTPException(status, reason, headers=headers)
    assert identity is not None
    return identity
