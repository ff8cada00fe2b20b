"""Acoustic echo cancellation: Speex AEC with what Coda plays as the far-end reference.

The canceller needs libspeexdsp. It uses ``$SPEEXDSP_LIB`` if set, else the copy
bundled in the ``speexdsp-ns`` wheel, else the system's (Debian ``libspeexdsp1``).
"""

from __future__ import annotations

import importlib.util
import os
from collections import deque
from pathlib import Path

import numpy as np

from coda.audio.frames import SampleQueue, to_float, to_int16
from coda.core.errors import AudioProcessingError


def _bundled_speexdsp() -> str | None:
    spec = importlib.util.find_spec("speexdsp_ns")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = Path(next(iter(spec.submodule_search_locations))).parent / "speexdsp_ns.libs"
    found = sorted(libs.glob("libspeexdsp*.so*"))
    return str(found[0]) if found else None


class EchoCanceller:
    """Removes Coda's own voice, as picked up by the microphone, from near-end frames.

    Call ``add_playback`` with the audio as it is played and ``process`` with each
    captured frame; the reference consumed for a frame is the playback that was
    queued for that moment (silence when nothing is playing).

    Args:
        sample_rate: Rate of both signals, in Hz.
        frame_samples: Samples per frame given to ``process``.
        tail_ms: Longest echo path modelled, in ms.
    """

    def __init__(self, sample_rate: int, frame_samples: int, tail_ms: int) -> None:
        if "SPEEXDSP_LIB" not in os.environ and (bundled := _bundled_speexdsp()):
            os.environ["SPEEXDSP_LIB"] = bundled
        from speexdsp_aec import SpeexAec

        frame_ms = frame_samples * 1000 // sample_rate
        try:
            self._aec = SpeexAec(sample_rate=sample_rate, frame_ms=frame_ms, filter_tail_ms=tail_ms)
        except RuntimeError as exc:
            raise AudioProcessingError(f"echo cancellation is unavailable: {exc}") from exc
        self.frame_samples = frame_samples
        self._far = SampleQueue(np.int16)
        # Echo of anything played within the tail can still be arriving now.
        self._recent_rms: deque[float] = deque(maxlen=max(1, tail_ms // frame_ms))

    def add_playback(self, samples: np.ndarray) -> None:
        """Queue audio Coda is playing (float, at the canceller's rate)."""
        self._far.push(to_int16(samples))

    def _take_reference(self) -> np.ndarray:
        """The playback for the next frame, padded with silence when too little is queued."""
        reference = self._far.take(self.frame_samples)
        return np.pad(reference, (0, self.frame_samples - len(reference)))

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Cancel the echo in one captured frame (float); returns the cleaned frame."""
        reference = self._take_reference()
        self._recent_rms.append(float(np.sqrt(np.mean(np.square(to_float(reference))))))
        cleaned = self._aec.process(to_int16(frame), reference)
        return to_float(np.frombuffer(cleaned, np.int16))

    @property
    def echo_level(self) -> float:
        """RMS (full scale = 1.0) of the loudest reference frame within the echo tail."""
        return max(self._recent_rms, default=0.0)

    def close(self) -> None:
        """Free the canceller's state."""
        self._aec.close()
