"""`coda bench moshi`: the client's cost per 80 ms frame, and the round trip per frame.

The client sends one frame and waits for Moshi's next audio frame before the
next (lock-step), so each round trip is measured alone. Client overhead is what
Coda spends per frame: Opus encoding, handing the message to the socket, and
decoding the reply page. Without ``--url`` the genuine ``moshi.server`` with tiny
random weights is started on loopback (its environment comes from ``make test``).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coda.core.provider_config import MoshiConfig
from coda.providers.s2s import moshi_protocol as protocol
from coda.providers.s2s.moshi_session import CodecTimes, MoshiAudio, MoshiSession

TARGET_OVERHEAD_MS = 5.0
FRAME_MS = protocol.FRAME_SAMPLES * 1000 / protocol.SAMPLE_RATE


@dataclass
class MoshiBench:
    """Per-frame figures, in ms."""

    server: str
    encode: list[float] = field(default_factory=list)
    send: list[float] = field(default_factory=list)
    decode: list[float] = field(default_factory=list)
    round_trip: list[float] = field(default_factory=list)
    priming_frames: int = 0

    @property
    def overhead(self) -> np.ndarray:
        """Client overhead per frame: encode + send + decode."""
        return np.array(self.encode) + np.array(self.send) + np.array(self.decode)


def _delta(after: CodecTimes, before: CodecTimes) -> tuple[float, float, float]:
    return (
        (after.encode - before.encode) * 1000,
        (after.send - before.send) * 1000,
        (after.decode - before.decode) * 1000,
    )


async def _next_audio(session: MoshiSession) -> None:
    while not isinstance(await session.receive(), MoshiAudio):
        pass


async def measure(url: str, frames: int, seed: int = 0) -> MoshiBench:
    """Lock-step frames against the server at ``url``."""
    session = await MoshiSession.open(MoshiConfig(receive_timeout_seconds=10), url)
    rng = np.random.default_rng(seed)
    result = MoshiBench(url)
    try:
        # Moshi skips its first input frame and delays some codebooks: prime until it speaks.
        while True:
            await session.send((0.05 * rng.standard_normal(protocol.FRAME_SAMPLES)).astype("f4"))
            result.priming_frames += 1
            try:
                output = await asyncio.wait_for(session.receive(), 0.5)
            except TimeoutError:
                continue
            if isinstance(output, MoshiAudio):
                break
        for _ in tqdm(range(frames), desc="moshi frames", unit="frame"):
            frame = (0.05 * rng.standard_normal(protocol.FRAME_SAMPLES)).astype(np.float32)
            before = CodecTimes(**vars(session.times))
            started = time.perf_counter()
            await session.send(frame)
            await _next_audio(session)
            result.round_trip.append((time.perf_counter() - started) * 1000)
            encode, send, decode = _delta(session.times, before)
            result.encode.append(encode)
            result.send.append(send)
            result.decode.append(decode)
    finally:
        await session.close()
    return result


async def run_moshi_bench(url: str | None, frames: int) -> MoshiBench:
    """Measure against ``url``, or against the tiny genuine server started here."""
    if url:
        return await measure(url, frames)
    from coda.testing.moshi_peer import TinyMoshiServer
    from coda.testing.ports import free_port

    with (
        tempfile.TemporaryDirectory(prefix="coda-moshi-") as folder,
        TinyMoshiServer(Path(folder), free_port()) as server,
    ):
        result = await measure(server.url, frames)
        result.server = "tiny moshi.server (random weights, CPU, 1 thread)"
        return result


def _stats(values: list[float] | np.ndarray) -> str:
    array = np.asarray(values)
    return (
        f"mean {array.mean():6.2f}  p50 {np.percentile(array, 50):6.2f}  "
        f"p95 {np.percentile(array, 95):6.2f}"
    )


def format_moshi_bench(result: MoshiBench) -> str:
    """The figures and their ratios to the frame and to the target, as text."""
    overhead = result.overhead
    p95 = float(np.percentile(overhead, 95))
    rtt = np.asarray(result.round_trip)
    lines = [
        f"server: {result.server}",
        f"frames: {len(rtt)} of {FRAME_MS:.0f} ms (after {result.priming_frames} priming frames)",
        "per frame, ms:",
        f"  encode (Opus)     {_stats(result.encode)}",
        f"  send (socket)     {_stats(result.send)}",
        f"  decode (Opus)     {_stats(result.decode)}",
        f"  client overhead   {_stats(overhead)}",
        f"  round trip        {_stats(rtt)}",
        f"client overhead p95 / target {TARGET_OVERHEAD_MS:.0f} ms: {p95 / TARGET_OVERHEAD_MS:.2f}"
        + ("  (met)" if p95 <= TARGET_OVERHEAD_MS else "  (NOT met)"),
        f"client overhead p50 / frame: {np.percentile(overhead, 50) / FRAME_MS:.1%}",
        f"round trip p50 / frame: {np.percentile(rtt, 50) / FRAME_MS:.2f} "
        "(below 1.0: the server keeps up with real time)",
    ]
    return "\n".join(lines)


def plot_moshi_bench(result: MoshiBench, path: Path) -> Path:
    """Round trip per frame, with the client's share stacked beneath it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 3.5))
    index = np.arange(len(result.round_trip))
    overhead = result.overhead
    axes.fill_between(index, 0, overhead, color="#fdae6b", label="client overhead")
    axes.plot(index, result.round_trip, color="#3182bd", linewidth=1, label="round trip")
    axes.axhline(TARGET_OVERHEAD_MS, color="#e6550d", linestyle="--", label="overhead target")
    axes.axhline(FRAME_MS, color="grey", linestyle=":", label="frame (80 ms)")
    axes.set_xlabel("frame")
    axes.set_ylabel("ms")
    axes.set_yscale("log")
    axes.set_title(f"Moshi client per frame: {result.server}")
    axes.legend(loc="upper right", fontsize=8, ncol=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
