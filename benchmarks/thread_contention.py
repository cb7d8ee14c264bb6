"""Which torch thread count degrades least when another process competes for the CPU.

A newcomer on a busy 2-core machine measured the quickstart at 2-5x README's times, with bursts
of 10-25 s trials: PyTorch's multi-threaded CPU kernels wait for every thread at each barrier,
so one core taken by another process can stall all of them. This script measures it.

The work timed is a quickstart scoring trial: ``SpikeNASObjective(studies/quickstart.toml)``'s
``score(arch)`` (SAHD, 32 initialisations of a 2-cell, width-16 ``light`` network on a batch of
32 Animal-MNIST images, T = 5), nearly all of what a quickstart trial spends its time on. The
architectures are seeded random valid forward cells within the quickstart's budget.

Conditions: ``torch.set_num_threads`` 1 and 2 (``--threads``), each on the machine as it is
(``quiet``) and with a competitor (``busy``): ``--competitors`` processes (1 by default), each a
pure-Python busy loop (one core each), started 0.3 s before the timing and killed after it.
Each repeat times every condition once, on the same architecture (the next repeat takes the
next one), in an order rotated from repeat to repeat, so that drift in the machine's load hits
every condition alike; one untimed score per thread count warms up first.

Reported per thread count: the median seconds of a trial quiet and busy, the slowdown busy /
quiet (the ratio of the medians, and the median of the per-repeat ratios: the same
architecture in the same repeat), and which thread count is fastest quiet, fastest busy and
least slowed down. ``optuna_spikenas.cpu_load`` measures the share of the CPUs other processes
took during each sample (the competitor included): quiet samples above 5 % are counted as
disturbed, and the report says to rerun on a quiet machine. The default thread count of
``optimize`` is torch's own choice unless ``--threads`` is given (``cli/commands.py``'s
``cmd_optimize``); this script records what torch chooses here.

Rerun on an otherwise quiet machine (from the repository root):

    .venv/bin/python benchmarks/thread_contention.py          # 3-10 minutes on 2 cores
    .venv/bin/python benchmarks/thread_contention.py --quick  # about a minute

The 2-thread samples beside a busy process are the slow ones: on a shared 2-core machine a
1.4 s trial took 20-54 s there. ``--quick`` therefore scores 8 initialisations instead of 32
(a quarter of the work per trial; the ratios are what it checks) and 2 repeats.

It writes ``benchmarks/results/thread_contention/thread_contention.json``
(``thread_contention_quick.json`` with ``--quick``; ``--out`` another folder) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from machine_load import cpu_model  # noqa: E402

from optuna_spikenas.config import load_config  # noqa: E402
from optuna_spikenas.cpu_load import others_share, read_cpu  # noqa: E402
from optuna_spikenas.objective import SpikeNASObjective  # noqa: E402
from optuna_spikenas.space import EDGES, OPS, Architecture, Cell  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "studies" / "quickstart.toml"
OUT = REPO / "benchmarks" / "results" / "thread_contention"
SEED = 0
SETTLE_SECONDS = 0.3  # a competitor's start-up before the timing begins
DISTURBED_SHARE = 0.05  # above this share of the CPUs, a quiet sample was not quiet
BUSY_LOOP = "while True: pass"
QUICK_INITS = 8


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quickstart_architectures(objective: SpikeNASObjective, count: int) -> list[Architecture]:
    """``count`` distinct random valid forward architectures that fit the quickstart's budget
    (the ones its trials score), seeded."""
    space = objective.space
    rng = random.Random(SEED)
    found: list[Architecture] = []
    seen: set[str] = set()
    while len(found) < count:
        cell = Cell.from_edges({edge: rng.randrange(len(OPS)) for edge in EDGES})
        arch = Architecture((cell,) * space.num_cells[0], space.widths[0])
        key = str(cell.canonical())
        if cell.is_valid() and key not in seen and objective.fits_budget(arch):
            seen.add(key)
            found.append(arch)
    return found


class Competitors:
    """``count`` busy-loop processes while the block runs (none for 0)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> Competitors:
        self.processes = [
            subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(self.count)
        ]
        if self.processes:
            time.sleep(SETTLE_SECONDS)
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait()


def timed_score(objective: SpikeNASObjective, arch: Architecture, threads: int, busy: int) -> dict:
    """One scoring trial at ``threads`` torch threads beside ``busy`` competitors: its seconds
    and the share of the CPUs other processes took meanwhile (None without /proc/stat)."""
    torch.set_num_threads(threads)
    with Competitors(busy):
        before = read_cpu()
        started = time.perf_counter()
        objective.score(arch)
        seconds = time.perf_counter() - started
        after = read_cpu()  # before the competitors are waited for: they count as others
    share = None
    if before is not None and after is not None:
        share = round(others_share(before, after, os.cpu_count() or 1), 3)
    return {"seconds": round(seconds, 4), "others_share": share}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def summarize(samples: list[dict], thread_counts: list[int]) -> dict[str, Any]:
    per_threads: dict[str, Any] = {}
    for threads in thread_counts:
        quiet = [s for s in samples if s["threads"] == threads and s["competitors"] == 0]
        busy = [s for s in samples if s["threads"] == threads and s["competitors"] > 0]
        paired = [
            b["seconds"] / q["seconds"]
            for q in quiet
            for b in busy
            if b["repeat"] == q["repeat"] and q["seconds"] > 0
        ]
        quiet_median = median([s["seconds"] for s in quiet])
        busy_median = median([s["seconds"] for s in busy])
        per_threads[str(threads)] = {
            "quiet_seconds": quiet_median,
            "busy_seconds": busy_median,
            "quiet_seconds_min": round(min(s["seconds"] for s in quiet), 4),
            "busy_seconds_max": round(max(s["seconds"] for s in busy), 4),
            "slowdown": round(busy_median / quiet_median, 3),
            "paired_slowdown": round(statistics.median(paired), 3),
        }

    def best(key: str) -> int:
        return int(min(per_threads, key=lambda t: per_threads[t][key]))

    quiet_shares = [
        s["others_share"]
        for s in samples
        if s["competitors"] == 0 and s["others_share"] is not None
    ]
    busy_shares = [
        s["others_share"] for s in samples if s["competitors"] > 0 and s["others_share"] is not None
    ]
    return {
        "per_threads": per_threads,
        "fastest_quiet": best("quiet_seconds"),
        "fastest_busy": best("busy_seconds"),
        "least_slowdown": best("paired_slowdown"),
        "quiet_others_share_median": round(statistics.median(quiet_shares), 3)
        if quiet_shares
        else None,
        "quiet_samples_disturbed": sum(share > DISTURBED_SHARE for share in quiet_shares),
        "busy_others_share_median": round(statistics.median(busy_shares), 3)
        if busy_shares
        else None,
    }


def print_table(report: dict[str, Any]) -> None:
    m, s = report["machine"], report["summary"]
    print(
        f"quickstart scoring trial ({report['work']}), {report['repeats']} repeats, "
        f"{report['competitors']} busy-loop competitor(s); {m['cpu_count']} CPUs "
        f"({m['cpu_model']}), torch {m['torch']} (its default: {m['torch_default_threads']} "
        "threads)"
    )
    print(f"{'threads':>7}  {'quiet s':>8}  {'busy s':>8}  {'slowdown':>8}  {'paired':>7}")
    for threads, row in s["per_threads"].items():
        print(
            f"{threads:>7}  {row['quiet_seconds']:8.3f}  {row['busy_seconds']:8.3f}  "
            f"{row['slowdown']:7.2f}x  {row['paired_slowdown']:6.2f}x"
        )
    print(
        f"fastest quiet: {s['fastest_quiet']} thread(s); fastest busy: {s['fastest_busy']}; "
        f"least slowed down: {s['least_slowdown']}"
    )
    share = s["quiet_others_share_median"]
    if share is not None:
        print(
            f"other processes during the quiet samples: median {share:.0%} of the CPUs, "
            f"{s['quiet_samples_disturbed']} sample(s) above {DISTURBED_SHARE:.0%}; with the "
            f"competitor(s): median {s['busy_others_share_median']:.0%}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time a quickstart scoring trial at 1 and 2 torch threads, quiet and beside "
        "a busy process."
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 repeats of 8 initialisations: about a minute"
    )
    parser.add_argument("--repeats", type=int, help="timed repeats of each condition (8; quick 2)")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts (1 2)"
    )
    parser.add_argument(
        "--competitors", type=int, default=1, help="busy-loop processes in the busy samples (1)"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder of the JSON ({OUT})")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 8)
    if repeats < 1 or args.competitors < 1 or min(args.threads) < 1:
        parser.error("--repeats, --competitors and --threads must be >= 1")

    default_threads = torch.get_num_threads()
    started = time.perf_counter()
    config = load_config(QUICKSTART)
    if args.quick:
        config = replace(config, score=replace(config.score, inits=QUICK_INITS))
    objective = SpikeNASObjective(config, device="cpu")
    archs = quickstart_architectures(objective, repeats)
    for threads in args.threads:  # warm-up: first-call costs out of the timings
        torch.set_num_threads(threads)
        objective.score(archs[0])
    conditions = [(t, c) for c in (0, args.competitors) for t in args.threads]
    samples = []
    for repeat in range(repeats):
        shift = repeat % len(conditions)
        for threads, competitors in conditions[shift:] + conditions[:shift]:
            sample = timed_score(objective, archs[repeat], threads, competitors)
            samples.append(
                {"repeat": repeat, "threads": threads, "competitors": competitors, **sample}
            )
            log(
                f"repeat {repeat + 1}/{repeats}: {threads} thread(s), "
                f"{'busy' if competitors else 'quiet'}: {sample['seconds']:.3f} s"
            )
    torch.set_num_threads(default_threads)
    report = {
        "work": (
            f"SAHD, {config.score.inits} initialisations, batch {config.score.batch_size}, "
            f"T = {config.score.timesteps}"
        ),
        "repeats": repeats,
        "competitors": args.competitors,
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_default_threads": default_threads,
        },
        "summary": summarize(samples, args.threads),
        "samples": samples,
        "architectures": [str(arch) for arch in archs],
        "seconds": round(time.perf_counter() - started, 1),
        "command": " ".join(
            ["python benchmarks/thread_contention.py", *(sys.argv[1:] if argv is None else argv)]
        ),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("thread_contention_quick.json" if args.quick else "thread_contention.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    if report["summary"]["quiet_samples_disturbed"]:
        log(
            "other processes took more than 5% of the CPUs during some quiet samples: rerun on "
            "a quiet machine before quoting these numbers"
        )
    log(f"wrote {path} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
