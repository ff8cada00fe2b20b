"""Real human speech for turn-taking and latency: Debian's ``asterisk-core-sounds-en-wav``.

The package holds Allison Smith's studio recordings of telephone prompts and
digits (8 kHz, 16-bit), each file one known phrase. Turns are built from them:
finished turns are single prompts; turns with mid-turn pauses join real spoken
fragments with silences of 300-900 ms, at places where a speaker goes on
(between digits while counting, after "and", after "is").
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coda.audio.decode import resample
from coda.audio.frames import FRONT_END_RATE, to_float

SOUND_DIRS = (
    Path("/usr/share/asterisk/sounds/en_US_f_Allison"),
    Path("/usr/share/asterisk/sounds/en"),
)
MIC_STEP = FRONT_END_RATE // 50
"""A microphone's 20 ms frame at the front end's rate: how the benches feed speech."""
JOIN_MS = 0
"""The gap between fragments said in one breath ("hello world" + "and"): none, as the
recordings' own soft edges already leave a short gap."""

FINISHED = (
    "please-try-again", "hello-world", "goodbye", "im-sorry", "auth-thankyou",
    "cannot-complete-as-dialed", "check-number-dial-again", "pls-hold-while-try",
    "something-terribly-wrong", "tt-weasels", "number-not-answering",
    "all-circuits-busy-now", "vm-nobodyavail", "one-moment-please",
)  # fmt: skip
"""Prompts that are whole turns on their own."""

CONTINUED = (
    (("digits/1",), ("digits/2",), ("digits/3",)),
    (("digits/4",), ("digits/5",), ("digits/6",)),
    (("digits/7",), ("digits/8",), ("digits/9",)),
    (("vm-num-i-have",), ("digits/5", "digits/5", "digits/5")),
    (("hello-world", "vm-and"), ("goodbye",)),
    (("please-try-again", "with"), ("your", "extension")),
    (("vm-youhave",), ("digits/3",), ("vm-messages",)),
)
"""Turns said in parts: each part is fragments said in one breath; a pause follows each."""

PAUSES_MS = (300, 500, 700, 900)
"""The mid-turn pauses every continued turn is tried with."""


class RecordingsMissing(RuntimeError):
    """The recordings are not installed (``apt-get install asterisk-core-sounds-en-wav``)."""


def sound_dir() -> Path:
    """The folder of the English recordings.

    Raises:
        RecordingsMissing: If the package is not installed.
    """
    for folder in SOUND_DIRS:
        if (folder / "digits" / "1.wav").is_file():
            return folder
    raise RecordingsMissing(
        "the real recordings are missing: apt-get install asterisk-core-sounds-en-wav"
    )


def load(name: str) -> np.ndarray:
    """One recording at 16 kHz (float32), its leading and trailing silence trimmed."""
    with wave.open(str(sound_dir() / f"{name}.wav")) as handle:
        rate = handle.getframerate()
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), np.int16)
    audio = resample(to_float(pcm), rate, FRONT_END_RATE)
    return trim(audio)


def loud_span(audio: np.ndarray, floor_dbfs: float) -> tuple[int, int]:
    """Samples from the first to the end of the last 10 ms above ``floor_dbfs`` ((0, 0): none)."""
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    loud = np.nonzero(np.sqrt(np.mean(frames**2, axis=1)) > 10 ** (floor_dbfs / 20))[0]
    return (int(loud[0]) * 160, (int(loud[-1]) + 1) * 160) if len(loud) else (0, 0)


def trim(audio: np.ndarray, floor_dbfs: float = -45.0) -> np.ndarray:
    """``audio`` from its first to its last 10 ms above ``floor_dbfs``."""
    start, end = loud_span(audio, floor_dbfs)
    return audio[start:end]


def silence(ms: float) -> np.ndarray:
    """``ms`` of digital silence at 16 kHz."""
    return np.zeros(int(FRONT_END_RATE * ms / 1000), np.float32)


@dataclass(frozen=True)
class SpokenTurn:
    """One turn of real speech and where its speech ends (seconds into ``audio``).

    ``pause_ends`` are the ends of speech before each mid-turn pause: ending the
    turn at any of them is a false cut.
    """

    name: str
    audio: np.ndarray
    pause_ends: tuple[float, ...]
    speech_end: float


def _part(names: tuple[str, ...]) -> np.ndarray:
    pieces: list[np.ndarray] = []
    for name in names:
        pieces += [load(name), silence(JOIN_MS)]
    return np.concatenate(pieces[:-1])


def finished_turns() -> list[SpokenTurn]:
    """Each finished prompt as a turn."""
    turns = []
    for name in FINISHED:
        audio = load(name)
        turns.append(SpokenTurn(name, audio, (), len(audio) / FRONT_END_RATE))
    return turns


def continued_turn(parts: tuple[tuple[str, ...], ...], pause_ms: int) -> SpokenTurn:
    """``parts`` with ``pause_ms`` of silence after each but the last."""
    pieces, ends, position = [], [], 0
    for index, names in enumerate(parts):
        audio = _part(names)
        pieces.append(audio)
        position += len(audio)
        if index < len(parts) - 1:
            ends.append(position / FRONT_END_RATE)
            pieces.append(silence(pause_ms))
            position += len(pieces[-1])
    name = "+".join(n.split("/")[-1] for part in parts for n in part) + f"@{pause_ms}ms"
    return SpokenTurn(name, np.concatenate(pieces), tuple(ends), position / FRONT_END_RATE)


def continued_turns(pauses_ms: tuple[int, ...] = PAUSES_MS) -> list[SpokenTurn]:
    """Every continued turn with every pause."""
    return [continued_turn(parts, pause) for parts in CONTINUED for pause in pauses_ms]
