"""``coda bench …``: its arguments, and which benchmark each runs."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coda.core.config import VoiceConfig
from coda.core.enums import VoiceProcessingMode

ConfigOf = Callable[[argparse.Namespace], VoiceConfig]


def add_bench_parser(commands: Any) -> None:
    """Add ``bench`` and its benchmarks to ``coda``'s subcommands."""
    bench = commands.add_parser("bench", help="measure speed: prints figures and ratios")
    benches = bench.add_subparsers(dest="bench", required=True)
    audio = benches.add_parser("audio", help="front-end CPU time per 20 ms frame")
    audio.add_argument("--seconds", type=float, default=30.0, help="audio to process")
    audio.add_argument("--rate", type=int, default=48000, help="capture rate in Hz")
    latency = benches.add_parser("latency", help="end of speech to first reply audio, per mode")
    latency.add_argument("--turns", type=int, default=8, help="turns per mode")
    latency.add_argument(
        "--modes", default="llm_enhanced,adaptive", help="comma-separated processing modes"
    )
    latency.add_argument(
        "--integrations",
        choices=["on", "off", "both"],
        default="on",
        help="memory, personality, tools and sync on, off, or one run of each",
    )
    latency.add_argument(
        "--source",
        choices=["recordings", "tts", "typed"],
        default="recordings",
        help="real human recordings (asterisk-core-sounds-en-wav), Piper's voice, or the "
        "recordings' words as typed messages (session transport)",
    )
    latency.add_argument(
        "--transport",
        choices=["session", "ws"],
        default="session",
        help="an in-process live session, or the websocket of `coda serve`",
    )
    latency.add_argument(
        "--concurrent", type=int, default=1, help="conversations speaking at the same moment"
    )
    latency.add_argument("--url", help="a running `coda serve` for --transport ws")
    latency.add_argument("--api-key", help="its API key (default: start a server here)")
    latency.add_argument(
        "--turn-taking",
        action="store_true",
        help="also: false cuts at mid-turn pauses and endpointing delay, on real speech",
    )
    latency.add_argument("--chart", type=Path, default=Path("out/latency.png"), help="PNG chart")
    moshi = benches.add_parser("moshi", help="Moshi client overhead and round trip per frame")
    moshi.add_argument("--url", help="a Moshi server (default: start the tiny genuine one)")
    moshi.add_argument("--frames", type=int, default=200, help="80 ms frames to measure")
    moshi.add_argument("--chart", type=Path, default=Path("out/moshi.png"), help="PNG chart")
    memory = benches.add_parser("memory", help="top-k memory retrieval latency by store size")
    memory.add_argument("--sizes", default="10000,100000", help="comma-separated memory counts")
    memory.add_argument("--queries", type=int, default=100, help="searches per size")
    memory.add_argument("--chart", type=Path, default=Path("out/memory.png"), help="PNG chart")
    load = benches.add_parser("load", help="many callers speaking into `coda serve` at once")
    load.add_argument("--sessions", type=int, default=50, help="callers at the same moment")
    load.add_argument("--turns", type=int, default=2, help="recordings each caller speaks")
    load.add_argument(
        "--max-sessions", type=int, help="the started server's max_sessions (default: its own)"
    )
    load.add_argument(
        "--patience", type=float, default=300.0,
        help="seconds a refused caller keeps calling back (0: gives up at once)",
    )  # fmt: skip
    load.add_argument("--mode", default="llm_enhanced", help="the callers' processing mode")
    load.add_argument("--url", help="a running `coda serve` (default: start one here)")
    load.add_argument("--api-key", help="its API key")
    load.add_argument("--chart", type=Path, default=Path("out/load.png"), help="PNG chart")
    store = benches.add_parser("store", help="SQLite and PostgreSQL side by side")
    store.add_argument("--postgres", help="a PostgreSQL URL (default: a throwaway cluster)")
    store.add_argument("--turns", type=int, default=500, help="turns to write per run")
    store.add_argument("--writers", type=int, default=8, help="conversations written at once")
    store.add_argument("--sizes", default="10000,100000", help="memories per user to search")
    store.add_argument("--queries", type=int, default=100, help="searches per size")
    store.add_argument("--clients", type=int, default=4, help="REST clients at once (0: skip)")
    store.add_argument("--rest-turns", type=int, default=6, help="text turns per REST client")
    store.add_argument("--chart", type=Path, default=Path("out/store.png"), help="PNG chart")


async def run_bench(args: argparse.Namespace, _config: ConfigOf) -> int:
    """Run the benchmark ``args.bench`` names; its figures go to stdout, its chart to a PNG."""
    if args.bench == "audio":
        from coda.bench.audio import format_audio_bench, run_audio_bench

        result = await asyncio.to_thread(run_audio_bench, args.seconds, args.rate)
        print(format_audio_bench(result))
    elif args.bench == "latency":
        from coda.bench.latency import LatencyPlan, format_latency, plot_latency, run_latency_bench
        from coda.bench.ws_client import Server

        modes = [VoiceProcessingMode(m.strip()) for m in args.modes.split(",") if m.strip()]
        settings = ("on", "off") if args.integrations == "both" else (args.integrations,)
        server = Server(args.url, args.api_key or "") if args.url else None
        plan = LatencyPlan(args.turns, args.source, args.transport, args.concurrent, server)
        reports = await run_latency_bench(_config(args), modes, plan, settings)
        print(format_latency(reports))
        print(f"chart: {plot_latency(reports, args.chart)}")
        if args.turn_taking:
            from coda.bench.turn_taking import bench_turn_taking

            print(await bench_turn_taking(_config(args), args.chart.with_name("turn-taking.png")))
    elif args.bench == "moshi":
        from coda.bench.moshi import format_moshi_bench, plot_moshi_bench, run_moshi_bench

        frames = await run_moshi_bench(args.url, args.frames)
        print(format_moshi_bench(frames))
        print(f"chart: {plot_moshi_bench(frames, args.chart)}")
    elif args.bench == "memory":
        from coda.bench.memory import format_memory_bench, plot_memory_bench, run_memory_bench

        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        memories = await run_memory_bench(sizes, args.queries)
        print(format_memory_bench(memories))
        print(f"chart: {plot_memory_bench(memories, args.chart)}")
    elif args.bench == "load":
        from coda.bench.load import bench_load

        print(await bench_load(args))
    elif args.bench == "store":
        from coda.bench.store import (
            StorePlan,
            format_store_bench,
            plot_store_bench,
            run_store_bench,
        )

        store_plan = StorePlan(
            args.turns,
            args.writers,
            tuple(int(s) for s in args.sizes.split(",") if s.strip()),
            args.queries,
            args.clients,
            args.rest_turns,
            args.postgres,
        )
        figures = await run_store_bench(store_plan)
        print(format_store_bench(figures))
        print(f"chart: {plot_store_bench(figures, args.chart)}")
    return 0
