"""The browser client in real headless Chromium, with a fake microphone playing a WAV."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.async_api import async_playwright

from coda.audio.decode import resample
from tests.conftest import KEY, Say, Server, wer

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
QUESTION = "What is the capital of France?"


async def test_browser_holds_a_spoken_turn(server: Server, say: Say, tmp_path: Path) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Debian's chromium is needed at /usr/bin/chromium (.ci/run installs it)")
    speech = resample(await say(QUESTION), 16000, 48000)
    quiet = np.zeros(48000, np.float32)
    microphone = tmp_path / "microphone.wav"  # Chromium loops it: speech, then 4 s of quiet
    sf.write(microphone, np.concatenate([quiet, speech, quiet, quiet, quiet, quiet]), 48000)
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone}",
            ],
        )
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"{server.url}/?key={KEY}")
            await page.click("#start")
            await page.wait_for_function(
                "() => window.codaStats && window.codaStats.turns >= 1", timeout=120_000
            )
            await page.wait_for_function("() => window.codaStats.playedSamples > 0", timeout=30_000)
            transcript = await page.inner_text("#transcript")
            reply = await page.inner_text("#reply")
            stats = await page.evaluate("() => window.codaStats")
            await page.screenshot(path=str(ARTIFACTS / "browser-turn.png"), full_page=True)
            assert wer(QUESTION, transcript.splitlines()[0]) <= 0.3, transcript
            assert reply.strip()
            assert (await page.inner_text("#mode")).strip()
            assert "ms" in await page.inner_text("#latency")
            assert stats["audioChunks"] >= 1 and stats["playedSamples"] > 0
            assert int((await page.inner_text("#played")).replace(",", "").split()[0]) > 0
            assert not errors, errors
            await page.click("#stop")
        finally:
            await browser.close()
