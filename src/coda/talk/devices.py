"""Sound cards through PortAudio (``sounddevice``), with errors that name the fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from coda.core.errors import AudioProcessingError

FRAME_SECONDS = 0.02
"""Capture block: 20 ms, the front end's frame."""

Capture = Callable[[np.ndarray], object]
"""Called in PortAudio's thread with each captured mono float32 block."""
Fill = Callable[[np.ndarray, float], None]
"""Called in PortAudio's thread to fill a mono float32 block for the speakers, with
the seconds until the block is heard."""
OUTPUT_LATENCY = 0.1
"""Seconds of reply audio buffered ahead of the speakers, which also bounds how long
Coda goes on after a barge-in. With both cores busy (``stress-ng --cpu 2`` beside the
test's PulseAudio) it played every reply without a gap: its only silences were the
clause breaks."""
MAX_DELAY = 0.5
"""The longest believable time from a block's callback to its playing."""


class AudioDeviceError(AudioProcessingError):
    """No usable microphone or speakers; the message says how to fix it."""


def portaudio() -> ModuleType:
    """The ``sounddevice`` module.

    Raises:
        AudioDeviceError: If the PortAudio library is not installed.
    """
    try:
        import sounddevice
    except OSError:
        raise AudioDeviceError(
            "PortAudio is not installed: apt-get install libportaudio2 "
            "(macOS: brew install portaudio)"
        ) from None
    return sounddevice


def list_devices() -> str:
    """PortAudio's devices, one per line, defaults marked (``>`` input, ``<`` output)."""
    listed = str(portaudio().query_devices())
    return listed if listed.strip() else "no sound devices: PortAudio sees none"


@dataclass(frozen=True)
class DeviceChoice:
    """Which devices to open: an index or a name fragment, None for the default."""

    input: int | str | None = None
    output: int | str | None = None


def _device(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def choice(input_device: str | None, output_device: str | None) -> DeviceChoice:
    """A ``DeviceChoice`` from command-line values (digits are indexes)."""
    return DeviceChoice(_device(input_device), _device(output_device))


def _resolve(sd: ModuleType, device: int | str | None, kind: str) -> dict[str, Any]:
    flag = "--input-device" if kind == "input" else "--output-device"
    what = "microphone" if kind == "input" else "speakers"
    try:
        info: dict[str, Any] = sd.query_devices(device, kind)
    except (ValueError, sd.PortAudioError):
        named = f" {device!r}" if device is not None else ""
        raise AudioDeviceError(
            f"no {what}{named} found. Plug one in, or choose one with {flag} "
            "(coda talk --list-devices lists them); on a machine without a sound card, "
            "start PulseAudio or PipeWire"
        ) from None
    return info


def require(devices: DeviceChoice) -> None:
    """Check that the chosen microphone and speakers exist (before loading models).

    Raises:
        AudioDeviceError: If one is missing, or PortAudio is.
    """
    sd = portaudio()
    _resolve(sd, devices.input, "input")
    _resolve(sd, devices.output, "output")


def open_streams(
    devices: DeviceChoice, input_rate: int, output_rate: int, capture: Capture, fill: Fill
) -> tuple[Any, Any]:
    """Open (not start) the capture and playback streams, mono float32.

    The capture rate falls back to the microphone's own when it refuses
    ``input_rate`` (the front end resamples any rate it accepts).

    Raises:
        AudioDeviceError: If a device is missing or refuses every rate tried.
    """
    sd = portaudio()
    mic = _resolve(sd, devices.input, "input")
    speakers = _resolve(sd, devices.output, "output")

    def on_capture(block: np.ndarray, frames: int, time: Any, status: Any) -> None:
        capture(block[:, 0].copy())

    def on_play(block: np.ndarray, frames: int, time: Any, status: Any) -> None:
        # Some host APIs report no DAC time (0): then the block is taken as heard at once.
        delay = time.outputBufferDacTime - time.currentTime
        fill(block[:, 0], delay if 0.0 < delay < MAX_DELAY else 0.0)

    rates = dict.fromkeys((input_rate, int(mic["default_samplerate"])))
    for rate in rates:
        try:
            source = sd.InputStream(
                samplerate=rate, blocksize=round(rate * FRAME_SECONDS), device=devices.input,
                channels=1, dtype="float32", callback=on_capture,
            )  # fmt: skip
            break
        except sd.PortAudioError:
            continue
    else:
        raise AudioDeviceError(f"the microphone {mic['name']!r} takes none of {list(rates)} Hz")
    try:
        sink = sd.OutputStream(
            samplerate=output_rate, device=devices.output, channels=1, dtype="float32",
            callback=on_play, latency=OUTPUT_LATENCY,
        )  # fmt: skip
    except sd.PortAudioError:
        source.close()
        raise AudioDeviceError(
            f"the speakers {speakers['name']!r} do not take {output_rate} Hz: choose "
            "another with --output-device (coda talk --list-devices)"
        ) from None
    return source, sink
