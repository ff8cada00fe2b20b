"""The voices that speak the eval's spoken turns: the embedded Piper and espeak-ng.

espeak-ng (Debian's ``espeak-ng``, installed by the project's set-up) sounds
nothing like Piper's voice, so it tests recognition on a voice Coda's own
synthesis did not shape.
"""

from __future__ import annotations

import asyncio
import shutil

from coda.audio.encode import encode_wav
from coda.core.errors import VoiceInitializationError
from coda.providers.base import TextToSpeech


def espeak_available() -> bool:
    """espeak-ng is installed."""
    return shutil.which("espeak-ng") is not None


ESPEAK_WPM = 140
"""espeak-ng's pace: a careful speaker's (its default, 175, runs words together)."""
ESPEAK_GAP = 2
"""A pause between words, in units of 10 ms."""


async def espeak_wav(text: str, voice: str = "en-us") -> bytes:
    """``text`` spoken by espeak-ng (American English, a careful pace), as WAV bytes.

    Raises:
        VoiceInitializationError: If espeak-ng is missing or fails.
    """
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise VoiceInitializationError("espeak-ng is not installed (apt-get install espeak-ng)")
    process = await asyncio.create_subprocess_exec(
        binary, "-v", voice, "-s", str(ESPEAK_WPM), "-g", str(ESPEAK_GAP), "--stdout", text,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0 or not out:
        raise VoiceInitializationError(f"espeak-ng failed: {err.decode(errors='replace')}")
    return out


async def speak(text: str, voice: str, tts: TextToSpeech) -> bytes:
    """``text`` as WAV bytes in ``voice`` ("piper": the embedded voice; "espeak")."""
    if voice == "espeak":
        return await espeak_wav(text)
    speech = await tts.synthesize(text)
    return await asyncio.to_thread(encode_wav, speech.samples, speech.sample_rate)
