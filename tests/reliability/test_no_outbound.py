"""Nothing phones home: ``coda serve``'s whole process tree connects to loopback only.

The server runs under ``strace -f``, which records every ``connect`` system call
of every process and thread it starts, whatever their language (Python, the
llama.cpp and ONNX runtimes, espeak-ng). It starts with the default ``llm =
"auto"`` (which probes for a local Ollama) and a Moshi server, loads its models,
and answers typed, spoken and Moshi turns. Every internet-family address it
connected to is a loopback one, and the trace saw the connections it should
(proof that it traced at all).

It starts from an environment without the privacy switches Coda sets for itself
when imported (``ORT_DISABLE_TELEMETRY``, ``HF_HUB_OFFLINE``): without them, ONNX
Runtime resolves ``mobile.events.data.microsoft.com`` about 10 s after it loads,
so the server is kept up at least ``OBSERVED_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from coda.testing.moshi_peer import TinyMoshiServer
from coda.testing.ports import free_port
from tests.conftest import Say, launch, wait_ready
from tests.test_server import converse

OBSERVED_SECONDS = 40.0
ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def connected_to(trace: Path) -> list[str]:
    """Every IPv4 and IPv6 address in the trace's ``connect`` calls."""
    found = []
    for line in trace.read_text().splitlines():
        if "connect(" in line:
            found += [v4 or v6 for v4, v6 in ADDRESS.findall(line)]
    return found


@pytest.mark.slow
async def test_the_whole_process_tree_connects_to_loopback_only(
    tmp_path: Path, moshi_server: TinyMoshiServer, say: Say, monkeypatch: pytest.MonkeyPatch
) -> None:
    strace = shutil.which("strace")
    assert strace, "strace is installed by `make test` (apt-get install strace)"
    trace = tmp_path / "connect.trace"
    wrap = (strace, "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-e", "trace=connect",
            "-o", str(trace))  # fmt: skip
    settings = f'llm = "auto"\nmoshi_url = "{moshi_server.url}"\n'
    for name in ("ORT_DISABLE_TELEMETRY", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.delenv(name, raising=False)  # the server must set them itself
    started = time.monotonic()
    server = launch(tmp_path, free_port(), settings, wrap=wrap)
    try:
        await asyncio.to_thread(wait_ready, server)
        async with httpx.AsyncClient(base_url=server.url, timeout=180) as client:
            for text in ("My name is Ada and I live in Oslo.", "What is 12 times 12?"):
                answer = await client.post(
                    "/v1/conversations/home/messages", json={"text": text}, headers=server.headers()
                )
                assert answer.status_code == 200, answer.text
        spoken = await converse(server, "spoken", await say("What is the capital of France?"))
        assert any(isinstance(e, dict) and e["type"] == "turn" for e in spoken)
        moshi = await converse(
            server, "moshi", await say("Hello there!"), query="&mode=moshi_only", until="audio"
        )
        assert isinstance(moshi[-1], dict) and moshi[-1]["type"] == "audio"  # Moshi's voice
        await asyncio.sleep(max(0.0, started + OBSERVED_SECONDS - time.monotonic()))
    finally:
        # strace passes no signal on: stop the server itself, and strace ends with it.
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            server.process.kill()
    addresses = connected_to(trace)
    outside = [a for a in addresses if not ipaddress.ip_address(a).is_loopback]
    assert outside == []
    moshi_port = moshi_server.url.split(":")[2].split("/")[0]
    assert f"htons({moshi_port})" in trace.read_text()  # the trace saw the Moshi call
    assert len(addresses) >= 2
