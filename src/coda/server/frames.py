"""How a live websocket is ended: the exception that closes it with a code and reason."""

from __future__ import annotations


class Closed(Exception):
    """Close the socket with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
