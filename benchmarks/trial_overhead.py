"""What a trial costs outside scoring: storage, sampler and bookkeeping, per trial, per worker.

Each row runs real ``optuna-spikenas optimize`` processes (``python -m optuna_spikenas optimize
--threads 1 --quiet --no-artifacts``, ``OMP_NUM_THREADS=1``) on a fresh study: 1 worker, or 4
workers sharing the study as separate processes, on SQLite (a file in a temporary folder) and on
PostgreSQL, for two shipped configs:

* ``quickstart``: ``studies/quickstart.toml``, random sampler, 2-cell networks;
* ``cellbycell``: ``studies/spikenas_memory.toml``, SpikeNAS's cell-by-cell sampler, run until it
  stops by itself (or ``--quick``'s trial count).

In these rows the config's scorer is replaced by ``[score] kind = "params"``, the parameter count
of the architecture: a proxy that builds no network and costs microseconds, so that what a
trial takes is nearly all overhead, and 4 workers on a 2-core machine contend for the CPU only
with each other's overhead, not with scoring. Everything else (sampler, budget, dataset, the
objective's user attributes, duplicate lookup, study binding, heartbeats) is as the config says.
The settings fingerprint changes with the scorer, which changes no per-trial work.

Per trial: the time between the completions of two consecutive trials of one worker (the
storage's ``datetime_complete``, grouped by the worker each trial records), i.e. the whole cycle
of ask, sampler, objective, tell and callbacks, minus the trial's ``score_seconds`` user attribute
(about 0 here). The first trial of each worker is left out (it builds first-call tables; its own
duration, start to completion, is reported apart as ``first_trial_ms``). With 4 workers on a
machine with fewer cores each worker gets a share of the CPU, so a worker's time per trial
includes waiting for the CPU; ``study_ms`` is the study's wall time per trial, scoring included
(all workers, from the last worker's first completion to the end).

The yardstick is one real quickstart trial: a separate 1-worker SQLite run of the unchanged
``studies/quickstart.toml`` (SAHD, 32 initialisations) reports the median ``score_seconds`` of
its scored trials, and its own overhead per trial (``quickstart-sahd`` row: the same measure
with a real network, which also counts what the objective records after scoring, such as the
spike counts). ``ratio`` = median overhead per trial / that scoring time; the issue's target
is at most 0.10 on SQLite.

PostgreSQL: ``--postgres URL``, else ``$SPIKENAS_POSTGRES_URL``, else ``bash scripts/postgres.sh``
when PostgreSQL's server binaries are installed (it starts a local server if none runs). When
none can be reached the report says so in one line and has SQLite rows only. Studies made on
PostgreSQL are deleted at the end. ``other_processes_cpu_share`` (``machine_load.Probe``, the
workers counted as the benchmark's own; on PostgreSQL its server counts as another process) says
how much of the machine other processes took during each row.

Rerun (from the repository root; about 2 minutes on 2 cores, ``--quick`` under one):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trial_overhead.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trial_overhead.py --json \
        --out benchmarks/results/trial_overhead.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trial_overhead.py --quick
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import optuna
from machine_load import Probe as MachineProbe
from machine_load import cpu_model
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.recovery import WORKER_KEY

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {
    "quickstart": REPO / "studies" / "quickstart.toml",
    "cellbycell": REPO / "studies" / "spikenas_memory.toml",
}
WORKER_COUNTS = (1, 4)
TARGET = 0.10  # overhead per trial / a quickstart trial's scoring time, on SQLite
DISTURBED_SHARE = 0.05
WORKER_TIMEOUT = 900  # seconds for one optimize process
# Trials per study (split between the workers): quickstart's own n_trials, and the cell-by-cell
# search until it stops (None); --quick caps both. Scored quickstart trials for the yardstick.
FULL = {"quickstart": 72, "cellbycell": None, "reference": 10}
QUICK = {"quickstart": 24, "cellbycell": 24, "reference": 3}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Probe(MachineProbe):
    """``machine_load.Probe`` that counts the workers (this process's children, waited for) as
    the benchmark's own CPU, not as other processes'."""

    def __init__(self) -> None:
        super().__init__()
        self.children = _children_cpu_seconds()

    def report(self) -> dict[str, Any]:
        out = super().report()
        share = out.get("other_processes_cpu_share")
        if share is not None:
            capacity = out["wall_seconds"] * (os.cpu_count() or 1)
            workers = _children_cpu_seconds() - self.children
            out["other_processes_cpu_share"] = round(max(0.0, share - workers / capacity), 3)
            out["workers_cpu_seconds"] = round(workers, 2)
        return out


def _children_cpu_seconds() -> float:
    times = os.times()
    return times.children_user + times.children_system


# --- studies and workers ----------------------------------------------------------------------


def proxy_config(source: Path, folder: Path) -> Path:
    """``source`` with ``[score] kind = "params"``: a scorer that costs nothing."""
    text, count = re.subn(r'^kind = "[a-z_-]+"', 'kind = "params"', source.read_text(), flags=re.M)
    if count != 1:
        raise RuntimeError(f"{source} has no single [score] kind line to replace")
    path = folder / f"{source.stem}-params.toml"
    path.write_text(text)
    return path


def run_workers(url: str, config: Path, workers: int, n_trials: int | None, logs: Path) -> str:
    """A new study on ``url`` searched by ``workers`` optimize processes; returns its name."""
    name = f"trial-overhead-{uuid.uuid4().hex[:10]}"
    storage = RDBStorage(url)
    try:
        optuna.create_study(storage=storage, study_name=name, direction="maximize")
    finally:
        storage.engine.dispose()
    argv = [
        sys.executable,
        "-m",
        "optuna_spikenas",
        "optimize",
        *("--storage", url, "--study-name", name, "--config", str(config)),
        *("--threads", "1", "--quiet", "--no-artifacts"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = []
    for i in range(workers):
        extra = [] if n_trials is None else ["--n-trials", str(n_trials // workers)]
        err = open(logs / f"{name}-{i}.err", "w")  # noqa: SIM115 (closed below)
        processes.append((subprocess.Popen([*argv, *extra], stderr=err, stdout=err, env=env), err))
    failed = []
    for i, (process, err) in enumerate(processes):
        try:
            code = process.wait(timeout=WORKER_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        err.close()
        if code != 0:
            failed.append(f"worker {i} exit {code}: {Path(err.name).read_text()[-2000:]}")
    if failed:
        raise RuntimeError("\n".join(failed))
    return name


def load_trials(url: str, name: str) -> list[FrozenTrial]:
    storage = RDBStorage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()


@dataclass
class Timing:
    per_trial: list[float]  # seconds outside scoring, first trial of each worker left out
    first: list[float]  # the first trial of each worker: from its start
    score: list[float]  # score_seconds of the scored trials
    study_seconds_per_trial: float | None


def timing(trials: list[FrozenTrial]) -> Timing:
    """Per worker, the time between consecutive completions minus the trial's scoring."""
    done = [t for t in trials if t.state.is_finished() and t.datetime_complete is not None]
    by_worker: dict[str, list[FrozenTrial]] = defaultdict(list)
    for t in done:
        by_worker[str(t.system_attrs.get(WORKER_KEY))].append(t)
    per_trial, first, starts = [], [], []
    for own in by_worker.values():
        own.sort(key=lambda t: t.datetime_complete or datetime.min)
        head = own[0]
        assert head.datetime_complete is not None and head.datetime_start is not None
        first.append((head.datetime_complete - head.datetime_start).total_seconds())
        starts.append(head.datetime_complete)
        for before, t in zip(own, own[1:], strict=False):
            assert t.datetime_complete is not None and before.datetime_complete is not None
            gap = (t.datetime_complete - before.datetime_complete).total_seconds()
            per_trial.append(gap - float(t.user_attrs.get("score_seconds") or 0.0))
    # The study's wall time per trial once every worker runs: from the last worker's first
    # completion to the last completion, over the trials completed in between.
    study = None
    begin = max(starts, default=None)
    later = sorted(t.datetime_complete for t in done if begin and t.datetime_complete > begin)
    if begin is not None and later:
        study = (later[-1] - begin).total_seconds() / len(later)
    scored = [
        float(t.user_attrs["score_seconds"])
        for t in done
        if t.state == TrialState.COMPLETE and t.user_attrs.get("score_seconds")
    ]
    return Timing(per_trial, first, scored, study)


# --- PostgreSQL -------------------------------------------------------------------------------


def postgres_url(given: str | None) -> tuple[str | None, str]:
    """A reachable PostgreSQL URL, or None and why not (one line)."""
    url = given or os.environ.get("SPIKENAS_POSTGRES_URL")
    if not url:
        installed = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl") or shutil.which("pg_ctl")
        if not installed:
            return None, (
                "no PostgreSQL server is installed: run `bash scripts/postgres.sh` (it installs "
                "one) or pass --postgres URL"
            )
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "postgres.sh")],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0 or not result.stdout.strip():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"scripts/postgres.sh could not start a server: {last}"
        url = result.stdout.strip()
    try:
        RDBStorage(url).engine.dispose()
    except Exception as err:  # a missing driver, a server that is down, a wrong password
        return None, f"cannot open {re.sub(r':[^:@/]*@', ':***@', url)}: {type(err).__name__}"
    return url, "reachable"


def delete_studies(url: str, names: list[str]) -> None:
    storage = RDBStorage(url)
    try:
        for name in names:
            optuna.delete_study(study_name=name, storage=storage)
    finally:
        storage.engine.dispose()


# --- the run ----------------------------------------------------------------------------------


def milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


def row(config: str, storage: str, workers: int, t: Timing, load: dict[str, Any]) -> dict[str, Any]:
    median = statistics.median(t.per_trial) if t.per_trial else None
    return {
        "config": config,
        "storage": storage,
        "workers": workers,
        "trials": len(t.per_trial) + len(t.first),
        "overhead_median_ms": milliseconds(median),
        "overhead_mean_ms": milliseconds(statistics.fmean(t.per_trial) if t.per_trial else None),
        "overhead_p90_ms": milliseconds(
            statistics.quantiles(t.per_trial, n=10)[-1] if len(t.per_trial) > 1 else None
        ),
        "study_ms": milliseconds(t.study_seconds_per_trial),
        "first_trial_ms": milliseconds(statistics.median(t.first) if t.first else None),
        "wall_seconds": load["wall_seconds"],
        "other_processes_cpu_share": load.get("other_processes_cpu_share"),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    total = Probe()
    folder = Path(tempfile.mkdtemp(prefix="trial-overhead-"))
    rows: list[dict[str, Any]] = []
    try:
        log(f"yardstick: {sizes['reference']} trials of studies/quickstart.toml (SAHD), SQLite")
        url = f"sqlite:///{folder / 'reference.db'}"
        probe = Probe()
        name = run_workers(url, CONFIGS["quickstart"], 1, sizes["reference"], folder)
        reference = timing(load_trials(url, name))
        if not reference.score:
            raise RuntimeError("the quickstart reference run scored no trial")
        score = statistics.median(reference.score)
        rows.append(row("quickstart-sahd", "sqlite", 1, reference, probe.report()))
        log(f"  scoring: median {score:.2f}s per quickstart trial")

        pg_url, pg_status = (None, "skipped (--no-postgres)")
        if not args.no_postgres:
            pg_url, pg_status = postgres_url(args.postgres)
        if pg_url is None:
            log(f"PostgreSQL: {pg_status}; SQLite only")
        storages = [("sqlite", None), *([("postgresql", pg_url)] if pg_url else [])]
        pg_studies: list[str] = []
        try:
            for config, path in CONFIGS.items():
                proxy = proxy_config(path, folder)
                for storage, base in storages:
                    for workers in WORKER_COUNTS:
                        url = base or f"sqlite:///{folder / f'{config}-{workers}.db'}"
                        probe = Probe()
                        name = run_workers(url, proxy, workers, sizes[config], folder)
                        if base:
                            pg_studies.append(name)
                        result = row(
                            config, storage, workers, timing(load_trials(url, name)), probe.report()
                        )
                        rows.append(result)
                        log(
                            f"  {config} {storage} x{workers}: {result['trials']} trials, "
                            f"median {result['overhead_median_ms']} ms outside scoring per trial"
                        )
        finally:
            if pg_url and pg_studies:
                delete_studies(pg_url, pg_studies)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for r in rows:
        r["ratio"] = round(r["overhead_median_ms"] / (1000 * score), 4)
    worst = max(r["ratio"] for r in rows if r["storage"] == "sqlite")
    return {
        "quickstart_score_seconds": round(score, 3),
        "quickstart_score_seconds_all": [round(s, 3) for s in reference.score],
        "rows": rows,
        "target": f"median overhead per trial <= {TARGET:.0%} of a quickstart trial's scoring "
        "time, on SQLite",
        "worst_sqlite_ratio": worst,
        "target_met": worst <= TARGET,
        "postgresql": pg_status,
        "mode": "quick" if args.quick else "full",
        "contention": total.report(),
        "machine": machine_info(),
        "command": " ".join(["python benchmarks/trial_overhead.py", *sys.argv[1:]]),
    }


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "optuna": optuna.__version__,
        "torch": version("torch"),
        "sqlalchemy": version("sqlalchemy"),
    }


def print_table(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(
        f"machine: {m['cpu_model']}, {m['cpu_count']} CPUs; optuna {m['optuna']}, "
        f"torch {m['torch']}\nquickstart trial's scoring: {r['quickstart_score_seconds']:.2f} s "
        f"(median of {len(r['quickstart_score_seconds_all'])}); PostgreSQL: {r['postgresql']}\n"
    )
    head = ("config", "storage", "workers", "trials", "median ms", "mean ms", "study ms",
            "1st ms", "ratio", "others' CPU")  # fmt: skip
    print("{:<16} {:<10} {:>7} {:>6} {:>9} {:>8} {:>8} {:>8} {:>6} {:>11}".format(*head))
    for x in r["rows"]:
        share = x["other_processes_cpu_share"]
        print(
            f"{x['config']:<16} {x['storage']:<10} {x['workers']:>7} {x['trials']:>6} "
            f"{x['overhead_median_ms']!s:>9} {x['overhead_mean_ms']!s:>8} {x['study_ms']!s:>8} "
            f"{x['first_trial_ms']!s:>8} {100 * x['ratio']:>5.1f}% "
            f"{'?' if share is None else f'{100 * share:.0f}%':>11}"
        )
    verdict = "met" if r["target_met"] else "NOT met"
    print(f"\ntarget ({r['target']}): {verdict}, worst {100 * r['worst_sqlite_ratio']:.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials, under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON report to this file")
    parser.add_argument("--postgres", help="PostgreSQL URL (default: $SPIKENAS_POSTGRES_URL)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite rows only")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = run(args)
    others = report["contention"].get("other_processes_cpu_share")
    if others is not None and others > DISTURBED_SHARE:
        log(f"WARNING: other processes used {100 * others:.0f}% of the CPU; timings disturbed")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
