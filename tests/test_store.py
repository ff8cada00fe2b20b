"""The SQLite conversation store: persistence and atomic turns."""

from __future__ import annotations

from pathlib import Path

import pytest

from coda.core.errors import ConversationError
from coda.core.models import ConversationTurn, VoiceProcessingMode
from coda.store.sqlite import ConversationStore


async def test_turns_persist_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    store = ConversationStore(path)
    await store.open()
    state = await store.create("c1")
    for i in range(3):
        turn = ConversationTurn(f"user {i}", f"coda {i}", VoiceProcessingMode.LLM_ENHANCED)
        state.turns.append(turn)
        await store.add_turn(state, turn, {"i": i})
    await store.close()

    reopened = ConversationStore(path)
    await reopened.open()
    try:
        loaded = await reopened.load("c1", max_turns=2)
        assert loaded is not None and loaded.is_active
        assert [t.user_text for t in loaded.turns] == ["user 1", "user 2"]
        assert loaded.current_mode is VoiceProcessingMode.LLM_ENHANCED
        assert await reopened.count_turns("c1") == 3
        assert await reopened.load("unknown", 10) is None
        with pytest.raises(ConversationError, match="already exists"):
            await reopened.create("c1")
        await reopened.end("c1")
        ended = await reopened.load("c1", 10)
        assert ended is not None and not ended.is_active and ended.ended_at is not None
    finally:
        await reopened.close()


async def test_closed_store_raises_a_typed_error(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "x.sqlite3")
    with pytest.raises(ConversationError, match="closed"):
        await store.create("c")
