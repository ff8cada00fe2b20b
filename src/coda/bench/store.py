"""`coda bench store`: SQLite and PostgreSQL side by side.

- turns written per second, through the conversation store's protocol: one
  writer, then ``writers`` conversations written at once;
- memory top-5 search per user at each size (random unit vectors, as in
  ``coda bench memory``: search is exact, so only the count matters): index
  load and search p50/p95;
- a whole REST text turn (``coda serve`` as its own process, real models): p50
  and p95 with one instance on SQLite, one on PostgreSQL, and two on
  PostgreSQL behind a round-robin client.

PostgreSQL is a throwaway cluster started here (fsync on), or ``--postgres URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from tqdm import tqdm

from coda.bench.ws_client import Server, started_server
from coda.core.models import ConversationTurn, VoiceProcessingMode
from coda.memory.embedder import DIMENSIONS
from coda.memory.store import MemoryStore
from coda.store.backends import conversation_store, memory_store
from coda.store.location import StoreLocation
from coda.testing.postgres import ThrowawayPostgres

QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is 12 times 12?",
    "Name a primary colour.",
    "What is the boiling point of water?",
    "Who wrote Romeo and Juliet?",
)


@dataclass
class StorePlan:
    """What to measure.

    Attributes:
        turns: Turns written by the single writer (and in all by the concurrent ones).
        writers: Conversations written at once.
        sizes: Memories per user to search among.
        queries: Searches per size.
        rest_clients: REST clients talking at once (0: skip the REST part).
        rest_turns: Text turns each client sends.
        postgres: A PostgreSQL URL (None: a throwaway cluster).
    """

    turns: int = 500
    writers: int = 8
    sizes: tuple[int, ...] = (10_000, 100_000)
    queries: int = 100
    rest_clients: int = 4
    rest_turns: int = 6
    postgres: str | None = None


@dataclass
class BackendFigures:
    """One backend's figures."""

    name: str
    turns_per_second: dict[int, float] = field(default_factory=dict)
    """Writers → turns written per second."""
    index_load_ms: dict[int, float] = field(default_factory=dict)
    search_ms: dict[int, list[float]] = field(default_factory=dict)


@dataclass
class StoreBench:
    """Every figure: per backend, and the REST turns per deployment."""

    backends: list[BackendFigures]
    rest_ms: dict[str, list[float]] = field(default_factory=dict)


async def run_store_bench(plan: StorePlan) -> StoreBench:
    """Measure both backends (and the REST deployments) as ``plan`` says."""
    with contextlib.ExitStack() as stack:
        url = plan.postgres
        if url is None:
            url = stack.enter_context(ThrowawayPostgres(durable=True)).url
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="coda-bench-")))
        locations = {
            "sqlite": StoreLocation("sqlite", str(folder / "bench.sqlite3")),
            "postgresql": StoreLocation("postgresql", url),
        }
        backends = []
        for name, location in locations.items():
            figures = BackendFigures(name)
            for writers in sorted({1, plan.writers}):
                figures.turns_per_second[writers] = await _write_turns(
                    location, plan.turns, writers
                )
            await _search_memories(location, plan, figures)
            backends.append(figures)
        bench = StoreBench(backends)
        if plan.rest_clients > 0:
            deployments = {
                "sqlite, 1 instance": ({"CODA_STORE": str(folder / "rest.sqlite3")}, 1),
                "postgresql, 1 instance": ({"CODA_STORE": url}, 1),
                "postgresql, 2 instances": ({"CODA_STORE": url}, 2),
            }
            for label, (settings, count) in deployments.items():
                bench.rest_ms[label] = await _rest_turns(settings, count, plan)
        return bench


async def _write_turns(location: StoreLocation, turns: int, writers: int) -> float:
    store = conversation_store(location)
    await store.open()
    run = secrets.token_hex(3)
    try:
        states = [await store.create(f"bench-{run}-{w}") for w in range(writers)]

        async def write(index: int) -> None:
            state = states[index]
            for i in range(turns // writers):
                state.metrics["turns"] = i + 1
                turn = ConversationTurn(
                    f"question {i}", f"answer {i}", VoiceProcessingMode.LLM_ENHANCED
                )
                await store.add_turn(state, turn, {"timings_ms": {"total": 500.0}})

        started = time.perf_counter()
        await asyncio.gather(*(write(w) for w in range(writers)))
        return (turns // writers * writers) / (time.perf_counter() - started)
    finally:
        await store.close()


async def _search_memories(
    location: StoreLocation, plan: StorePlan, figures: BackendFigures
) -> None:
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((8, DIMENSIONS)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    writer = memory_store(location)
    await writer.open()
    try:
        for size in plan.sizes:
            scope = f"user:bench-{size}-{secrets.token_hex(3)}"
            for start in tqdm(range(0, size, 10_000), desc=f"{figures.name} {size:,}", unit="10k"):
                count = min(10_000, size - start)
                batch = rng.standard_normal((count, DIMENSIONS)).astype(np.float32)
                batch /= np.linalg.norm(batch, axis=1, keepdims=True)
                await writer.add_many(scope, "fact", [f"m{start + i}" for i in range(count)], batch)
            reader = memory_store(location)  # a fresh instance: its first search loads the index
            await reader.open()
            try:
                figures.index_load_ms[size] = await _timed(reader, scope, queries[0])
                figures.search_ms[size] = [
                    await _timed(reader, scope, queries[i % len(queries)])
                    for i in range(plan.queries)
                ]
            finally:
                await reader.close()
    finally:
        await writer.close()


async def _timed(store: MemoryStore, scope: str, query: np.ndarray) -> float:
    started = time.perf_counter()
    found = await store.search(scope, query, 5)
    assert len(found) == 5
    return (time.perf_counter() - started) * 1000


async def _rest_turns(settings: dict[str, str], instances: int, plan: StorePlan) -> list[float]:
    key = secrets.token_urlsafe(16)
    async with contextlib.AsyncExitStack() as stack:
        servers: list[Server] = [
            await stack.enter_async_context(started_server([], settings, key))
            for _ in range(instances)
        ]
        turn = itertools.count()
        latencies: list[float] = []

        async def client(index: int) -> None:
            async with httpx.AsyncClient(timeout=300) as http:
                for i in range(plan.rest_turns):
                    server = servers[next(turn) % len(servers)]  # round robin
                    started = time.perf_counter()
                    answer = await http.post(
                        f"{server.url}/v1/conversations/rest-{key[:6]}-{index}/messages",
                        json={"text": QUESTIONS[(index + i) % len(QUESTIONS)]},
                        headers={"X-API-Key": key},
                    )
                    answer.raise_for_status()
                    latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(client(c) for c in range(plan.rest_clients)))
        return latencies


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def format_store_bench(bench: StoreBench) -> str:
    """The figures as text, with PostgreSQL's ratio to SQLite."""
    sqlite, postgres = bench.backends[0], bench.backends[-1]
    lines = ["turns written per second (one transaction each):"]
    for writers, rate in sqlite.turns_per_second.items():
        other = postgres.turns_per_second.get(writers, float("nan"))
        lines.append(
            f"  {writers} writer(s): sqlite {rate:7.0f}   postgresql {other:7.0f}   "
            f"ratio {other / rate:.2f}"
        )
    lines.append("memory top-5 per user, ms (index load; search p50 / p95):")
    for size in sqlite.search_ms:
        row = [f"  {size:>7,}:"]
        for figures in bench.backends:
            searches = figures.search_ms[size]
            row.append(
                f"{figures.name} {figures.index_load_ms[size]:6.0f}; "
                f"{_p(searches, 50):5.2f} / {_p(searches, 95):5.2f}"
            )
        lines.append("   ".join(row))
    if bench.rest_ms:
        lines.append("whole REST text turn, ms (p50 / p95, turns):")
        for label, values in bench.rest_ms.items():
            lines.append(
                f"  {label:<24} {_p(values, 50):6.0f} / {_p(values, 95):6.0f}  ({len(values)})"
            )
    return "\n".join(lines)


def plot_store_bench(bench: StoreBench, path: Path) -> Path:
    """Three panels: turns/s, memory search, REST turns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if bench.rest_ms else 2
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.8))
    width = 0.8 / len(bench.backends)
    writers = list(bench.backends[0].turns_per_second)
    sizes = list(bench.backends[0].search_ms)
    for i, figures in enumerate(bench.backends):
        offset = (i - (len(bench.backends) - 1) / 2) * width
        axes[0].bar(
            np.arange(len(writers)) + offset,
            [figures.turns_per_second[w] for w in writers],
            width,
            label=figures.name,
        )
        axes[1].bar(
            np.arange(len(sizes)) + offset,
            [_p(figures.search_ms[s], 95) for s in sizes],
            width,
            label=f"{figures.name} p95",
        )
    axes[0].set_xticks(range(len(writers)), [f"{w} writer(s)" for w in writers])
    axes[0].set_ylabel("turns written per second")
    axes[1].set_xticks(range(len(sizes)), [f"{s:,}" for s in sizes])
    axes[1].set_xlabel("memories per user")
    axes[1].set_ylabel("ms per top-5 search")
    for axis in axes[:2]:
        axis.legend()
    if bench.rest_ms:
        labels = list(bench.rest_ms)
        x = np.arange(len(labels))
        axes[2].bar(x - 0.2, [_p(bench.rest_ms[k], 50) for k in labels], 0.4, label="p50")
        axes[2].bar(x + 0.2, [_p(bench.rest_ms[k], 95) for k in labels], 0.4, label="p95")
        axes[2].set_xticks(x, [label.replace(", ", "\n") for label in labels])
        axes[2].set_ylabel("ms per REST text turn")
        axes[2].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
