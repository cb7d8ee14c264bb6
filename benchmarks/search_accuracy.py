"""Which search finds the more accurate network on the same wall-clock budget? Measured in accuracy.

Three ways to spend one budget of wall time on the embedded Animal-MNIST, each run as a user runs
it (``optuna create-study`` + ``optuna-spikenas optimize --timeout BUDGET``, SQLite, one process
with 2 torch threads), on one search space and one training recipe
(``studies/screen_then_train.toml``, with ``[train] max_train_batches`` set to
``--train-batches``):

* ``screen-then-train``: the config as shipped: ``screen`` candidates scored training-free
  (random proposals within the memory budget), the ``train_top`` best-scoring trained under
  Hyperband on the per-epoch validation accuracy;
* ``tpe+hyperband``: no score at all: Optuna's TPE proposes, every candidate is trained, the
  same Hyperband pruner stops the weak ones, until the budget ends;
* ``score-only``: the pure training-free search: the same screen, then only the best-scoring
  candidate trained (``train_top = 1``, no pruner).

Each method runs with sampler seeds 0..``--seeds``-1 (the study seed, hence the data split,
the scoring batches and every candidate's initial weights, stays the config's). Reported per
method: the best validation accuracy among its fully trained trials (mean, SD and range over
seeds), when it was reached, the wall time used, the trials trained and pruned, and the test
accuracy of the network each run selects (the test split is read once per trained trial by
the objective, as a user attribute, and used for nothing else: no selection looks at it).
The figure (``--out``) draws the best validation accuracy so far against wall time.

Validation accuracies here are the objective's: eval-mode accuracy after each epoch. How far
such labels reproduce across training seeds is ``proxy_quality.py``'s measurement; this script
states its own noise as the spread over search seeds.

    .venv/bin/python benchmarks/search_accuracy.py --quick            # under 5 min, smoke test
    .venv/bin/python benchmarks/search_accuracy.py --json \\
        --out benchmarks/results/search_accuracy > run.json           # about an hour, 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from machine_load import Probe, cpu_model

ROOT = Path(__file__).resolve().parent.parent
BASE_CONFIG = ROOT / "studies" / "screen_then_train.toml"
METHODS: dict[str, dict[str, Any]] = {
    "screen-then-train": {},
    "tpe+hyperband": {"sampler": "tpe", "screen": None, "train_top": None, "n_trials": 10_000},
    "score-only": {"train_top": 1, "pruner": "none"},
}
FULL = dict(budget=300.0, seeds=3, train_batches=40)
QUICK = dict(budget=15.0, seeds=2, train_batches=3, screen=6, train_top=2, epochs=2, inits=2)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- configs ---------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def to_toml(document: dict[str, Any]) -> str:
    """A config document (top-level values, then one level of tables) as TOML; None values are
    left out (the config's default applies)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in document.items() if not isinstance(v, dict)]
    for table, values in document.items():
        if isinstance(values, dict):
            lines.append(f"\n[{table}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def method_config(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """The base config with the run's recipe and the method's ``[search]`` changes."""
    document = tomllib.loads(BASE_CONFIG.read_text())
    document["train"]["max_train_batches"] = args.train_batches
    if args.quick:
        document["train"]["epochs"] = QUICK["epochs"]
        document["score"]["inits"] = QUICK["inits"]
        document["search"].update(screen=QUICK["screen"], train_top=QUICK["train_top"])
    document["search"].update(METHODS[method])
    return document


# --- one run ---------------------------------------------------------------------------------


def console(name: str) -> str:
    """The console script ``name`` of this interpreter's environment."""
    return str(Path(sys.executable).with_name(name))


def run_search(method: str, seed: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """One ``optimize`` run of ``method`` with sampler seed ``seed``; its curve and result."""
    config = folder / f"{method}-{seed}.toml"
    config.write_text(to_toml(method_config(method, args)))
    storage = f"sqlite:///{folder / f'{method}-{seed}.db'}"
    name = f"{method}-{seed}"
    subprocess.run(
        [console("optuna"), "create-study", "--storage", storage, "--study-name", name]
        + ["--direction", "maximize"],
        check=True,
        capture_output=True,
    )
    command = [
        console("optuna-spikenas"),
        "optimize",
        *("--storage", storage, "--study-name", name, "--config", str(config)),
        *("--seed", str(seed), "--timeout", str(args.budget), "--threads", str(args.threads)),
        *("--quiet", "--no-artifacts"),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{method} seed {seed} failed: {done.stderr.strip()[-1500:]}")
    study = optuna.load_study(study_name=name, storage=storage)
    return (
        summarize(study.get_trials(deepcopy=False))
        | {"method": method, "seed": seed}
        | {"wall_seconds": round(wall, 1)}
    )


def trained(trial: optuna.trial.FrozenTrial) -> bool:
    """A fully trained trial: COMPLETE with a finite accuracy (screened ones are -inf)."""
    return (
        trial.state == optuna.trial.TrialState.COMPLETE
        and trial.value is not None
        and math.isfinite(trial.value)
    )


def summarize(trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any]:
    """The best-so-far curve (seconds since the first trial started, best validation accuracy
    of the fully trained trials finished by then), the selected trial and the counts."""
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    origin: datetime = min(starts)
    finished = sorted((t for t in trials if trained(t)), key=lambda t: t.datetime_complete)
    curve, best = [], None
    for trial in finished:
        if best is None or trial.value > best.value:
            best = trial
            seconds = (trial.datetime_complete - origin).total_seconds()
            curve.append([round(seconds, 1), round(trial.value, 4)])
    states = [t.state for t in trials]
    return {
        "best_val_accuracy": None if best is None else round(best.value, 4),
        "best_reached_seconds": None if not curve else curve[-1][0],
        "test_accuracy_of_selected": None if best is None else best.user_attrs.get("test_accuracy"),
        "selected_architecture": None if best is None else best.user_attrs.get("architecture"),
        "curve": curve,
        "trials": len(trials),
        "trained": len(finished),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "screened": sum(1 for t in trials if t.user_attrs.get("stage") == "screen"),
    }


# --- the benchmark ---------------------------------------------------------------------------


def spread(values: list[float | None]) -> dict[str, Any]:
    """Mean, SD and range of the defined ``values`` (None where none is)."""
    known = [v for v in values if v is not None]
    if not known:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {
        "mean": round(statistics.fmean(known), 4),
        "sd": round(statistics.stdev(known), 4) if len(known) > 1 else None,
        "min": round(min(known), 4),
        "max": round(max(known), 4),
        "n": len(known),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    probe = Probe()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="search-accuracy-") as tmp:
        for seed in range(args.seeds):
            for method in METHODS:
                log(f"{method}, seed {seed}: budget {args.budget:.0f}s ...")
                result = run_search(method, seed, args, Path(tmp))
                runs.append(result)
                log(
                    f"  best val accuracy {result['best_val_accuracy']} after "
                    f"{result['best_reached_seconds']}s; {result['trained']} trained, "
                    f"{result['pruned']} pruned, {result['screened']} screened; "
                    f"{result['wall_seconds']}s"
                )
    methods = {
        method: {
            "best_val_accuracy": spread([r["best_val_accuracy"] for r in mine]),
            "test_accuracy_of_selected": spread([r["test_accuracy_of_selected"] for r in mine]),
            "wall_seconds": spread([r["wall_seconds"] for r in mine]),
            "best_reached_seconds": spread([r["best_reached_seconds"] for r in mine]),
            "trained": spread([r["trained"] for r in mine]),
        }
        for method in METHODS
        for mine in [[r for r in runs if r["method"] == method]]
    }
    return {
        "question": "best validation accuracy reached on the same wall-clock budget",
        "quick": args.quick,
        "settings": {
            "base_config": str(BASE_CONFIG.relative_to(ROOT)),
            "budget_seconds": args.budget,
            "seeds": args.seeds,
            "train_batches_per_epoch": args.train_batches,
            "threads": args.threads,
            "methods": {m: method_config(m, args)["search"] for m in METHODS},
            "train": method_config("screen-then-train", args)["train"],
        },
        "methods": methods,
        "runs": runs,
        "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count()},
        "contention": probe.report(),
        "command": " ".join(["python benchmarks/search_accuracy.py", *sys.argv[1:]]),
    }


def figure(report: dict[str, Any]):
    """Best validation accuracy so far against wall time, one line per run, a colour per
    method."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in report["runs"]:
        if not r["curve"]:
            continue
        xs = [p[0] for p in r["curve"]] + [r["wall_seconds"]]
        ys = [p[1] for p in r["curve"]] + [r["curve"][-1][1]]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                line=dict(shape="hv", color=COLOURS[r["method"]]),
                name=f"{r['method']} (seed {r['seed']})",
                legendgroup=r["method"],
            )
        )
    fig.update_layout(
        title=figure_title(report),
        xaxis_title="wall time (s)",
        yaxis_title="best validation accuracy (fully trained trials)",
        template="plotly_white",
    )
    return fig


COLOURS = {"screen-then-train": "#1f77b4", "tpe+hyperband": "#d62728", "score-only": "#2ca02c"}


def best_at(run: dict[str, Any], seconds: float) -> float | None:
    """The run's best validation accuracy among trials finished by ``seconds``."""
    known = [value for at, value in run["curve"] if at <= seconds]
    return known[-1] if known else None


def svg_figure(report: dict[str, Any], size: tuple[int, int] = (760, 420)) -> str:
    """The figure as a standalone SVG (no plotting library): each run's best-so-far step curve
    (thin) and each method's mean over the seeds that have a value (thick), against wall time."""
    width, height = size
    left, right, top, bottom = 64, 190, 40, 52
    runs = [r for r in report["runs"] if r["curve"]]
    end = max([r["wall_seconds"] for r in report["runs"]] + [1.0])
    values = [v for r in runs for _, v in r["curve"]] or [0.0, 1.0]
    low, high = math.floor(min(values) * 20) / 20, math.ceil(max(values) * 20) / 20 + 1e-9

    def x(seconds: float) -> float:
        return left + (width - left - right) * seconds / end

    def y(value: float) -> float:
        return height - bottom - (height - top - bottom) * (value - low) / (high - low)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="14">{figure_title(report)}</text>',
    ]
    for i in range(6):  # axes: ticks and grid
        seconds, value = end * i / 5, low + (high - low) * i / 5
        parts += [
            f'<line x1="{x(seconds):.1f}" y1="{top}" x2="{x(seconds):.1f}" '
            f'y2="{height - bottom}" stroke="#eee"/>',
            f'<text x="{x(seconds):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
            f"{seconds:.0f}</text>",
            f'<line x1="{left}" y1="{y(value):.1f}" x2="{width - right}" y2="{y(value):.1f}" '
            'stroke="#eee"/>',
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.2f}</text>',
        ]
    parts += [
        f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">'
        "wall time (s)</text>",
        f'<text transform="translate(16 {(top + height - bottom) / 2}) rotate(-90)" '
        'text-anchor="middle">best validation accuracy so far</text>',
    ]
    budget = report["settings"]["budget_seconds"]
    parts += [
        f'<line x1="{x(budget):.1f}" y1="{top}" x2="{x(budget):.1f}" y2="{height - bottom}" '
        'stroke="#888" stroke-dasharray="4 3"/>',
        f'<text x="{x(budget) - 4:.1f}" y="{height - bottom - 6}" text-anchor="end" '
        'fill="#555">budget: no trial starts after it</text>',
    ]
    grid = [end * i / 200 for i in range(201)]
    for row, method in enumerate(METHODS):
        mine = [r for r in runs if r["method"] == method]
        for r in mine:
            points = [(at, value) for at, value in r["curve"]] + [
                (r["wall_seconds"], r["curve"][-1][1])
            ]
            path = f"M{x(points[0][0]):.1f},{y(points[0][1]):.1f}"
            for (_, before), (at, value) in zip(points, points[1:], strict=False):
                path += f" H{x(at):.1f} V{y(value):.1f}" if value != before else f" H{x(at):.1f}"
            parts.append(
                f'<path d="{path}" fill="none" stroke="{COLOURS[method]}" stroke-width="1" '
                'opacity="0.5"/>'
            )
        means = []
        for seconds in grid:
            known = [v for r in mine if (v := best_at(r, seconds)) is not None]
            if known and seconds <= max(r["wall_seconds"] for r in mine):
                means.append(f"{x(seconds):.1f},{y(statistics.fmean(known)):.1f}")
        if means:
            parts.append(
                f'<polyline points="{" ".join(means)}" fill="none" '
                f'stroke="{COLOURS[method]}" stroke-width="3"/>'
            )
        ly = top + 20 + 22 * row
        parts += [
            f'<line x1="{width - right + 14}" y1="{ly}" x2="{width - right + 40}" y2="{ly}" '
            f'stroke="{COLOURS[method]}" stroke-width="3"/>',
            f'<text x="{width - right + 46}" y="{ly + 4}">{method}</text>',
        ]
    parts.append(
        f'<text x="{width - right + 14}" y="{top + 96}" fill="#555">thick: mean over seeds</text>'
    )
    parts.append(
        f'<text x="{width - right + 14}" y="{top + 112}" fill="#555">thin: each seed</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def figure_title(report: dict[str, Any]) -> str:
    s = report["settings"]
    quick = " (--quick: smoke test)" if report["quick"] else ""
    return (
        f"Best validation accuracy so far: {s['budget_seconds']:.0f} s per run, "
        f"{s['seeds']} seeds{quick}"
    )


def write_outputs(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "search_accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "search_accuracy.svg").write_text(svg_figure(report))
    figure(report).write_html(out / "search_accuracy.html", include_plotlyjs=True)
    log(f"wrote search_accuracy.json, .svg and .html in {out}")


def print_table(report: dict[str, Any]) -> None:
    s, m = report["settings"], report["machine"]
    print(
        f"machine: {m['cpu_model']}, {m['cpu_count']} CPUs; budget {s['budget_seconds']:.0f}s "
        f"per run, {s['seeds']} seeds, {s['train_batches_per_epoch']} training batches per epoch"
    )
    print(f"{'method':<18} {'best val acc (mean ± SD, range)':>34} {'test acc':>10} {'trained':>8}")
    for method, r in report["methods"].items():
        b, t = r["best_val_accuracy"], r["test_accuracy_of_selected"]
        if b["mean"] is None:
            print(f"{method:<18} {'none trained':>34}")
            continue
        sd = f"{b['sd']:.3f}" if b["sd"] is not None else "-"
        cell = f"{b['mean']:.3f} ± {sd} [{b['min']:.3f}, {b['max']:.3f}]"
        test = f"{t['mean']:.3f}" if t["mean"] is not None else "-"
        print(f"{method:<18} {cell:>34} {test:>10} {r['trained']['mean']:>8}")
    share = report["contention"].get("other_processes_cpu_share")
    print(f"other processes' CPU: {'?' if share is None else f'{100 * share:.0f}%'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, under 5 min")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="write search_accuracy.json and .html here")
    parser.add_argument("--budget", type=float, help="wall seconds per run (default 300)")
    parser.add_argument("--seeds", type=int, help="sampler seeds per method (default 3)")
    parser.add_argument("--train-batches", type=int, help="training batches per epoch (40)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run (2)")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if key in ("budget", "seeds", "train_batches") and getattr(args, key) is None:
            setattr(args, key, value)
    if args.budget <= 0 or args.seeds < 1 or args.train_batches < 1 or args.threads < 1:
        parser.error("--budget must be > 0; --seeds, --train-batches and --threads >= 1")
    report = run(args)
    if args.out is not None:
        write_outputs(report, args.out)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
