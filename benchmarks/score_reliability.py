"""How reliable is the training-free score? Seed-to-seed rank agreement, measured (no training).

A search ranks candidates by one score each. If scoring the same candidates again from another
study seed (other initial weights, other scoring batches) ranks them differently, the search's
choice is partly chance. This script measures that: it draws ``--archs`` (30) distinct valid
architectures of the README's quickstart setting (``studies/quickstart.toml``: macro ``light`` on
the embedded Animal-MNIST, width 16, 2 shared cells; only architectures within the config's
budget, the ones the search scores), scores every one of them under each of ``--seeds`` (0 1 2)
study seeds with each scoring variant, and reports per variant:

* ``tau``: Kendall's tau-b (``scipy.stats.kendalltau``) between the rankings of two seeds, mean
  (and min, max) over every pair of seeds: the score's reproducibility;
* ``sd_within`` and ``sd_across``: the score's standard deviation over seeds within an
  architecture (mean over architectures) and that of the architectures' mean scores;
* ``seconds``: the mean wall time to score one architecture (the cost of the variant).

The variants (``VARIANTS``; ``--variants`` picks some; ``AxB`` is B batches of A images):

* ``before``: the scoring before issue 17: one initialisation whose weights are seeded by the
  (study seed, architecture) pair, so any two candidates have unrelated weights; 64x2;
* ``crn ...``: common random numbers, as ``SpikeNASObjective`` scores now: initial weights keyed
  by (initialisation seed, module, shape), so candidates share the weights of every module they
  have in common (stem, head, matching edges), on the same batches; averaged over ``inits``
  initialisations; ``crn 32x1, 32 inits`` is the quickstart's setting;
* ``pooled 64x2, 4 inits`` (not in the default run): the initialisations' kernels averaged
  before the log-determinant instead of their scores;
* ``hamming``, ``jacob_cov``: the other network proxies, at 32x1 with 8 inits; ``params`` and
  ``convs``: the counts, exactly reproducible (tau 1 by construction), the naive baselines.

``--studies A B`` instead compares two finished studies: Kendall's tau between their scores over
the architectures both scored (e.g. two quickstart runs that differ only in ``seed``).

Rerun (from the repository root):

    .venv/bin/python benchmarks/score_reliability.py --quick          # a smoke test, ~2 min
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/score_reliability.py --threads 1 \\
        --json > benchmarks/results/score_reliability.json            # the full run, ~25 min
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from machine_load import Probe
from proxy_quality import sample_architectures
from scipy import stats
from search_speedup import machine_info

from optuna_spikenas.config import Config, load_config
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.score import (
    SpikeKernelRecorder,
    log_abs_det,
    sahd_kernel,
    sahd_score,
    scoring_mode,
)
from optuna_spikenas.snn.network import build_network
from optuna_spikenas.space import Architecture
from optuna_spikenas.study_setup import candidate_seed

QUICKSTART = Path(__file__).resolve().parent.parent / "studies" / "quickstart.toml"


def _setting(batch: int, repeats: int, inits: int, **extra: Any) -> dict[str, Any]:
    return {"batch_size": batch, "repeats": repeats, "inits": inits, **extra}


VARIANTS: dict[str, dict[str, Any]] = {
    "before": _setting(64, 2, 1, scheme="per-candidate"),
    "crn 64x2": _setting(64, 2, 1),
    "crn 64x2, 4 inits": _setting(64, 2, 4),
    "crn 64x2, 8 inits": _setting(64, 2, 8),
    "crn 64x4": _setting(64, 4, 1),
    "crn 32x1": _setting(32, 1, 1),
    "crn 32x1, 8 inits": _setting(32, 1, 8),
    "crn 32x1, 32 inits": _setting(32, 1, 32),
    "pooled 64x2, 4 inits": _setting(64, 2, 4, scheme="pooled"),
    "hamming 32x1, 8 inits": _setting(32, 1, 8, kind="hamming"),
    "jacob_cov 32x1, 8 inits": _setting(32, 1, 8, kind="jacob_cov"),
    "params": {"kind": "params"},
    "convs": {"kind": "convs"},
}
"""Each variant's ``[score]`` settings (``scheme``: how weights are drawn; ``AxB``: B batches of
A images). The quickstart scores like ``crn 32x1, 32 inits``."""
DEFAULT_VARIANTS = [name for name in VARIANTS if not name.startswith("pooled")]
QUICK = dict(archs=8, seeds=(0, 1), variants=("before", "crn 32x1", "crn 32x1, 8 inits", "convs"))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class PerCandidateWeights(SpikeNASObjective):
    """The objective's scoring before issue 17: SAHD on one network whose weights are seeded by
    (study seed, architecture), unrelated between candidates."""

    def score(self, arch: Architecture) -> float:
        network = build_network(
            arch, self.macro, self.config.score.timesteps, candidate_seed(self.config.seed, arch)
        )
        return sahd_score(network, self.batches)


class PooledKernels(SpikeNASObjective):
    """SAHD with the kernels of every initialisation averaged before the log-determinant (per
    batch), instead of averaging the initialisations' scores."""

    def score(self, arch: Architecture) -> float:
        networks = [self.build(arch, k) for k in range(len(self.inits))]
        scores = []
        for images in self.batches:
            total, count = None, 0
            for network in networks:
                with scoring_mode(network), torch.no_grad():
                    with SpikeKernelRecorder(network, sahd_kernel) as recorder:
                        network(images)
                total = recorder.kernel_sum if total is None else total + recorder.kernel_sum
                count += recorder.count
            scores.append(log_abs_det(total / count))
        return statistics.fmean(scores)


def variant_config(config: Config, variant: str, seed: int) -> Config:
    settings = {k: v for k, v in VARIANTS[variant].items() if k != "scheme"}
    return dataclasses.replace(
        config, seed=seed, score=dataclasses.replace(config.score, **settings)
    )


def score_all(config: Config, variant: str, archs: list[Architecture], device: str):
    """Each architecture's score under ``config`` and the mean seconds per architecture."""
    scheme = VARIANTS[variant].get("scheme")
    kind = {"per-candidate": PerCandidateWeights, "pooled": PooledKernels}.get(scheme)
    objective = (kind or SpikeNASObjective)(config, device)
    objective.score(archs[0])  # untimed warm-up: first-call overheads
    start = time.perf_counter()
    scores = [objective.score(arch) for arch in archs]
    return scores, (time.perf_counter() - start) / len(archs)


def seed_agreement(by_seed: dict[int, list[float]]) -> dict[str, Any]:
    """Kendall's tau-b between every pair of seeds' scores, and the spread within and across."""
    taus = [
        float(stats.kendalltau(by_seed[a], by_seed[b]).statistic)
        for a, b in itertools.combinations(sorted(by_seed), 2)
    ]
    table = np.array([by_seed[s] for s in sorted(by_seed)])  # seeds x architectures
    finite = np.isfinite(table).all(axis=0)
    table = table[:, finite]
    out: dict[str, Any] = {
        "tau": round(statistics.fmean(taus), 4) if all(np.isfinite(taus)) else None,
        "tau_min": round(min(taus), 4),
        "tau_max": round(max(taus), 4),
        "tau_pairs": [round(t, 4) for t in taus],
        "sd_within": round(float(table.std(axis=0, ddof=1).mean()), 4),
        "sd_across": round(float(table.mean(axis=0).std(ddof=1)), 4),
    }
    if not finite.all():
        out["architectures_never_firing"] = int((~finite).sum())
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    probe = Probe()
    config = load_config(args.config)
    reference = SpikeNASObjective(config, args.device)
    pool = sample_architectures(reference.space, args.archs * 20, args.arch_seed)
    archs = [a for a in pool if reference.fits_budget(a)][: args.archs]
    if len(archs) < args.archs:
        raise SystemExit(f"only {len(archs)} architectures fit the config's budget")
    log(f"{len(archs)} architectures within budget; seeds {list(args.seeds)}")
    variants: dict[str, Any] = {}
    for variant in args.variants:
        by_seed: dict[int, list[float]] = {}
        seconds: list[float] = []
        for seed in args.seeds:
            scores, per_arch = score_all(
                variant_config(config, variant, seed), variant, archs, args.device
            )
            by_seed[seed] = scores
            seconds.append(per_arch)
            log(f"{variant}, seed {seed}: {per_arch:.3f} s per architecture")
        variants[variant] = {
            "settings": VARIANTS[variant],
            **seed_agreement(by_seed),
            "seconds": round(statistics.fmean(seconds), 4),
            "scores": {str(s): [round(v, 4) for v in by_seed[s]] for s in by_seed},
        }
        log(f"{variant}: tau {variants[variant]['tau']}")
    return {
        "benchmark": "score_reliability",
        "config": str(args.config),
        "settings": {
            "archs": len(archs),
            "arch_seed": args.arch_seed,
            "seeds": list(args.seeds),
            "batch_size": config.score.batch_size,
            "repeats": config.score.repeats,
            "inits": config.score.inits,
            "timesteps": config.score.timesteps,
        },
        "architectures": [str(a) for a in archs],
        "variants": variants,
        "machine": machine_info(reference.device),
        "contention": probe.report(),
    }


def compare_studies(storages: list[str], study_name: str) -> dict[str, Any]:
    """Kendall's tau between two studies' scores over the architectures both scored."""
    scores = []
    for storage in storages:
        study = optuna.load_study(study_name=study_name, storage=storage)
        found = {}
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            key, value = trial.user_attrs.get("canonical"), trial.values[0]
            if key is not None and trial.user_attrs.get("feasible") and np.isfinite(value):
                found[key] = value
        scores.append(found)
    common = sorted(set(scores[0]) & set(scores[1]))
    if len(common) < 2:
        raise SystemExit(f"the two studies scored {len(common)} architecture(s) in common")
    tau = stats.kendalltau([scores[0][k] for k in common], [scores[1][k] for k in common])
    return {"studies": storages, "common_architectures": len(common), "tau": float(tau.statistic)}


def print_table(result: dict[str, Any]) -> None:
    s, m = result["settings"], result["machine"]
    print(
        f"{s['archs']} architectures, seeds {s['seeds']}; base setting: batch {s['batch_size']} "
        f"x {s['repeats']}, {s['inits']} init(s), T = {s['timesteps']}\nmachine: "
        f"{m['cpu_model']}, torch {m['torch']}, {m['torch_threads']} thread(s); other processes "
        f"took {result['contention'].get('other_processes_cpu_share', '?')} of the CPU"
    )
    header = ("tau", "min", "max", "sd in")
    print(f"{'variant':<26}{''.join(f'{h:>8}' for h in header)}{'sd across':>11}{'s/arch':>9}")
    for name, v in result["variants"].items():
        tau = "n/a" if v["tau"] is None else f"{v['tau']:.3f}"
        print(
            f"{name:<26}{tau:>8}{v['tau_min']:>8.3f}{v['tau_max']:>8.3f}{v['sd_within']:>8.2f}"
            f"{v['sd_across']:>11.2f}{v['seconds']:>9.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=QUICKSTART)
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--arch-seed", type=int, default=2024, help="draws the architectures")
    parser.add_argument("--seeds", type=int, nargs="+", default=(0, 1, 2))
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS, metavar="NAME"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="8 architectures, 2 seeds, 4 variants")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--studies", nargs=2, metavar="STORAGE", help="compare two studies")
    parser.add_argument("--study-name", default="quickstart", help="with --studies")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.studies:
        print(json.dumps(compare_studies(args.studies, args.study_name), indent=2))
        return 0
    if len(args.seeds) < 2 or args.archs < 3:
        parser.error("give at least 2 seeds and 3 architectures")
    if args.quick:
        args.archs, args.seeds, args.variants = QUICK["archs"], QUICK["seeds"], QUICK["variants"]
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
