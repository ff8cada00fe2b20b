"""Prometheus metrics: per-stage turn latency, turns/errors/fallbacks per mode, sessions."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
STAGES = {
    "endpointing": "endpointing_ms",
    "asr": "asr",
    "llm_first_token": "llm_first_token",
    "tts_first_chunk": "tts_first_audio",
    "first_audio": "first_audio",
    "total": "total",
}
"""Histogram stage → timing key (``end_to_end`` is endpointing + first audio)."""


class Metrics:
    """One registry per server, so tests and several apps do not collide.

    Args:
        enabled: Collect and expose (``VoiceConfig.metrics_enabled``); when off,
            turns are not recorded and ``/metrics`` answers 404.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "coda_turn_stage_seconds",
            "Latency of each stage of a turn (end_to_end: end of speech to first reply audio)",
            ["stage"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.turns = Counter(
            "coda_turns",
            "Finished turns, by the mode that answered",
            ["mode"],
            registry=self.registry,
        )
        self.errors = Counter(
            "coda_turn_errors",
            "Turns that failed, by error type",
            ["error"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "coda_fallbacks",
            "Turns a mode could not answer and the cascade did, by the failed mode",
            ["mode"],
            registry=self.registry,
        )
        self.preemptive = Counter(
            "coda_preemptive_replies",
            "Replies started during a pause, by what became of them (released, discarded)",
            ["outcome"],
            registry=self.registry,
        )
        self.preemptive_wasted = Counter(
            "coda_preemptive_wasted_seconds",
            "Time spent making preemptive replies that were discarded (the user went on)",
            registry=self.registry,
        )
        self.active_sessions = Gauge(
            "coda_active_sessions", "Open websocket sessions", registry=self.registry
        )
        self.moshi_servers = Gauge(
            "coda_moshi_servers",
            "Moshi servers of the pool by state, as this instance sees them: free, busy "
            "(with one of its sessions), unhealthy (skipped after failing)",
            ["state"],
            registry=self.registry,
        )
        self.background_jobs = Gauge(
            "coda_background_jobs",
            "Background learning jobs waiting or running (memories, traits, sync)",
            registry=self.registry,
        )
        self.http_requests = Counter(
            "coda_http_requests",
            "API requests, by route and status",
            ["route", "status"],
            registry=self.registry,
        )

    def record_turn(
        self, mode: str, metadata: dict[str, Any], endpointing_ms: float | None
    ) -> None:
        """Fold one finished turn's timings (ms) into the histograms."""
        if not self.enabled:
            return
        timings = dict(metadata.get("timings_ms", {}))
        if endpointing_ms is not None:
            timings["endpointing_ms"] = endpointing_ms
            if "first_audio" in timings:
                # A preemptive reply started before the end was confirmed.
                started = timings.get("started_after_speech_ms", endpointing_ms)
                end_to_end = max(endpointing_ms, started + timings["first_audio"])
                self.stage_seconds.labels("end_to_end").observe(end_to_end / 1000)
        if "preemptive" in metadata:
            self.preemptive.labels("released").inc()
        for stage, key in STAGES.items():
            if key in timings:
                self.stage_seconds.labels(stage).observe(float(timings[key]) / 1000)
        self.turns.labels(mode).inc()
        selection = metadata.get("mode_selection", {})
        if selection.get("fallback"):
            self.fallbacks.labels(selection.get("failed", selection.get("requested", "?"))).inc()

    def record_discarded(self, wasted_ms: float) -> None:
        """A preemptive reply was thrown away after ``wasted_ms`` of work."""
        if self.enabled:
            self.preemptive.labels("discarded").inc()
            self.preemptive_wasted.inc(wasted_ms / 1000)

    def record_moshi(self, occupancy: dict[str, int]) -> None:
        """The Moshi pool's occupancy now (``MoshiPool.occupancy``)."""
        for state, count in occupancy.items():
            self.moshi_servers.labels(state).set(count)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
