"""How busy the machine was during a benchmark: shared by the scripts in this folder. The
measurement is the package's (``optuna_spikenas.cpu_load``, which ``optimize`` uses too)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from optuna_spikenas.cpu_load import PROC_STAT, machine_busy_seconds, others_share, read_cpu
from optuna_spikenas.cpu_load import own_cpu_seconds as own_cpu_seconds

__all__ = ["Probe", "busy_cpu_seconds", "cpu_model", "own_cpu_seconds"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's machine type elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy (all processes), from ``/proc/stat``
    (Linux only; None elsewhere)."""
    try:
        return machine_busy_seconds(PROC_STAT.read_text())
    except (OSError, ValueError):
        return None


class Probe:
    """Wall time, own CPU time, and the share of the machine's CPU other processes took."""

    def __init__(self) -> None:
        self.start = read_cpu()
        self.wall, self.own = time.perf_counter(), own_cpu_seconds()

    def report(self) -> dict[str, Any]:
        wall, own = time.perf_counter() - self.wall, own_cpu_seconds() - self.own
        out: dict[str, Any] = {"wall_seconds": round(wall, 2), "own_cpu_seconds": round(own, 2)}
        end = read_cpu()
        if self.start is not None and end is not None:
            share = others_share(self.start, end, os.cpu_count() or 1)
            out["other_processes_cpu_share"] = round(share, 3)
        return out

