"""The key check and rate limit every route but ``/health`` goes through."""

from __future__ import annotations

from fastapi import HTTPException, Request, WebSocket

from coda.server.security import ApiKeys, RateLimiter


def presented_key(connection: Request | WebSocket) -> str | None:
    """The key from the ``X-API-Key`` header, else the ``api_key`` query parameter."""
    return connection.headers.get("x-api-key") or connection.query_params.get("api_key")


def check(connection: Request | WebSocket) -> tuple[str | None, int, str]:
    """(key digest, status, reason): status 0 when allowed, else 401 or 429."""
    keys: ApiKeys = connection.app.state.keys
    limiter: RateLimiter = connection.app.state.limiter
    identity = keys.identify(presented_key(connection))
    if identity is None:
        return None, 401, "a valid API key is required (X-API-Key header or api_key query)"
    if not limiter.allow(identity):
        wait = limiter.retry_after(identity)
        return identity, 429, f"rate limit exceeded; retry in {wait:.1f} s"
    return identity, 0, ""


async def require_key(request: Request) -> str:
    """FastAPI dependency: the caller's key digest, or 401/429."""
    identity, status, reason = check(request)
    if status:
        headers = {"Retry-After": reason.split("retry in ")[-1].split()[0]} if status == 429 else {}
        raise HTTPException(status, reason, headers=headers)
    assert identity is not None
    return identity
