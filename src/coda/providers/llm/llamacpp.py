"""The embedded language model: a GGUF file run by llama.cpp in-process."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from coda.core.config import LLMConfig
from coda.core.errors import LLMIntegrationError, VoiceInitializationError
from coda.providers.base import GenerationRequest, GenerationStats
from coda.worker import WorkerThread


class LlamaCppLLM:
    """Chat with a local GGUF model through llama-cpp-python.

    With ``reuse_prefix`` (``VoiceConfig.enable_caching``), llama.cpp keeps the
    evaluated tokens of the previous prompt and evaluates only what is new, so a
    turn in a long conversation costs its own tokens, not the whole history.
    """

    name = "llamacpp"

    def __init__(self, config: LLMConfig, model_path: Path, *, reuse_prefix: bool = True) -> None:
        self._config = config
        self._path = model_path
        self._reuse_prefix = reuse_prefix
        self._llm: Any = None
        self._worker = WorkerThread(self.name)
        self.model = model_path.name

    def twin(self) -> LlamaCppLLM:
        """Another instance of the same model, with its own cache (for background work)."""
        return LlamaCppLLM(self._config, self._path, reuse_prefix=self._reuse_prefix)

    async def load(self) -> None:
        """Load the GGUF on the worker thread."""
        if self._llm is None:
            self._llm = await self._worker.run(self._load)

    def _load(self) -> Any:
        from llama_cpp import Llama

        if not self._path.is_file():
            raise VoiceInitializationError(f"GGUF model not found: {self._path}")
        try:
            return Llama(
                model_path=str(self._path),
                n_ctx=self._config.context_tokens,
                n_threads=self._config.threads or os.cpu_count() or 1,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise VoiceInitializationError(f"llama.cpp failed to load {self._path}: {exc}") from exc

    async def stream(
        self, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncIterator[str]:
        """Stream the reply's text deltas."""
        if self._llm is None:
            raise LLMIntegrationError("the embedded model is not loaded: call initialize()")

        def generate() -> Iterator[str]:
            if not self._reuse_prefix:
                self._llm.reset()
            cached_before = self._llm.n_tokens
            chunks = self._llm.create_chat_completion(
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
            stats.extra["kv_tokens_before"] = cached_before
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

        try:
            async for delta in self._worker.stream(generate):
                yield delta
        except (RuntimeError, ValueError) as exc:
            raise LLMIntegrationError(f"llama.cpp generation failed: {exc}") from exc

    async def close(self) -> None:
        """Free the model."""
        llm, self._llm = self._llm, None
        if llm is not None:
            await self._worker.run(llm.close)
        self._worker.shutdown()
