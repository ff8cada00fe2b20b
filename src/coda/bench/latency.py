"""`coda bench latency`: end of user speech → first reply audio, per mode, in real time.

Each turn is fed at real-time pace, 20 ms at a time, as a microphone would:
real human recordings by default (``coda.bench.recordings``), or the script
below in Piper's voice. ``session`` feeds an in-process live session, ``ws`` a
running `coda serve` through its websocket (``coda.bench.ws_client``);
``concurrent`` conversations speak at the same moment. The latency of a turn is
the time from the true end of the user's speech (known from the clean audio) to
the first reply audio, split into: the endpointing wait, recognition (zero when
the speculative pass finished during that wait), the integrations' hooks, LLM
time to first token and to the first clause, synthesis of the first clause,
and the rest. A reply started during the pause (preemptive) overlaps the wait,
so its stages add up to more than the total.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coda.audio.decode import resample
from coda.audio.frames import FRONT_END_RATE
from coda.bench import recordings
from coda.bench.ws_client import Server, started_server, ws_turn
from coda.core.config import TTSConfig, VoiceConfig
from coda.core.enums import VoiceProcessingMode
from coda.core.models import VoiceMessage
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
PROMPTS = (
    "please-try-again", "im-sorry", "goodbye", "auth-thankyou", "one-moment-please",
    "something-terribly-wrong", "check-number-dial-again", "hello-world",
)  # fmt: skip
"""The real recordings the latency turns are made of (finished turns, 1-3 s)."""
TYPED = (
    "Please try again.", "I'm sorry.", "Goodbye.", "Thank you.", "One moment please.",
    "Something is terribly wrong.", "Please check the number and dial again.", "Hello world.",
)  # fmt: skip
"""What the recordings say, for ``--source typed``: the same turns as typed messages."""
STAGES = (
    "endpointing",
    "asr",
    "hooks",
    "llm_first_token",
    "llm_first_clause",
    "tts_first_chunk",
    "overhead",
)


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


async def user_audio(source: str) -> list[np.ndarray]:
    """The turns' audio at 16 kHz: ``recordings`` (real human speech) or ``tts`` (Piper)."""
    if source == "recordings":
        return [recordings.load(name) for name in PROMPTS]
    if source == "typed":
        return []
    return await _piper_audio(SCRIPT)


async def _piper_audio(texts: tuple[str, ...]) -> list[np.ndarray]:
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
    return recordings.loud_span(clip, -50.0)[1] / FRONT_END_RATE


async def _typed_turn(session: DuplexSession, text: str) -> TurnLatency:
    """A typed message through the same pipeline: from sending it to the first audio."""
    message = VoiceMessage(session.conversation_id, b"", text_content=text, speaker=session.speaker)
    loop = asyncio.get_running_loop()
    started, first, finished = loop.time(), None, None
    turn = session.pipeline.message(message, session.mode, session.options, streamed=True)
    async for event in turn:
        if isinstance(event, SpokenPiece) and first is None:
            first = loop.time()
        elif isinstance(event, TurnOutcome):
            finished = event.metadata["timings_ms"]
    assert first is not None and finished is not None
    return _latency(0.0, (first - started) * 1000, finished)


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
    for position in range(0, len(audio), recordings.MIC_STEP):
        await session.feed(audio[position : position + recordings.MIC_STEP])
        fed += recordings.MIC_STEP / FRONT_END_RATE
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
    return _latency(endpointing, endpointing + (first_audio_wall - ended_wall) * 1000, finished)


def _latency(endpointing: float, total: float, finished: dict[str, float]) -> TurnLatency:
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


@dataclass(frozen=True)
class LatencyPlan:
    """What to measure: turns per mode, where the audio comes from and how it travels.

    Attributes:
        turns: Turns per mode (per conversation when several speak at once).
        source: ``recordings`` (real human speech) or ``tts`` (Piper's voice).
        transport: ``session`` (in-process) or ``ws`` (a `coda serve` websocket).
        concurrent: Conversations speaking at the same moment.
        server: The running server for ``ws`` (None: the bench starts one).
    """

    turns: int = 8
    source: str = "recordings"
    transport: str = "session"
    concurrent: int = 1
    server: Server | None = None


async def run_latency_bench(
    config: VoiceConfig,
    modes: list[VoiceProcessingMode],
    plan: LatencyPlan,
    integrations: tuple[str, ...] = ("on",),
) -> list[LatencyReport]:
    """Measure each mode with one engine, with the integrations on and/or off.

    Off, the same engine answers with no memory, personality, tools or sync, so
    the difference is what the integrations cost a turn.
    """
    clips = await user_audio(plan.source)
    if plan.transport == "ws":
        return [await _over_websocket(plan, clips, mode) for mode in modes]
    engine = VoiceEngine(config)
    await engine.initialize()
    reports = []
    try:
        runs = [(mode, setting) for mode in modes for setting in integrations]
        progress = tqdm(total=plan.turns * len(runs) * plan.concurrent, desc="turns", unit="turn")
        for mode, setting in runs:
            if isinstance(engine.tts, CachedTTS):
                engine.tts.clear()  # each run synthesizes its replies afresh
            label = mode.value if integrations == ("on",) else f"{mode.value}/{setting}"
            report = LatencyReport(label)
            stamp = int(time.time())
            sessions = [
                DuplexSession(
                    engine,
                    f"bench-{mode.value}-{setting}-{stamp}-{index}",
                    FRONT_END_RATE,
                    mode,
                    speaker=f"bench-{stamp}-{index}",
                    options=TurnOptions(integrations=INTEGRATIONS[setting]),
                )
                for index in range(plan.concurrent)
            ]
            try:
                for turn in range(plan.turns):
                    measured = await asyncio.gather(
                        *(
                            _one_turn(session, clips[(turn + i) % len(clips)])
                            if clips
                            else _typed_turn(session, TYPED[(turn + i) % len(TYPED)])
                            for i, session in enumerate(sessions)
                        )
                    )
                    report.turns.extend(measured)
                    progress.update(len(measured))
            finally:
                for session in sessions:
                    await session.close()
            reports.append(report)
        progress.close()
    finally:
        await engine.cleanup()
    return reports


async def _over_websocket(
    plan: LatencyPlan, clips: list[np.ndarray], mode: VoiceProcessingMode
) -> LatencyReport:
    """Each turn a new conversation on the server's websocket, ``concurrent`` at a time."""
    report = LatencyReport(f"{mode.value}/ws")
    async with contextlib.AsyncExitStack() as stack:
        server = plan.server
        if server is None:
            server = await stack.enter_async_context(started_server([]))
        stamp, live = int(time.time()), server
        for turn in tqdm(range(plan.turns), desc="rounds", unit="round"):
            chosen = [clips[(turn + i) % len(clips)] for i in range(plan.concurrent)]
            measured = await asyncio.gather(
                *(
                    ws_turn(
                        live,
                        f"bench-ws-{stamp}-{turn}-{i}",
                        c,
                        _speech_end(c),
                        mode.value,
                        f"bench-{i}",  # each simulated person speaks as themselves
                    )
                    for i, c in enumerate(chosen)
                )
            )
            for result in measured:
                endpointing = result.ended * 1000
                report.turns.append(
                    _latency(endpointing, result.first_audio * 1000, result.timings_ms)
                )
    return report


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
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
