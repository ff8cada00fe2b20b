"""The embedded language model: a GGUF file run by llama.cpp in-process.

Several conversations at once each get a slot: a llama.cpp context of its own,
so switching between them costs nothing and each keeps its conversation's
evaluated prefix (a turn takes the free slot that last served its conversation,
else the least recently used one). Every evaluation (a token, or a chunk of the
prompt) is one slice of the compute scheduler (``coda.providers.scheduler``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import os
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coda.core.config import LLMConfig
from coda.core.errors import LLMIntegrationError, VoiceInitializationError
from coda.providers.base import GenerationRequest, GenerationStats
from coda.providers.scheduler import CPU, ComputeScheduler, Ticket, current_ticket
from coda.worker import WorkerThread

SLICE_TOKENS = 32
"""Prompt tokens a turn evaluates per scheduler slice (~200 ms here)."""
BACKGROUND_SLICE_TOKENS = 8
"""The same for background work (~50 ms), so a turn arriving during a long
background prompt waits at most that long for the gate."""

IDLE_SECONDS = 1.0
"""More slots load once no turn has run for this long (loading takes ~0.6 s of CPU)."""


@functools.cache
def _gated_llama() -> type:
    """``Llama`` whose every evaluation (prompt chunk or token) is a scheduler slice.

    llama.cpp's own log is dropped here once: with ``verbose=False``
    llama-cpp-python would instead point the process's stdout and stderr at
    /dev/null while a model loads, and output of other threads (a slot loading
    in the background while a turn is printed or logged) would be lost.
    """
    import ctypes

    import llama_cpp
    from llama_cpp import Llama

    @llama_cpp.llama_log_callback
    def quiet(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        del level, text, user_data

    llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))

    class GatedLlama(Llama):
        quiet_log = quiet  # kept alive here: the C side holds only a pointer

        def __init__(self, scheduler: ComputeScheduler, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.scheduler = scheduler
            self.ticket: Ticket | None = None

        def eval(self, tokens: Sequence[int]) -> None:
            turn = self.ticket is not None and not self.ticket.background
            size = SLICE_TOKENS if turn else BACKGROUND_SLICE_TOKENS
            for start in range(0, len(tokens), size):
                with self.scheduler.slice(self.ticket, "llm"):
                    super().eval(tokens[start : start + size])

    return GatedLlama


@dataclass
class _Slot:
    """One llama.cpp context, its thread, and the conversation whose prefix it holds."""

    llm: Any
    worker: WorkerThread
    key: str = ""
    busy: bool = False
    used: int = 0


class LlamaCppLLM:
    """Chat with a local GGUF model through llama-cpp-python.

    With ``reuse_prefix`` (``VoiceConfig.enable_caching``), llama.cpp keeps the
    evaluated tokens of the previous prompt and evaluates only what is new, so a
    turn in a long conversation costs its own tokens, not the whole history.
    """

    name = "llamacpp"

    def __init__(
        self,
        config: LLMConfig,
        model_path: Path,
        *,
        reuse_prefix: bool = True,
        slots: int | None = None,
        scheduler: ComputeScheduler = CPU,
    ) -> None:
        self._config = config
        self._path = model_path
        self._reuse_prefix = reuse_prefix
        self._max_slots = max(1, config.parallel_slots if slots is None else slots)
        self._scheduler = scheduler
        self._slots: list[_Slot] = []
        self._changed = asyncio.Condition()
        self._uses = 0
        self._made = 0
        self._warming: asyncio.Task[None] | None = None
        self.model = model_path.name

    @property
    def slots(self) -> int:
        """Contexts loaded so far (conversations it can serve at once)."""
        return len(self._slots)

    def twin(self) -> LlamaCppLLM:
        """Another instance of the same model, with its own cache (for background work)."""
        return LlamaCppLLM(self._config, self._path, reuse_prefix=self._reuse_prefix, slots=1)

    async def load(self) -> None:
        """Load the GGUF into the first slot; the others load in the background.

        The other slots (``parallel_slots``) load at the first idle moments after
        start, so later conversations that overlap do not wait for a context to
        be made; until then, overlapping turns wait for the free slot.
        """
        if not self._slots:
            self._slots.append(await self._new_slot())
            if self._max_slots > 1:
                self._warming = asyncio.create_task(self._add_slots())

    async def _new_slot(self) -> _Slot:
        worker = WorkerThread(f"{self.name}-{self._made}")
        self._made += 1
        try:
            return _Slot(await worker.run(self._load), worker)
        except BaseException:
            worker.shutdown()
            raise

    async def _add_slots(self) -> None:
        """Load the other slots while no turn is running, each primed with the first's prompt.

        Priming copies what the first slot holds (the system prompt, once the
        engine's warm-up has run), so a conversation's first turn on a new slot
        does not evaluate it again.
        """
        first = self._slots[0].llm
        while len(self._slots) < self._max_slots:
            while not (first.n_tokens and self._scheduler.idle_for(IDLE_SECONDS)):
                await asyncio.sleep(IDLE_SECONDS / 4)  # loading would slow a turn down
            slot = await self._new_slot()  # made outside the lock: free slots stay usable
            prefix = list(first.input_ids[: first.n_tokens])
            await slot.worker.run(slot.llm.eval, prefix)
            async with self._changed:
                self._slots.append(slot)
                self._changed.notify_all()

    async def _acquire(self, key: str) -> _Slot:
        """A free slot: the one holding ``key``'s prefix, else the least recently used."""
        async with self._changed:
            while True:
                free = sorted((s for s in self._slots if not s.busy), key=lambda s: s.used)
                if free:
                    slot = next((s for s in free if s.key == key), free[0])
                    break
                await self._changed.wait()
            slot.busy, slot.key = True, key
            self._uses += 1
            slot.used = self._uses
            return slot

    async def _release(self, slot: _Slot) -> None:
        async with self._changed:
            slot.busy = False
            self._changed.notify_all()

    def _load(self) -> Any:
        if not self._path.is_file():
            raise VoiceInitializationError(f"GGUF model not found: {self._path}")
        try:
            # verbose=True keeps the process's file descriptors alone (see
            # _gated_llama); what the constructor prints goes nowhere instead.
            with contextlib.redirect_stderr(io.StringIO()):
                llm = _gated_llama()(
                    self._scheduler,
                    model_path=str(self._path),
                    n_ctx=self._config.context_tokens,
                    n_threads=self._config.threads or os.cpu_count() or 1,
                    verbose=True,
                )
            llm.verbose = False  # and nothing is printed per completion
            return llm
        except (ValueError, RuntimeError, OSError) as exc:
            raise VoiceInitializationError(f"llama.cpp failed to load {self._path}: {exc}") from exc

    async def stream(
        self, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        """Stream the reply's text deltas, one scheduler slice per token."""
        if not self._slots:
            raise LLMIntegrationError("the embedded model is not loaded: call initialize()")
        ticket = current_ticket.get()
        slot = await self._acquire(ticket.key if ticket else "")
        llm = slot.llm

        def generate() -> Iterator[str]:
            llm.ticket = ticket  # every evaluation slice is scheduled for this turn
            if not self._reuse_prefix:
                llm.reset()
            cached = list(llm.input_ids[: llm.n_tokens])  # what the context holds now
            chunks = llm.create_chat_completion(
                messages=[m.as_dict() for m in request.messages],
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                seed=request.seed,
                stream=True,
                response_format=(
                    {"type": "json_object", "schema": request.json_schema}
                    if request.json_schema
                    else None
                ),
            )
            count = 0
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice.get("finish_reason"):
                    stats.finish_reason = choice["finish_reason"]
                delta = choice["delta"].get("content")
                if delta:
                    count += 1
                    yield delta
            stats.completion_tokens = count
            stats.prompt_tokens = prompt = max(0, llm.n_tokens - count)
            # How much of the prompt the context already held (evaluated for free).
            stats.extra["kv_tokens_reused"] = llm.longest_token_prefix(
                cached, list(llm.input_ids[:prompt])
            )

        try:
            async for delta in slot.worker.stream(generate):
                yield delta
        except (RuntimeError, ValueError) as exc:
            raise LLMIntegrationError(f"llama.cpp generation failed: {exc}") from exc
        finally:
            await self._release(slot)

    async def close(self) -> None:
        """Free the model's contexts."""
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(BaseException):
                await self._warming
        slots, self._slots = self._slots, []
        for slot in slots:
            await slot.worker.run(slot.llm.close)
            slot.worker.shutdown()
