"""The HTTP gate, before the application reads a byte of the body.

A request without a valid key is refused (401, or 429 for an address whose
attempts keep failing) as soon as its headers are in, so nobody without a key
can make the server read and parse an upload. A body over ``max_upload_bytes`` is
refused with 413: at once when its ``Content-Length`` says so, or as soon as the
bytes received pass the limit (chunked bodies). Open without a key: ``/health``,
the browser client (``/``, ``/static/…``), CORS preflights, and the API
documentation when ``public_docs`` is set. Websockets check their key themselves
(``coda.server.admission``), after accepting, so a browser sees why it was refused.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coda.server.auth import identify

OPEN = ("/health", "/", "/favicon.ico")
DOCS = ("/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc")


class Guard:
    """ASGI middleware: key and size before the body.

    Args:
        app: The application it guards.
        max_body: Largest request body, in bytes.
        public_docs: Let ``/docs`` and ``/openapi.json`` answer without a key.
    """

    def __init__(self, app: ASGIApp, max_body: int, public_docs: bool) -> None:
        self.app = app
        self.max_body = max_body
        self.open = OPEN + (DOCS if public_docs else ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer it here."""
        if scope["type"] != "http" or self._is_open(scope):
            await self.app(scope, receive, send)
            return
        _, status, reason = identify(Request(scope))
        if status:
            headers = [(b"retry-after", reason.split("retry in ")[-1].split()[0].encode())]
            await _refuse(send, status, reason, headers if status == 429 else [])
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body:
            await _refuse(send, 413, f"the body is over {self.max_body} bytes")
            return
        await self._bounded(scope, receive, send)

    def _is_open(self, scope: Scope) -> bool:
        path = scope["path"]
        return scope["method"] == "OPTIONS" or path in self.open or path.startswith("/static/")

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; a body that grows past the limit is answered 413 and cut off."""
        received, refused = 0, False

        async def counting() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body and not refused:
                    refused = True
                    await _refuse(send, 413, f"the body is over {self.max_body} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            if not refused:  # once refused, what the app says no longer reaches the client
                await send(message)

        await self.app(scope, counting, sending)


async def _refuse(
    send: Send, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": reason}).encode()
    head: list[Any] = [(b"content-type", b"application/json"),
                       (b"content-length", str(len(body)).encode()), *(headers or [])]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
