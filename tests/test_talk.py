"""``coda talk`` on real audio devices: a private PulseAudio server, no mocks.

The microphone is a virtual source that hears whatever is played into it (a real
recording, at real-time pace); the speakers are a null sink whose monitor is
recorded and transcribed back by an independent recognizer. PortAudio reaches
PulseAudio through ALSA's pulse plugin, exactly as on a Linux desktop.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from coda.audio.encode import encode_wav
from coda.audio.frames import to_float
from coda.bench.recordings import sound_dir
from coda.talk.gate import HOLD_SECONDS, PushToTalk
from coda.talk.player import Player
from coda.testing.pulse import ThrowawayPulse
from tests.conftest import Speak, Transcribe, normalize, wer

RECORD_RATE = 16000
STARTUP_SECONDS = 240
TURN_SECONDS = 120
"""Bounds on waiting, never expectations of speed."""


class Talking:
    """A running ``coda talk`` and the lines it printed so far."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, after: int = 0, timeout: float = TURN_SECONDS) -> int:
        """The index of the first line from ``after`` on that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(after, len(self.lines)):
                    if re.search(pattern, self.lines[index]):
                        return index
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    pytest.fail(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))
                self._changed.wait(min(left, 0.5))


@pytest.fixture
def pulse() -> Iterator[ThrowawayPulse]:
    with ThrowawayPulse(speaker_rate=24000) as server:
        yield server


@pytest.fixture(params=[None, -12.0], ids=["headphones", "laptop-speakers"])
def room(request: pytest.FixtureRequest) -> Iterator[ThrowawayPulse]:
    """Without and with the speakers' sound in the microphone, 12 dB down (a laptop's
    echo; at 6 dB down Coda still takes its own voice for the user's)."""
    with ThrowawayPulse(speaker_rate=24000, echo_db=request.param) as server:
        yield server


def talk(pulse: ThrowawayPulse, folder: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "coda.cli", "--llm", "llamacpp", "--no-sync",
               "--store", str(folder / "talk.sqlite3"), "talk", *args]  # fmt: skip
    return subprocess.Popen(
        command, env=pulse.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def speakers_busy(raw: Path, since: float) -> bool:
    """Whether the speakers played anything in the last 200 ms (``since``: seconds in)."""
    pcm = np.fromfile(raw, "<i2")
    tail = pcm[max(int(since * RECORD_RATE), pcm.size - RECORD_RATE // 5) :]
    return tail.size > 0 and float(np.abs(tail).max()) > 500


def wait_speakers(raw: Path, busy: bool, since: float = 0.0, timeout: float = TURN_SECONDS) -> None:
    """Wait until the speakers are playing (``busy``) or have been quiet for 1 s."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        now_busy = speakers_busy(raw, since)
        if busy and now_busy:
            return
        if not busy:
            quiet_since = None if now_busy else (quiet_since or time.monotonic())
            if quiet_since is not None and time.monotonic() - quiet_since >= 1.0:
                return
        time.sleep(0.05)
    pytest.fail(f"the speakers never became {'busy' if busy else 'quiet'}")


async def test_talk_hears_answers_and_stops_when_talked_over(
    room: ThrowawayPulse, tmp_path: Path, speak: Speak, transcribe: Transcribe
) -> None:
    """A real question is heard and answered aloud; a question over the reply cuts it.

    With the speakers heard by the microphone, Coda's echo canceller keeps its own
    voice from being taken for the user's: the reply plays to the end, untouched.
    """
    pulse = room
    question = sound_dir() / "hello-world.wav"  # Allison: "Hello, world."
    story = tmp_path / "story.wav"
    story.write_bytes(await speak("Tell me a long story about a lighthouse keeper and his dog."))
    over = sound_dir() / "please-try-again.wav"  # said over the story's reply
    speakers = tmp_path / "speakers.raw"
    recorder = pulse.record_speakers(speakers, RECORD_RATE)
    running = Talking(talk(pulse, tmp_path, "--mode", "llm_enhanced", "--conversation-id", "desk"))
    try:
        running.wait_for(r"^listening on 'desk'", timeout=STARTUP_SECONDS)
        pulse.say(question).wait()
        heard = running.wait_for(r"^you: ")
        assert wer("hello world", running.lines[heard][5:]) <= 0.5, running.lines
        done = running.wait_for(r"^\s+\[llm_enhanced", heard)
        reply = " ".join(line.removeprefix("coda: ") for line in running.lines[heard + 1 : done])
        wait_speakers(speakers, busy=False)
        first_reply_end = np.fromfile(speakers, "<i2").size / RECORD_RATE

        pulse.say(story).wait()
        asked = running.wait_for(r"^you: .*lighthouse", done)
        between = running.lines[done + 1 : asked]
        assert not any("interrupted" in line or "you:" in line for line in between), between
        wait_speakers(speakers, busy=True, since=first_reply_end)
        pulse.say(over).wait()
        cut = running.wait_for(r"\[interrupted\]", asked)
        running.wait_for(r"(?i)^you: .*try", cut)  # the words said over the reply are a turn
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(60) == 0
        running.wait_for(r"^bye$", cut, timeout=5)
    finally:
        if running.process.poll() is None:
            running.process.kill()
        recorder.terminate()
        recorder.wait()
    assert normalize(reply), running.lines  # jiwer refuses an empty reference
    played = to_float(np.fromfile(speakers, "<i2")[: int(first_reply_end * RECORD_RATE)])
    said = await transcribe(encode_wav(played, RECORD_RATE))
    assert wer(reply, said) <= 0.25, (reply, said)  # what was printed is what was played


async def test_push_to_talk_hears_only_while_the_key_is_down(
    pulse: ThrowawayPulse, tmp_path: Path
) -> None:
    """Off a terminal, Enter toggles the microphone: speech before it is not a turn."""
    running = Talking(talk(pulse, tmp_path, "--push-to-talk", "--conversation-id", "noisy"))
    stdin = running.process.stdin
    assert stdin is not None
    try:
        running.wait_for(r"^listening on 'noisy': hold space", timeout=STARTUP_SECONDS)
        pulse.say(sound_dir() / "please-try-again.wav").wait()
        time.sleep(2.0)  # longer than any end-of-turn silence: a heard turn would show
        assert not any(line.startswith("you:") for line in running.lines), running.lines
        stdin.write("\n")  # talk ...
        stdin.flush()
        pulse.say(sound_dir() / "hello-world.wav").wait()
        stdin.write("\n")  # ... and let go
        stdin.flush()
        heard = running.wait_for(r"^you: ")
        assert wer("hello world", running.lines[heard][5:]) <= 0.5, running.lines
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(60) == 0
    finally:
        if running.process.poll() is None:
            running.process.kill()


async def test_talk_names_the_fix_for_a_missing_device(pulse: ThrowawayPulse) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "coda.cli", "talk", "--list-devices"],
        env=pulse.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0 and "pulse" in listed.stdout, listed
    missing = subprocess.run(
        [sys.executable, "-m", "coda.cli", "talk", "--input-device", "no-such-microphone"],
        env=pulse.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out = missing.stderr
    assert missing.returncode == 1, out
    assert "no microphone 'no-such-microphone' found" in out and "--list-devices" in out, out


def test_push_to_talk_counts_held_space_and_toggles_on_enter() -> None:
    now = [100.0]
    gate = PushToTalk(clock=lambda: now[0])
    assert not gate.open
    gate.key(" ")
    assert gate.open
    now[0] += HOLD_SECONDS - 0.01  # the key repeats while held ...
    gate.key(" ")
    now[0] += HOLD_SECONDS - 0.01
    assert gate.open
    now[0] += 0.02  # ... and no repeat for HOLD_SECONDS means it was let go
    assert not gate.open
    gate.key("x")
    assert not gate.open
    gate.key("\n")
    now[0] += 60
    assert gate.open
    gate.key("\n")
    assert not gate.open


def test_player_reports_exactly_what_played_and_clears_at_once() -> None:
    played: list[np.ndarray] = []
    delays: list[float] = []
    player = Player(lambda samples, delay: (played.append(samples), delays.append(delay)))
    player.push(np.arange(1, 6, dtype=np.float32))
    player.push(np.arange(6, 9, dtype=np.float32))
    block = np.full(4, np.nan, np.float32)
    player.fill(block)
    assert block.tolist() == [1, 2, 3, 4] and played[-1].tolist() == [1, 2, 3, 4]
    player.fill(block, 0.25)
    assert block.tolist() == [5, 6, 7, 8] and played[-1].tolist() == [5, 6, 7, 8]
    assert delays == [0.0, 0.25]  # when the block is heard, for the echo reference
    player.push(np.ones(10, np.float32))
    player.fill(block[:2])
    player.clear()
    player.fill(block)
    assert block.tolist() == [0, 0, 0, 0] and len(played) == 3  # silence reports nothing
