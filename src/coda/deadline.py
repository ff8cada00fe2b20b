"""Bounding an async stream in time."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from typing import TypeVar

from coda.core.errors import TimeoutError

T = TypeVar("T")


async def with_deadline(events: AsyncIterator[T], seconds: float) -> AsyncIterator[T]:
    """Re-yield ``events`` until ``seconds`` have passed, then raise ``TimeoutError``.

    On timeout the source generator is cancelled where it waits, so its own
    cleanup (cancelling the LLM and TTS tasks) runs before the error surfaces.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    iterator = aiter(events)
    try:
        while True:
            try:
                item = await asyncio.wait_for(anext(iterator), max(0.0, deadline - loop.time()))
            except StopAsyncIteration:
                return
            except builtins.TimeoutError as exc:
                raise TimeoutError(
                    f"the turn took longer than {seconds:.1f} s "
                    "(StreamingConfig.turn_timeout_seconds); it was cancelled"
                ) from exc
            yield item
    finally:
        await iterator.aclose()  # type: ignore[attr-defined]
