"""Any OpenAI-compatible chat server: vLLM, llama.cpp server, Ollama's /v1."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, cast

from coda.core.config import LLMConfig
from coda.core.errors import LLMIntegrationError

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam
from coda.providers.base import GenerationRequest, GenerationStats

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


class OpenAICompatLLM:
    """Chat through the official ``openai`` client against a configured server."""

    name = "openai"

    def __init__(self, config: LLMConfig) -> None:
        from openai import AsyncOpenAI

        self._config = config
        self.base_url = config.base_url or os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)
        self.model = config.model or ""
        api_key = config.api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
        self._client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key,
            timeout=config.timeout_seconds,
            max_retries=0,
        )

    async def load(self) -> None:
        """Check the server answers; pick its first model if none is configured."""
        from openai import OpenAIError

        try:
            models = [model.id async for model in self._client.models.list()]
        except OpenAIError as exc:
            raise LLMIntegrationError(
                f"OpenAI-compatible server at {self.base_url} did not answer: {exc}"
            ) from exc
        if not self.model:
            if not models:
                raise LLMIntegrationError(f"server at {self.base_url} lists no model")
            self.model = models[0]

    async def stream(
        self, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        """Stream the reply's text deltas."""
        from openai import NOT_GIVEN, OpenAIError

        messages = cast("list[ChatCompletionMessageParam]", [m.as_dict() for m in request.messages])
        response_format: Any = (
            {"type": "json_schema", "json_schema": {"name": "reply", "schema": request.json_schema}}
            if request.json_schema
            else NOT_GIVEN
        )
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                seed=request.seed,
                stream=True,
                response_format=response_format,
            )
            count = 0
            async for chunk in response:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    stats.finish_reason = choice.finish_reason
                if choice.delta.content:
                    count += 1
                    yield choice.delta.content
            stats.completion_tokens = count
        except OpenAIError as exc:
            raise LLMIntegrationError(f"{self.base_url} failed to generate: {exc}") from exc

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()
