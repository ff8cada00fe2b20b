"""Structured logs for the server: one JSON object per line, with the conversation id.

Keys never reach the logs: a websocket's ``?api_key=`` (in uvicorn's access
lines) and any ``Bearer`` token are replaced by ``***``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextvars import ContextVar

_KEYS = re.compile(r"(api_key=|Bearer\s+)[^&\s\"']+", re.IGNORECASE)

conversation_id: ContextVar[str | None] = ContextVar("conversation_id", default=None)
"""The conversation the current request or session serves."""


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON: time, level, logger, message, conversation id, error."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line."""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": _KEYS.sub(r"\1***", record.getMessage()),
            "conversation_id": conversation_id.get(),
        }
        if record.exc_info:
            entry["error"] = _KEYS.sub(r"\1***", self.formatException(record.exc_info))
        return json.dumps(entry)


def configure(level: str) -> None:
    """Send every log record to stderr as JSON."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
