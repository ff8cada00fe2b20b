"""`coda bench latency`: end of user speech → first reply audio, per mode, in real time.

Each turn of a spoken script is fed to a full-duplex session at real-time pace,
20 ms at a time, as a microphone would. The latency of a turn is the time from
the true end of the user's speech (known from the clean audio) to the moment
the first reply audio is ready, split into: the endpointing wait (silence the
front end needs to be sure the turn ended), recognition (zero when the
speculative pass finished during that wait), the integrations' hooks before the
reply (memory, personality, tools), LLM time to first token, synthesis
of the first clause, and framework overhead (the rest).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coda.audio.decode import resample
from coda.audio.frames import FRONT_END_RATE
from coda.core.config import TTSConfig, VoiceConfig
from coda.core.enums import VoiceProcessingMode
from coda.providers.tts.cache import CachedTTS
from coda.providers.tts.piper import PiperTTS
from coda.streaming.duplex import DuplexSession
from coda.turn.context import TurnOptions
from coda.turn.events import SpeechEnded, SpokenPiece, TurnFailed, TurnOutcome
from coda.voice.engine import VoiceEngine

SCRIPT = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is the boiling point of water?",
    "Who painted the Mona Lisa?",
    "Can you suggest a quick breakfast idea?",
    "What is the tallest mountain in the world?",
    "Why is the sky blue?",
    "How far is the moon from the earth?",
)
STAGES = (
    "endpointing",
    "asr",
    "hooks",
    "llm_first_token",
    "llm_first_clause",
    "tts_first_chunk",
    "overhead",
)
STEP = FRONT_END_RATE // 50


@dataclass
class TurnLatency:
    """One measured turn, in milliseconds."""

    total: float
    stages: dict[str, float]


@dataclass
class LatencyReport:
    """All turns of one mode."""

    mode: str
    turns: list[TurnLatency] = field(default_factory=list)

    def percentile(self, q: float, stage: str | None = None) -> float:
        """The ``q``-th percentile of the total (or of one stage)."""
        values = [t.total if stage is None else t.stages[stage] for t in self.turns]
        return float(np.percentile(values, q)) if values else float("nan")

    def compute_ratio(self) -> float:
        """Median total over the median of the model compute in it (ASR + LLM + TTS)."""
        model = [
            t.stages["asr"] + t.stages["llm_first_token"] + t.stages["tts_first_chunk"]
            for t in self.turns
        ]
        return self.percentile(50) / float(np.median(model)) if model else float("nan")


async def _user_audio(texts: tuple[str, ...]) -> list[np.ndarray]:
    voice = PiperTTS(TTSConfig(speaking_rate=1.0, noise_scale=0.0, noise_w_scale=0.0))
    await voice.load()
    clips = []
    for text in texts:
        speech = await voice.synthesize(text)
        clips.append(resample(speech.samples, speech.sample_rate, FRONT_END_RATE))
    await voice.close()
    return clips


def _speech_end(clip: np.ndarray) -> float:
    """Seconds into ``clip`` where speech ends (last 10 ms frame above -50 dBFS)."""
    frames = clip[: len(clip) // 160 * 160].reshape(-1, 160)
    loud = np.nonzero(np.sqrt(np.mean(frames**2, axis=1)) > 10 ** (-50 / 20))[0]
    return (loud[-1] + 1) * 160 / FRONT_END_RATE


async def _one_turn(session: DuplexSession, clip: np.ndarray) -> TurnLatency:
    audio = np.concatenate(
        [np.zeros(FRONT_END_RATE // 2, np.float32), clip, np.zeros(2 * FRONT_END_RATE, np.float32)]
    )
    true_end = session.now_seconds + 0.5 + _speech_end(clip)
    loop = asyncio.get_running_loop()
    started = loop.time()
    fed = 0.0
    ended_at: float | None = None  # session time the endpoint was decided
    ended_wall: float | None = None
    first_audio_wall: float | None = None
    finished: dict[str, float] | None = None
    for position in range(0, len(audio), STEP):
        await session.feed(audio[position : position + STEP])
        fed += STEP / FRONT_END_RATE
        while not session.events.empty():
            event = session.events.get_nowait()
            if isinstance(event, SpeechEnded) and ended_at is None:
                ended_at, ended_wall = session.now_seconds, loop.time()
            elif isinstance(event, SpokenPiece):
                first_audio_wall = first_audio_wall or loop.time()
                session.played(event.audio.samples)  # played at once: the next turn can start
            elif isinstance(event, TurnOutcome):
                finished = event.metadata["timings_ms"]
            elif isinstance(event, TurnFailed):
                raise RuntimeError(f"{event.error}: {event.message}")
        await asyncio.sleep(max(0.0, started + fed - loop.time()))  # real-time pace
    while finished is None or first_audio_wall is None:
        event = await asyncio.wait_for(session.events.get(), timeout=60)
        if isinstance(event, SpokenPiece):
            first_audio_wall = first_audio_wall or loop.time()
            session.played(event.audio.samples)
        elif isinstance(event, TurnOutcome):
            finished = event.metadata["timings_ms"]
    assert ended_at is not None and ended_wall is not None
    endpointing = (ended_at - true_end) * 1000
    total = endpointing + (first_audio_wall - ended_wall) * 1000
    stages = {
        "endpointing": endpointing,
        "asr": finished.get("asr", 0.0),
        "hooks": finished.get("hooks", 0.0),  # memory, personality, tools before the reply
        "llm_first_token": finished.get("llm_first_token", 0.0),
        # from the first token to the end of the first clause (what TTS waits for)
        "llm_first_clause": max(
            0.0, finished.get("llm_first_clause", 0.0) - finished.get("llm_first_token_at", 0.0)
        ),
        "tts_first_chunk": finished.get("tts_first_audio", 0.0),
    }
    stages["overhead"] = max(0.0, total - sum(stages.values()))
    return TurnLatency(total, stages)


INTEGRATIONS = {"on": None, "off": frozenset[str]()}
"""The integrations a run uses: all installed ones, or none."""


async def run_latency_bench(
    config: VoiceConfig,
    modes: list[VoiceProcessingMode],
    turns: int,
    integrations: tuple[str, ...] = ("on",),
) -> list[LatencyReport]:
    """Measure ``turns`` turns per mode with one engine, with the integrations on and/or off.

    Off, the same engine answers with no memory, personality, tools or sync, so
    the difference is what the integrations cost a turn.
    """
    engine = VoiceEngine(config)
    await engine.initialize()
    clips = await _user_audio(SCRIPT)
    reports = []
    try:
        runs = [(mode, setting) for mode in modes for setting in integrations]
        progress = tqdm(total=turns * len(runs), desc="turns", unit="turn")
        for mode, setting in runs:
            if isinstance(engine.tts, CachedTTS):
                engine.tts.clear()  # each run synthesizes its replies afresh
            label = mode.value if integrations == ("on",) else f"{mode.value}/{setting}"
            report = LatencyReport(label)
            session = DuplexSession(
                engine,
                f"bench-{mode.value}-{setting}-{int(time.time())}",
                FRONT_END_RATE,
                mode,
                speaker=f"bench-{int(time.time())}",
                options=TurnOptions(integrations=INTEGRATIONS[setting]),
            )
            try:
                for index in range(turns):
                    report.turns.append(await _one_turn(session, clips[index % len(clips)]))
                    progress.update()
            finally:
                await session.close()
            reports.append(report)
        progress.close()
    finally:
        await engine.cleanup()
    return reports


def format_latency(reports: list[LatencyReport]) -> str:
    """p50/p95 of the total and each stage, and the compute ratio, as a table."""
    header = f"{'mode':<18}{'turns':>6}{'p50':>8}{'p95':>8}  " + "".join(f"{s:>17}" for s in STAGES)
    lines = ["end of user speech → first reply audio, ms (stage columns: p50)", header]
    for report in reports:
        stages = "".join(f"{report.percentile(50, s):>17.0f}" for s in STAGES)
        lines.append(
            f"{report.mode:<18}{len(report.turns):>6}{report.percentile(50):>8.0f}"
            f"{report.percentile(95):>8.0f}  {stages}"
        )
    for report in reports:
        lines.append(
            f"{report.mode}: total / model compute (ASR + LLM to first clause + TTS first chunk) "
            f"= {report.compute_ratio():.2f}"
        )
    return "\n".join(lines)


def plot_latency(reports: list[LatencyReport], path: Path) -> Path:
    """A stacked bar chart of the median breakdown per mode, with p95 markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 1.2 + 0.9 * len(reports)))
    colors = ["#9ecae1", "#fdae6b", "#fdd0a2", "#74c476", "#31a354", "#9e9ac8", "#d9d9d9"]
    for row, report in enumerate(reports):
        left = 0.0
        for stage, color in zip(STAGES, colors, strict=True):
            width = report.percentile(50, stage)
            axes.barh(row, width, left=left, color=color, label=stage if row == 0 else None)
            left += width
        axes.plot(
            report.percentile(95), row, "k|", markersize=22, label="p95 total" if row == 0 else None
        )
    axes.set_yticks(range(len(reports)), [r.mode for r in reports])
    axes.set_xlabel(
        "ms from the end of the user's speech to the first reply audio (median breakdown)"
    )
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
