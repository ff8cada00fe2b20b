"""The Realtime conversation's items, as the client sees them, and how each is written.

The store keeps Coda's history (whole turns); these items are the session's
view in the Realtime API's terms: user messages (audio or text), assistant
messages, function calls and their outputs. They are bounded: past ``MAX_ITEMS``
the oldest are forgotten (the store still has the turns).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

MAX_ITEMS = 512


@dataclass
class Item:
    """One conversation item and, for an assistant's audio, where each piece ends.

    Attributes:
        body: The item as the API writes it.
        pieces: (end in ms, text) of each spoken piece, to truncate the transcript.
    """

    body: dict[str, Any]
    pieces: list[tuple[int, str]] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The item's id."""
        return str(self.body["id"])

    def truncate(self, audio_end_ms: int) -> str:
        """Keep what was heard by ``audio_end_ms``: the transcript of the pieces played."""
        kept = "".join(text for end, text in self.pieces if end <= audio_end_ms)
        for part in self.body.get("content", []):
            if part.get("type") == "output_audio":
                part["transcript"] = kept
        self.pieces = [(end, text) for end, text in self.pieces if end <= audio_end_ms]
        self.body["status"] = "incomplete"
        return kept


class Items:
    """The session's items in order, by id."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Item] = OrderedDict()

    def add(self, item: Item) -> str | None:
        """Append ``item``; the id of the item before it (None: it is the first)."""
        previous = next(reversed(self._items), None)
        self._items[item.id] = item
        while len(self._items) > MAX_ITEMS:
            self._items.popitem(last=False)
        return previous

    def get(self, item_id: str) -> Item | None:
        """The item ``item_id``, if the session still holds it."""
        return self._items.get(item_id)

    def delete(self, item_id: str) -> bool:
        """Forget an item; False if there was none."""
        return self._items.pop(item_id, None) is not None


def user_audio(item_id: str, transcript: str | None = None) -> dict[str, Any]:
    """A user's spoken message (its transcript once recognized)."""
    return _message(item_id, "user", [{"type": "input_audio", "transcript": transcript}])


def user_text(item_id: str, text: str) -> dict[str, Any]:
    """A user's typed message."""
    return _message(item_id, "user", [{"type": "input_text", "text": text}])


def assistant(item_id: str, modality: str, status: str = "in_progress") -> dict[str, Any]:
    """Coda's message (its audio's transcript, or its text, filled in as it is said)."""
    part = (
        {"type": "output_audio", "transcript": ""}
        if modality == "audio"
        else {"type": "output_text", "text": ""}
    )
    return _message(item_id, "assistant", [part], status)


def function_call(item_id: str, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A call of one of the client's tools."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def _message(
    item_id: str, role: str, content: list[dict[str, Any]], status: str = "completed"
) -> dict[str, Any]:
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": role,
            "status": status, "content": content}  # fmt: skip
