"""`coda bench` commands run and report every figure (their speed is not asserted)."""

from __future__ import annotations

from coda.audio.frontend import STAGES
from coda.bench.audio import format_audio_bench, run_audio_bench


def test_audio_bench_reports_every_stage() -> None:
    result = run_audio_bench(seconds=2.0, input_rate=16000)
    assert result.frames == 100
    assert set(result.per_frame_us) == {*STAGES, "overhead"}
    assert all(value >= 0 for value in result.per_frame_us.values())
    assert result.per_frame_us["vad"] > 0 and result.per_frame_us["echo"] > 0
    assert result.real_time_factor == result.total_us / 20_000
    table = format_audio_bench(result)
    for stage in STAGES:
        assert stage in table
    assert "real-time factor" in table and "budget" in table
