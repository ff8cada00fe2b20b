"""The browser client in real headless Chromium, with a fake microphone playing a WAV."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.async_api import Browser, Playwright, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from coda.audio.decode import resample
from tests.conftest import KEY, Say, Server, wer

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
QUESTION = "What is the capital of France?"
GREETING = "Hello."
INTRODUCTION = "My name is Ada."
RECALL = "What is my name?"
USER = "ada.browser-test"  # memories belong to the key and this user, apart from other tests


def need_chromium() -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Debian's chromium is needed at /usr/bin/chromium (.ci/run installs it)")


async def microphone(say: Say, path: Path, *texts: str) -> Path:
    """A fake microphone's WAV at 48 kHz; Chromium loops it: 1 s quiet, then each text
    followed by 4 s of quiet."""
    quiet = np.zeros(48000, np.float32)
    parts = [quiet]
    for text in texts:
        parts += [resample(await say(text), 16000, 48000), quiet, quiet, quiet, quiet]
    sf.write(path, np.concatenate(parts), 48000)
    return path


async def launch(playwright: Playwright, microphone: Path) -> Browser:
    """Headless Chromium whose (only) microphone plays ``microphone``, fixed for the launch."""
    return await playwright.chromium.launch(
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


async def test_browser_holds_a_spoken_turn(server: Server, say: Say, tmp_path: Path) -> None:
    need_chromium()
    wav = await microphone(say, tmp_path / "microphone.wav", QUESTION)
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await launch(playwright, wav)
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


async def test_browser_remembers_across_conversations(
    server: Server, say: Say, tmp_path: Path
) -> None:
    """Said in one conversation, recalled in a new one: the page shows the memory it used."""
    need_chromium()
    # "Hello." first: the browser's gain control settles on it (tiny.en hears the very
    # first "Ada" through it as "Adi"), then the name, which is what Coda learns.
    introduction = await microphone(say, tmp_path / "introduction.wav", GREETING, INTRODUCTION)
    recall = await microphone(say, tmp_path / "recall.wav", RECALL)
    ARTIFACTS.mkdir(exist_ok=True)
    page_url = f"{server.url}/?key={KEY}&user={USER}"
    conversations: list[str] = []
    async with async_playwright() as playwright:
        # 1. One browser (its microphone says the name) holds the first conversation.
        browser = await launch(playwright, introduction)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(page_url)
            await page.click("#start")
            await page.wait_for_function(
                "() => window.codaStats && window.codaStats.turns >= 2", timeout=120_000
            )
            transcript = await page.inner_text("#transcript")
            assert wer(INTRODUCTION, transcript.splitlines()[1]) <= 0.3, transcript
            conversations.append((await page.inner_text("#conversation")).strip())
            # Coda stores a turn (and learns from it) once its reply has been heard to
            # the end, or cut off: stopping while it plays would drop the turn.
            await page.wait_for_function(
                """() => window.codaStats.interrupted > 0
                    || window.codaStats.playedSamples >= window.codaStats.receivedSamples""",
                timeout=60_000,
            )
            await page.wait_for_timeout(300)  # the last `played` report reaches the server
            await page.click("#stop")
            assert await page.inner_text("#status") == "idle"
            assert not errors, errors
        finally:
            await browser.close()
        # 2. Another browser (its microphone asks for the name) starts a new conversation.
        browser = await launch(playwright, recall)
        try:
            page = await browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(page_url)
            await page.click("#start")
            await page.wait_for_function(
                "() => window.codaStats && window.codaStats.turns >= 1", timeout=120_000
            )
            conversations.append((await page.inner_text("#conversation")).strip())
            # The memory and the reply are on the page by now, unless the looping
            # microphone began the next turn already: then that turn shows them.
            with contextlib.suppress(PlaywrightTimeout):
                await page.wait_for_function(
                    """() => /ada/i.test(document.getElementById('reply').innerText)
                        && /ada/i.test(document.getElementById('memories').innerText)""",
                    timeout=60_000,
                )
            transcript = await page.inner_text("#transcript")
            reply = await page.inner_text("#reply")
            memories = await page.inner_text("#memories")
            stats = await page.evaluate("() => window.codaStats")
            await page.screenshot(path=str(ARTIFACTS / "browser-memory.png"), full_page=True)
            assert wer(RECALL, transcript.splitlines()[0]) <= 0.3, transcript
            assert "ada" in reply.lower(), (reply, memories, transcript)
            assert INTRODUCTION.lower() in memories.lower(), memories
            assert stats["memories"] >= 1, stats
            assert await page.is_hidden("#memories-none")
            assert not errors, errors
            await page.click("#stop")
        finally:
            await browser.close()
    assert all(conversations) and conversations[0] != conversations[1], conversations
