"""A throwaway PulseAudio server with virtual devices, for testing ``coda talk``.

Real audio devices without hardware: the speakers are a null sink whose monitor
can be recorded, and the microphone is a source remapped from a second null
sink's monitor, so a recording played into that sink is what the microphone
hears, at real-time pace. PortAudio reaches the server through ALSA's pulse
plugin (Debian's ``libasound2-plugins``). Nothing outside the private socket
folder is touched; the daemon's clients are told where it is by environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

SPEAKERS = "coda_speakers"
MIC_FEED = "coda_mic_feed"
MICROPHONE = "coda_mic"


class ThrowawayPulse:
    """A private PulseAudio daemon with a virtual microphone and speakers.

    Args:
        speaker_rate: The speakers' rate (the reply's, so nothing resamples it).
        echo_db: The microphone also hears the speakers, this many dB down, as
            on a laptop without headphones (through a loopback with PulseAudio's
            own latency); None: it does not.
    """

    def __init__(self, speaker_rate: int = 24000, echo_db: float | None = None) -> None:
        for tool in ("pulseaudio", "pactl", "paplay", "parec"):
            if shutil.which(tool) is None:
                raise FileNotFoundError(
                    f"{tool} is missing: apt-get install pulseaudio pulseaudio-utils "
                    "libasound2-plugins (`make test` does it)"
                )
        self.folder = Path(tempfile.mkdtemp(prefix="coda-pulse-"))
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.folder),
            "PULSE_RUNTIME_PATH": str(self.folder / "pulse"),
            "PULSE_SERVER": f"unix:{self.folder / 'pulse' / 'native'}",
            "PULSE_CONFIG_PATH": str(self.folder / "config"),
            "PULSE_STATE_PATH": str(self.folder / "state"),
            "PULSE_COOKIE": str(self.folder / "cookie"),
        }
        modules = [
            "module-native-protocol-unix auth-anonymous=1",
            f"module-null-sink sink_name={SPEAKERS} rate={speaker_rate} channels=1",
            f"module-null-sink sink_name={MIC_FEED} rate=16000 channels=1",
            f"module-remap-source master={MIC_FEED}.monitor source_name={MICROPHONE}",
        ]
        if echo_db is not None:
            modules.append(
                f"module-loopback source={SPEAKERS}.monitor sink={MIC_FEED} latency_msec=30"
            )
        self._log = (self.folder / "pulse.log").open("wb")
        self.process = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
             "--high-priority=yes", "--realtime=yes",
             "--disable-shm=yes", "--log-target=stderr", *(f"--load={m}" for m in modules)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_ready()
        self.pactl("set-default-sink", SPEAKERS)
        self.pactl("set-default-source", MICROPHONE)
        if echo_db is not None:
            loopback = self.pactl("list", "short", "sink-inputs").split()[0]
            self.pactl("set-sink-input-volume", loopback, f"{echo_db}dB")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "pulse.log").read_text(errors="replace")
                raise RuntimeError(f"PulseAudio did not start:\n{log[-2000:]}")
            time.sleep(0.1)

    def pactl(self, *args: str) -> str:
        """Run ``pactl`` against this server; its output."""
        done = subprocess.run(
            ["pactl", *args], env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout

    def say(self, wav: Path) -> subprocess.Popen[bytes]:
        """Start playing ``wav`` into the microphone (real-time pace)."""
        return subprocess.Popen(["paplay", f"--device={MIC_FEED}", str(wav)], env=self.env)

    def record_speakers(self, raw: Path, rate: int = 16000) -> subprocess.Popen[bytes]:
        """Start recording what the speakers play, as raw PCM16 mono at ``rate``."""
        with raw.open("wb") as out:
            return subprocess.Popen(
                ["parec", f"--device={SPEAKERS}.monitor", "--raw", "--format=s16le",
                 f"--rate={rate}", "--channels=1", "--latency-msec=20"],
                env=self.env, stdout=out,
            )  # fmt: skip

    def stop(self) -> None:
        """Stop the daemon and remove its folder."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ThrowawayPulse:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
