"""Server settings: a TOML file, then ``CODA_*`` environment variables, then flags.

Lists (API keys, origins) may be given as TOML arrays or as comma-separated
strings in the environment, e.g. ``CODA_API_KEYS=key1,key2``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from coda.core.config import LLMConfig, MoshiConfig, VoiceConfig
from coda.core.enums import VoiceProcessingMode
from coda.core.streaming_config import StreamingConfig

CommaList = Annotated[list[str], NoDecode]


SESSIONS_PER_CORE = 4
"""Live sessions a CPU core carries with the embedded models: on 2 cores, 8 callers at
once were answered in 2.6 s (p50), 16 in 13 s, and 50 starved the event loop
(``coda bench load``)."""


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ServerSettings(BaseSettings):
    """Everything ``coda serve`` reads.

    Attributes:
        host: Interface to listen on.
        port: TCP port.
        api_keys: Accepted API keys, in plain text (hashed at start-up, never kept).
        api_key_hashes: Accepted keys as SHA-256 hex digests (for config files).
        rate_limit_per_minute: Requests (and socket openings) per key per minute.
        max_upload_bytes: Largest audio upload.
        max_frame_bytes: Largest message of the live websocket (audio frames).
        max_event_bytes: Largest ``/v1/realtime`` event (JSON, audio in base64).
        max_session_seconds: Longest websocket session.
        idle_timeout_seconds: A websocket whose client sends nothing this long is closed.
        send_timeout_seconds: A websocket whose client stops reading is closed once a
            message has waited this long to go out.
        max_audio_speed: Audio a client may send per second of wall clock (after a
            burst), in seconds: faster audio is read more slowly.
        audio_burst_seconds: Audio a client may send at once, in seconds.
        max_throttled_seconds: A client slowed down this long in all is closed.
        max_sessions: Concurrent websocket sessions on this instance (default:
            ``SESSIONS_PER_CORE`` for each CPU core it may use). Every session's
            audio is processed as it arrives, so past the CPU's capacity every
            caller suffers: the next one is refused with 1013 instead.
        max_sessions_per_key: Concurrent websocket sessions of one key (on all
            instances together, when they share a PostgreSQL store).
        allowed_origins: Browser origins allowed (CORS and websockets); empty
            allows only the server's own origin.
        llm, llm_model, llm_url: The language model (as ``coda --llm``).
        moshi_url: A Moshi server, if any.
        moshi_urls: Several Moshi servers, one session each (a pool); joined with
            ``moshi_url`` if both are given.
        store: Where everything persists: an SQLite file (None: the default) or
            ``postgresql://…``, which several instances can share.
        models: Folder for assembled models (None: the default).
        default_mode: Processing mode for turns that name none.
        memory, personality, tools, sync: Switch each integration on or off
            (all on by default).
        metrics_enabled: Prometheus collection and ``/metrics``.
        public_docs: ``/docs`` and ``/openapi.json`` answer without a key.
        auth_failures_per_minute: Failed key checks one client address may make per
            minute; past them, everything from it is refused (429) until they refill.
        analytics: Per-conversation figures in the engine's stats.
        turn_timeout_seconds: Longest a turn may take before it is cancelled and
            answered with a timeout (``StreamingConfig.turn_timeout_seconds``).
    """

    model_config = SettingsConfigDict(env_prefix="CODA_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=1, le=65535)
    api_keys: CommaList = Field(default_factory=list)
    api_key_hashes: CommaList = Field(default_factory=list)
    rate_limit_per_minute: int = Field(default=120, ge=1)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_frame_bytes: int = Field(default=16384, ge=64)
    max_event_bytes: int = Field(default=262144, ge=1024)
    max_session_seconds: float = Field(default=1800.0, gt=0)
    idle_timeout_seconds: float = Field(default=120.0, gt=0)
    send_timeout_seconds: float = Field(default=10.0, gt=0)
    max_audio_speed: float = Field(default=1.5, ge=1.0)
    audio_burst_seconds: float = Field(default=10.0, ge=0)
    max_throttled_seconds: float = Field(default=5.0, gt=0)
    max_sessions: int = Field(default_factory=lambda: SESSIONS_PER_CORE * usable_cores(), ge=1)
    max_sessions_per_key: int = Field(default=32, ge=1)
    allowed_origins: CommaList = Field(default_factory=list)
    llm: str = "auto"
    llm_model: str | None = None
    llm_url: str | None = None
    moshi_url: str | None = None
    moshi_urls: CommaList = Field(default_factory=list)
    store: str | None = None
    models: str | None = None
    default_mode: VoiceProcessingMode = VoiceProcessingMode.ADAPTIVE
    memory: bool = True
    personality: bool = True
    tools: bool = True
    sync: bool = True
    metrics_enabled: bool = True
    public_docs: bool = False
    auth_failures_per_minute: int = Field(default=20, ge=1)
    analytics: bool = True
    turn_timeout_seconds: float = Field(default=StreamingConfig.turn_timeout_seconds, gt=0)

    @field_validator("api_keys", "api_key_hashes", "allowed_origins", "moshi_urls", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def voice_config(self) -> VoiceConfig:
        """The engine's configuration.

        It holds twice ``max_sessions`` conversations at once: every live session
        may be mid-turn, and REST turns beside them.
        """
        llm = None
        if self.llm != "auto" or self.llm_model or self.llm_url:
            llm = LLMConfig(provider=self.llm, model=self.llm_model, base_url=self.llm_url)
        return VoiceConfig(
            llm=llm,
            moshi=MoshiConfig(server_url=self.moshi_url, server_urls=tuple(self.moshi_urls)),
            store_path=self.store,
            model_cache_dir=self.models,
            default_mode=self.default_mode,
            enable_memory_integration=self.memory,
            enable_personality_integration=self.personality,
            enable_tools_integration=self.tools,
            enable_conversation_sync=self.sync,
            metrics_enabled=self.metrics_enabled,
            enable_analytics=self.analytics,
            max_concurrent_conversations=max(
                VoiceConfig.max_concurrent_conversations, 2 * self.max_sessions
            ),
            streaming=StreamingConfig(turn_timeout_seconds=self.turn_timeout_seconds),
        )


def load_settings(path: Path | None = None, **overrides: Any) -> ServerSettings:
    """Settings from ``path`` (TOML), the environment, then ``overrides`` (highest)."""

    class FromFile(ServerSettings):
        model_config = SettingsConfigDict(env_prefix="CODA_", extra="forbid", toml_file=path)

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
            return (*sources, TomlConfigSettingsSource(settings_cls)) if path else sources

    settings = FromFile(**{k: v for k, v in overrides.items() if v is not None})
    return ServerSettings.model_validate(settings.model_dump())
