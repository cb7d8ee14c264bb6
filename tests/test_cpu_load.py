"""Other processes' share of the CPU: the arithmetic, the once-only warning, and a real reading."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from optuna_spikenas.cpu_load import (
    PROC_STAT,
    CpuReading,
    LoadWatch,
    ThreadsUnderLoad,
    machine_busy_seconds,
    others_share,
    read_cpu,
)
from optuna_spikenas.summary import elapsed_line

# user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks
STAT = "cpu  1000 20 300 5000 400 6 7 8 0 0\ncpu0 500 10 150 2500 200 3 3 4 0 0\nintr 1\n"


def test_busy_time_is_everything_but_idle_and_iowait():
    ticks = os.sysconf("SC_CLK_TCK")
    assert machine_busy_seconds(STAT) == pytest.approx((1000 + 20 + 300 + 6 + 7 + 8) / ticks)
    with pytest.raises(ValueError):
        machine_busy_seconds("intr 1\n")


def test_share_is_the_machines_busy_time_beyond_this_process_over_its_capacity():
    before = CpuReading(wall=100.0, machine_busy=50.0, own=10.0)
    # 30 s on 2 CPUs (60 CPU s): the machine was busy 45 s, 15 of them this process
    after = CpuReading(wall=130.0, machine_busy=95.0, own=25.0)
    assert others_share(before, after, cpus=2) == pytest.approx(0.5)
    assert others_share(before, after, cpus=4) == pytest.approx(0.25)
    # clock granularity can make "others" slightly negative, or above the capacity: clipped
    assert others_share(before, CpuReading(130.0, 60.0, 25.0), cpus=2) == 0.0
    assert others_share(before, CpuReading(130.0, 200.0, 10.0), cpus=2) == 1.0


class Clocks:
    """Readings a test controls: each window, other processes take ``share`` of 2 CPUs."""

    def __init__(self) -> None:
        self.now = CpuReading(0.0, 0.0, 0.0)

    def advance(self, seconds: float, share: float, own: float = 0.5) -> None:
        n = self.now
        others = share * 2 * seconds
        self.now = CpuReading(n.wall + seconds, n.machine_busy + others + own, n.own + own)

    def __call__(self) -> CpuReading:
        return self.now


def test_warns_once_when_a_full_window_crosses_the_threshold():
    clocks, said = Clocks(), []
    watch = LoadWatch(said.append, window=30, threshold=0.25, read=clocks, cpus=2)
    clocks.advance(20, share=0.9)
    assert watch.check() is None and said == []  # the window is not over yet
    clocks.advance(10, share=0.9)  # 30 s: (0.9 * 20 + 0.9 * 10) * 2 / 60
    assert watch.check() == pytest.approx(0.9)
    assert said == [
        "note: other processes used 90% of the 2 CPUs over the last 30 s; timings will be "
        "slower than on a quiet machine (README's times)"
    ]
    clocks.advance(30, share=0.1)
    assert watch.check() == pytest.approx(0.1)
    clocks.advance(30, share=0.8)
    assert watch.check() == pytest.approx(0.8)
    assert len(said) == 1  # once per run
    assert watch.overall_share() == pytest.approx((0.9 * 30 + 0.1 * 30 + 0.8 * 30) / 90)


def test_a_quiet_machine_gets_no_warning_and_no_reading_means_silence():
    clocks, said = Clocks(), []
    watch = LoadWatch(said.append, window=30, threshold=0.25, read=clocks, cpus=2)
    for _ in range(4):
        clocks.advance(30, share=0.2)
        assert watch.check() == pytest.approx(0.2)
    assert said == []
    nothing = LoadWatch(said.append, window=0.01, read=lambda: None)
    with nothing:  # no /proc/stat (macOS, Windows): no thread, no line
        time.sleep(0.05)
        assert nothing.check() is None and nothing.overall_share() is None
    assert said == []
    assert elapsed_line(nothing).startswith("search ran ") and "CPUs" not in elapsed_line(nothing)


def test_the_watch_thread_checks_each_window_while_the_run_goes_on():
    clocks, said = Clocks(), []

    def read() -> CpuReading:
        clocks.advance(1.0, share=0.75)  # every look sees another busy second
        return clocks()

    with LoadWatch(said.append, window=0.01, threshold=0.5, read=read, cpus=2) as watch:
        deadline = time.monotonic() + 10
        while not said and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(said) == 1 and "75% of the 2 CPUs" in said[0]
    assert watch._thread is None  # stopped when the block ended
    assert "other processes used 75% of the 2 CPUs meanwhile" in elapsed_line(watch)


@pytest.mark.skipif(not PROC_STAT.exists(), reason="needs Linux's /proc/stat")
def test_a_process_spinning_beside_this_one_shows_in_the_share():
    before = read_cpu()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.5)
        after = read_cpu()  # before waiting for it: a waited-for child counts as this process
    finally:
        spinner.kill()
        spinner.wait()
    assert before is not None and after is not None
    # one busy core of os.cpu_count(), less what other processes leave it on a busy machine,
    # which they then take themselves
    assert others_share(before, after, os.cpu_count() or 1) >= 0.4 / (os.cpu_count() or 1)


def test_a_busy_machine_runs_the_search_on_one_thread_until_it_is_quiet_again():
    """The watch decides on its own thread; the change reaches PyTorch between trials, on the
    search's thread, and each change is said in one line."""
    clocks, said, set_to = Clocks(), [], []
    threads = ThreadsUnderLoad(2, set_to.append, said.append, threshold=0.25)
    watch = LoadWatch(lambda _: None, window=10, read=clocks, cpus=2, on_window=threads.observe)
    clocks.advance(10, share=0.1)
    watch.check()
    threads.apply()
    assert set_to == [] and said == []  # quiet: PyTorch's own count stays
    clocks.advance(10, share=0.5)
    watch.check()
    assert set_to == []  # decided, not applied: the watch's thread does not touch PyTorch
    threads.apply()
    assert set_to == [1] and "running on 1 thread" in said[0] and "50%" in said[0]
    threads.apply()
    assert set_to == [1]  # no change, nothing said
    clocks.advance(10, share=0.05)
    watch.check()
    threads.apply()
    assert set_to == [1, 2] and said[1] == "the CPUs are quiet again: back to 2 threads"


def test_optimize_without_threads_switches_pytorch_between_trials(monkeypatch):
    """cmd_optimize's callback applies the decision with torch.set_num_threads."""
    import torch

    from optuna_spikenas.cli.commands import threads_under_load

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        threads = threads_under_load(lambda _: None)
        assert threads is not None and threads.threads == 2
        threads.observe(0.9)
        threads.apply()
        assert torch.get_num_threads() == 1
        threads.observe(0.0)
        threads.apply()
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert threads_under_load(lambda _: None) is None  # one thread anyway: nothing to do
    finally:
        torch.set_num_threads(before)
