"""A dedicated worker thread: blocking calls (inference, SQL) never block the event loop.

One thread per model also serializes calls into libraries that are not
thread-safe (llama.cpp contexts, CTranslate2 models) without extra locks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
_DONE = object()


class WorkerThread:
    """Runs blocking calls on one dedicated thread, in order."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"coda-{name}")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the worker thread and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def stream(self, make_iterator: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """Iterate a blocking iterator on the worker thread, yielding its items here.

        Closing (or cancelling) the consumer stops the producer at its next item,
        which is how a barge-in or a timeout stops a model mid-generation.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[object, BaseException | None]] = asyncio.Queue()
        stop = threading.Event()

        def put(item: object, error: BaseException | None = None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (item, error))
            except RuntimeError:  # the loop closed while the model was still producing
                stop.set()

        def produce() -> None:
            iterator = make_iterator()
            try:
                for item in iterator:
                    if stop.is_set():
                        break
                    put(item)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the loop side
                put(_DONE, exc)
                return
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            put(_DONE)

        self._executor.submit(produce)
        try:
            while True:
                item, error = await queue.get()
                if item is _DONE:
                    if error is not None:
                        raise error
                    return
                yield item  # type: ignore[misc]
        finally:
            stop.set()

    def shutdown(self) -> None:
        """Stop the thread once queued work is done."""
        self._executor.shutdown(wait=False, cancel_futures=True)
