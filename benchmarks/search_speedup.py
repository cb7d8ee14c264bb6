"""Search time of SpikeNAS's cell-by-cell search against SNASNet's random search, in one run.

Both searches run here, one after the other, on one machine, with the same scorer (SAHD, same
batches, timesteps and weight seeds), the same dataset and the same macro and width:

* baseline, SNASNet-style: Optuna's ``RandomSampler(seed)`` over the full op set, one cell
  shared by both network cells, SNASNet's rule that a cell keeps its input-output edge
  (``require_direct_edge``), no memory budget, ``--candidates`` (5,000) candidates; the best
  score wins. ``--baseline snasnet`` (default) searches as SNASNet does: an invalid cell is
  redrawn (it costs no scoring) and each of the 5,000 valid candidates is scored, duplicates
  included. ``--baseline deduplicated`` runs 5,000 trials through this package's objective,
  which scores neither invalid cells nor canonical duplicates (about 2,000 of 5,000 are scored):
  a faster baseline than SNASNet itself, so a lower, conservative ratio.
* SpikeNAS: ``CellByCellSampler`` over ``{skip, conv3x3}``, one architecture per cell, growing
  from 2 cells up to ``max_cells`` under a memory budget, run until it stops by itself. Its
  ``max_cells``, ops and budget come from ``studies/spikenas_memory.toml`` (150k parameters at
  width 16), the budget scaled by ``(width / 16)^2`` like the conv weights.

Each search is an in-memory study timed with ``time.perf_counter`` around ``study.optimize``;
building the objectives (dataset, batches) is not timed, and the scorer is warmed up once on
one architecture by each objective before either search. ``speedup`` = baseline seconds /
SpikeNAS seconds. Then both found architectures are trained briefly (``optuna_spikenas.train``,
same recipe, 3 seeds) and compared on the validation split (the test split is never used).
Per network, SpikeNAS's candidates cost more than the baseline's (every edge is a conv3x3 or a
skip, and the network has 3 or 4 cells after the first phase), which lowers the ratio.

``--quick`` keeps both searches' rules and the 5,000 candidates and shrinks the networks and
images instead (digits 8x8, width 4, batch 16, 1 batch, T = 1); its training is tiny (1 epoch
of 20 batches per seed), a smoke test, not an accuracy figure. Other processes on the machine
slow both searches (``contention`` reports how much CPU they took); ``--threads`` defaults to 1
because PyTorch's 2-thread kernels stall whenever another process takes a core.

Rerun (from the repository root):

    .venv/bin/python benchmarks/search_speedup.py --quick          # one JSON object, < 2 min
    .venv/bin/python benchmarks/search_speedup.py --json > out.json  # full: about 25 min, 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from machine_load import Probe, cpu_model

from optuna_spikenas.config import config_from_dict, load_config
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.samplers import make_sampler
from optuna_spikenas.space import EDGES, Architecture, Cell, op_code
from optuna_spikenas.train import TrainSettings, train_architecture

SPIKENAS_STUDY = Path(__file__).resolve().parent.parent / "studies" / "spikenas_memory.toml"
# Scoring: dataset, width, batch_size, repeats, timesteps; then the training of both winners.
MODES: dict[str, dict[str, Any]] = {
    "quick": dict(dataset="digits", width=4, batch_size=16, repeats=1, timesteps=1),
    "full": dict(dataset="animal-mnist", width=8, batch_size=32, repeats=2, timesteps=5),
}
TRAINING = {
    "quick": dict(epochs=1, batch_size=32, max_train_batches=20),
    "full": dict(epochs=3, batch_size=64, max_train_batches=40),
}
TRAIN_RECIPE = dict(optimizer="adam", lr=0.005, min_lr=0.0)
TRAIN_SEEDS = 3
PROGRESS_EVERY = 500
Trial = optuna.trial.FrozenTrial


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the two searches ------------------------------------------------------------------------


def make_configs(mode: dict[str, Any], seed: int, candidates: int, device: str, rescore: bool):
    """The baseline's and SpikeNAS's configs: the same dataset, scorer, macro and width."""
    study = load_config(SPIKENAS_STUDY)
    budget = round(study.budget.max_parameters * (mode["width"] / study.space.widths[0]) ** 2)
    score = {k: mode[k] for k in ("batch_size", "repeats", "timesteps")}
    common = {
        "seed": seed,
        "dataset": {"name": mode["dataset"]},
        "score": {"kind": "sahd", "device": device, **score},
    }
    space = {"macro": "light", "widths": [mode["width"]]}
    baseline = {
        "space": {**space, "num_cells": [2], "shared_cell": True, "require_direct_edge": True},
        "search": {"sampler": "random", "n_trials": candidates, "reuse_scores": not rescore},
    }
    spikenas = {
        "space": {**space, "num_cells": list(study.space.num_cells), "shared_cell": False},
        "budget": {"weight_bits": study.budget.weight_bits, "max_parameters": budget},
        "search": {"sampler": "cellbycell", "ops": list(study.search.ops)},
    }
    return config_from_dict({**common, **baseline}), config_from_dict({**common, **spikenas})


def baseline_progress(total: int, count_valid: bool):
    """Progress lines; with ``count_valid`` the search stops after ``total`` valid candidates
    (SNASNet's sampler redraws an invalid cell, so its 5,000 candidates are all scored)."""
    start = time.perf_counter()

    def callback(study: optuna.Study, trial: Trial) -> None:
        done = len(feasible_trials(study)) if count_valid else trial.number + 1
        if count_valid and done >= total:
            study.stop()
        if trial.user_attrs.get("feasible", True) and done % PROGRESS_EVERY == 0 or done == total:
            elapsed = time.perf_counter() - start
            log(
                f"  baseline {done}/{total} trials, {len(scored_trials(study))} scored, "
                f"{elapsed:.0f}s, about {elapsed / done * (total - done):.0f}s to go"
            )

    return callback


def timed_search(objective, sampler, n_trials, callbacks) -> tuple[optuna.Study, float, dict]:
    """Run one in-memory study; only ``study.optimize`` is timed."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    probe = Probe()
    start = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, callbacks=callbacks)
    return study, time.perf_counter() - start, probe.report()


def feasible_trials(study: optuna.Study) -> list[Trial]:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return [t for t in done if t.user_attrs["feasible"]]


def scored_trials(study: optuna.Study) -> list[Trial]:
    """Trials whose network was actually built and scored (feasible, not a duplicate)."""
    return [t for t in feasible_trials(study) if "duplicate_of" not in t.user_attrs]


def best_trial(study: optuna.Study) -> Trial:
    return max((t for t in feasible_trials(study) if math.isfinite(t.value)), key=lambda t: t.value)


def describe(trial: Trial) -> dict[str, Any]:
    keys = ("architecture", "num_cells", "parameters")
    return {"trial": trial.number, "score": round(trial.value, 4)} | {
        k: trial.user_attrs[k] for k in keys
    }


def architecture_of(trial: Trial) -> Architecture:
    attrs = trial.user_attrs
    return Architecture.parse(attrs["architecture"], attrs["num_cells"], attrs["width"])


def train_all(archs: dict[str, Architecture], objective, settings, seed, device) -> dict:
    """Validation accuracy of each architecture after the same short training, per seed."""
    out: dict[str, Any] = {}
    for name, arch in archs.items():
        accs = []
        for s in range(seed, seed + TRAIN_SEEDS):
            result = train_architecture(
                arch, objective.macro, objective.dataset, settings, seed=s, device=device
            )
            accs.append(result.final_val_accuracy)
            log(f"  trained {name} seed {s}: val accuracy {accs[-1]:.4f} in {result.seconds:.0f}s")
        out[name] = {
            "val_accuracy": [round(a, 4) for a in accs],
            "mean": round(statistics.mean(accs), 4),
            "std": round(statistics.stdev(accs), 4),
        }
    return out


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = "quick" if args.quick else "full"
    mode, total = MODES[name], Probe()
    rescore = args.baseline == "snasnet"
    base_config, ours_config = make_configs(mode, args.seed, args.candidates, args.device, rescore)
    baseline, spikenas = SpikeNASObjective(base_config), SpikeNASObjective(ours_config)
    conv = Cell.from_edges({edge: op_code("conv3x3") for edge in EDGES})
    for objective in (baseline, spikenas):  # untimed warm-up: first-call overheads
        objective.score(Architecture((conv, conv), mode["width"]))

    log(f"baseline ({args.baseline}): random search, {args.candidates} candidates ({name}: {mode})")
    progress = [baseline_progress(args.candidates, count_valid=rescore)]
    sampler = make_sampler("random", args.seed)
    n_trials = None if rescore else args.candidates
    base_study, base_seconds, base_load = timed_search(baseline, sampler, n_trials, progress)
    log(f"baseline done in {base_seconds:.1f}s; SpikeNAS: cell-by-cell search")
    sampler = make_sampler(
        "cellbycell",
        args.seed,
        space=spikenas.space,
        ops=spikenas.config.search.ops,
        fits_budget=spikenas.fits_budget,
    )
    ours_study, ours_seconds, ours_load = timed_search(spikenas, sampler, None, [])
    phases = [
        {"cells": p.k, "candidates": len(p.candidates)} for p in sampler.state(ours_study).phases
    ]
    log(f"SpikeNAS done in {ours_seconds:.1f}s: {phases}")

    base_best, result = best_trial(base_study), sampler.result(ours_study)
    memory_ok = result.user_attrs["memory_bits"] <= ours_config.budget.memory_bits
    base_feasible, base_scored = feasible_trials(base_study), scored_trials(base_study)
    # SNASNet would score every candidate: add what the skipped ones would have cost.
    per_score = statistics.mean(t.user_attrs["score_seconds"] for t in base_scored)
    rescored = base_seconds + (len(base_feasible) - len(base_scored)) * per_score

    settings = TrainSettings(timesteps=mode["timesteps"], **TRAINING[name], **TRAIN_RECIPE)
    note = (
        f"{settings.optimizer} lr {settings.lr} (cosine to {settings.min_lr}), {settings.epochs} "
        f"epoch(s) of at most {settings.max_train_batches} batches of {settings.batch_size}, "
        f"T = {settings.timesteps}, seeds {args.seed}..{args.seed + TRAIN_SEEDS - 1}; accuracy "
        "on the validation split" + ("; tiny (--quick): a smoke test only" if args.quick else "")
    )
    log(f"training both architectures: {note}")
    train_load = Probe()
    archs = {"baseline": architecture_of(base_best), "spikenas": architecture_of(result)}
    training = train_all(archs, baseline, settings, args.seed, baseline.device)
    return {
        "speedup": round(base_seconds / ours_seconds, 2),
        "baseline_seconds": round(base_seconds, 2),
        "spikenas_seconds": round(ours_seconds, 2),
        "baseline_best_score": round(base_best.value, 4),
        "spikenas_best_score": round(result.value, 4),
        "spikenas_feasible": bool(result.user_attrs["feasible"]) and memory_ok,
        "baseline_mode": args.baseline,
        "speedup_if_rescored_estimate": round(rescored / ours_seconds, 2),
        "baseline_candidates": len(base_study.trials),
        "baseline_invalid": len(base_study.trials) - len(base_feasible),
        "baseline_duplicates": len(base_feasible) - len(base_scored),
        "baseline_scored": len(base_scored),
        "baseline_mean_score_seconds": round(per_score, 4),
        "spikenas_candidates": len(ours_study.trials),
        "spikenas_scored": len(scored_trials(ours_study)),
        "spikenas_phases": phases,
        "baseline_best": describe(base_best),
        "spikenas_result": describe(result),
        "spikenas_best_trial": describe(best_trial(ours_study)),
        "training": training | {"recipe": note},
        "settings": mode
        | dict(mode=name, seed=args.seed, budget_parameters=ours_config.budget.max_parameters)
        | dict(max_cells=ours_config.space.num_cells[-1], ops=list(ours_config.search.ops)),
        "contention": {
            "baseline": base_load,
            "spikenas": ours_load,
            "training": train_load.report(),
            "total": total.report(),
        },
        "machine": machine_info(baseline.device),
        "command": " ".join(["python benchmarks/search_speedup.py", *sys.argv[1:]]),
    }


def machine_info(device: torch.device) -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }


def print_table(r: dict[str, Any]) -> None:
    m, s, c, t = r["machine"], r["settings"], r["contention"], r["training"]
    base, ours, best = r["baseline_best"], r["spikenas_result"], r["spikenas_best_trial"]
    print(
        f"machine: {m['cpu_model']}, {m['cpu_count']} CPUs, torch {m['torch']} with "
        f"{m['torch_threads']} thread(s), device {m['device']}\nsetting: {s['dataset']}, macro "
        f"light, width {s['width']}, scoring batch {s['batch_size']} x {s['repeats']}, "
        f"T = {s['timesteps']}, seed {s['seed']}; SpikeNAS: {'/'.join(s['ops'])}, 2.."
        f"{s['max_cells']} cells, budget {s['budget_parameters']:,} parameters\n"
    )

    def share(name: str) -> str:
        value = c[name].get("other_processes_cpu_share")
        return "?" if value is None else f"{100 * value:.0f}%"

    def accuracy(name: str) -> str:
        return f"{t[name]['mean']:.4f} ± {t[name]['std']:.4f}"

    rows = [
        ("", "SNASNet random", "SpikeNAS cell-by-cell"),
        ("search seconds", f"{r['baseline_seconds']:.1f}", f"{r['spikenas_seconds']:.1f}"),
        ("candidates (trials)", r["baseline_candidates"], r["spikenas_candidates"]),
        ("networks scored", r["baseline_scored"], r["spikenas_scored"]),
        ("other processes' CPU", share("baseline"), share("spikenas")),
        ("found: score", f"{base['score']:.2f}", f"{ours['score']:.2f}"),
        ("found: cells", base["num_cells"], ours["num_cells"]),
        ("found: parameters", f"{base['parameters']:,}", f"{ours['parameters']:,}"),
        (f"val accuracy, {TRAIN_SEEDS} seeds", accuracy("baseline"), accuracy("spikenas")),
    ]
    for label, a, b in rows:
        print(f"{label:<24} {a!s:>20} {b!s:>24}")
    if r["baseline_mode"] == "snasnet":
        note = "the baseline scored every valid candidate, as SNASNet does."
    else:
        note = (
            f"the baseline reused {r['baseline_duplicates']} duplicate scores; had it rescored "
            f"them, as SNASNet does, about {r['speedup_if_rescored_estimate']:.1f}x (estimate)."
        )
    print(
        f"\nspeed-up {r['speedup']:.1f}x measured; {note}\n"
        f"baseline: {base['architecture']}\n"
        f"SpikeNAS: {ours['architecture']} (feasible: {r['spikenas_feasible']})\n"
        f"SpikeNAS best-scoring trial: {best['architecture']} (score {best['score']:.2f})\n"
        f"training: {t['recipe']}\nrun: {c['total']['wall_seconds']:.0f}s wall"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny networks, JSON, < 2 min")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seed", type=int, default=0, help="study, sampler and training seed")
    parser.add_argument("--candidates", type=int, default=5000, help="baseline candidates")
    parser.add_argument(
        "--baseline",
        choices=("snasnet", "deduplicated"),
        default="snasnet",
        help="snasnet: as SNASNet searches, 5,000 valid candidates each scored; deduplicated: "
        "5,000 trials through this package's objective (invalid cells and duplicates free)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.candidates < 1 or args.threads < 1 or args.seed < 0:
        parser.error("--candidates and --threads must be >= 1, --seed >= 0")
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = run(args)
    others = report["contention"]["total"].get("other_processes_cpu_share")
    if others is not None and others > 0.05:
        log(f"WARNING: other processes used {100 * others:.0f}% of the CPU; timings disturbed")
    if args.json or args.quick:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
