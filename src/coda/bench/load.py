"""`coda bench load`: many callers speaking into one `coda serve` at once.

Every session opens the live websocket at the same moment and speaks real
recordings (``asterisk-core-sounds-en-wav``) at real-time pace, in 100 ms
frames, keeping its microphone open (silence) until the reply. Each session
ends one of three ways:

- ``answered``: every turn got its reply's audio and was stored;
- ``refused``: the server closed with 1013 (no session slot free: try later);
- ``failed``: anything else (an ``error`` event, another close code, no answer
  in time). A server that keeps its word has none.

The server's process tree is sampled for RSS all along. The reliability suite
runs this at a size that fits CI; the bench runs it bigger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

from coda.audio.frames import FRONT_END_RATE, to_int16
from coda.bench.ws_client import Server

FRAME = FRONT_END_RATE // 10
"""100 ms of audio a message: a phone-like client, and fewer messages for the host."""
LEAD_SECONDS = 0.3
TURN_SECONDS = 180.0
"""A turn not answered within this is a failure, however loaded the server."""
SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class Session:
    """How one session ended."""

    outcome: str
    """``answered``, ``refused`` or ``failed``."""
    detail: str = ""
    first_audio: list[float] = field(default_factory=list)
    """Per turn, seconds from the end of speech to the reply's first audio."""
    refusals: int = 0
    """Times the server said 1013 (try again later) to this caller."""


@dataclass
class LoadReport:
    """A load run's sessions, and the server's memory while it lasted."""

    sessions: list[Session]
    baseline_mib: float
    rss_mib: list[tuple[float, float]]
    """(seconds into the run, RSS of the server's process tree)."""
    seconds: float

    def count(self, outcome: str) -> int:
        """Sessions that ended with ``outcome``."""
        return sum(s.outcome == outcome for s in self.sessions)

    @property
    def peak_mib(self) -> float:
        """The highest RSS seen."""
        return max([self.baseline_mib, *(mib for _, mib in self.rss_mib)])

    @property
    def latencies(self) -> list[float]:
        """Every answered turn's end of speech to first audio, in seconds."""
        return [t for s in self.sessions for t in s.first_audio]


def tree_rss_mib(pid: int) -> float:
    """RSS of process ``pid`` and all its descendants, in MiB (0 once it is gone)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total_kib, pending = 0, [pid]
    while pending:
        current = pending.pop()
        pending += children.get(current, [])
        with contextlib.suppress(OSError, StopIteration):
            status = Path(f"/proc/{current}/status").read_text().splitlines()
            total_kib += int(next(line.split()[1] for line in status if line.startswith("VmRSS")))
    return total_kib / 1024


async def speak_session(
    server: Server,
    conversation: str,
    clips: list[np.ndarray],
    mode: str,
    patience: float = 0.0,
    turn_seconds: float = TURN_SECONDS,
) -> Session:
    """Speak ``clips`` into one live session, a turn each; how the session ended.

    A caller refused with 1013 calls again 1-3 s later, for up to ``patience``
    seconds (0: it gives up at once).
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + patience
    jitter = random.Random(conversation)
    refusals = 0
    while True:
        session = await _call(server, conversation, clips, mode, turn_seconds)
        if session.outcome != "refused" or loop.time() >= give_up:
            return replace(session, refusals=refusals + (session.outcome == "refused"))
        refusals += 1
        await asyncio.sleep(jitter.uniform(1.0, 3.0))


async def _call(
    server: Server, conversation: str, clips: list[np.ndarray], mode: str, turn_seconds: float
) -> Session:
    url = server.url.replace("http", "ws", 1) + f"/v1/conversations/{conversation}/stream"
    try:
        async with websockets.connect(
            f"{url}?rate={FRONT_END_RATE}&mode={mode}",
            additional_headers={"X-API-Key": server.api_key},
            open_timeout=60,
        ) as socket:
            hello = json.loads(await socket.recv())
            if hello.get("type") != "ready":
                return Session("failed", f"first message {hello.get('type')!r}")
            replies = [await speak_turn(socket, clip, turn_seconds) for clip in clips]
            await socket.send(json.dumps({"type": "end"}))
            return Session("answered", first_audio=[r.first_audio for r in replies])
    except websockets.ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
        reason = closed.rcvd.reason if closed.rcvd else "no close frame"
        return Session("refused" if code == 1013 else "failed", f"closed {code}: {reason}")
    except (TurnError, OSError, TimeoutError, websockets.InvalidHandshake) as error:
        return Session("failed", f"{type(error).__name__}: {error}")


class TurnError(RuntimeError):
    """The server answered a turn with an ``error`` event (``event``), or not at all."""

    def __init__(self, message: str, event: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.event = event or {}


@dataclass(frozen=True)
class Reply:
    """One answered turn, seen from the client."""

    first_audio: float
    """Seconds from the end of speech to the reply's first audio."""
    events: list[dict[str, Any]]
    """The turn's JSON events, ``stored`` last."""

    def event(self, kind: str) -> dict[str, Any]:
        """The turn's first event of type ``kind``."""
        return next(e for e in self.events if e["type"] == kind)


async def speak_turn(
    socket: websockets.ClientConnection,
    clip: np.ndarray,
    limit: float = TURN_SECONDS,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> Reply:
    """Speak one clip into a live session and listen until the turn is stored.

    Args:
        socket: The session's websocket, past its ``ready``.
        clip: Speech at 16 kHz; silence follows it until the turn is over.
        limit: Seconds to wait for the stored turn.
        on_event: Called with each JSON event as it arrives.

    Raises:
        TurnError: On an ``error`` event, a turn stored without a spoken reply, or
            no stored turn within ``limit``.
    """
    loop = asyncio.get_running_loop()
    audio = np.concatenate([np.zeros(int(LEAD_SECONDS * FRONT_END_RATE), np.float32), clip])
    pcm = to_int16(audio)
    started = loop.time()
    speech_end = started + len(audio) / FRONT_END_RATE
    first_audio: float | None = None
    events: list[dict[str, Any]] = []

    async def microphone() -> None:
        position = 0
        while True:  # the clip, then silence until the turn is over
            frame = pcm[position : position + FRAME]
            if len(frame) < FRAME:
                frame = np.concatenate([frame, np.zeros(FRAME - len(frame), "<i2")])
            await socket.send(frame.tobytes())
            position += FRAME
            await asyncio.sleep(max(0.0, started + position / FRONT_END_RATE - loop.time()))

    sender = asyncio.create_task(microphone())
    try:
        async with asyncio.timeout(limit):
            while True:
                message = await socket.recv()
                if isinstance(message, bytes):
                    first_audio = loop.time() if first_audio is None else first_audio
                    # Played at once: the client has no speaker to wait for.
                    await socket.send(json.dumps({"type": "played", "samples": len(message) // 2}))
                    continue
                event = json.loads(message)
                events.append(event)
                if on_event is not None:
                    on_event(event)
                if event["type"] == "error":
                    raise TurnError(f"{event.get('error')}: {event.get('message')}", event)
                if event["type"] == "stored":
                    if first_audio is None:
                        raise TurnError("stored a turn without a spoken reply", event)
                    return Reply(first_audio - speech_end, events)
    except TimeoutError:
        raise TurnError(f"no stored answer within {limit:g} s") from None
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await sender


async def background_settled(server: Server, limit: float = TURN_SECONDS) -> None:
    """Wait until the server's background learning is done (``coda_background_jobs``).

    What the warm-up turns teach loads the background model on first use (the
    embedded LLM's twin): a baseline taken before that would count it as growth.
    Servers without ``/metrics`` are not waited for.
    """
    async with httpx.AsyncClient(timeout=30) as client, asyncio.timeout(limit):
        while True:
            answer = await client.get(
                f"{server.url}/metrics", headers={"X-API-Key": server.api_key}
            )
            if answer.status_code != 200:
                return
            jobs = re.search(r"^coda_background_jobs (\S+)$", answer.text, re.MULTILINE)
            if jobs is None or float(jobs.group(1)) == 0:
                return
            await asyncio.sleep(SAMPLE_SECONDS)


async def run_load(
    server: Server,
    clips: list[np.ndarray],
    sessions: int,
    turns: int = 1,
    mode: str = "llm_enhanced",
    prefix: str = "load",
    warmup: int = 4,
    patience: float = 0.0,
    now: Callable[[], float] = time.monotonic,
) -> LoadReport:
    """``sessions`` callers at once, ``turns`` clips each (taken round the list).

    A refused caller calls again for up to ``patience`` seconds.

    First ``warmup`` callers speak once, unmeasured: the models' lazily loaded parts
    (the LLM's parallel slots) are then in memory, and the baseline is a server
    that has been up a while. The server's RSS is sampled if it runs here
    (``server.pid``).
    """
    await asyncio.gather(
        *(
            speak_session(server, f"{prefix}-warm-{i}", [clips[i % len(clips)]], mode)
            for i in range(warmup)
        )
    )
    await background_settled(server)
    pid = server.pid
    baseline = tree_rss_mib(pid) if pid is not None else 0.0
    samples: list[tuple[float, float]] = []
    started = now()

    async def sample() -> None:
        while pid is not None:
            samples.append((now() - started, tree_rss_mib(pid)))
            await asyncio.sleep(SAMPLE_SECONDS)

    sampler = asyncio.create_task(sample())
    try:
        results = await asyncio.gather(
            *(
                speak_session(
                    server,
                    f"{prefix}-{index}",
                    [clips[(index + turn) % len(clips)] for turn in range(turns)],
                    mode,
                    patience,
                )
                for index in range(sessions)
            )
        )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    return LoadReport(list(results), baseline, samples, now() - started)


def format_load(report: LoadReport) -> str:
    """The run's figures."""
    latencies = report.latencies
    lines = [
        f"sessions {len(report.sessions)}: answered {report.count('answered')}, "
        f"refused (1013) {report.count('refused')}, failed {report.count('failed')}; "
        f"1013 refusals along the way {sum(s.refusals for s in report.sessions)}",
        f"turns answered {len(latencies)} in {report.seconds:.0f} s",
    ]
    if report.rss_mib:
        grown = report.peak_mib - report.baseline_mib
        lines.append(
            f"RSS of the server: {report.baseline_mib:.0f} MiB before, peak "
            f"{report.peak_mib:.0f} MiB (+{grown:.0f} MiB, "
            f"{grown / max(1, report.count('answered')):.1f} MiB a session answered)"
        )
    if latencies:
        lines.append(
            f"end of speech to first audio: p50 {np.percentile(latencies, 50):.2f} s, "
            f"p95 {np.percentile(latencies, 95):.2f} s, max {max(latencies):.2f} s"
        )
    lines += [f"  {s.outcome}: {s.detail}" for s in report.sessions if s.outcome == "failed"]
    return "\n".join(lines)


def plot_load(report: LoadReport, path: Path) -> Path:
    """RSS over the run, and the answered turns' latencies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (memory, latency) = plt.subplots(1, 2, figsize=(10, 3.5))
    if report.rss_mib:
        seconds, mib = zip(*report.rss_mib, strict=True)
        memory.plot(seconds, mib)
    memory.axhline(report.baseline_mib, color="#999999", linestyle="--", label="before")
    memory.set_xlabel("seconds into the run")
    memory.set_ylabel("server RSS (MiB)")
    memory.legend()
    if report.latencies:
        latency.hist(report.latencies, bins=20)
    latency.set_xlabel("end of speech to first reply audio (s)")
    latency.set_ylabel("turns")
    figure.suptitle(
        f"{len(report.sessions)} sessions: {report.count('answered')} answered, "
        f"{report.count('refused')} refused, {report.count('failed')} failed"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


async def bench_load(args: Any) -> str:
    """``coda bench load``: its figures, and where its chart went."""
    from coda.bench.recordings import finished_turns
    from coda.bench.ws_client import started_server

    clips = [turn.audio for turn in finished_turns()]
    prefix = f"load-{secrets.token_hex(3)}"  # new conversations, whoever's store it is
    if args.url:
        report = await run_load(
            Server(args.url, args.api_key or ""),
            clips,
            args.sessions,
            args.turns,
            args.mode,
            prefix,
        )
    else:
        folder = tempfile.mkdtemp(prefix="coda-load-")  # the user's own store stays untouched
        settings = {
            "CODA_STORE": str(Path(folder) / "load.sqlite3"),
            "CODA_MAX_SESSIONS_PER_KEY": str(args.sessions),
            "CODA_RATE_LIMIT_PER_MINUTE": str(100 * args.sessions),
        }
        if args.max_sessions:
            settings["CODA_MAX_SESSIONS"] = str(args.max_sessions)
        async with started_server([], settings) as server:
            report = await run_load(
                server,
                clips,
                args.sessions,
                args.turns,
                args.mode,
                prefix,
                patience=args.patience,
            )
        shutil.rmtree(folder, ignore_errors=True)
    return f"{format_load(report)}\nchart: {plot_load(report, args.chart)}"
