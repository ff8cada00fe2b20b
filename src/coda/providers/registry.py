"""Maps configuration names to providers, and resolves the default language model."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from coda.assets.embedded import Progress, qwen_gguf
from coda.core.config import LLMConfig, STTConfig, TTSConfig
from coda.core.errors import ConfigurationError
from coda.providers.base import (
    GenerationRequest,
    GenerationStats,
    LanguageModel,
    SpeechToText,
    TextToSpeech,
)
from coda.providers.llm.llamacpp import LlamaCppLLM

log = logging.getLogger(__name__)

STT_PROVIDERS = {"faster_whisper": "coda.providers.stt.faster_whisper:FasterWhisperSTT"}
TTS_PROVIDERS = {"piper": "coda.providers.tts.piper:PiperTTS"}
LLM_PROVIDERS = {
    "llamacpp": "coda.providers.llm.llamacpp:LlamaCppLLM",
    "ollama": "coda.providers.llm.ollama:OllamaLLM",
    "openai": "coda.providers.llm.openai_compat:OpenAICompatLLM",
}


def _load_class(table: dict[str, str], name: str, role: str) -> Any:
    if name not in table:
        raise ConfigurationError(f"unknown {role} provider {name!r}; known: {sorted(table)}")
    module_name, _, class_name = table[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_stt(config: STTConfig, model_dir: Path) -> SpeechToText:
    """The speech-to-text provider named by ``config.provider``."""
    cls = _load_class(STT_PROVIDERS, config.provider, "speech-to-text")
    return cls(config, model_dir)


def create_tts(config: TTSConfig) -> TextToSpeech:
    """The text-to-speech provider named by ``config.provider``."""
    return _load_class(TTS_PROVIDERS, config.provider, "text-to-speech")(config)


@dataclass(frozen=True)
class LLMChoice:
    """The language model in use, and why it was chosen."""

    provider: LanguageModel
    reason: str


def embedded_model_path(config: LLMConfig, model_dir: Path, progress: Progress | None) -> Path:
    """A GGUF named by ``config.model``, or the embedded Qwen (assembled on first use)."""
    if config.model and config.model.endswith(".gguf"):
        return Path(config.model).expanduser()
    return qwen_gguf(model_dir, progress)


async def resolve_llm(
    config: LLMConfig | None,
    model_dir: Path,
    *,
    reuse_prefix: bool = True,
    progress: Progress | None = None,
) -> LLMChoice:
    """Build the configured language model.

    ``None`` (the development config) or ``provider="auto"`` uses Ollama when a
    server answers at the configured host and has the model, else the embedded
    llama.cpp model. An explicit provider is used as configured.
    """
    config = config or LLMConfig(provider="auto")
    name = config.provider
    if name == "auto":
        ollama_cls = _load_class(LLM_PROVIDERS, "ollama", "language model")
        probe = ollama_cls(config, timeout=config.probe_timeout_seconds)
        try:
            ok, why = await probe.available()
        finally:
            await probe.close()
        if ok:
            log.info("language model: %s", why)
            return LLMChoice(ollama_cls(config), why)
        reason = f"{why}; using the embedded llama.cpp model"
        log.info("language model: %s", reason)
        config = replace(config, provider="llamacpp", model=None)
        name = "llamacpp"
    else:
        reason = f"configured provider {name!r}"
    cls = _load_class(LLM_PROVIDERS, name, "language model")
    if name == "llamacpp":
        path = embedded_model_path(config, model_dir, progress)
        return LLMChoice(cls(config, path, reuse_prefix=reuse_prefix), reason)
    return LLMChoice(cls(config), reason)


def background_llm(llm: LanguageModel, config: LLMConfig | None, model_dir: Path) -> LanguageModel:
    """The model for background work: configured, or the voice model's twin.

    The embedded model gets a second instance (loaded on first use), so
    background work never replaces the conversation's prompt in the voice
    model's cache; a remote server keeps its own caches, so it is shared.
    """
    if config is not None:
        return LazyLLM(config, model_dir)
    return llm.twin() if isinstance(llm, LlamaCppLLM) else llm


class LazyLLM:
    """A configured language model, resolved and loaded on first use (background work).

    Args:
        config: Which model.
        model_dir: Where embedded models are assembled.
    """

    name = "lazy"

    def __init__(self, config: LLMConfig, model_dir: Path) -> None:
        self._config = config
        self._model_dir = model_dir
        self._llm: LanguageModel | None = None
        self.model = config.model or config.provider

    async def load(self) -> None:
        """Resolve and load the model (once)."""
        if self._llm is None:
            self._llm = (await resolve_llm(self._config, self._model_dir)).provider
            await self._llm.load()
            self.name, self.model = self._llm.name, self._llm.model

    async def stream(
        self, request: GenerationRequest, stats: GenerationStats
    ) -> AsyncGenerator[str, None]:
        """The model's text deltas (loading it first if needed)."""
        await self.load()
        assert self._llm is not None
        async with contextlib.aclosing(self._llm.stream(request, stats)) as deltas:
            async for delta in deltas:
                yield delta

    async def close(self) -> None:
        """Free the model."""
        if self._llm is not None:
            await self._llm.close()
            self._llm = None
