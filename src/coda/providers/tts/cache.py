"""Reuse of synthesized audio for sentences Coda says again ("Sure.", greetings)."""

from __future__ import annotations

from collections import OrderedDict

from coda.providers.base import SpeechAudio, TextToSpeech


class CachedTTS:
    """Wraps a ``TextToSpeech`` with a bounded least-recently-used cache.

    Args:
        inner: The provider that really synthesizes.
        max_entries: Sentences kept (each ~100 KB of audio per 2 s).
    """

    def __init__(self, inner: TextToSpeech, max_entries: int = 256) -> None:
        self.inner = inner
        self.name = inner.name
        self._max = max_entries
        self._cache: OrderedDict[str, SpeechAudio] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def load(self) -> None:
        """Load the wrapped provider."""
        await self.inner.load()

    async def synthesize(self, text: str, speaking_rate: float = 1.0) -> SpeechAudio:
        """Cached audio for ``text`` at ``speaking_rate``, synthesizing it on a miss."""
        key = f"{speaking_rate:.3f}:" + " ".join(text.split())
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.hits += 1
            return cached
        self.misses += 1
        audio = await self.inner.synthesize(text, speaking_rate)
        self._cache[key] = audio
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return audio

    def clear(self) -> None:
        """Forget every cached sentence."""
        self._cache.clear()

    async def close(self) -> None:
        """Drop the cache and close the wrapped provider."""
        self.clear()
        await self.inner.close()
