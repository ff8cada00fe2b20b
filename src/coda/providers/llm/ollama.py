"""Ollama through its official client (``/api/chat``, streaming)."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator

import httpx

from coda.core.config import LLMConfig
from coda.core.errors import LLMIntegrationError
from coda.providers.base import GenerationRequest, GenerationStats

DEFAULT_HOST = "http://127.0.0.1:11434"


def ollama_host(config: LLMConfig) -> str:
    """The configured Ollama host (``base_url``, ``$OLLAMA_HOST`` or the default)."""
    return config.base_url or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST


def _model_names(listing: object) -> set[str]:
    names = set()
    for entry in getattr(listing, "models", []) or []:
        name = getattr(entry, "model", None) or getattr(entry, "name", None)
        if name:
            names.add(name)
            if name.endswith(":latest"):
                names.add(name.removesuffix(":latest"))
    return names


class OllamaLLM:
    """Chat with a model served by Ollama."""

    name = "ollama"

    def __init__(self, config: LLMConfig, *, timeout: float | None = None) -> None:
        from ollama import AsyncClient

        self._config = config
        self.host = ollama_host(config)
        self.model = config.model or ""
        self._client = AsyncClient(host=self.host, timeout=timeout or config.timeout_seconds)

    async def available(self) -> tuple[bool, str]:
        """Whether the server answers and has the model, and why not if it does not."""
        from ollama import ResponseError

        try:
            listing = await self._client.list()
        except (httpx.HTTPError, ConnectionError, ResponseError) as exc:
            return False, f"no Ollama server answered at {self.host} ({type(exc).__name__})"
        if self.model not in _model_names(listing):
            return False, f"Ollama at {self.host} does not have {self.model!r} (ollama pull)"
        return True, f"Ollama at {self.host} has {self.model!r}"

    async def load(self) -> None:
        """Check the server answers and has the model."""
        if not self.model:
            raise LLMIntegrationError("LLMConfig.model must name an Ollama model")
        ok, reason = await self.available()
        if not ok:
            raise LLMIntegrationError(reason)

    async def stream(
        self, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        """Stream the reply's text deltas."""
        from ollama import ResponseError

        options: dict[str, float | int] = {
            "num_predict": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.seed is not None:
            options["seed"] = request.seed
        try:
            parts = await self._client.chat(
                model=self.model,
                messages=[m.as_dict() for m in request.messages],
                stream=True,
                options=options,
                format=request.json_schema,
            )
            async for part in parts:
                if part.message and part.message.content:
                    yield part.message.content
                if part.done:
                    stats.finish_reason = "length" if part.done_reason == "length" else "stop"
                    stats.prompt_tokens = part.prompt_eval_count
                    stats.completion_tokens = part.eval_count
        except (httpx.HTTPError, ConnectionError, ResponseError) as exc:
            raise LLMIntegrationError(f"Ollama at {self.host} failed to generate: {exc}") from exc

    async def close(self) -> None:
        """Close the HTTP client."""
        client = getattr(self._client, "_client", None)
        if client is not None:
            await client.aclose()
