"""How much of the machine's CPU other processes take while this one runs.

A search's times (README's included) are those of a quiet machine: on a busy 2-core machine a
quickstart trial can take several times as long. :class:`LoadWatch` measures, over windows of
``window`` seconds (10 by default),

    other processes' share = (CPU seconds the machine spent busy - CPU seconds this process used)
                             / (wall seconds x CPUs of the machine)

and warns once, the first time a window's share reaches ``threshold`` (a quarter of the
machine by default: on 2 CPUs, half a core busy with something else). The machine's busy time is
the ``cpu`` line of Linux's ``/proc/stat`` (user, nice, system, irq, softirq, steal: everything
but idle and iowait), this process's time is ``os.times`` (all its threads, and child processes
it has waited for). Other workers of the same study are other processes: they count. Where
``/proc/stat`` cannot be read (macOS, Windows) nothing is measured and nothing is printed.

:class:`ThreadsUnderLoad` acts on it: PyTorch's threads wait for each other at every barrier,
so beside one busy process a quickstart trial on 2 threads took 4.2 times as long, on 1 thread
1.06 times (``benchmarks/thread_contention.py``, 2 CPUs: 0.96 s quiet and 4.02 s busy on 2
threads, 1.47 s and 1.56 s on 1). A search without ``--threads`` runs on all the threads PyTorch
chose while the machine is quiet and on one while other processes take ``threshold`` of it.

No torch, no Optuna: the benchmarks use it too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PROC_STAT = Path("/proc/stat")
WINDOW_SECONDS = 10.0
THRESHOLD = 0.25  # share of the machine's CPU time taken by other processes that warns


@dataclass(frozen=True)
class CpuReading:
    """One look at the clocks: wall time, the machine's busy CPU time, this process's CPU time
    (all in seconds; only differences between two readings mean anything)."""

    wall: float
    machine_busy: float
    own: float


def machine_busy_seconds(stat_text: str) -> float:
    """CPU seconds the whole machine has spent busy, from the text of ``/proc/stat``."""
    first = stat_text.split("\n", 1)[0].split()
    if not first or first[0] != "cpu" or len(first) < 9:
        raise ValueError("not the text of /proc/stat")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds this process (every thread) and its waited-for child processes have used."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def read_cpu() -> CpuReading | None:
    """The clocks now, or None where the machine's CPU time cannot be read (no Linux /proc)."""
    try:
        busy = machine_busy_seconds(PROC_STAT.read_text())
    except (OSError, ValueError):
        return None
    return CpuReading(time.monotonic(), busy, own_cpu_seconds())


def others_share(before: CpuReading, after: CpuReading, cpus: int) -> float:
    """The share (0 to 1) of the machine's CPU time between two readings that other processes
    used: what the machine was busy with beyond this process, over wall time x ``cpus``."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    others = (after.machine_busy - before.machine_busy) - (after.own - before.own)
    return min(1.0, max(0.0, others / (wall * cpus)))


def load_warning(share: float, cpus: int, seconds: float) -> str:
    return (
        f"note: other processes used {share:.0%} of the {cpus} CPUs over the last {seconds:.0f} s;"
        " timings will be slower than on a quiet machine (README's times)"
    )


class LoadWatch:
    """Watches other processes' share of the CPU while a search runs; warns once through
    ``warn`` when a window's share reaches ``threshold``, and knows the whole run's share.

    As a context manager it checks every ``window`` seconds on a background thread; tests call
    :meth:`check` themselves with an injected ``read``.
    """

    def __init__(
        self,
        warn: Callable[[str], None],
        window: float = WINDOW_SECONDS,
        threshold: float = THRESHOLD,
        read: Callable[[], CpuReading | None] = read_cpu,
        cpus: int | None = None,
        on_window: Callable[[float], None] | None = None,
    ) -> None:
        self.warn = warn
        self.on_window = on_window  # told each window's share (e.g. ThreadsUnderLoad.observe)
        self.window = window
        self.threshold = threshold
        self.read = read
        self.cpus = cpus or os.cpu_count() or 1
        self.started = time.monotonic()
        self.first = self.window_start = read()
        self.warned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> float | None:
        """Other processes' share over the window ending now, once it has lasted ``window``
        seconds (it then starts the next window); None while it has not, or with no readings."""
        if self.window_start is None:
            return None
        now = self.read()
        if now is None or now.wall - self.window_start.wall < self.window:
            return None
        share = others_share(self.window_start, now, self.cpus)
        if share >= self.threshold and not self.warned:
            self.warned = True
            self.warn(load_warning(share, self.cpus, now.wall - self.window_start.wall))
        if self.on_window is not None:
            self.on_window(share)
        self.window_start = now
        return share

    def overall_share(self) -> float | None:
        """Other processes' share since the watch was made (None with no readings)."""
        if self.first is None:
            return None
        now = self.read()
        return None if now is None else others_share(self.first, now, self.cpus)

    @property
    def elapsed(self) -> float:
        """Wall seconds since the watch was made."""
        return time.monotonic() - self.started

    def _run(self) -> None:
        while not self._stop.wait(self.window):
            self.check()

    def __enter__(self) -> LoadWatch:
        if self.first is not None:  # silent where nothing can be read
            self._thread = threading.Thread(target=self._run, name="load-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class ThreadsUnderLoad:
    """The thread count a search runs with: ``threads`` (PyTorch's own choice) while the machine
    is quiet, one while other processes take at least ``threshold`` of it.

    The watch's thread decides (:meth:`observe`, a ``LoadWatch`` ``on_window``); the search's
    own thread applies the decision between trials (:meth:`apply`), since a thread count set on
    one thread does not reach PyTorch's parallel regions started from another. ``set_threads``
    is ``torch.set_num_threads``; ``say`` reports each change in one line.
    """

    def __init__(
        self,
        threads: int,
        set_threads: Callable[[int], None],
        say: Callable[[str], None],
        threshold: float = THRESHOLD,
    ) -> None:
        self.threads = self.current = self.wanted = threads
        self.set_threads = set_threads
        self.say = say
        self.threshold = threshold
        self.share = 0.0

    def observe(self, share: float) -> None:
        self.share = share
        self.wanted = 1 if share >= self.threshold else self.threads

    def apply(self, *_: object) -> None:
        """Switch to the wanted thread count (an Optuna callback: called after each trial)."""
        wanted = self.wanted
        if wanted == self.current:
            return
        self.set_threads(wanted)
        self.current = wanted
        if wanted == 1:
            self.say(
                f"other processes take {self.share:.0%} of the CPUs: running on 1 thread while "
                f"they do (PyTorch's {self.threads} threads slow down several times beside a "
                "busy process; --threads N fixes the count)"
            )
        else:
            self.say(f"the CPUs are quiet again: back to {wanted} threads")
