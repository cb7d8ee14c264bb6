"""How busy the machine was during a benchmark: shared by the scripts in this folder."""

from __future__ import annotations

import os
from pathlib import Path


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
    """CPU seconds this process has used."""
    times = os.times()
    return times.user + times.system
