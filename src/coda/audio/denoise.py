"""Noise suppression and automatic gain control (WebRTC, via webrtc-noise-gain)."""

from __future__ import annotations

import numpy as np

from coda.audio.frames import FRAME_SAMPLES, to_float, to_int16

MAX_SUPPRESSION_LEVEL = 4


def suppression_level(noise_reduction_level: float) -> int:
    """Map ``AudioConfig.noise_reduction_level`` (0-1) to WebRTC's levels 0-4."""
    return round(np.clip(noise_reduction_level, 0.0, 1.0) * MAX_SUPPRESSION_LEVEL)


class NoiseGainFilter:
    """WebRTC noise suppression and gain control on 10 ms frames at 16 kHz.

    Args:
        suppression: WebRTC noise suppression level, 0 (off) to 4 (strongest).
        agc_target_dbfs: Gain control target in dB below full scale (0: off).
    """

    def __init__(self, suppression: int, agc_target_dbfs: int) -> None:
        from webrtc_noise_gain import AudioProcessor

        self.suppression = suppression
        self.agc_target_dbfs = agc_target_dbfs
        self._processor = AudioProcessor(agc_target_dbfs, suppression)

    @property
    def active(self) -> bool:
        """False when both suppression and gain control are off."""
        return bool(self.suppression or self.agc_target_dbfs)

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Clean one 10 ms frame (160 float samples at 16 kHz)."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"frames must hold {FRAME_SAMPLES} samples, got {len(frame)}")
        result = self._processor.Process10ms(to_int16(frame).tobytes())
        return to_float(np.frombuffer(result.audio, np.int16))
