"""Does the cell-by-cell search pick the same cells from another study seed? Measured.

SpikeNAS grows a network one cell at a time: phase k scores every candidate for cell k after the
cells already chosen and keeps the best. When the score's noise between seeds is larger than the
differences between candidates, each seed picks another winner. This script runs the whole
search of ``studies/spikenas_memory.toml`` (or ``--config``) once per study seed (``--seeds``,
0-4), in memory, and reports each seed's winner per phase and how often the seeds agree:

* ``agreement[k]``: the share of seed pairs whose phase-k winners compute the same function (the
  same ``canonical`` text), among pairs that reached phase k with the same earlier cells;
* ``same_result``: how many seeds grew exactly the most common final network.

It uses only what the package has long had (``SpikeNASObjective``, ``make_sampler``, the
sampler's ``state``), so the same script measures an older checkout too:
``PYTHONPATH=/path/to/old/checkout python benchmarks/phase_agreement.py``.

Rerun (from the repository root):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phase_agreement.py --threads 1 --json \\
        > benchmarks/results/phase_agreement.json      # about 1-2 min per seed
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import torch
from machine_load import Probe

import optuna_spikenas
from optuna_spikenas.config import load_config
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.samplers import make_sampler
from optuna_spikenas.space import Cell

SPIKENAS = Path(__file__).resolve().parent.parent / "studies" / "spikenas_memory.toml"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def search(config_path: Path, seed: int, device: str) -> dict[str, Any]:
    """One cell-by-cell search from study seed ``seed``: each phase's winner and score."""
    config = load_config(config_path)
    config = dataclasses.replace(config, seed=seed)
    objective = SpikeNASObjective(config, device)
    sampler = make_sampler(
        config.search.sampler,
        seed,
        space=objective.space,
        ops=config.search.ops,
        fits_budget=objective.fits_budget,
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    start = time.perf_counter()
    while not sampler.is_complete(study):
        study.optimize(objective, n_trials=1)
    state = sampler.state(study)
    by_slot = {t.number: t for t in study.get_trials(deepcopy=False)}
    phases = []
    for phase, slot in zip(state.phases, state.winners, strict=False):
        winner = phase.candidates[slot - phase.start]
        in_phase = [by_slot[n] for n in range(phase.start, phase.end) if n in by_slot]
        scores = sorted(
            (t.value for t in in_phase if t.value is not None and t.value > float("-inf")),
            reverse=True,
        )
        phases.append(
            {
                "k": phase.k,
                "candidates": len(phase.candidates),
                "winner": str(winner.canonical()),
                "score": round(by_slot[slot].value, 4),
                "margin": round(scores[0] - scores[1], 4) if len(scores) > 1 else None,
            }
        )
    return {
        "seed": seed,
        "trials": len(study.trials),
        "seconds": round(time.perf_counter() - start, 1),
        "phases": phases,
        "result": " / ".join(p["winner"] for p in phases),
    }


def agreement(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase, the share of seed pairs with the same earlier cells that chose the same cell.
    Winners are compared by this package's canonical form (``--from-json`` recomputes a run of
    an older checkout, whose canonical form merged fewer cells, by today's)."""
    runs = [
        {
            **r,
            "phases": [
                {**p, "winner": str(Cell.parse(p["winner"]).canonical())} for p in r["phases"]
            ],
        }
        for r in runs
    ]
    for r in runs:
        r["result"] = " / ".join(p["winner"] for p in r["phases"])
    depth = max(len(r["phases"]) for r in runs)
    shares: dict[str, Any] = {}
    for k in range(depth):
        same = pairs = 0
        for a, b in itertools.combinations(runs, 2):
            if len(a["phases"]) <= k or len(b["phases"]) <= k:
                continue
            if [p["winner"] for p in a["phases"][:k]] != [p["winner"] for p in b["phases"][:k]]:
                continue  # different earlier cells: different candidates' networks
            pairs += 1
            same += a["phases"][k]["winner"] == b["phases"][k]["winner"]
        phase = runs[0]["phases"][k]["k"] if k < len(runs[0]["phases"]) else k + 2
        shares[f"phase {phase}"] = {"same": same, "pairs": pairs}
    results = Counter(r["result"] for r in runs)
    return {"per_phase": shares, "same_result": results.most_common(1)[0][1], "seeds": len(runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=SPIKENAS)
    parser.add_argument("--seeds", type=int, nargs="+", default=(0, 1, 2, 3, 4))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--from-json", type=Path, help="recompute the agreement of a saved run")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        saved["agreement"] = agreement(saved["runs"])
        print(json.dumps(saved["agreement"], indent=2))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    probe = Probe()
    runs = []
    for seed in args.seeds:
        runs.append(search(args.config, seed, args.device))
        log(f"seed {seed}: {runs[-1]['result']} ({runs[-1]['seconds']} s)")
    result = {
        "benchmark": "phase_agreement",
        "config": str(args.config),
        "package": str(Path(optuna_spikenas.__file__).parent),
        "runs": runs,
        "agreement": agreement(runs),
        "contention": probe.report(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, share in result["agreement"]["per_phase"].items():
            print(f"{name}: {share['same']} of {share['pairs']} seed pairs chose the same cell")
        print(f"same final network: {result['agreement']['same_result']} of {len(runs)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
