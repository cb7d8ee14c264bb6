"""NeuroNAS's hardware-aware search against SNASNet's and Optuna's samplers, on an IMC chip model.

NeuroNAS (Putra & Shafique) reports, against the state of the art, 92 % area savings, 84 %
energy savings, 1.2x lower latency and a 6.6x faster search, and says the state of the art
fails to meet all its constraints at once. This script measures the same quantities in one run,
with one hardware profile (``--profile``, default ``spikesim-64``), on ``studies/neuronas_imc.toml``
(macro ``light``, Animal-MNIST, width 16, 8-bit weights, T = 5, budgets on memory, area, latency
and energy):

* hardware-aware search (NeuroNAS): ``CellByCellSampler`` over ``{skip, conv3x3}``, 2..4 cells,
  proposing only candidates within all four budgets, run until it stops; the grown network is
  ``sampler.result(study)``.
* SNASNet-style search, hardware-unaware: ``search_speedup.py``'s baseline (random sampler, full
  op set, one shared cell, 2 cells, ``require_direct_edge``, no budgets, best score wins) at the
  same macro, width, dataset and scorer. ``--baseline deduplicated`` (default) reuses the scores
  of canonical duplicates (a faster baseline: a conservative search-time ratio; the JSON also
  gives the ratio had it rescored them); ``--baseline snasnet`` scores every valid candidate.
* both found networks priced by the analytic crossbar model (``objective.check``: area,
  latency, energy, memory, budgets broken), then trained briefly with 8-bit weights for 3 seeds;
  validation accuracy with 8-bit weights and, on the same trained weights, with float weights
  (what the quantization costs). The test split is never used.
* Optuna's TPE, NSGA-II and random samplers (``samplers.make_sampler``) under the same four budgets
  (same objective; infeasible trials return -inf and record their constraints with
  ``trial.set_constraint``, which Optuna 5's TPE and NSGA-II read without a ``constraints_func``),
  each given as many trials as the hardware-aware search used, for ``--sampler-seeds`` seeds.

Timing as in ``search_speedup.py``: in-memory studies, objectives built and the scorer warmed up
before any timing, ``study.optimize`` timed, ``contention`` = other processes' CPU share. Both
searches score with batches of 32, once (the study file's 64 x 2 would make SNASNet's 5,000
candidates take over an hour on 2 cores), and without ``[hardware] measure_activity`` (a runtime
energy estimate per scored network: bookkeeping, not search, which the baseline does not run).
``--quick`` keeps the hardware model (width 16, T = 5) but scores batches of 16, runs 200
baseline candidates and a tiny training: a smoke test.

    .venv/bin/python benchmarks/hardware_savings.py --quick     # JSON, < 3 min on 2 cores
    .venv/bin/python benchmarks/hardware_savings.py --json --out benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import search_speedup as ss
import torch

from optuna_spikenas.config import load_config
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.quantize import float_weights
from optuna_spikenas.samplers import make_sampler
from optuna_spikenas.space import EDGES, Architecture, Cell, op_code
from optuna_spikenas.train import TrainSettings, build_trainable, evaluate, train_network

NEURONAS_STUDY = Path(__file__).resolve().parent.parent / "studies" / "neuronas_imc.toml"
CLAIMS = {"area_savings": 0.92, "energy_savings": 0.84, "latency_ratio": 1.2, "search_ratio": 6.6}
# Scoring batch and repeats of both searches, baseline candidates; the training of both winners.
MODES: dict[str, dict[str, Any]] = {
    "quick": dict(batch_size=16, repeats=1, candidates=200),
    "full": dict(batch_size=32, repeats=1, candidates=5000),
}
TRAINING = {
    "quick": dict(epochs=1, batch_size=16, max_train_batches=3, timesteps=1),
    "full": dict(epochs=1, batch_size=32, max_train_batches=100, timesteps=None),
}
SAMPLERS = ("tpe", "nsga2", "random")
COSTS = ("area_mm2", "latency_ms", "energy_uj")
DONE = (optuna.trial.TrialState.COMPLETE,)


# --- pure helpers ----------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, Any]:
    """Values with their mean and sample standard deviation (0 for a single value)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "values": [round(v, 4) for v in values],
        "mean": round(statistics.mean(values), 4),
        "std": round(std, 4),
    }


def ratios(ours: dict[str, Any], theirs: dict[str, Any], ours_s: float, theirs_s: float) -> dict:
    """NeuroNAS's figures of merit: savings = 1 - ours / theirs (area, energy), latency and search
    time as theirs / ours (> 1: ours is lower / faster)."""
    return {
        "area_savings": round(1 - ours["area_mm2"] / theirs["area_mm2"], 4),
        "energy_savings": round(1 - ours["energy_uj"] / theirs["energy_uj"], 4),
        "latency_ratio": round(theirs["latency_ms"] / ours["latency_ms"], 3),
        "search_ratio": round(theirs_s / ours_s, 2),
    }


def run_summary(trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any]:
    """One sampler run: its feasible fraction and best feasible trial, and how often each budget
    was broken by valid candidates (``invalid``: candidates that are not valid networks)."""
    feasible = [t for t in trials if t.user_attrs["feasible"]]
    valid = [t for t in trials if t.user_attrs["constraint_valid"] == 0]
    broken = Counter(b for t in valid for b in t.user_attrs["broken_budgets"].split(", ") if b)
    best = max(feasible, key=lambda t: t.value, default=None)
    return {
        "trials": len(trials),
        "feasible_fraction": round(len(feasible) / len(trials), 4),
        "scored": sum("duplicate_of" not in t.user_attrs for t in feasible),
        "best_score": round(best.value, 4) if best else None,
        "best_architecture": best.user_attrs["architecture"] if best else None,
        "broken": dict(broken) | {"invalid": len(trials) - len(valid)},
    }


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One sampler over several seeds: seeds whose best trial is feasible, the mean feasible
    fraction of trials, and the best feasible score over all seeds (None if none was found)."""
    bests = [r["best_score"] for r in runs if r["best_score"] is not None]
    broken: Counter[str] = Counter()
    for r in runs:
        broken.update(r["broken"])
    return {
        "seeds": len(runs),
        "seeds_feasible": len(bests),
        "feasible_fraction_mean": round(statistics.mean(r["feasible_fraction"] for r in runs), 4),
        "best_feasible_score": round(max(bests), 4) if bests else None,
        "best_feasible_score_mean": round(statistics.mean(bests), 4) if bests else None,
        "budgets_broken": dict(sorted(broken.items())),
        "runs": runs,
    }


# --- the searches and the measurements -------------------------------------------------------


def make_objectives(args: argparse.Namespace, mode: dict[str, Any]):
    """The hardware-aware objective (the NeuroNAS study, with --profile) and the SNASNet-style
    one (search_speedup's baseline rules) with the same dataset, macro, width and scorer."""
    config = load_config(NEURONAS_STUDY)
    score = {k: mode[k] or getattr(config.score, k) for k in ("batch_size", "repeats")}
    config = replace(
        config,
        seed=args.seed,
        hardware=replace(config.hardware, profile=args.profile, measure_activity=False),
        score=replace(config.score, device=args.device, **score),
    )
    shape = dict(dataset=config.dataset.name, width=config.space.widths[0], **score)
    shape["timesteps"] = config.score.timesteps
    base = ss.make_configs(
        shape, args.seed, args.candidates, args.device, args.baseline == "snasnet"
    )
    base = replace(
        base[0], dataset=config.dataset, space=replace(base[0].space, macro=config.space.macro)
    )
    return SpikeNASObjective(config), SpikeNASObjective(base)


def snasnet_search(objective, args: argparse.Namespace):
    """search_speedup's SNASNet-style random search: (study, seconds, load)."""
    rescore = args.baseline == "snasnet"
    progress = [ss.baseline_progress(args.candidates, count_valid=rescore)]
    sampler = make_sampler("random", args.seed)
    return ss.timed_search(objective, sampler, None if rescore else args.candidates, progress)


def costs(objective: SpikeNASObjective, arch: Architecture) -> dict[str, Any]:
    """Hardware costs of ``arch`` on the hardware-aware objective's profile and budgets."""
    check = objective.check(arch)
    hardware = {k: round(getattr(check.hardware, k), 4) for k in COSTS}
    return {
        "architecture": str(arch),
        "num_cells": arch.num_cells,
        "parameters": check.memory.parameters,
        "memory_megabytes": round(check.memory.memory_bits / 8e6, 4),
        **hardware,
        "meets_all_budgets": check.feasible,
        "budgets_broken": list(check.broken),
        "excess": {k: round(v, 4) for k, v in check.excess.items()},
    }


def sampler_baselines(objective, n_trials: int, seeds: list[int]) -> dict[str, Any]:
    """Optuna's samplers under the same budgets and number of trials, per seed."""
    out = {}
    for name in SAMPLERS:
        runs = []
        for seed in seeds:
            study = optuna.create_study(
                direction="maximize",
                sampler=make_sampler(name, seed),
            )
            study.optimize(objective, n_trials=n_trials)
            runs.append({"seed": seed} | run_summary(study.get_trials(states=DONE)))
            ss.log(
                f"  {name} seed {seed}: {runs[-1]['feasible_fraction']:.0%} feasible, best "
                f"{runs[-1]['best_score']}"
            )
        out[name] = summarize_runs(runs)
    return out


def train_both_ways(objective, arch: Architecture, settings: TrainSettings, seeds) -> dict:
    """Validation accuracy after the same short training with k-bit weights, and the float-weight
    accuracy of the very same trained weights."""
    quantized, floats = [], []
    for seed in seeds:
        network = build_trainable(arch, objective.macro, objective.dataset, settings, seed=seed)
        result = train_network(
            network, objective.dataset, settings, seed=seed, device=objective.device
        )
        with float_weights(network):
            floats.append(
                evaluate(network, objective.dataset.val, settings.batch_size, objective.device)
            )
        quantized.append(result.final_val_accuracy)
        ss.log(
            f"  seed {seed}: val accuracy {quantized[-1]:.4f} ({settings.weight_bits}-bit), "
            f"{floats[-1]:.4f} (float), {result.seconds:.0f}s"
        )
    q, f = spread(quantized), spread(floats)
    return {"quantized": q, "float": f, "quantization_cost": round(f["mean"] - q["mean"], 4)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = "quick" if args.quick else "full"
    mode, total = MODES[name], ss.Probe()
    ours, base = make_objectives(args, mode)
    conv = Cell.from_edges({edge: op_code("conv3x3") for edge in EDGES})
    for objective in (base, ours):  # untimed warm-up: first-call overheads
        objective.score(Architecture((conv, conv), objective.space.widths[0]))

    ss.log(f"hardware-aware search (cell-by-cell, {args.profile}, four budgets)")
    sampler = make_sampler(
        "cellbycell",
        args.seed,
        space=ours.space,
        ops=ours.config.search.ops,
        fits_budget=ours.fits_budget,
    )
    ours_study, ours_seconds, ours_load = ss.timed_search(ours, sampler, None, [])
    result = sampler.result(ours_study)
    phases = [
        {"cells": p.k, "candidates": len(p.candidates)} for p in sampler.state(ours_study).phases
    ]
    ss.log(f"done in {ours_seconds:.1f}s, {len(ours_study.trials)} trials: {phases}")
    ss.log(f"SNASNet-style search ({args.baseline}): {args.candidates} candidates")
    base_study, base_seconds, base_load = snasnet_search(base, args)
    base_best = ss.best_trial(base_study)
    base_feasible, base_scored = ss.feasible_trials(base_study), ss.scored_trials(base_study)
    per_score = statistics.mean(t.user_attrs["score_seconds"] for t in base_scored)
    rescored = base_seconds + (len(base_feasible) - len(base_scored)) * per_score
    ss.log(f"done in {base_seconds:.1f}s")

    archs = {"snasnet": ss.architecture_of(base_best), "neuronas": ss.architecture_of(result)}
    hardware = {k: costs(ours, a) for k, a in archs.items()}
    best = ss.best_trial(ours_study)  # the grown network need not be the best-scoring one
    hardware["neuronas_best_scoring"] = costs(ours, ss.architecture_of(best))
    measured = ratios(hardware["neuronas"], hardware["snasnet"], ours_seconds, base_seconds)
    measured["search_ratio_if_rescored"] = round(rescored / ours_seconds, 2)

    seeds = list(range(args.seed, args.seed + args.sampler_seeds))
    ss.log(f"Optuna's samplers, {len(ours_study.trials)} trials each, seeds {seeds}")
    sampler_load = ss.Probe()
    samplers = sampler_baselines(ours, len(ours_study.trials), seeds)
    sampler_load = sampler_load.report()

    recipe = {**TRAINING[name], **ss.TRAIN_RECIPE}
    recipe["timesteps"] = recipe["timesteps"] or ours.config.score.timesteps
    settings = TrainSettings(weight_bits=ours.config.budget.weight_bits, **recipe)
    train_seeds = list(range(args.seed, args.seed + ss.TRAIN_SEEDS))
    ss.log(f"training both networks: {settings}")
    train_load, training = ss.Probe(), {}
    for key, arch in archs.items():
        ss.log(f" {key}: {arch}")
        training[key] = train_both_ways(ours, arch, settings, train_seeds)
    whole = total.report()
    if whole.get("other_processes_cpu_share", 0.0) > 0.05:
        share = whole["other_processes_cpu_share"]
        ss.log(f"WARNING: other processes took {share:.0%} of the CPU; the timings are disturbed")
    return {
        "claims": CLAIMS,
        "measured": measured,
        "profile": ours.profile.name,
        "budgets": ours.check(archs["neuronas"]).budgets,
        "hardware": hardware,
        "search": {
            "neuronas_seconds": round(ours_seconds, 2),
            "snasnet_seconds": round(base_seconds, 2),
            "neuronas_candidates": len(ours_study.trials),
            "neuronas_scored": len(ss.scored_trials(ours_study)),
            "neuronas_phases": phases,
            "found": {"snasnet": ss.describe(base_best), "neuronas": ss.describe(result)},
            "neuronas_best_trial": ss.describe(best),
            "snasnet_mode": args.baseline,
            "snasnet_candidates": len(base_study.trials),
            "snasnet_scored": len(base_scored),
            "snasnet_duplicates": len(base_feasible) - len(base_scored),
            "snasnet_mean_score_seconds": round(per_score, 4),
        },
        "samplers": samplers,
        "training": training | {"settings": vars(settings) | {"seeds": train_seeds}},
        "settings": {
            "mode": name,
            "seed": args.seed,
            "study": str(NEURONAS_STUDY.relative_to(NEURONAS_STUDY.parent.parent)),
            "dataset": ours.config.dataset.name,
            "macro": ours.config.space.macro,
            "width": ours.space.widths[0],
            "weight_bits": ours.config.budget.weight_bits,
            "score": vars(ours.config.score),
            "ops": list(ours.config.search.ops),
            "sampler_seeds": seeds,
        },
        "note": f"quick: {mode}, a tiny training: a smoke test" if args.quick else None,
        "contention": {
            "neuronas": ours_load,
            "snasnet": base_load,
            "samplers": sampler_load,
            "training": train_load.report(),
            "total": whole,
        },
        "machine": ss.machine_info(ours.device),
        "command": " ".join(["python benchmarks/hardware_savings.py", *sys.argv[1:]]),
    }


# --- output ----------------------------------------------------------------------------------


def print_table(r: dict[str, Any]) -> None:
    m, s, h, t, c = r["machine"], r["settings"], r["hardware"], r["training"], r["contention"]
    search, measured = r["search"], r["measured"]
    print(
        f"machine: {m['cpu_model']}, {m['cpu_count']} CPUs, torch {m['torch']} with "
        f"{m['torch_threads']} thread(s)\nsetting: {s['study']} ({s['mode']}), {s['dataset']}, "
        f"macro {s['macro']}, width {s['width']}, {s['weight_bits']}-bit weights, profile "
        f"{r['profile']}, T = {s['score']['timesteps']}, seed {s['seed']}\nbudgets: "
        + ", ".join(f"{k} {v:g}" for k, v in r["budgets"].items())
        + "  (memory in bits)\n"
    )

    def acc(key: str, kind: str) -> str:
        return f"{t[key][kind]['mean']:.4f} ± {t[key][kind]['std']:.4f}"

    def row(label: str, show) -> None:  # show(key) for key in ("snasnet", "neuronas")
        print(f"{label:<24} {show('snasnet')!s:>24} {show('neuronas')!s:>26}")

    print(f"{'':<24} {'SNASNet-style':>24} {'NeuroNAS (cell-by-cell)':>26}")
    row("search seconds", lambda k: f"{search[k + '_seconds']:.1f}")
    row("candidates / scored", lambda k: f"{search[k + '_candidates']} / {search[k + '_scored']}")
    row("cells, parameters", lambda k: f"{h[k]['num_cells']}, {h[k]['parameters']:,}")
    for key in ("memory_megabytes", *COSTS):
        row(key, lambda k, key=key: h[k][key])
    row("budgets broken", lambda k: ", ".join(h[k]["budgets_broken"]) or "none")
    row("score", lambda k: search["found"][k]["score"])
    row(f"val acc {s['weight_bits']}-bit", lambda k: acc(k, "quantized"))
    row("val acc float weights", lambda k: acc(k, "float"))
    print(f"\n{'':<24} {'claimed':>10} {'measured':>10}")
    for key, claim in CLAIMS.items():
        print(f"{key:<24} {claim:>10g} {measured[key]:>10g}")
    print(f"{'search_ratio_if_rescored':<24} {'':>10} {measured['search_ratio_if_rescored']:>10g}")
    print(
        f"\nOptuna's samplers, {search['neuronas_candidates']} trials each, same four budgets "
        f"(NeuroNAS best feasible score {search['neuronas_best_trial']['score']}):"
    )
    for name, v in r["samplers"].items():
        print(
            f"  {name:<7} feasible best in {v['seeds_feasible']}/{v['seeds']} seeds, "
            f"{100 * v['feasible_fraction_mean']:.0f}% feasible trials, best feasible score "
            f"{v['best_feasible_score']} (mean {v['best_feasible_score_mean']})"
        )
    shares = {k: v.get("other_processes_cpu_share") for k, v in c.items()}
    top = h["neuronas_best_scoring"]
    print(
        f"\nSNASNet: {h['snasnet']['architecture']}\nNeuroNAS: {h['neuronas']['architecture']}\n"
        f"NeuroNAS best-scoring trial: {top['architecture']}, score "
        f"{search['neuronas_best_trial']['score']}, "
        + ", ".join(f"{k} {top[k]}" for k in COSTS)
        + f"\ntraining: {t['settings']}\nother processes' CPU share: {shares}\n"
        f"run: {c['total']['wall_seconds']:.0f}s wall"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke test, JSON, < 3 min")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON object to this file")
    parser.add_argument("--profile", default="spikesim-64", help="hardware profile name or .toml")
    parser.add_argument("--seed", type=int, default=0, help="study, sampler and training seed")
    parser.add_argument("--candidates", type=int, help="baseline candidates (5000; quick 200)")
    parser.add_argument("--baseline", choices=("deduplicated", "snasnet"), default="deduplicated")
    parser.add_argument("--sampler-seeds", type=int, default=3, help="seeds per Optuna sampler")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.candidates is None:
        args.candidates = MODES["quick" if args.quick else "full"]["candidates"]
    if min(args.candidates, args.threads, args.sampler_seeds) < 1 or args.seed < 0:
        parser.error("--candidates, --threads and --sampler-seeds must be >= 1, --seed >= 0")
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = run(args)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.json or args.quick:
        print(text)
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
