"""Sentence embeddings: all-MiniLM-L6-v2, int8 ONNX, on onnxruntime (no torch).

Mean-pooled over the tokens and L2-normalised, so a dot product is the cosine.
Runs on its own thread, never on the event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from coda.assets.embedded import minilm_onnx, minilm_tokenizer
from coda.worker import WorkerThread

DIMENSIONS = 384
_MAX_TOKENS = 128
_RECENT = 64
"""Single sentences whose vectors are kept (a turn's words, asked for twice)."""


class MiniLMEmbedder:
    """Embeds sentences into unit vectors of ``DIMENSIONS`` floats."""

    name = "all-MiniLM-L6-v2-int8"

    def __init__(self) -> None:
        self._worker = WorkerThread("embedder")
        self._session: object | None = None
        self._tokenizer: object | None = None
        # A turn's words are embedded by memory and by tool ranking: embed them once.
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()

    async def load(self) -> None:
        """Load the model and tokenizer (idempotent)."""
        if self._session is None:
            await self._worker.run(self._load)

    def _load(self) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(minilm_tokenizer()))
        tokenizer.enable_truncation(_MAX_TOKENS)
        tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(minilm_onnx()), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizer

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text (shape ``(len(texts), DIMENSIONS)``)."""
        await self.load()
        if len(texts) == 1 and texts[0] in self._recent:
            self._recent.move_to_end(texts[0])
            return self._recent[texts[0]][None, :]
        vectors = await self._worker.run(self.embed_now, list(texts))
        if len(texts) == 1:
            self._recent[texts[0]] = vectors[0]
            if len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
        return vectors

    def embed_now(self, texts: list[str]) -> np.ndarray:
        """The blocking embedding call (for the worker thread or a benchmark)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), np.float32)
        assert self._session is not None and self._tokenizer is not None
        encodings = self._tokenizer.encode_batch(texts)  # type: ignore[attr-defined]
        ids = np.array([e.ids for e in encodings], np.int64)
        mask = np.array([e.attention_mask for e in encodings], np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feed)[0]  # type: ignore[attr-defined]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    async def close(self) -> None:
        """Free the model and its thread."""
        self._session = self._tokenizer = None
        self._recent.clear()
        self._worker.shutdown()
        self._worker = WorkerThread("embedder")
