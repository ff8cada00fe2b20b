"""The VRAM manager: reservations against a budget, checked against the real GPU.

Components reserve what they will need before loading a model and release it on
cleanup. With an NVIDIA GPU present, each reservation is also checked against the
device's free memory as reported by the driver (NVML); without one, the manager
only keeps the accounts, so a configuration that would not fit is still refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from coda.core.errors import VRAMAllocationError
from coda.core.provider_config import MoshiConfig

log = logging.getLogger(__name__)

GIB = 1024**3


@dataclass(frozen=True)
class GpuMemory:
    """One GPU's memory as the driver reports it, in GiB."""

    name: str
    total_gb: float
    free_gb: float


def query_gpu(index: int = 0) -> GpuMemory | None:
    """Free and total memory of GPU ``index``, or None without an NVIDIA driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        return GpuMemory(
            name if isinstance(name, str) else name.decode(),
            memory.total / GIB,
            memory.free / GIB,
        )
    except pynvml.NVMLError as exc:
        log.warning("GPU %d could not be queried: %s", index, exc)
        return None
    finally:
        pynvml.nvmlShutdown()


class VRAMManager:
    """Keeps GPU memory reservations within ``limit_gb`` and within what is free.

    Args:
        limit_gb: The budget all reservations together may use.
        probe: Reads the GPU's memory (None when there is no GPU).
    """

    def __init__(self, limit_gb: float, probe: Callable[[], GpuMemory | None] = query_gpu) -> None:
        if limit_gb < 0:
            raise ValueError("limit_gb must not be negative")
        self.limit_gb = limit_gb
        self._probe = probe
        self._reservations: dict[str, float] = {}

    @property
    def reserved_gb(self) -> float:
        """GiB reserved in all."""
        return sum(self._reservations.values())

    @property
    def available_gb(self) -> float:
        """GiB of the budget not yet reserved."""
        return self.limit_gb - self.reserved_gb

    def reserve(self, component: str, gb: float) -> None:
        """Reserve ``gb`` GiB for ``component``.

        Raises:
            VRAMAllocationError: If it exceeds the budget left, or the GPU's free memory,
                or ``component`` already holds a reservation.
        """
        if gb < 0:
            raise VRAMAllocationError(f"{component} asked for a negative amount ({gb} GiB)")
        if component in self._reservations:
            raise VRAMAllocationError(
                f"{component} already holds {self._reservations[component]:.1f} GiB"
            )
        if gb > self.available_gb + 1e-9:
            raise VRAMAllocationError(
                f"{component} needs {gb:.1f} GiB of GPU memory but only {self.available_gb:.1f} "
                f"of the {self.limit_gb:.1f} GiB budget is left (vram_limit_gb)"
            )
        gpu = self._probe()
        if gpu is not None and gb > gpu.free_gb:
            raise VRAMAllocationError(
                f"{component} needs {gb:.1f} GiB but {gpu.name} has only {gpu.free_gb:.1f} GiB free"
            )
        self._reservations[component] = gb
        log.info("reserved %.1f GiB of GPU memory for %s", gb, component)

    def release(self, component: str) -> float:
        """Free ``component``'s reservation; returns the GiB released (0 if none)."""
        return self._reservations.pop(component, 0.0)

    def release_all(self) -> None:
        """Free every reservation."""
        self._reservations.clear()

    def stats(self) -> dict[str, Any]:
        """Budget, reservations, and the GPU's own figures (None without a GPU)."""
        gpu = self._probe()
        return {
            "limit_gb": self.limit_gb,
            "reserved_gb": round(self.reserved_gb, 3),
            "available_gb": round(self.available_gb, 3),
            "reservations": dict(self._reservations),
            "gpu": asdict(gpu) if gpu is not None else None,
            "accounting_only": gpu is None,
        }


def reserve_for_moshi(vram: VRAMManager, moshi: MoshiConfig) -> None:
    """Reserve Moshi's budget when its server runs on this machine's GPU, before loading.

    A Moshi server on this machine's GPU shares it with Coda, so its budget
    counts; a remote one does not.

    Raises:
        VRAMAllocationError: If the budget does not fit.
    """
    if not moshi.device.startswith("cuda"):
        return
    hosts = [urlsplit(url).hostname or "" for url in moshi.servers()]
    local = [h for h in hosts if h in ("localhost", "::1") or h.startswith("127.")]
    for index in range(len(local)):  # each local server holds a model of its own
        vram.reserve("moshi" if index == 0 else f"moshi-{index + 1}", moshi.vram_budget_gb)
