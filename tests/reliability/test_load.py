"""Load: more callers than the server has room for, all speaking real recordings at once.

The server (``max_sessions`` = 4) answers every caller it lets in and refuses the
rest with 1013, with no protocol error, and its memory stays within a stated
bound. ``coda bench load`` runs the same driver bigger.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coda.bench.load import format_load, run_load
from coda.bench.recordings import finished_turns
from coda.bench.ws_client import Server as BenchServer
from tests.conftest import KEY, serving

SLOTS = 4
CALLERS = 7
RSS_BOUND_MIB = 200
"""Growth of the server's RSS over the run: the turns' working memory (ASR and TTS
buffers, the LLM slots' caches) is bounded by the session limit, not by the callers."""


@pytest.mark.slow
async def test_callers_past_the_limit_are_refused_and_the_rest_answered(
    tmp_path: Path,
) -> None:
    clips = [turn.audio for turn in finished_turns()[:CALLERS]]
    with serving(tmp_path, f"max_sessions = {SLOTS}\n") as server:
        target = BenchServer(server.url, KEY, server.process.pid)
        report = await run_load(target, clips, CALLERS, turns=2)
        print(format_load(report))
        assert server.process.poll() is None
    assert report.count("failed") == 0, format_load(report)
    assert report.count("answered") == SLOTS and report.count("refused") == CALLERS - SLOTS
    assert len(report.latencies) == 2 * SLOTS
    assert report.peak_mib - report.baseline_mib < RSS_BOUND_MIB, format_load(report)
