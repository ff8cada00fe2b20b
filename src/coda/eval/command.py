"""``coda eval``: run the cases once per language model and recognizer, print and chart them."""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from coda.core.config import LLMConfig, VoiceConfig
from coda.eval.cases import CaseFilter, load_cases
from coda.eval.report import EvalReport, format_report, plot_report
from coda.eval.runner import CaseResult, run_eval
from coda.eval.voices import espeak_available
from coda.voice.manager import VoiceManager

SHOWN_FAILURES = 40


def _variant(base: VoiceConfig, llm: str | None, stt: str | None, folder: str) -> VoiceConfig:
    config = replace(base, store_path=str(Path(folder) / "eval.sqlite3"))
    llm_config = config.llm or LLMConfig(provider="auto")  # None means "auto" too
    if llm not in (None, "embedded"):
        llm_config = replace(llm_config, provider="llamacpp", model=llm)
    # A fixed sampling seed and a deterministic voice, so runs compare like with like.
    config = replace(config, tts=replace(config.tts, noise_scale=0.0, noise_w_scale=0.0))
    config = replace(
        config, llm=replace(llm_config, seed=0 if llm_config.seed is None else llm_config.seed)
    )
    if stt is not None:
        model, _, beam = stt.partition(":beam")
        stt_config = replace(config.stt, model=model)
        config = replace(
            config, stt=replace(stt_config, beam_size=int(beam or stt_config.beam_size))
        )
    return config


def _label(llm: str | None, stt: str | None, config: VoiceConfig) -> str:
    name = Path(llm).stem if llm not in (None, "embedded") else "embedded"
    return f"{name[:24]}/{stt or config.stt.model}"


async def evaluate(
    base: VoiceConfig,
    cases_path: Path | None,
    chosen: CaseFilter,
    llm: str | None,
    stt: str | None,
) -> EvalReport:
    """One run of the cases with a fresh engine (and a throwaway store)."""
    cases = load_cases(cases_path, chosen)
    with tempfile.TemporaryDirectory(prefix="coda-eval-") as folder:
        config = _variant(base, llm, stt, folder)
        manager = VoiceManager(config)
        await manager.initialize()
        try:

            def tick(result: CaseResult) -> None:
                print("." if result.passed else "F", end="", flush=True, file=sys.stderr)

            results = await run_eval(manager, cases, tick)
            print(file=sys.stderr)
        finally:
            await manager.cleanup()
    return EvalReport(_label(llm, stt, config), results)


async def run_eval_command(
    base: VoiceConfig,
    cases_path: Path | None,
    chosen: CaseFilter,
    llms: list[str | None] | None,
    stts: list[str | None] | None,
    chart: Path,
) -> int:
    """Run every model combination, print the table and failures, save the chart."""
    if "espeak" in chosen.voices and not espeak_available():
        print("espeak-ng is not installed: its voice is skipped", file=sys.stderr)
        chosen = replace(chosen, voices=tuple(v for v in chosen.voices if v != "espeak"))
    reports = [
        await evaluate(base, cases_path, chosen, llm, stt)
        for llm in (llms or [None])
        for stt in (stts or [None])
    ]
    print(format_report(reports))
    for report in reports:
        failures = report.failures()
        print(f"\n{report.label}: {len(failures)} failed turns")
        for line in failures[:SHOWN_FAILURES]:
            print(f"  {line}")
        for line in report.unrelated()[:SHOWN_FAILURES]:
            print(f"  unrelated memory: {line}")
        for line in report.perspective():
            print(f"  wrong person: {line}")
    print(f"\nchart: {plot_report(reports, chart)}")
    return 0
