"""moshi_only against the genuine ``moshi.server`` (tiny random weights, CPU), and faults.

The model is random, so what it says is arbitrary: the tests assert on the protocol,
on structure (audio, text pieces, timings) and on failure behaviour, not on content.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from coda.deadline import ManualClock
from coda.providers.s2s import moshi_protocol as protocol
from coda.providers.s2s.moshi import MoshiSpeechToSpeech
from coda.providers.s2s.moshi_live import MoshiLiveBridge, Reconnected
from coda.providers.s2s.moshi_pool import MoshiPool
from coda.providers.s2s.moshi_session import MoshiAudio, MoshiSession
from coda.testing.moshi_peer import TinyMoshiServer
from coda.voice import (
    ConfigurationError,
    MoshiConfig,
    MoshiConnectionError,
    VoiceConfig,
    VoiceManager,
    VoiceMessage,
    VoiceProcessingMode,
)
from tests.conftest import Say, Speak, free_port

REPLY_SECONDS = 2.0
HANG_GUARD_SECONDS = 300.0
"""Only guards against a hang: no test waits for this, however loaded the machine."""


@pytest.fixture(scope="session")
def moshi_config(moshi_server: TinyMoshiServer) -> MoshiConfig:
    return MoshiConfig(
        server_url=moshi_server.url,
        device="cpu",  # where the tiny server really runs
        vram_budget_gb=2.0,
        max_response_seconds=REPLY_SECONDS,
        receive_timeout_seconds=10.0,
    )


@pytest.fixture(scope="session")
async def moshi_manager(
    base_config: VoiceConfig, moshi_config: MoshiConfig, store_dir: Path
) -> AsyncIterator[VoiceManager]:
    config = replace(
        base_config,
        moshi=moshi_config,
        store_path=str(store_dir / "moshi.sqlite3"),
        enable_optimization=False,
        # A hybrid budget and a turn deadline that no turn reaches, however loaded the
        # machine: both candidates always finish, so the race is decided on scores.
        max_latency_ms=HANG_GUARD_SECONDS * 1000,
        streaming=replace(base_config.streaming, turn_timeout_seconds=HANG_GUARD_SECONDS),
    )
    voice = VoiceManager(config)
    await voice.initialize()
    yield voice
    await voice.cleanup()


def test_both_handshake_forms_parse() -> None:
    assert protocol.parse_handshake(b"\x00") == protocol.Handshake()
    rust = bytes([0]) + struct.pack("<II", 1, 7)  # kind, protocol version, model version
    assert protocol.parse_handshake(rust) == protocol.Handshake(1, 7)
    assert protocol.handshake_bytes(1, 7) == rust
    for bad in (b"", b"\x01", b"\x00\x01\x02"):
        with pytest.raises(MoshiConnectionError):
            protocol.parse_handshake(bad)
    with pytest.raises(MoshiConnectionError, match="unknown"):
        protocol.kind_of(b"\x09")
    assert protocol.metadata_of(b'\x04{"instance_name": "x"}') == {"instance_name": "x"}
    assert protocol.metadata_of(b"\x04not json") == {}


async def test_moshi_only_answers_a_spoken_message(
    moshi_manager: VoiceManager, speak: Speak
) -> None:
    message = VoiceMessage(
        conversation_id="moshi-e2e", audio_data=await speak("What is the capital of France?")
    )
    response = await moshi_manager.process_voice_message(message, VoiceProcessingMode.MOSHI_ONLY)
    assert response.processing_mode is VoiceProcessingMode.MOSHI_ONLY
    assert response.metadata["llm"]["provider"] == "moshi"
    # Decodable 24 kHz audio of plausible length: Moshi spoke, for at most the reply cap.
    assert response.audio_data is not None
    audio, rate = sf.read(io.BytesIO(response.audio_data))
    assert rate == 24000
    assert 0.3 <= len(audio) / rate <= REPLY_SECONDS + 0.1
    assert float(np.sqrt(np.mean(audio**2))) > 1e-3
    # Text pieces were collected into the reply text.
    assert response.text_content.strip()
    # Timings measured in order; the quality scores come from real signals.
    timings = response.metadata["timings_ms"]
    assert 0 < timings["moshi_first_audio"] <= timings["moshi_total"] <= timings["total"]
    assert timings["asr"] > 0
    assert 0.0 <= response.audio_quality_score <= 1.0
    assert response.metadata["llm"]["finish_reason"] in ("silence", "length")
    # The turn is stored under the mode that answered.
    state = await moshi_manager.get_conversation_state("moshi-e2e")
    assert state is not None and state.turns[-1].mode is VoiceProcessingMode.MOSHI_ONLY
    assert state.turns[-1].assistant_text == response.text_content


async def test_moshi_streams_audio_as_it_arrives(moshi_manager: VoiceManager, speak: Speak) -> None:
    message = VoiceMessage(conversation_id="moshi-stream", audio_data=await speak("Hello there."))
    chunks = [
        c async for c in moshi_manager.process_streaming(message, VoiceProcessingMode.MOSHI_ONLY)
    ]
    kinds = [c.kind for c in chunks]
    # Moshi starts at once; the user's words, recognized alongside, arrive when ready.
    assert kinds.count("transcript") == 1 and kinds[-1] == "final"
    assert chunks[-1].metadata["transcript"] == "Hello there."
    audio = [c for c in chunks if c.kind == "audio"]
    # 80 ms frames, each its own chunk, arriving over time.
    assert len(audio) >= 4
    assert audio[0].elapsed_ms < audio[-1].elapsed_ms
    frame, rate = sf.read(io.BytesIO(audio[1].audio_data or b""))
    assert rate == 24000 and len(frame) == protocol.FRAME_SAMPLES
    assert [c.sequence for c in chunks] == list(range(len(chunks)))


async def test_busy_server_gives_a_timed_handshake_error(moshi_config: MoshiConfig) -> None:
    """The Python server serves one session at a time; a second waits for its handshake.

    The handshake timeout runs on a manual clock: it fires when the clock has moved
    by the configured second, not before, whatever the machine's speed.
    """
    url = moshi_config.server_url or ""
    first = await MoshiSession.open(moshi_config, url)
    try:
        clock = ManualClock()
        config = replace(moshi_config, handshake_timeout_seconds=1.0)
        opening = asyncio.create_task(MoshiSession.open(config, url, clock))
        # Connected, and now waiting for a handshake the busy server does not send.
        await asyncio.wait_for(clock.sleeping(1.0), HANG_GUARD_SECONDS)
        assert not opening.done()
        assert clock.advance(1.0) == 1  # the second is up: the handshake wait is given up
        with pytest.raises(MoshiConnectionError, match="no handshake .* within 1 s"):
            await asyncio.wait_for(opening, HANG_GUARD_SECONDS)
    finally:
        await first.close()
    # Once the first session ends, the server takes the next (no timeout on a clock at rest).
    again = await asyncio.wait_for(
        MoshiSession.open(moshi_config, url, ManualClock()), HANG_GUARD_SECONDS
    )
    await again.close()


async def test_refused_connection_is_a_typed_error() -> None:
    with pytest.raises(MoshiConnectionError, match="cannot connect"):
        await MoshiSession.open(MoshiConfig(), f"ws://127.0.0.1:{free_port()}/api/chat")
    with pytest.raises(MoshiConnectionError, match="not a websocket URL"):
        await MoshiSession.open(MoshiConfig(), "http://127.0.0.1:1/api/chat")


async def expire_each_wait(clock: ManualClock, seconds: float) -> None:
    """Whenever something waits ``seconds`` on ``clock``, move the clock to its end."""
    while True:
        ends = await clock.sleeping(seconds)
        clock.advance(ends - clock.now)


async def fault_mid_reply(
    victim: TinyMoshiServer,
    say: Say,
    fault: Callable[[], None],
    timeout: float | None,
    match: str | None = None,
) -> None:
    """Inject ``fault`` on the victim at Moshi's third audio piece; the reply must fail
    with a typed error matching ``match``, leaving no task behind.

    The receive timeout runs on a manual clock. With ``timeout`` None the clock never
    moves, so the error can only come from the fault itself; otherwise, once the fault
    is in, every wait for Moshi runs out after exactly ``timeout`` seconds on it.
    """
    clock = ManualClock()
    config = MoshiConfig(
        server_url=victim.url, max_response_seconds=30, receive_timeout_seconds=timeout or 5.0
    )
    before = asyncio.all_tasks()
    received = 0
    expiring: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            with pytest.raises(MoshiConnectionError, match=match):
                async for item in MoshiSpeechToSpeech(config, clock=clock).respond(
                    await say("Tell me a long story."), 16000
                ):
                    if not isinstance(item, str):
                        received += 1
                        if received == 3:
                            fault()
                            if timeout is not None:
                                expiring = asyncio.create_task(expire_each_wait(clock, timeout))
    finally:
        if expiring is not None:
            expiring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await expiring
    assert received >= 3
    await asyncio.sleep(0)
    assert asyncio.all_tasks() <= before | {asyncio.current_task()}


async def test_server_killed_mid_reply(moshi_dir: Path, say: Say) -> None:
    """A crash mid-reply: a typed error, the socket closed, no task left behind.

    No timeout can fire (its clock stands still): the crash itself is noticed.
    """
    victim = TinyMoshiServer(moshi_dir, free_port())
    victim.start()
    try:
        await fault_mid_reply(victim, say, victim.kill, timeout=None)
    finally:
        victim.stop()


async def test_server_that_stops_answering_times_out(moshi_dir: Path, say: Say) -> None:
    """A hung server (process stopped, socket open): a timed error, not a hang."""
    victim = TinyMoshiServer(moshi_dir, free_port())
    victim.start()
    try:
        await fault_mid_reply(victim, say, victim.freeze, timeout=1, match="sent nothing for 1 s")
    finally:
        victim.stop()


async def test_moshi_down_adaptive_falls_back_to_the_cascade(
    moshi_manager: VoiceManager,
    moshi_config: MoshiConfig,
    speak: Speak,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s2s = moshi_manager.engine.s2s
    assert isinstance(s2s, MoshiSpeechToSpeech)
    dead = replace(moshi_config, server_url=f"ws://127.0.0.1:{free_port()}/api/chat")
    monkeypatch.setattr(s2s, "pool", MoshiPool(dead))
    audio = await speak("Hello there.")

    # Explicit moshi_only: the typed error, and the conversation untouched.
    await moshi_manager.start_conversation("moshi-down")
    with pytest.raises(MoshiConnectionError, match="cannot connect"):
        await moshi_manager.process_voice_message(
            VoiceMessage(conversation_id="moshi-down", audio_data=audio),
            VoiceProcessingMode.MOSHI_ONLY,
        )
    state = await moshi_manager.get_conversation_state("moshi-down")
    assert state is not None and state.turns == []

    # Adaptive picks Moshi for small talk; it is down, so the cascade answers.
    response = await moshi_manager.process_voice_message(
        VoiceMessage(conversation_id="moshi-down-adaptive", audio_data=audio)
    )
    selection = response.metadata["mode_selection"]
    assert selection["requested"] == "adaptive"
    assert selection["fallback"] is True and selection["failed"] == "moshi_only"
    assert "moshi_only failed" in selection["reason"]
    assert response.processing_mode is VoiceProcessingMode.LLM_ENHANCED
    assert response.text_content.strip() and response.audio_data is not None


async def test_hybrid_races_moshi_against_the_cascade(
    moshi_manager: VoiceManager,
    moshi_config: MoshiConfig,
    speak: Speak,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audio = await speak("What is the capital of France?")
    response = await moshi_manager.process_voice_message(
        VoiceMessage(conversation_id="moshi-hybrid", audio_data=audio), VoiceProcessingMode.HYBRID
    )
    hybrid = response.metadata["hybrid"]
    by_mode = {c["mode"]: c for c in hybrid["candidates"]}
    assert set(by_mode) == {"moshi_only", "llm_enhanced"}
    assert response.processing_mode is VoiceProcessingMode.HYBRID
    # Both finish in the budget; random Moshi says nothing relevant, so the cascade wins.
    assert by_mode["moshi_only"]["score"] < by_mode["llm_enhanced"]["score"]
    assert hybrid["chosen"] == by_mode["llm_enhanced"]["responder"]
    assert "paris" in response.text_content.lower()

    # Moshi down: the cascade covers for it, and the failure is on record.
    s2s = moshi_manager.engine.s2s
    dead = replace(moshi_config, server_url=f"ws://127.0.0.1:{free_port()}/api/chat")
    monkeypatch.setattr(s2s, "pool", MoshiPool(dead))
    response = await moshi_manager.process_voice_message(
        VoiceMessage(conversation_id="moshi-hybrid", audio_data=audio), VoiceProcessingMode.HYBRID
    )
    failed = {c["mode"]: c["error"] for c in response.metadata["hybrid"]["candidates"]}
    assert "MoshiConnectionError" in (failed["moshi_only"] or "")
    assert "paris" in response.text_content.lower()


async def test_text_only_turn_never_goes_to_moshi(moshi_manager: VoiceManager) -> None:
    message = VoiceMessage("moshi-text", b"", text_content="Hi!")
    response = await moshi_manager.process_voice_message(message)
    assert response.processing_mode is not VoiceProcessingMode.MOSHI_ONLY
    excluded = response.metadata["mode_selection"]["adaptive"]["excluded"]
    assert "no audio" in excluded["moshi_only"]
    with pytest.raises(ConfigurationError, match="no audio"):
        await moshi_manager.process_voice_message(message, VoiceProcessingMode.MOSHI_ONLY)


def test_a_moshi_on_the_cpu_takes_none_of_the_gpu_budget(moshi_manager: VoiceManager) -> None:
    """The tiny server runs on the CPU (``device="cpu"``), so no GPU memory is set aside
    for it, however large its configured budget; a local CUDA Moshi's budget is
    reserved (tests/test_vram.py)."""
    assert moshi_manager.config.moshi.vram_budget_gb == 2.0
    vram = moshi_manager.get_stats()["vram"]
    assert vram["reservations"] == {}
    assert vram["reserved_gb"] == 0.0 and vram["available_gb"] == vram["limit_gb"]


async def test_live_bridge_reconnects_after_a_crash(moshi_dir: Path, say: Say) -> None:
    """A live call survives a server crash: backoff, a new session, audio flows again."""
    victim = TinyMoshiServer(moshi_dir, free_port())
    victim.start()
    config = MoshiConfig(
        server_url=victim.url, reconnect_attempts=8, reconnect_backoff_seconds=0.25
    )
    before = asyncio.all_tasks()
    seen: list[object] = []

    async def pump(bridge: MoshiLiveBridge) -> None:
        await bridge.send(await say("Hello there, how are you?"))
        while True:  # the microphone keeps capturing (silence), 80 ms at a time
            await bridge.send(np.zeros(1280, np.float32))
            await asyncio.sleep(0.08)

    try:
        async with MoshiLiveBridge(config, 16000) as bridge:
            microphone = asyncio.create_task(pump(bridge))
            restart: asyncio.Task[None] | None = None
            try:
                async with asyncio.timeout(90):
                    async for event in bridge.events():
                        seen.append(event)
                        audio = [e for e in seen if isinstance(e, MoshiAudio)]
                        if restart is None and len(audio) >= 5:
                            victim.kill()
                            restart = asyncio.create_task(asyncio.to_thread(victim.start))
                        reconnected = [i for i, e in enumerate(seen) if isinstance(e, Reconnected)]
                        after = (
                            [e for e in seen[reconnected[0] :] if isinstance(e, MoshiAudio)]
                            if reconnected
                            else []
                        )
                        if len(after) >= 5:
                            break
            finally:
                microphone.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await microphone
                if restart is not None:
                    await restart
            assert bridge.reconnects == 1
            assert bridge.dropped_samples > 0  # captured while down, not queued
    finally:
        victim.stop()
    (event,) = [e for e in seen if isinstance(e, Reconnected)]
    assert event.attempts >= 1 and event.error
    await asyncio.sleep(0)
    assert asyncio.all_tasks() <= before | {asyncio.current_task()}


async def test_a_pool_gives_each_session_a_server_of_its_own(
    moshi_server: TinyMoshiServer, moshi_dir: Path
) -> None:
    """Two genuine servers and a dead one: sessions spread, failures are skipped, re-checked."""
    second = TinyMoshiServer(moshi_dir, free_port())
    second.start()
    dead = f"ws://127.0.0.1:{free_port()}/api/chat"
    clock = [0.0]
    config = MoshiConfig(
        server_url=moshi_server.url, server_urls=(dead, second.url), recheck_seconds=10.0
    )
    pool = MoshiPool(config, now=lambda: clock[0])
    sessions: list[MoshiSession] = []
    try:
        sessions.append(await pool.session())  # the first server
        sessions.append(await pool.session())  # the dead one fails: the third
        served = {s.url.split("?")[0] for s in sessions}
        assert served == {moshi_server.url, second.url}
        assert pool.occupancy() == {"free": 0, "busy": 2, "unhealthy": 1}
        with pytest.raises(MoshiConnectionError, match="2 of 3 busy.*cannot connect"):
            await pool.session()  # the dead one, as a last resort, fails again
        (down,) = [s for s in pool.snapshot() if s["url"] == dead]
        assert down["failures"] == 2 and down["state"] == "unhealthy"
        await sessions.pop(0).close()
        assert pool.occupancy()["free"] == 1
        sessions.append(await pool.session())  # the freed server; the dead one is skipped
        assert [s["failures"] for s in pool.snapshot() if s["url"] == dead] == [2]
        await sessions.pop(0).close()
        clock[0] += 11.0  # its skip is over: the next session tries it again first
        assert pool.occupancy() == {"free": 2, "busy": 1, "unhealthy": 0}
        sessions.append(await pool.session())
        assert [s["failures"] for s in pool.snapshot() if s["url"] == dead] == [3]
    finally:
        for session in sessions:
            await session.close()
        second.stop()
    assert pool.occupancy()["busy"] == 0  # every closed session freed its server


async def test_a_session_cancelled_while_opening_frees_its_server(
    moshi_config: MoshiConfig,
) -> None:
    """A hybrid race lost during the handshake: the pool's server is free again at once.

    The genuine server is busy with a session of its own, so the pool's session waits
    for its handshake (on a clock at rest) until it is cancelled.
    """
    url = moshi_config.server_url or ""
    clock = ManualClock()
    pool = MoshiPool(moshi_config, clock=clock)
    first = await MoshiSession.open(moshi_config, url)
    try:
        opening = asyncio.create_task(pool.session())
        await asyncio.wait_for(
            clock.sleeping(moshi_config.handshake_timeout_seconds), HANG_GUARD_SECONDS
        )
        assert pool.occupancy()["busy"] == 1
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        assert pool.occupancy() == {"free": 1, "busy": 0, "unhealthy": 0}
    finally:
        await first.close()
    again = await asyncio.wait_for(pool.session(), HANG_GUARD_SECONDS)  # not "1 of 1 busy"
    await again.close()
