"""Does AutoSNN's evolution beat random sampling here? And NSGA-II on (accuracy, spikes)?

AutoSNN (Na et al., ICML 2022) searches five block positions with a spike-aware evolution and
compares it with random sampling. On ONE super-network (``studies/autosnn.toml``: ``autosnn-16``
at width 8, Animal-MNIST, 3 epochs, T = 8, all 1,600 held-out images per evaluation or
``--eval-images`` of them, S_ref = its mean spikes per image (AutoSNN's count: neuron spikes and
max-pooled spike maps), lambda = -0.08), ``--evaluations`` trials per run (60 = 3 generations of 20:
at about 3.5 s per evaluation of 500 images, 9 runs of 100 would take about an hour on 2 shared
cores) and
``--seeds`` seeds (0, 1, 2), each run an in-memory Optuna study:

1. ``evolution``: ``EvolutionarySampler`` (pool 20, top 10, mutation 0.2, crossover, never an
   architecture twice) on the fitness F = accuracy x (spikes / S_ref)^lambda;
2. ``random``: Optuna's ``RandomSampler`` on F (a repeat reuses its values: a trial spent);
3. ``nsga2``: Optuna's ``NSGAIISampler`` (population 20) on (accuracy max, spikes min); its best
   fitness is the best F over its trials, with the same S_ref and lambda.

Reported per method and seed: the best F, that trial's accuracy, spikes and architecture, the
distinct architectures evaluated and the best-so-far F per trial; then mean ± std over seeds,
the mean curve, a verdict line, and the paper's CIFAR10 architecture evaluated on the same
super-network. The first run trains the super-network into ``checkpoints/`` (about 4 min on 1
thread); later runs reuse it. ``contention`` = other processes' CPU share. ``--quick``: a tiny
separate super-network (width 4, 4 epochs of 30 batches, T = 4, 128 held-out images,
``checkpoints/quick``), 2 seeds, 40 evaluations: a smoke test, not a figure to quote.

    .venv/bin/python benchmarks/autosnn_search.py --quick --threads 1 --json   # < 3 min
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/autosnn_search.py --threads 1 --json \\
        --eval-images 500 --out benchmarks/results/autosnn_search.json   # about 40 min
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import optuna
import search_speedup as ss
import torch
from hardware_savings import spread

from optuna_spikenas.autosnn_objective import AutoSNNObjective
from optuna_spikenas.autosnn_space import PAPER_CIFAR10_ARCH, AutoSNNArchitecture
from optuna_spikenas.config import load_config
from optuna_spikenas.samplers import make_sampler
from optuna_spikenas.supernet import checkpoint_path, evaluate_path, fitness

ROOT = Path(__file__).resolve().parent.parent
AUTOSNN_STUDY = ROOT / "studies" / "autosnn.toml"
METHODS = {"evolution": "fitness", "random": "fitness", "nsga2": "accuracy+spikes"}
QUICK = dict(width=4, seeds=2, evaluations=40, checkpoint_dir=str(ROOT / "checkpoints" / "quick"))
FULL_EVALUATIONS = 60  # AutoSNN: 20 generations of 20; 100 (5) would take about 1 h here
QUICK_SUPERNET = dict(epochs=4, max_train_batches=30, timesteps=4, eval_images=128)
DONE = (optuna.trial.TrialState.COMPLETE,)


# --- pure helpers ----------------------------------------------------------------------------


def trial_rows(trials: list[tuple[int, dict[str, Any]]], s_ref: float, lam: float) -> list[dict]:
    """One row per (trial number, user attrs), in order: architecture, accuracy, spikes per image
    and F = fitness(accuracy, spikes, s_ref, lam). A duplicate (``duplicate_of``) takes the
    values of the trial it repeats and is marked ``duplicate``."""
    by_number: dict[int, dict[str, Any]] = {}
    rows = []
    for number, attrs in trials:
        if "duplicate_of" in attrs:
            row = dict(by_number[attrs["duplicate_of"]], number=number, duplicate=True)
        else:
            accuracy, spikes = attrs["accuracy"], attrs["spikes_per_image"]
            row = {
                "number": number,
                "architecture": attrs["architecture"],
                "accuracy": accuracy,
                "spikes_per_image": spikes,
                "fitness": fitness(accuracy, spikes, s_ref, lam),
                "duplicate": False,
            }
            by_number[number] = row
        rows.append(row)
    return rows


def best_so_far(values: list[float]) -> list[float]:
    out: list[float] = []
    for value in values:
        out.append(value if not out else max(out[-1], value))
    return out


def run_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's best trial (the first of equal fitness), distinct architectures and curve."""
    best = max(rows, key=lambda r: r["fitness"])  # max keeps the first of equal values
    return {
        "best_fitness": round(best["fitness"], 4),
        "accuracy": round(best["accuracy"], 4),
        "spikes_per_image": round(best["spikes_per_image"], 1),
        "architecture": best["architecture"],
        "best_trial": best["number"],
        "evaluations": len(rows),
        "distinct_architectures": len({r["architecture"] for r in rows}),
        "curve": [round(v, 4) for v in best_so_far([r["fitness"] for r in rows])],
    }


def mean_curve(curves: list[list[float]]) -> list[float]:
    """Mean over runs after each trial; a shorter run keeps its last value."""
    length = max(len(c) for c in curves)
    padded = [c + [c[-1]] * (length - len(c)) for c in curves]
    return [round(statistics.mean(column), 4) for column in zip(*padded, strict=True)]


def verdict(evolution: list[float], random: list[float]) -> str:
    """'evolution beat random on k of n seeds (...)': seed by seed, strictly higher best F."""
    wins = sum(e > r for e, r in zip(evolution, random, strict=True))
    ties = sum(e == r for e, r in zip(evolution, random, strict=True))
    tied = f", tied on {ties}" if ties else ""
    return (
        f"evolution beat random on {wins} of {len(evolution)} seeds{tied} (mean best fitness "
        f"{statistics.mean(evolution):.4f} vs {statistics.mean(random):.4f})"
    )


# --- the searches ----------------------------------------------------------------------------


def make_config(args: argparse.Namespace):
    config = load_config(args.config)
    supernet = config.supernet
    if args.quick:
        config = replace(config, space=replace(config.space, widths=(QUICK["width"],)))
        supernet = replace(supernet, checkpoint_dir=QUICK["checkpoint_dir"], **QUICK_SUPERNET)
    elif not Path(supernet.checkpoint_dir).is_absolute():  # the study's dir, from the root
        supernet = replace(supernet, checkpoint_dir=str(ROOT / supernet.checkpoint_dir))
    if args.eval_images is not None:
        supernet = replace(supernet, eval_images=args.eval_images)
    return replace(config, supernet=supernet, fitness=replace(config.fitness, objectives="fitness"))


def progress(name: str, seed: int, every: int):
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if (trial.number + 1) % every == 0:
            best = max(t.user_attrs.get("fitness", 0.0) for t in study.get_trials(states=DONE))
            ss.log(f"    {name} seed {seed}: {trial.number + 1} trials, best F {best:.4f}")

    return callback


def search(objective, name: str, seed: int, evaluations: int) -> dict[str, Any]:
    directions = list(objective.directions)
    sampler = make_sampler(name, seed)  # over AutoSNN's blocks
    study = optuna.create_study(directions=directions, sampler=sampler)
    start = time.perf_counter()
    study.optimize(objective, n_trials=evaluations, callbacks=[progress(name, seed, 20)])
    seconds = time.perf_counter() - start
    trials = [(t.number, t.user_attrs) for t in study.get_trials(states=DONE)]
    lam = objective.config.fitness.spike_exponent
    summary = run_summary(trial_rows(trials, objective.reference_spikes, lam))
    summary |= {"seed": seed, "trials": len(study.trials), "seconds": round(seconds, 1)}
    ss.log(
        f"  {name} seed {seed}: best F {summary['best_fitness']:.4f} (accuracy "
        f"{summary['accuracy']:.3f}, {summary['spikes_per_image']:.0f} spikes) "
        f"{summary['architecture']}; {summary['distinct_architectures']} distinct, {seconds:.0f}s"
    )
    return summary


def paper_reference(objective: AutoSNNObjective) -> dict[str, Any]:
    arch = AutoSNNArchitecture.parse(PAPER_CIFAR10_ARCH)
    result = evaluate_path(objective.supernet, arch, objective.heldout, objective.settings)
    lam = objective.config.fitness.spike_exponent
    value = fitness(result.accuracy, result.spikes_per_image, objective.reference_spikes, lam)
    return {
        "architecture": str(arch),
        "fitness": round(value, 4),
        "accuracy": round(result.accuracy, 4),
        "spikes_per_image": round(result.spikes_per_image, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    total = ss.Probe()
    config = make_config(args)
    lines: list[str] = []

    def record(line: str) -> None:
        lines.append(line)
        ss.log(f"  {line}")

    ss.log("building the objective (dataset, super-network, S_ref)")
    start, build_load = time.perf_counter(), ss.Probe()
    objective = AutoSNNObjective(config, log=record)
    build_seconds = time.perf_counter() - start
    trained = not any(line.startswith("reusing") for line in lines)
    two = copy.copy(objective)  # the same super-network and S_ref, two objectives
    two.config = replace(config, fitness=replace(config.fitness, objectives="accuracy+spikes"))
    ss.log(f"S_ref {objective.reference_spikes:.1f} spikes/image; built in {build_seconds:.0f}s")
    paper = paper_reference(objective)

    seeds = list(range(args.seeds))
    runs: dict[str, list[dict[str, Any]]] = {}
    loads = {"supernet": build_load.report()}
    for name, objectives in METHODS.items():
        ss.log(f"{name} on {objectives}: {args.evaluations} evaluations, seeds {seeds}")
        load = ss.Probe()
        chosen = objective if objectives == "fitness" else two
        runs[name] = [search(chosen, name, seed, args.evaluations) for seed in seeds]
        loads[name] = load.report()
    summary = {
        name: {
            key: spread([r[key] for r in rs])
            for key in ("best_fitness", "accuracy", "spikes_per_image", "distinct_architectures")
        }
        for name, rs in runs.items()
    }
    bests = {name: [r["best_fitness"] for r in rs] for name, rs in runs.items()}
    loads["total"] = total.report()
    where = config.supernet.checkpoint_dir
    return {
        "question": "does AutoSNN's evolution beat random sampling (and NSGA-II) on the same "
        "super-network and budget of evaluations?",
        "quick": args.quick,
        "note": "quick: tiny super-network, a smoke test, not for quoting" if args.quick else "",
        "verdict": verdict(bests["evolution"], bests["random"]),
        "settings": {
            "config": str(args.config),
            "dataset": config.dataset.name,
            "macro": config.space.macro,
            "supernet": asdict(objective.settings),
            "spike_exponent": config.fitness.spike_exponent,
            "evaluations": args.evaluations,
            "seeds": seeds,
        },
        "supernet": {
            "trained_in_this_run": trained,
            "build_seconds": round(build_seconds, 1),
            "checkpoint": str(checkpoint_path(objective.dataset, objective.settings, where)),
            "reference_spikes": round(objective.reference_spikes, 1),
            "log": lines,
        },
        "paper_architecture": paper,
        "summary": summary,
        "curves": {name: mean_curve([r["curve"] for r in rs]) for name, rs in runs.items()},
        "runs": runs,
        "machine": ss.machine_info(objective.device),
        "contention": loads,
        "total_seconds": round(time.perf_counter() - total.wall, 1),
        "command": " ".join(["python benchmarks/autosnn_search.py", *sys.argv[1:]]),
    }


# --- output ----------------------------------------------------------------------------------


def print_table(r: dict[str, Any]) -> None:
    m, s, n, p = r["machine"], r["settings"], r["supernet"], r["paper_architecture"]
    sn, how = s["supernet"], "trained" if n["trained_in_this_run"] else "reused"
    print(
        f"machine: {m['cpu_model']}, {m['cpu_count']} CPUs, torch {m['torch']} with "
        f"{m['torch_threads']} thread(s)\nsetting: {s['dataset']}, macro {s['macro']}, width "
        f"{sn['width']}, {sn['epochs']} epoch(s), T = {sn['timesteps']}, "
        f"{sn['eval_images'] or 'all'} held-out images, lambda {s['spike_exponent']}, "
        f"{s['evaluations']} evaluations x "
        f"{len(s['seeds'])} seeds\nsuper-network: {how} ({n['build_seconds']:.0f}s), "
        f"S_ref {n['reference_spikes']:.1f} spikes per image\n"
    )
    print(
        f"{'method':<10} {'seed':>4} {'best F':>7} {'acc':>6} {'spikes':>8} {'distinct':>8} "
        f"{'secs':>6}  architecture"
    )
    for name, runs in r["runs"].items():
        for x in runs:
            print(
                f"{name:<10} {x['seed']:>4} {x['best_fitness']:>7.4f} {x['accuracy']:>6.3f} "
                f"{x['spikes_per_image']:>8.0f} {x['distinct_architectures']:>8} "
                f"{x['seconds']:>6.0f}  {x['architecture']}"
            )
    print(
        f"{'paper':<10} {'':>4} {p['fitness']:>7.4f} {p['accuracy']:>6.3f} "
        f"{p['spikes_per_image']:>8.0f} {'':>8} {'':>6}  {p['architecture']}\n"
    )
    for name, v in r["summary"].items():
        print(
            f"{name:<10} best F {v['best_fitness']['mean']:.4f} ± {v['best_fitness']['std']:.4f}"
            f", accuracy {v['accuracy']['mean']:.3f} ± {v['accuracy']['std']:.3f}, spikes "
            f"{v['spikes_per_image']['mean']:.0f} ± {v['spikes_per_image']['std']:.0f}, "
            f"distinct {v['distinct_architectures']['mean']:.1f}"
        )
    marks = sorted({max(0, round(s["evaluations"] * k / 5) - 1) for k in range(1, 6)})
    print("\nbest-so-far F (mean over seeds) after " + ", ".join(str(i + 1) for i in marks))
    for name, curve in r["curves"].items():
        print(f"{name:<10} " + " ".join(f"{curve[min(i, len(curve) - 1)]:.4f}" for i in marks))
    share = r["contention"]["total"].get("other_processes_cpu_share")
    print(
        f"\n{r['verdict']}\nother processes' CPU: {'?' if share is None else f'{share:.0%}'};"
        f" run: {r['total_seconds']:.0f}s"
    )
    if r["quick"]:
        print(r["note"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny super-network, < 3 min")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    parser.add_argument("--config", type=Path, default=AUTOSNN_STUDY, help="AutoSNN study TOML")
    parser.add_argument("--evaluations", type=int, help="trials per run (60; quick 40)")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 per method (3; quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--eval-images", type=int, help="held-out images per evaluation (default: the study's)"
    )
    args = parser.parse_args(argv)
    if args.eval_images is not None and args.eval_images < 1:
        parser.error("--eval-images must be >= 1")
    if args.evaluations is None:
        args.evaluations = QUICK["evaluations"] if args.quick else FULL_EVALUATIONS
    if args.seeds is None:
        args.seeds = QUICK["seeds"] if args.quick else 3
    if min(args.evaluations, args.seeds, args.threads) < 1:
        parser.error("--evaluations, --seeds and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = run(args)
    share = report["contention"]["total"].get("other_processes_cpu_share")
    if share is not None and share > 0.05:
        ss.log(f"WARNING: other processes used {share:.0%} of the CPU; timings disturbed")
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        ss.log(f"wrote {args.out}")
    if args.json:
        print(text)
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
