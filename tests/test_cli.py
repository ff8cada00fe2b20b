"""The `coda` command line, run as a user runs it."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from coda.testing.moshi_peer import TinyMoshiServer

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "samples" / "conversation").glob("*.wav"))


def _coda(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "coda.cli",
        "--store",
        str(tmp / "cli.sqlite3"),
        "--llm",
        "llamacpp",
        *args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_chat_holds_the_sample_conversation(tmp_path: Path) -> None:
    assert len(SAMPLES) == 4
    out = tmp_path / "replies"
    result = _coda("chat", *map(str, SAMPLES), "--out", str(out), tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.count("[turn ") == 4
    assert "you:  What is the capital of France?" in text
    assert "Paris" in text
    assert text.count("time: frontend=") == 4 and text.count(" asr=") == 4
    assert "llm_first_token=" in text
    # The last turn ("Do you remember my name?") is answered to the user, about the user.
    last = text.split("[turn 4]")[1]
    coda_line = next(line for line in last.splitlines() if line.strip().startswith("coda:"))
    assert re.search(r"\byour name is ada\b", coda_line, re.IGNORECASE), coda_line
    assert not re.search(r"\bmy name\b", coda_line, re.IGNORECASE)
    replies = sorted(out.glob("turn*_reply.wav"))
    assert len(replies) == 4
    for reply in replies:
        info = sf.info(io.BytesIO(reply.read_bytes()))
        assert info.samplerate == 24000 and info.duration > 0.5
    assert "load models" in result.stderr  # the progress bar


def test_chat_talks_to_moshi(moshi_server: TinyMoshiServer, tmp_path: Path) -> None:
    out = tmp_path / "moshi"
    result = _coda(
        "--moshi-url",
        moshi_server.url,
        *("chat", str(SAMPLES[0]), "--mode", "moshi_only", "--out", str(out)),
        tmp=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"moshi: {moshi_server.url}" in result.stdout
    assert "[moshi_only]" in result.stdout and "moshi_first_audio=" in result.stdout
    (reply,) = out.glob("turn01_reply.wav")
    assert sf.info(io.BytesIO(reply.read_bytes())).samplerate == 24000


def test_chat_text_turns_and_bad_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(os.urandom(2048))
    result = _coda("chat", str(garbage), "--text", "Hello!", "--out", str(tmp_path), tmp=tmp_path)
    assert result.returncode == 1  # one turn failed, the other was answered
    assert "ValidationError" in result.stdout
    assert "you:  Hello!" in result.stdout

    missing = _coda("chat", str(tmp_path / "nope.wav"), tmp=tmp_path)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_setup_verifies_the_models(tmp_path: Path) -> None:
    result = _coda("setup", tmp=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sha256 verified" in result.stdout
