"""The VRAM manager: reservations against a budget, and against the GPU's free memory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from coda.gpu.vram import GpuMemory, VRAMManager, query_gpu, reserve_for_moshi
from coda.voice import MoshiConfig, VoiceConfig, VoiceManager, VRAMAllocationError


def test_reservations_stay_within_the_budget() -> None:
    vram = VRAMManager(limit_gb=32.0, probe=lambda: None)
    vram.reserve("moshi", 24.0)
    vram.reserve("whisper", 2.0)
    assert vram.reserved_gb == 26.0 and vram.available_gb == 6.0
    with pytest.raises(VRAMAllocationError, match=r"llm needs 8.0 GiB .* only 6.0 of the 32.0"):
        vram.reserve("llm", 8.0)
    with pytest.raises(VRAMAllocationError, match="already holds"):
        vram.reserve("moshi", 1.0)
    with pytest.raises(VRAMAllocationError, match="negative"):
        vram.reserve("odd", -1.0)
    assert vram.reserved_gb == 26.0  # refused reservations leave nothing behind
    stats = vram.stats()
    assert stats["reservations"] == {"moshi": 24.0, "whisper": 2.0}
    assert stats["accounting_only"] is True and stats["gpu"] is None
    assert vram.release("moshi") == 24.0 and vram.release("moshi") == 0.0
    vram.reserve("llm", 8.0)  # fits now
    vram.release_all()
    assert vram.reserved_gb == 0.0 and vram.available_gb == 32.0


def test_reservation_must_fit_the_gpus_free_memory() -> None:
    # Injected: a GPU with 10 GiB free, which this machine (no GPU) cannot produce.
    def fake_gpu_with_10_gib_free() -> GpuMemory:
        return GpuMemory("fake H100", total_gb=80.0, free_gb=10.0)

    vram = VRAMManager(limit_gb=64.0, probe=fake_gpu_with_10_gib_free)
    with pytest.raises(VRAMAllocationError, match="fake H100 has only 10.0 GiB free"):
        vram.reserve("moshi", 24.0)
    vram.reserve("whisper", 2.0)
    assert vram.stats()["gpu"] == {"name": "fake H100", "total_gb": 80.0, "free_gb": 10.0}
    assert vram.stats()["accounting_only"] is False


def test_the_real_gpu_decides_what_a_reservation_is_checked_against() -> None:
    """No GPU: only the budget limits reservations. A GPU: its free memory does too."""
    vram = VRAMManager(limit_gb=100_000.0)  # the default probe: this machine's GPU, if any
    beyond_any_gpu = 50_000.0
    gpu = query_gpu()
    if gpu is None:  # no NVIDIA driver: accounting only, so the budget alone decides
        vram.reserve("moshi", beyond_any_gpu)
        assert vram.reserved_gb == beyond_any_gpu
        with pytest.raises(VRAMAllocationError, match="budget is left"):
            vram.reserve("llm", 60_000.0)
        assert vram.stats()["accounting_only"] is True
    else:  # the driver's figures are real, and a reservation must fit what is free
        assert 0 < gpu.free_gb <= gpu.total_gb
        with pytest.raises(VRAMAllocationError, match=f"{gpu.name} has only .* GiB free"):
            vram.reserve("moshi", beyond_any_gpu)
        fits = min(1.0, gpu.free_gb / 2)
        vram.reserve("whisper", fits)
        stats = vram.stats()
        assert stats["reservations"] == {"whisper": fits} and stats["gpu"]["name"] == gpu.name
        assert stats["accounting_only"] is False


async def test_manager_refuses_to_start_over_budget(base_config: VoiceConfig) -> None:
    moshi = MoshiConfig(
        server_url="ws://127.0.0.1:8998/api/chat", device="cuda", vram_budget_gb=40.0
    )
    config = VoiceConfig(llm=base_config.llm, moshi=moshi, vram_limit_gb=32.0)
    voice = VoiceManager(config)
    with pytest.raises(VRAMAllocationError, match="moshi needs 40.0 GiB"):
        await voice.initialize()
    assert voice.get_stats()["vram"]["reserved_gb"] == 0.0
    assert not voice.engine.initialized


async def test_cleanup_releases_what_initialize_reserved(
    base_config: VoiceConfig, tmp_path: Path
) -> None:
    moshi = MoshiConfig(
        server_url="ws://localhost:8998/api/chat", device="cuda", vram_budget_gb=24.0
    )
    config = replace(
        base_config,
        moshi=moshi,
        store_path=str(tmp_path / "vram.sqlite3"),
        enable_optimization=False,
    )
    voice = VoiceManager(config)
    await voice.initialize()
    try:
        assert voice.get_stats()["vram"]["reservations"] == {"moshi": 24.0}
    finally:
        await voice.cleanup()
    assert voice.get_stats()["vram"]["reserved_gb"] == 0.0
    # A remote Moshi does not use this machine's GPU: nothing is reserved for it.
    remote = replace(config, moshi=replace(moshi, server_url="ws://10.0.0.7:8998/api/chat"))
    voice = VoiceManager(remote)
    reserve_for_moshi(voice.engine.vram, voice.config.moshi)
    assert voice.get_stats()["vram"]["reserved_gb"] == 0.0


def test_each_local_moshi_server_of_a_pool_reserves_its_budget() -> None:
    pool = MoshiConfig(
        server_url="ws://127.0.0.1:8998/api/chat",
        server_urls=("ws://localhost:8999/api/chat", "ws://10.0.0.7:8998/api/chat"),
        device="cuda",
        vram_budget_gb=12.0,
    )
    vram = VRAMManager(32.0)
    reserve_for_moshi(vram, pool)  # two servers on this machine's GPU, one elsewhere
    assert vram.stats()["reservations"] == {"moshi": 12.0, "moshi-2": 12.0}
    with pytest.raises(VRAMAllocationError):
        reserve_for_moshi(VRAMManager(20.0), pool)
    reserve_for_moshi(cpu := VRAMManager(1.0), replace(pool, device="cpu"))
    assert cpu.stats()["reserved_gb"] == 0.0
