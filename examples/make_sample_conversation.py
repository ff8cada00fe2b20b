"""Synthesize the sample conversation that `make run` plays (run once; the WAVs are committed).

The user's side is spoken by the embedded Piper voice, so the demo needs no
recordings; real human speech for recognition tests comes from elsewhere.

    python examples/make_sample_conversation.py samples/conversation
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from coda.audio.encode import encode_wav
from coda.providers.tts.piper import PiperTTS
from coda.voice import TTSConfig

QUESTIONS = (
    "Hi! My name is Ada.",
    "What is the capital of France?",
    "Can you suggest a quick breakfast idea?",
    "Do you remember my name?",
)


async def main(folder: Path) -> None:
    """Write one WAV per question into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tts = PiperTTS(TTSConfig(speaking_rate=0.95))
    await tts.load()
    for index, question in enumerate(QUESTIONS, start=1):
        speech = await tts.synthesize(question)
        path = folder / f"{index:02d}.wav"
        path.write_bytes(encode_wav(speech.samples, speech.sample_rate))
        print(f"{path}: {question!r} ({speech.duration_seconds:.1f} s)")
    await tts.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "samples/conversation")))
