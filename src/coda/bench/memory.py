"""`coda bench memory`: top-k retrieval latency over many stored memories.

Memories are bulk-inserted as random unit vectors (embedding 100k real sentences
would take minutes and measure the embedder, not the search); queries are real
questions embedded by MiniLM. Search is exact, so its cost depends only on how
many vectors a scope holds, not on what they say.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coda.memory.embedder import DIMENSIONS, MiniLMEmbedder
from coda.memory.store import SQLiteMemoryStore

TARGET_MS = 30.0
QUESTIONS = (
    "What is my dog called?",
    "Where do I live?",
    "What music do I like?",
    "Am I allergic to anything?",
    "What is my sister's job?",
)


@dataclass
class SizeResult:
    """Figures for one store size, in ms."""

    memories: int
    insert_s: float
    index_load_ms: float
    search_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        """A percentile of the search latency."""
        return float(np.percentile(self.search_ms, q))


@dataclass
class MemoryBench:
    """All sizes, plus the embedder's cost per query."""

    sizes: list[SizeResult]
    embed_ms: float
    top_k: int


async def run_memory_bench(sizes: list[int], queries: int = 100, top_k: int = 5) -> MemoryBench:
    """Fill a fresh store to each size and time ``queries`` searches at each."""
    embedder = MiniLMEmbedder()
    await embedder.load()
    started = time.perf_counter()
    vectors = await embedder.embed(list(QUESTIONS))
    embed_ms = (time.perf_counter() - started) * 1000 / len(QUESTIONS)
    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory(prefix="coda-memory-") as folder:
        store = SQLiteMemoryStore(Path(folder) / "bench.sqlite3")
        await store.open()
        for size in sizes:
            scope = f"bench:{size}"
            started = time.perf_counter()
            for start in tqdm(range(0, size, 10_000), desc=f"insert {size:,}", unit="10k"):
                count = min(10_000, size - start)
                batch = rng.standard_normal((count, DIMENSIONS)).astype(np.float32)
                batch /= np.linalg.norm(batch, axis=1, keepdims=True)
                texts = [f"memory {start + i}" for i in range(count)]
                await store.add_many(scope, "fact", texts, batch)
            insert_s = time.perf_counter() - started
            started = time.perf_counter()
            await store.search(scope, vectors[0], top_k)  # loads the scope's index
            result = SizeResult(size, insert_s, (time.perf_counter() - started) * 1000)
            for index in range(queries):
                started = time.perf_counter()
                found = await store.search(scope, vectors[index % len(vectors)], top_k)
                result.search_ms.append((time.perf_counter() - started) * 1000)
                assert len(found) == top_k
            results.append(result)
        await store.close()
    await embedder.close()
    return MemoryBench(results, embed_ms, top_k)


def format_memory_bench(bench: MemoryBench) -> str:
    """The figures, with the ratio to the 30 ms target."""
    lines = [
        f"top-{bench.top_k} exact cosine search (float32, {DIMENSIONS} dims), ms:",
        f"{'memories':>10} {'p50':>8} {'p95':>8} {'p95/target':>11} {'index load':>11} "
        f"{'insert':>9}",
    ]
    for size in bench.sizes:
        lines.append(
            f"{size.memories:>10,} {size.percentile(50):>8.2f} {size.percentile(95):>8.2f} "
            f"{size.percentile(95) / TARGET_MS:>11.2f} {size.index_load_ms:>9.0f}ms "
            f"{size.insert_s:>8.1f}s"
        )
    lines.append(f"query embedding (MiniLM int8, one sentence): {bench.embed_ms:.1f} ms")
    return "\n".join(lines)


def plot_memory_bench(bench: MemoryBench, path: Path) -> Path:
    """p50 and p95 search latency per store size, against the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    labels = [f"{s.memories:,}" for s in bench.sizes]
    x = np.arange(len(labels))
    axes.bar(x - 0.2, [s.percentile(50) for s in bench.sizes], 0.4, label="p50")
    axes.bar(x + 0.2, [s.percentile(95) for s in bench.sizes], 0.4, label="p95")
    axes.axhline(TARGET_MS, color="#e6550d", linestyle="--", label="target")
    axes.set_xticks(x, labels)
    axes.set_xlabel("memories in the scope")
    axes.set_ylabel(f"ms per top-{bench.top_k} search")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
