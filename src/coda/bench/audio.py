"""`coda bench audio`: CPU time of each front-end stage per 20 ms frame."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from coda.audio.decode import resample
from coda.audio.frontend import STAGES, StreamingFrontEnd
from coda.core.config import AudioConfig, TTSConfig
from coda.providers.tts.piper import PiperTTS

FRAME_MS = 20
SENTENCES = (
    "What is the capital of France?",
    "Can you suggest a quick breakfast idea?",
    "Tell me something nice about the ocean.",
)


@dataclass(frozen=True)
class AudioBenchResult:
    """Mean wall time per 20 ms frame of each stage, in microseconds."""

    frames: int
    input_rate: int
    per_frame_us: dict[str, float]

    @property
    def total_us(self) -> float:
        """The whole chain per frame."""
        return sum(self.per_frame_us.values())

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio time (below 1 is faster than real time)."""
        return self.total_us / (FRAME_MS * 1000)


async def _test_signal(seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Speech with a fan and an echo of Coda's voice, at 16 kHz, and the far end at 24 kHz."""
    voice = PiperTTS(TTSConfig())
    await voice.load()
    speech = []
    for text in SENTENCES:
        audio = await voice.synthesize(text)
        speech.append(resample(audio.samples, audio.sample_rate, 16000))
    await voice.close()
    near = np.concatenate(speech)
    reps = int(np.ceil(seconds * 16000 / len(near)))
    near = np.tile(near, reps)[: int(seconds * 16000)]
    far16 = np.roll(near, 8000) * 0.5
    mic = near + np.roll(far16, 640) * 0.3
    mic = mic + np.random.default_rng(0).normal(0, 0.003, len(mic))
    return mic.astype(np.float32), resample(far16.astype(np.float32), 16000, 24000)


def run_audio_bench(
    seconds: float = 30.0,
    input_rate: int = 48000,
    clock: Callable[[], float] = time.perf_counter,
) -> AudioBenchResult:
    """Run the whole front end over ``seconds`` of audio in 20 ms frames.

    Args:
        seconds: How much audio to process.
        input_rate: The captured audio's rate.
        clock: Reads the wall time (seconds) around the whole loop; the stages
            time themselves, and what they leave unaccounted is the overhead.
    """
    mic16, far24 = asyncio.run(_test_signal(seconds))
    mic = resample(mic16, 16000, input_rate)
    frontend = StreamingFrontEnd(AudioConfig(), input_rate, playback_rate=24000)
    step, far_step = input_rate * FRAME_MS // 1000, 24000 * FRAME_MS // 1000
    frames = len(mic) // step
    started = clock()
    for index in tqdm(range(frames), desc="front end", unit="frame", leave=False):
        frontend.add_playback(far24[index * far_step : (index + 1) * far_step])
        frontend.process(mic[index * step : (index + 1) * step])
    wall = clock() - started
    frontend.close()
    per_frame = {stage: frontend.stage_seconds[stage] * 1e6 / frames for stage in STAGES}
    per_frame["overhead"] = max(0.0, wall * 1e6 / frames - sum(per_frame.values()))
    return AudioBenchResult(frames, input_rate, per_frame)


def format_audio_bench(result: AudioBenchResult, budget_us: float = 500.0) -> str:
    """The result as a table, with the share of each stage and the verdict on the budget."""
    lines = [
        f"front end, {result.frames} frames of {FRAME_MS} ms at {result.input_rate} Hz (one core)",
        f"{'stage':<10} {'µs/frame':>10} {'share':>7}",
    ]
    for stage, micros in result.per_frame_us.items():
        lines.append(f"{stage:<10} {micros:>10.1f} {micros / result.total_us:>7.1%}")
    lines.append(f"{'total':<10} {result.total_us:>10.1f} {1:>7.0%}")
    verdict = "within" if result.total_us <= budget_us else "OVER"
    lines.append(
        f"real-time factor {result.real_time_factor:.4f} "
        f"({1 / result.real_time_factor:.0f}x faster than real time); "
        f"{verdict} the {budget_us:.0f} µs/frame budget ({result.total_us / budget_us:.2f}x of it)"
    )
    return "\n".join(lines)
