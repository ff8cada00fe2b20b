"""What ``get_stats()`` reports: the models in use, the modes, counters and analytics."""

from __future__ import annotations

from typing import Any

from coda.providers.tts.cache import CachedTTS
from coda.voice.engine import VoiceEngine


def engine_stats(engine: VoiceEngine) -> dict[str, Any]:
    """Counters, mean stage timings, analytics, and which models are in use."""
    tts_cache = engine.tts if isinstance(engine.tts, CachedTTS) else None
    pipeline = engine.pipeline
    return {
        "initialized": engine.initialized,
        "llm_provider": engine.llm.name if engine.llm else None,
        "llm_model": engine.llm.model if engine.llm else None,
        "llm_reason": engine.llm_reason,
        "stt_provider": engine.stt.name if engine.stt else None,
        "stt_fitted_window_fallbacks": getattr(engine.stt, "fallbacks", None),
        "tts_provider": engine.tts.name if engine.tts else None,
        "moshi_servers": engine.built.moshi_pool.snapshot() if engine.built.moshi_pool else [],
        "vram": engine.vram.stats(),
        "modes_available": sorted(m.value for m in engine.responders),
        "modes_unavailable": {m.value: why for m, why in engine.built.unavailable.items()},
        "integrations": [h.name for h in pipeline.hooks] if pipeline else [],
        "active_conversations": len(engine.conversations.active),
        **(pipeline.stats.snapshot() if pipeline else {"turns": 0, "errors": 0}),
        "background": pipeline.background.snapshot() if pipeline else None,
        "tts_cache": {"hits": tts_cache.hits, "misses": tts_cache.misses} if tts_cache else None,
    }
