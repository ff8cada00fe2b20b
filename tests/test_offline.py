"""Nothing phones home, and nothing needs the network: `coda chat` and `coda serve`.

Each runs as a user runs it, in a network namespace of its own with only loopback
(``unshare --net``: a download, a hub lookup or telemetry cannot get out, so a turn
that needed one would fail), under ``strace -f``, which records every ``connect``
of every process and thread it starts, whatever their language. The environment
has none of the switches Coda sets for itself when imported (``HF_HUB_OFFLINE``
and the telemetry ones), so Coda must set them itself. Each test asserts that the
turn was answered, that the trace saw the connections it should (the probe for a
local Ollama: proof that it traced at all), and that every one went to loopback.
"""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf

from coda.testing.ports import free_port
from tests.conftest import KEY, wer
from tests.reliability.test_no_outbound import connected_to

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ROOT / "samples" / "conversation" / "02.wav"
"""The sample conversation's second turn: "What is the capital of France?"."""
SWITCHES = ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "ORT_DISABLE_TELEMETRY")
OLLAMA_PORT = 11434
"""Where ``llm = "auto"`` probes for a local Ollama (nobody answers in the namespace)."""

LOOPBACK_ONLY = r"""
import errno, fcntl, os, socket, struct, sys

# A new network namespace has only a loopback interface, and it is down: bring it up
# (SIOCGIFFLAGS, SIOCSIFFLAGS with IFF_UP) without needing iproute2.
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
    request = struct.pack("16sh22x", b"lo", 0)
    flags = struct.unpack("16sh22x", fcntl.ioctl(probe, 0x8913, request))[1]
    fcntl.ioctl(probe, 0x8914, struct.pack("16sh22x", b"lo", flags | 0x1))
# No route leads out: a datagram socket's connect fails at once (it sends nothing).
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
    try:
        probe.connect(("192.0.2.1", 9))
    except OSError as error:
        if error.errno != errno.ENETUNREACH:
            raise
    else:
        sys.exit("this namespace has a route out")
os.execvp(sys.argv[1], sys.argv[1:])
"""

SERVE_ONE_TURN = r"""
import json, os, subprocess, sys, time
import httpx

config, port, question, answer, log = sys.argv[1:6]
with open(log, "ab") as out:
    server = subprocess.Popen(
        [sys.executable, "-m", "coda.cli", "--config", config, "serve", "--port", port],
        stdout=out, stderr=subprocess.STDOUT,
    )
url, headers = f"http://127.0.0.1:{port}", {"X-API-Key": os.environ["CODA_API_KEYS"]}
try:
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/ready", headers=headers, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            sys.exit("coda serve did not get ready")
        time.sleep(0.5)
    with open(question, "rb") as wav:
        reply = httpx.post(
            f"{url}/v1/conversations/offline/messages", content=wav.read(),
            headers={**headers, "Content-Type": "audio/wav"}, timeout=300,
        )
    with open(answer, "w") as out:
        json.dump({"status": reply.status_code, "body": reply.json()}, out)
finally:
    server.terminate()
    server.wait(30)
"""


def offline(command: list[str], trace: Path) -> list[str]:
    """``command`` in a namespace with only loopback, its connects traced into ``trace``."""
    unshare, strace = shutil.which("unshare"), shutil.which("strace")
    assert unshare and strace, "util-linux's unshare and strace are needed (`make test`)"
    # Unprivileged, the namespace comes with a user namespace of its own.
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    tracer = [strace, "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-e", "trace=connect",
              "-o", str(trace)]  # fmt: skip
    return [unshare, "--net", *user, sys.executable, "-c", LOOPBACK_ONLY, *tracer, *command]


def without_switches(**extra: str) -> dict[str, str]:
    """This environment less the privacy switches (Coda must set them itself)."""
    return {k: v for k, v in os.environ.items() if k not in SWITCHES} | extra


def assert_loopback_only(trace: Path) -> None:
    """The trace saw the Ollama probe, and nothing but loopback (nor a name server)."""
    text = trace.read_text()
    addresses = connected_to(trace)
    assert f"htons({OLLAMA_PORT})" in text, "the trace missed the Ollama probe"
    assert [a for a in addresses if not ipaddress.ip_address(a).is_loopback] == []
    assert "htons(53)" not in text  # no name lookup, even through a local resolver


@pytest.mark.slow
async def test_coda_chat_answers_offline(tmp_path: Path) -> None:
    trace, out = tmp_path / "chat.trace", tmp_path / "replies"
    chat = [sys.executable, "-m", "coda.cli", "--store", str(tmp_path / "chat.sqlite3"),
            "chat", str(QUESTION), "--out", str(out)]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *offline(chat, trace),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=without_switches(),
        cwd=ROOT,
    )
    async with asyncio.timeout(600):  # guards against a hang only
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()[-3000:]
    text = stdout.decode()
    assert "you:  What is the capital of France?" in text and "Paris" in text, text
    (reply,) = out.glob("turn01_reply.wav")
    assert sf.info(io.BytesIO(reply.read_bytes())).duration > 0.5
    assert_loopback_only(trace)


@pytest.mark.slow
async def test_coda_serve_answers_offline(tmp_path: Path) -> None:
    trace, answer, log = tmp_path / "serve.trace", tmp_path / "answer.json", tmp_path / "log"
    config = tmp_path / "coda.toml"
    config.write_text(f'llm = "auto"\nstore = "{tmp_path / "serve.sqlite3"}"\n')
    driver = [sys.executable, "-c", SERVE_ONE_TURN, str(config), str(free_port()),
              str(QUESTION), str(answer), str(log)]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *offline(driver, trace),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=without_switches(CODA_API_KEYS=KEY),
        cwd=ROOT,
    )
    async with asyncio.timeout(600):  # guards against a hang only
        output, _ = await process.communicate()
    server_log = log.read_text() if log.exists() else ""
    assert process.returncode == 0, output.decode()[-2000:] + server_log[-3000:]
    reply = json.loads(answer.read_text())
    assert reply["status"] == 200, reply
    body = reply["body"]
    assert wer("What is the capital of France?", body["metadata"]["transcript"]) <= 0.1
    assert "paris" in body["text"].lower()
    audio = base64.b64decode(body["audio_wav_base64"])
    assert sf.info(io.BytesIO(audio)).duration > 0.5
    assert_loopback_only(trace)
