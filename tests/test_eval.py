"""`coda eval`'s fast subset, against the real engine with every integration on.

The whole eval is a benchmark (`coda eval`); this subset holds the line on what
it measures, with the thresholds stated here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coda.core.errors import ValidationError
from coda.eval.cases import CaseFilter, EvalTurn, load_cases
from coda.eval.report import EvalReport, format_report, plot_report
from coda.eval.runner import perspective_error, run_eval
from coda.eval.voices import espeak_available
from coda.voice import VoiceManager

# Thresholds of the fast subset (the targets, on the cases marked fast).
RECALL_TYPED = 0.9
RECALL_SPOKEN = 0.8
INVENTED = 0.05
UNRELATED = 0.05


def test_the_shipped_cases_cover_the_categories() -> None:
    cases = load_cases()
    pairs = {c.id for c in cases if c.category == "recall/typed"}
    patterns = {c.pattern for c in cases if c.category == "recall/typed"}
    assert len(pairs) >= 30 and len(patterns) >= 10
    categories = {c.category for c in cases}
    for needed in ("update", "forget", "perspective", "unknown", "tools", "knowledge", "reference"):
        assert needed in categories
    assert {"recall/piper", "recall/espeak"} <= categories  # two voices for spoken turns
    fast = load_cases(chosen=CaseFilter(fast=True))
    assert 0 < len(fast) < len(cases) and all(c.fast for c in fast)


def test_a_bad_case_file_is_refused_before_anything_runs(tmp_path: Path) -> None:
    for text, why in (
        ("pair = [{ tell = 'I live in Rome.', ask = 'Where do I live?' }]", "expect"),
        ("pair = [{ tell = 'Hi.', ask = 'Where?', expect = ['(unclosed'] }]", "bad pattern"),
        ("case = [{ id = 'x', category = 'y', conversations = [[{ expect = ['a'] }]] }]", "say"),
        ("not toml [[[", "bad eval case file"),
    ):
        path = tmp_path / "cases.toml"
        path.write_text(text)
        with pytest.raises(ValidationError, match=why):
            load_cases(path)


def test_checks_and_perspective_are_judged_on_the_reply() -> None:
    turn = EvalTurn("Where do I live?", expect=(r"\bparis\b",), forbid=(r"\bberlin\b",))
    assert turn.failures("You live in Paris.") == []
    assert turn.failures("You moved from Berlin to Paris.") == [r"forbidden /\bberlin\b/"]
    assert turn.failures("I don't know.") == [r"missing /\bparis\b/"]
    assert perspective_error("What is my name?", "Yes, my name is Ada.")
    assert not perspective_error("What is my name?", "Your name is Ada.")
    assert not perspective_error("The largest planet in our solar system?", "In our solar system…")


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is installed by .ci/run")
async def test_fast_eval_meets_the_targets(manager: VoiceManager, tmp_path: Path) -> None:
    cases = load_cases(chosen=CaseFilter(fast=True))
    report = EvalReport("fast", await run_eval(manager, cases))
    table = format_report([report])
    failures = "\n".join(report.failures())
    assert (report.accuracy("recall/typed") or 0) >= RECALL_TYPED, table + failures
    assert (report.accuracy("recall/piper", "recall/espeak") or 0) >= RECALL_SPOKEN, failures
    assert report.perspective_errors == 0, failures
    assert (report.invented_rate or 0) <= INVENTED, failures
    assert report.unrelated_rate <= UNRELATED, "\n".join(report.unrelated())
    for category in ("update", "forget", "tools", "knowledge"):
        assert report.accuracy(category) == 1.0, f"{category}:\n{failures}"
    assert plot_report([report], tmp_path / "eval.png").stat().st_size > 1000


def test_coda_eval_runs_from_the_command_line(tmp_path: Path) -> None:
    chart = tmp_path / "eval.png"
    result = subprocess.run(
        [sys.executable, "-m", "coda.cli", "--llm", "llamacpp", "eval", "--fast",
         "--only", "unknown,forget", "--chart", str(chart)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "unknown" in result.stdout and "invented facts" in result.stdout
    assert chart.stat().st_size > 1000
