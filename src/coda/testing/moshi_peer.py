"""Start and stop the genuine Moshi server with tiny random weights, in its own environment."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

SCRIPT = Path(__file__).with_name("tiny_moshi.py")
DEFAULT_PYTHON = Path(".venv-moshi/bin/python")
"""Where ``make test`` creates the server's environment (relative to the checkout)."""


def moshi_python() -> Path:
    """The interpreter of the Moshi server's environment (``$CODA_MOSHI_PYTHON`` overrides).

    Raises:
        FileNotFoundError: If there is none; ``make test`` creates it.
    """
    python = Path(os.environ.get("CODA_MOSHI_PYTHON", DEFAULT_PYTHON))
    if not python.exists():
        raise FileNotFoundError(
            f"no Moshi server environment at {python}: run `make test` (it creates "
            ".venv-moshi) or set CODA_MOSHI_PYTHON"
        )
    return python


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class TinyMoshiServer:
    """``moshi.server`` on loopback with a tiny random model built into ``folder``.

    Args:
        folder: Where the model files are (built there if missing).
        port: The port to listen on.
        python: The Moshi environment's interpreter.
    """

    def __init__(self, folder: Path, port: int, python: Path | None = None) -> None:
        self.folder = folder
        self.port = port
        self.python = python or moshi_python()
        self.log_path = folder / f"server-{port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The chat endpoint."""
        return f"ws://127.0.0.1:{self.port}/api/chat"

    def _run(self, *args: str) -> list[str]:
        return [str(self.python), str(SCRIPT), *args]

    def build(self) -> None:
        """Write the tiny model (weights, configs, tokenizer) unless already there."""
        if not (self.folder / "lm.safetensors").exists():
            subprocess.run(self._run("build", str(self.folder)), check=True, env=self._env())

    @staticmethod
    def _env() -> dict[str, str]:
        return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def start(self, timeout: float = 120.0) -> None:
        """Build if needed, start the server, and wait until it listens.

        Raises:
            RuntimeError: If it exits or does not listen within ``timeout`` seconds.
        """
        self.build()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._run("serve", str(self.folder), "--port", str(self.port)),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the tiny Moshi server did not start:\n{tail}")
            time.sleep(0.2)

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def freeze(self) -> None:
        """Stop the server process (SIGSTOP): its sockets stay open but nothing answers."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Resume a frozen server (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a frozen server cannot terminate
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> TinyMoshiServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
