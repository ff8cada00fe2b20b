"""Turn-taking on real speech: false cuts at mid-turn pauses, and the endpointing delay.

Each turn (``coda.bench.recordings``) is fed to a fresh live session 20 ms at a
time. ``real_time`` paces the frames as a microphone would, so the delay
includes recognition; without it the driver waits for the session's
recognition after each frame, so every decision depends on the audio alone
(what the tests use).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coda.audio.frames import FRONT_END_RATE
from coda.bench.recordings import (
    MIC_STEP,
    SpokenTurn,
    continued_turns,
    finished_turns,
    silence,
)
from coda.core.config import VoiceConfig
from coda.streaming.duplex import DuplexSession
from coda.turn.context import TurnOptions
from coda.turn.events import SpeechEnded, SpokenPiece
from coda.voice.engine import VoiceEngine

LEAD_SECONDS = 0.3


@dataclass
class Heard:
    """How one turn was taken: the ends decided, in seconds into the turn's audio."""

    turn: SpokenTurn
    ends: list[float]
    reasons: list[str]

    @property
    def cuts(self) -> int:
        """Mid-turn pauses the session ended the turn at."""
        last = self.turn.pause_ends[-1] + 0.05 if self.turn.pause_ends else -1.0
        return sum(end <= last for end in self.ends)

    @property
    def delay_ms(self) -> float | None:
        """From the true end of speech to the decision (None: the end was never decided)."""
        late = [end for end in self.ends if end > self.turn.speech_end - 0.05]
        return (late[0] - self.turn.speech_end) * 1000 if late else None


@dataclass
class TurnTakingReport:
    """All turns heard."""

    heard: list[Heard] = field(default_factory=list)

    @property
    def pauses(self) -> int:
        """Mid-turn pauses in the set."""
        return sum(len(h.turn.pause_ends) for h in self.heard)

    @property
    def false_cuts(self) -> int:
        """Mid-turn pauses taken as the end of the turn."""
        return sum(min(h.cuts, len(h.turn.pause_ends)) for h in self.heard)

    def delays(self, continued: bool | None = None) -> list[float]:
        """Endpointing delays (ms) of the turns that ended, finished or continued ones."""
        return [
            h.delay_ms
            for h in self.heard
            if h.delay_ms is not None
            and (continued is None or bool(h.turn.pause_ends) == continued)
        ]


async def listen(session: DuplexSession, turn: SpokenTurn, real_time: bool) -> Heard:
    """Feed ``turn`` (with silence around it) and note every end of turn decided."""
    tail = silence(session.frontend.endpointer.hangover_ms + 400)
    audio = np.concatenate([silence(LEAD_SECONDS * 1000), turn.audio, tail])
    offset = session.now_seconds + LEAD_SECONDS
    heard = Heard(turn, [], [])
    loop = asyncio.get_running_loop()
    started = loop.time()
    for position in range(0, len(audio), MIC_STEP):
        await session.feed(audio[position : position + MIC_STEP])
        if real_time:
            await asyncio.sleep(
                max(0.0, started + (position + MIC_STEP) / FRONT_END_RATE - loop.time())
            )
        else:
            await session.settle()
        while not session.events.empty():
            event = session.events.get_nowait()
            if isinstance(event, SpeechEnded):
                heard.ends.append(session.now_seconds - offset)
                heard.reasons.append(event.reason)
            elif isinstance(event, SpokenPiece):
                session.played(event.audio.samples)
    return heard


async def run_turn_taking(
    engine: VoiceEngine, turns: list[SpokenTurn], real_time: bool = False
) -> TurnTakingReport:
    """Hear each turn in its own session (no integrations: only turn-taking is measured)."""
    report = TurnTakingReport()
    for index, turn in enumerate(turns):
        session = DuplexSession(
            engine,
            f"turn-taking-{index}",
            FRONT_END_RATE,
            options=TurnOptions(integrations=frozenset()),
        )
        try:
            report.heard.append(await listen(session, turn, real_time))
        finally:
            await session.close()
    return report


def format_turn_taking(report: TurnTakingReport) -> str:
    """False cuts and endpointing delays, and each cut turn by name."""
    finished = report.delays(continued=False)
    lines = [
        f"mid-turn pauses (300-900 ms): {report.pauses}, false cuts: {report.false_cuts} "
        f"({100 * report.false_cuts / max(report.pauses, 1):.1f}%)",
        f"endpointing delay, finished turns: p50 {_p(finished, 50):.0f} ms, "
        f"p95 {_p(finished, 95):.0f} ms ({len(finished)} turns)",
    ]
    for heard in report.heard:
        if heard.cuts or heard.delay_ms is None:
            lines.append(f"  {heard.turn.name}: ends at {heard.ends} ({'; '.join(heard.reasons)})")
    return "\n".join(lines)


async def bench_turn_taking(config: VoiceConfig, chart: Path) -> str:
    """The turn-taking report at real-time pace on the recordings, and its chart."""
    engine = VoiceEngine(config)
    await engine.initialize()
    try:
        turns = continued_turns() + finished_turns()
        report = await run_turn_taking(engine, turns, real_time=True)
    finally:
        await engine.cleanup()
    return f"{format_turn_taking(report)}\nchart: {plot_turn_taking(report, chart)}"


def plot_turn_taking(report: TurnTakingReport, path: Path) -> Path:
    """Endpointing delays of finished and continued turns, and the pauses cut."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3))
    groups = [report.delays(continued=False), report.delays(continued=True)]
    axes.hist(groups, bins=20, label=["finished turns", "turns with mid-turn pauses"])
    axes.set_xlabel("ms from the end of speech to the end of the turn being decided")
    axes.set_ylabel("turns")
    axes.set_title(f"false cuts: {report.false_cuts} of {report.pauses} mid-turn pauses")
    axes.legend(frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")
