"""How busy the machine was during a benchmark: shared by the scripts in this folder."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


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
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields)
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds this process and its finished (waited-for) child processes have used."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class Probe:
    """Wall time, own CPU time, and the share of the machine's CPU other processes took."""

    def __init__(self) -> None:
        self.wall, self.busy, self.own = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()

    def report(self) -> dict[str, Any]:
        wall, own = time.perf_counter() - self.wall, own_cpu_seconds() - self.own
        out: dict[str, Any] = {"wall_seconds": round(wall, 2), "own_cpu_seconds": round(own, 2)}
        busy = busy_cpu_seconds()
        if busy is not None and self.busy is not None:
            others = max(0.0, busy - self.busy - own)
            out["other_processes_cpu_share"] = round(others / (wall * (os.cpu_count() or 1)), 3)
        return out
