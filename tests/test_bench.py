"""`coda bench` commands run and report every figure (their speed is not asserted)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from coda.audio.frontend import STAGES
from coda.bench.audio import AudioBenchResult, format_audio_bench, run_audio_bench
from coda.testing.moshi_peer import TinyMoshiServer
from coda.voice import VoiceConfig, VoiceProcessingMode


def test_audio_bench_reports_every_stage() -> None:
    seconds = 2.0
    started = time.perf_counter()
    result = run_audio_bench(seconds=seconds, input_rate=16000)
    call_seconds = time.perf_counter() - started
    assert result.frames == 100  # 2 s of 20 ms frames
    assert set(result.per_frame_us) == {*STAGES, "overhead"}
    assert all(result.per_frame_us[stage] > 0 for stage in STAGES)  # each stage ran, timed
    # The chain's time for the whole audio lies within the call that ran it (which also
    # synthesized the test signal): a bound from a clock of the test's own, not a speed.
    assert result.real_time_factor * seconds <= call_seconds
    table = format_audio_bench(result)
    for stage in STAGES:
        assert stage in table
    assert "real-time factor" in table and "budget" in table


def test_real_time_factor_is_the_loop_time_over_the_audio_time() -> None:
    """With the loop's wall time injected (1000 s for 1 s of audio), every figure follows."""
    readings = iter([50.0, 1050.0])  # the bench's clock, read before and after its loop
    result = run_audio_bench(seconds=1.0, input_rate=48000, clock=lambda: next(readings))
    assert result.frames == 50 and result.input_rate == 48000
    assert result.total_us == pytest.approx(1000e6 / 50)
    assert result.real_time_factor == pytest.approx(1000.0)
    # The overhead is what the stages, timed on their own, leave of the loop's time.
    stages = sum(result.per_frame_us[stage] for stage in STAGES)
    assert 0 < stages < 1e6  # real stage times: far below the injected 20 s a frame
    assert result.per_frame_us["overhead"] == pytest.approx(20e6 - stages)
    assert "OVER the 500 µs/frame budget (40000.00x of it)" in format_audio_bench(result)


def test_audio_bench_table_gives_shares_and_the_verdict() -> None:
    per_frame = {"resample": 10.0, "echo": 20.0, "denoise": 30.0, "vad": 40.0, "endpoint": 50.0}
    result = AudioBenchResult(50, 48000, {**per_frame, "overhead": 50.0})  # 200 µs a frame
    table = format_audio_bench(result, budget_us=400.0)
    assert "front end, 50 frames of 20 ms at 48000 Hz" in table
    assert any(line.split() == ["vad", "40.0", "20.0%"] for line in table.splitlines())
    assert "real-time factor 0.0100 (100x faster than real time)" in table
    assert "within the 400 µs/frame budget (0.50x of it)" in table


async def test_latency_bench_measures_a_turn_and_draws_it(
    base_config: VoiceConfig, tmp_path: Path
) -> None:
    from coda.bench.latency import STAGES as LATENCY_STAGES
    from coda.bench.latency import LatencyPlan, format_latency, plot_latency, run_latency_bench

    config = replace(base_config, store_path=str(tmp_path / "bench.sqlite3"))
    plan = LatencyPlan(turns=1)
    (report,) = await run_latency_bench(config, [VoiceProcessingMode.LLM_ENHANCED], plan)
    (turn,) = report.turns
    assert set(turn.stages) == set(LATENCY_STAGES)
    assert turn.stages["endpointing"] > 0 and turn.stages["llm_first_token"] > 0
    # The reply's stages follow its start, which is at or after the end of speech
    # (a preemptive reply overlaps the endpointing wait, so that stage is left out).
    reply_stages = sum(v for k, v in turn.stages.items() if k not in ("overhead", "endpointing"))
    assert turn.total >= reply_stages
    table = format_latency([report])
    assert "p50" in table and "llm_enhanced" in table
    chart = plot_latency([report], tmp_path / "latency.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_moshi_bench_measures_frames_and_draws_them(
    moshi_server: TinyMoshiServer, tmp_path: Path
) -> None:
    from coda.bench.moshi import format_moshi_bench, measure, plot_moshi_bench

    result = await measure(moshi_server.url, frames=20)
    assert len(result.round_trip) == len(result.encode) == len(result.decode) == 20
    assert result.priming_frames >= 1
    assert all(e > 0 for e in result.encode) and all(d > 0 for d in result.decode)
    # The client's share is part of each round trip.
    assert all(o <= r for o, r in zip(result.overhead, result.round_trip, strict=True))
    table = format_moshi_bench(result)
    assert "client overhead" in table and "round trip" in table and "target 5 ms" in table
    chart = plot_moshi_bench(result, tmp_path / "moshi.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_memory_bench_times_searches_per_size(tmp_path: Path) -> None:
    from coda.bench.memory import format_memory_bench, plot_memory_bench, run_memory_bench

    bench = await run_memory_bench([1000, 3000], queries=10, top_k=5)
    assert [s.memories for s in bench.sizes] == [1000, 3000]
    assert all(len(s.search_ms) == 10 and min(s.search_ms) > 0 for s in bench.sizes)
    assert bench.embed_ms > 0
    table = format_memory_bench(bench)
    assert "3,000" in table and "p95/target" in table
    chart = plot_memory_bench(bench, tmp_path / "memory.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
