"""The browser client in real headless Chromium, with a fake microphone playing a WAV."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, Playwright, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from coda.audio.decode import resample
from tests.conftest import KEY, OTHER_KEY, Say, Server, wer

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
QUESTION = "What is the capital of France?"
SECOND = "And what about Italy?"
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


USER_TURNS = (
    "() => [...document.querySelectorAll('#chat .turn.user .words')].map((e) => e.innerText)"
)
CODA_TURNS = (
    "() => [...document.querySelectorAll('#chat .turn.coda .words')].map((e) => e.innerText)"
)
HEARD_TO_THE_END = """() => window.codaStats.interrupted > 0
    || window.codaStats.playedSamples >= window.codaStats.receivedSamples"""


async def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical accessibility violations on the page."""
    results = await Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def test_browser_page_reads_like_a_conversation(
    server: Server, say: Say, tmp_path: Path
) -> None:
    """Two spoken turns become a chat with waterfalls; a reload shows the same conversation."""
    need_chromium()
    wav = await microphone(say, tmp_path / "microphone.wav", QUESTION, SECOND)
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await launch(playwright, wav)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"{server.url}/?key=not-the-key")
            await page.click("#start")
            await page.wait_for_function("() => document.body.dataset.state === 'error'")
            assert "refused the API key" in await page.inner_text("#error")

            await page.goto(f"{server.url}/?key={KEY}")
            assert await serious_violations(page) == []
            await page.click("#start")
            await page.wait_for_function(
                "() => window.codaStats && window.codaStats.turns >= 2", timeout=180_000
            )
            await page.wait_for_function(HEARD_TO_THE_END, timeout=60_000)
            await page.wait_for_timeout(300)  # the last `played` report reaches the server
            await page.click("#stop")
            said = await page.evaluate(USER_TURNS)
            answered = await page.evaluate(CODA_TURNS)
            stats = await page.evaluate("() => window.codaStats")
            conversation = (await page.inner_text("#conversation")).strip("() ")
            await page.screenshot(path=str(ARTIFACTS / "browser-conversation.png"), full_page=True)
            assert wer(QUESTION, said[0]) <= 0.3 and wer(SECOND, said[1]) <= 0.3, said
            assert len(answered) >= 2 and all(a.strip() for a in answered[:2]), answered
            order = await page.evaluate(
                "() => [...document.querySelectorAll('#chat .turn')].map((e) => e.classList[1])"
            )
            assert order[:4] == ["user", "coda", "user", "coda"], order
            # Each live turn has its waterfall: bars for the stages, on one axis.
            bars = await page.evaluate(
                """() => [...document.querySelectorAll('#chat .turn.coda')].slice(0, 2)
                    .map((t) => [...t.querySelectorAll('svg.waterfall rect')]
                    .map((r) => r.getAttribute('width')))"""
            )
            assert all(len(b) >= 4 for b in bars), bars  # endpointing, ASR, LLM, TTS (+ transport)
            label = await page.get_attribute("#chat .turn.coda svg.waterfall", "aria-label")
            assert label and "Endpointing" in label and "LLM to first clause" in label, label
            assert stats["waterfalls"] >= 2 and stats["playedSamples"] > 0, stats
            assert stats["peakLevel"] > 0.05, stats  # the meter moved with the voice
            assert {"listening", "thinking", "speaking"} <= set(stats["states"]), stats
            assert await serious_violations(page) == []

            await page.reload()  # the same conversation comes back from the server
            await page.wait_for_function(
                "() => document.querySelectorAll('#chat .turn.user').length >= 2"
            )
            assert (await page.evaluate(USER_TURNS))[:2] == said[:2]
            assert (await page.evaluate(CODA_TURNS))[0].strip() == answered[0].strip()
            current = page.locator("#conversations button[aria-current='true']")
            assert await current.get_attribute("data-id") == conversation
            await page.screenshot(path=str(ARTIFACTS / "browser-reloaded.png"), full_page=True)
            assert not errors, errors
        finally:
            await browser.close()


async def test_browser_says_when_the_microphone_is_refused(server: Server) -> None:
    """A refused microphone gets a message, and leaves no empty conversation behind."""
    need_chromium()
    before = httpx.get(f"{server.url}/v1/conversations", headers=server.headers(OTHER_KEY))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream",
                  "--deny-permission-prompts"],
        )  # fmt: skip
        try:
            page = await browser.new_page()
            await page.goto(f"{server.url}/?key={OTHER_KEY}")
            await page.click("#start")
            await page.wait_for_function("() => document.body.dataset.state === 'error'")
            assert "Microphone access was denied" in await page.inner_text("#error")
            assert await page.is_enabled("#start")
            await page.screenshot(path=str(ARTIFACTS / "browser-mic-denied.png"))
        finally:
            await browser.close()
    after = httpx.get(f"{server.url}/v1/conversations", headers=server.headers(OTHER_KEY))
    assert after.status_code == 200 and after.json() == before.json()


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
            said = await page.evaluate(USER_TURNS)
            assert wer(INTRODUCTION, said[1]) <= 0.3, said
            conversations.append((await page.inner_text("#conversation")).strip("() "))
            # Coda stores a turn (and learns from it) once its reply has been heard to
            # the end, or cut off: stopping while it plays would drop the turn.
            await page.wait_for_function(HEARD_TO_THE_END, timeout=60_000)
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
            conversations.append((await page.inner_text("#conversation")).strip("() "))
            # The memory and the reply are on the page by now, unless the looping
            # microphone began the next turn already: then that turn shows them.
            with contextlib.suppress(PlaywrightTimeout):
                await page.wait_for_function(
                    """() => /ada/i.test(document.getElementById('chat').innerText)
                        && /ada/i.test([...document.querySelectorAll('#chat .memory')]
                            .map((e) => e.innerText).join(' '))""",
                    timeout=60_000,
                )
            said = await page.evaluate(USER_TURNS)
            reply = " ".join(await page.evaluate(CODA_TURNS))
            memories = " ".join(
                await page.evaluate(
                    "() => [...document.querySelectorAll('#chat .memory')].map((e) => e.innerText)"
                )
            )
            stats = await page.evaluate("() => window.codaStats")
            await page.screenshot(path=str(ARTIFACTS / "browser-memory.png"), full_page=True)
            assert wer(RECALL, said[0]) <= 0.3, said
            assert "ada" in reply.lower(), (reply, memories, said)
            assert INTRODUCTION.lower() in memories.lower(), memories
            assert stats["memories"] >= 1, stats
            assert not errors, errors
            await page.click("#stop")
        finally:
            await browser.close()
    assert all(conversations) and conversations[0] != conversations[1], conversations
