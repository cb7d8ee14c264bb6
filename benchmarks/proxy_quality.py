"""Does a training-free proxy predict trained accuracy here? Labels that reproduce, then ranks.

SNASNet (Kim et al. 2022) reports Kendall's tau = 0.646 between its SAHD score and accuracy, and
0.519 for the plain Hamming-distance kernel (its ablation). A correlation with accuracy means
something only if the accuracies themselves reproduce: this script measures that first.

1. **Architectures.** A pool of distinct valid architectures of the config's search space
   (``studies/quickstart.toml``: macro ``light``, Animal-MNIST, 2 shared forward cells) is drawn
   with a seeded RNG (each edge uniform over the 5 ops), grouped into strata by the number of
   conv edges on an input-to-output path (the ``convs`` proxy: the scores' main signal), and
   ``--archs`` (40) are taken round-robin over the strata, so that every conv count is present.
2. **Proxies.** Every proxy of the registry (``PROXIES``: ``sahd``, ``hamming``, ``jacob_cov``,
   ``params``, ``convs``) scores each architecture as a search would, with the objective's own
   batches and initial weights at the config's setting (width 16, T = 5, 32 initialisations).
3. **Labels.** Each architecture is trained ``--seeds`` (3) times, seeds 0..2 (initial weights
   and batch order), with one recipe chosen from measured learning curves (README): width 8,
   T = 2, Adam lr 0.005 with cosine decay to 0, 6 epochs of the whole train split (125 batches
   of 64; 4 epochs reproduced with tau 0.478 on these 40 architectures: seeds that start slowly
   were still climbing when the learning rate reached 0). The label is the validation accuracy
   after the last epoch, evaluated with BatchNorm normalising each timestep with the batch's own
   statistics as in training (shuffled batches of 500 validation images, running statistics
   untouched). Eval-mode accuracy (the running statistics, shared by all timesteps) is recorded
   too: at T = 2 the first timestep's statistics differ from the second's, and eval mode then
   misjudges some trained networks by up to 46 points, which is most of its seed-to-seed noise.
   The test split is never used.
4. **Reproducibility of the labels.** ``label_reproducibility_tau`` is the mean Kendall tau-b
   between the seeds' accuracy rankings (every pair of seeds). Below 0.5 the labels cannot
   measure a proxy, and the script says so instead of reporting correlations as results.
5. **Correlations.** Each proxy against the mean label over seeds: Kendall tau-b over all
   architectures, tau-b within strata of equal conv count (a pair-weighted mean: does the proxy
   rank architectures that the conv count cannot tell apart?), Spearman's rho; statistics from
   ``scipy.stats``, each with a percentile bootstrap 95 % interval (architectures resampled
   within their strata, ``--bootstrap`` 2000, seeded).

Training runs in ``--workers`` processes (2, one torch thread each); ``--device cuda`` runs the
same design larger (80 architectures, width 16, T = 5, 8 epochs: the scale a GPU affords).
``--quick``: 7 architectures, 3 seeds of 1 epoch of 15 batches: a smoke test of the pipeline
(under a minute), not a figure to quote.

Rerun (from the repository root):

    .venv/bin/python benchmarks/proxy_quality.py --quick --json                 # < 1 min
    .venv/bin/python benchmarks/proxy_quality.py --out benchmarks/results/proxy_quality \\
        --json > run.json                                       # about an hour on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import itertools
import json
import multiprocessing
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine_load import Probe
from scipy import stats
from search_speedup import machine_info
from spikingjelly.activation_based import functional

from optuna_spikenas.config import Config, load_config
from optuna_spikenas.data import Split
from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.proxies.convs import convs_score
from optuna_spikenas.proxy_catalog import PROXIES
from optuna_spikenas.space import EDGES, OPS, Architecture, Cell, SearchSpace, invalid_reason
from optuna_spikenas.train import TrainSettings, build_trainable, train_network

QUICKSTART = Path(__file__).resolve().parent.parent / "studies" / "quickstart.toml"
PAPER_TAU = {"sahd": 0.646, "hamming": 0.519}  # SNASNet, Kim et al. 2022 (SAHD; its ablation)
REPRODUCIBLE_TAU = 0.5
"""Below this mean seed-to-seed Kendall tau the labels cannot measure a proxy."""
POOL = 1500
"""Distinct valid architectures drawn before stratifying (every conv count appears in it)."""
LABEL_EVAL_BATCH = 500
SCALES: dict[str, dict[str, Any]] = {
    "cpu": dict(archs=40, width=8, timesteps=2, epochs=6, batch_size=64, lr=0.005, workers=2),
    "cuda": dict(archs=80, width=16, timesteps=5, epochs=8, batch_size=128, lr=0.005, workers=1),
    "quick": dict(
        archs=7,
        width=8,
        timesteps=2,
        epochs=1,
        batch_size=32,
        lr=0.005,
        workers=2,
        max_train_batches=15,
    ),
}
QUICK_SCORE = dict(batch_size=16, repeats=1, inits=2, timesteps=2)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- statistics ------------------------------------------------------------------------------


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (scipy); NaN when either variable is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.kendalltau(x, y, variant="b").statistic)


def spearman_rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (scipy); NaN when either variable is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def kendall_tau_within_strata(x: np.ndarray, y: np.ndarray, strata: np.ndarray) -> float:
    """Tau-b inside each stratum, averaged with weights n_k (n_k - 1) / 2 (the stratum's pairs);
    strata of one architecture or with a constant variable carry no information and are left
    out. NaN when no stratum has a defined tau."""
    total, weight = 0.0, 0.0
    for stratum in np.unique(strata):
        members = strata == stratum
        tau = kendall_tau(x[members], y[members]) if members.sum() > 1 else float("nan")
        if np.isfinite(tau):
            pairs = members.sum() * (members.sum() - 1) / 2
            total, weight = total + pairs * tau, weight + pairs
    return total / weight if weight > 0 else float("nan")


def stratified_resamples(strata: np.ndarray, resamples: int, seed: int) -> list[np.ndarray]:
    """``resamples`` index arrays, each drawing every stratum's members with replacement (so a
    resample keeps each stratum's size)."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    return [np.concatenate([rng.choice(g, size=len(g)) for g in groups]) for _ in range(resamples)]


def interval(values: list[float]) -> list[float | None]:
    """Percentile 95 % interval of the finite ``values``."""
    finite = np.array([v for v in values if np.isfinite(v)])
    if len(finite) == 0:
        return [None, None]
    return [round(float(v), 4) for v in np.percentile(finite, [2.5, 97.5])]


def number(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def correlations(
    proxy: np.ndarray, label: np.ndarray, strata: np.ndarray, resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Tau-b overall, tau-b within strata and rho of ``proxy`` against ``label``, each with its
    stratified bootstrap interval; None (JSON null) where undefined."""
    proxy, label = np.asarray(proxy, dtype=float), np.asarray(label, dtype=float)
    measures = {
        "kendall_tau": lambda i: kendall_tau(proxy[i], label[i]),
        "kendall_tau_within_strata": lambda i: kendall_tau_within_strata(
            proxy[i], label[i], strata[i]
        ),
        "spearman_rho": lambda i: spearman_rho(proxy[i], label[i]),
    }
    picks = stratified_resamples(strata, resamples, seed)
    everything = np.arange(len(proxy))
    return {
        name: {"value": number(measure(everything)), "ci95": interval([measure(p) for p in picks])}
        for name, measure in measures.items()
    }


def label_reproducibility(accuracy: np.ndarray) -> dict[str, Any]:
    """Kendall tau-b between every pair of seeds' rankings (``accuracy[seed, arch]``) and mean."""
    pairs = {
        f"{a}-{b}": number(kendall_tau(accuracy[a], accuracy[b]))
        for a, b in itertools.combinations(range(len(accuracy)), 2)
    }
    finite = [v for v in pairs.values() if v is not None]
    return {"mean": number(np.mean(finite)) if finite else None, "pairs": pairs}


def show(c: dict[str, Any]) -> str:
    """``+0.123 [+0.01, +0.25]`` for a correlation and its interval (``n/a`` if undefined)."""
    if c["value"] is None:
        return "n/a"
    low, high = (f"{v:+.2f}" if v is not None else "?" for v in c["ci95"])
    return f"{c['value']:+.3f} [{low}, {high}]"


# --- architectures ---------------------------------------------------------------------------


def sample_architectures(space: SearchSpace, count: int, seed: int) -> list[Architecture]:
    """``count`` valid architectures of ``space`` with distinct canonical forms (forward cells,
    each edge uniform over the ops), in the order drawn."""
    rng = np.random.default_rng(seed)
    num_cells, width = space.num_cells[0], space.widths[0]
    found: dict[str, Architecture] = {}
    for _ in range(1000 * count):
        if len(found) == count:
            break
        draws = 1 if space.shared_cell else num_cells
        cells = tuple(
            Cell.from_edges(
                dict(zip(EDGES, rng.integers(0, len(OPS), len(EDGES)).tolist(), strict=True))
            )
            for _ in range(draws)
        )
        arch = Architecture(cells * num_cells if space.shared_cell else cells, width)
        if invalid_reason(arch, space) is None:
            found.setdefault(arch.canonical_key(), arch)
    if len(found) < count:
        raise RuntimeError(f"found only {len(found)} distinct valid architectures")
    return list(found.values())


def round_robin(groups: dict[int, list[Architecture]], count: int) -> list[Architecture]:
    """``count`` architectures taken one per group in turn (groups in key order, each in its
    own order), skipping exhausted groups."""
    queues = [list(groups[key]) for key in sorted(groups)]
    picked: list[Architecture] = []
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    if len(picked) < count:
        raise RuntimeError(f"only {len(picked)} architectures to stratify")
    return picked


def stratified_architectures(
    objective: SpikeNASObjective, count: int, seed: int
) -> list[Architecture]:
    """``count`` architectures of the objective's space stratified by their conv count (see the
    module docstring)."""
    groups: dict[int, list[Architecture]] = defaultdict(list)
    for arch in sample_architectures(objective.space, POOL, seed):
        groups[int(convs_score(arch, objective.macro))].append(arch)
    return round_robin(groups, count)


# --- labels: training in worker processes ----------------------------------------------------

_WORKER: dict[str, Any] = {}


def start_worker(config: Config, threads: int, device: str) -> None:
    """Per process: one torch thread count and one objective per proxy, built once."""
    torch.set_num_threads(threads)
    _WORKER["objectives"] = proxy_objectives(config, device)


@contextlib.contextmanager
def worker_pool(config: Config, args: argparse.Namespace) -> Iterator[Callable[..., Any]]:
    """``imap(function, jobs)`` over ``args.workers`` processes (in this one when 1), results
    as they finish; the processes are joined on leaving, so their CPU time is counted."""
    init = (config, args.threads, args.device)
    if args.workers == 1:
        start_worker(*init)
        yield map
        return
    pool = multiprocessing.get_context("fork").Pool(args.workers, start_worker, init)
    try:
        yield pool.imap_unordered
    finally:
        pool.close()
        pool.join()


def score_row(job: tuple[int, Architecture]) -> dict[str, Any]:
    """Every proxy's value of one architecture, with its stratum and size."""
    index, arch = job
    objectives = _WORKER["objectives"]
    macro = objectives["sahd"].macro
    row: dict[str, Any] = {
        "index": index,
        "architecture": str(arch),
        "stratum": int(convs_score(arch, macro)),
        "parameters": memory_report(arch, macro).parameters,
        "within_budget": objectives["sahd"].fits_budget(arch),
    }
    row.update({kind: round(objective.score(arch), 5) for kind, objective in objectives.items()})
    return row


def batch_statistics_accuracy(
    network: torch.nn.Module, split: Split, batch_size: int, seed: int, device: torch.device
) -> float:
    """Accuracy on ``split`` with every BatchNorm normalising each timestep by the batch's own
    statistics, as in training (shuffled batches of ``batch_size``); running statistics and
    every other state are restored afterwards."""
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    images, labels = split.images[order], split.labels[order]
    saved = copy.deepcopy(network.state_dict())
    network.train()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(split), batch_size):
                batch = images[start : start + batch_size].to(device)
                try:
                    predicted = network(batch).argmax(dim=1).cpu()
                finally:
                    functional.reset_net(network)
                correct += int((predicted == labels[start : start + batch_size]).sum())
    finally:
        network.load_state_dict(saved)
        network.eval()
    return correct / len(split)


def train_label(job: tuple[int, Architecture, int, TrainSettings]) -> dict[str, Any]:
    """Train one architecture with one seed; its labels and curve."""
    index, arch, seed, settings = job
    reference = _WORKER["objectives"]["sahd"]
    macro, dataset, device = reference.macro, reference.dataset, reference.device
    network = build_trainable(arch, macro, dataset, settings, seed=seed)
    result = train_network(network, dataset, settings, seed=seed, device=device)
    accuracy = batch_statistics_accuracy(network, dataset.val, LABEL_EVAL_BATCH, seed, device)
    return {
        "index": index,
        "seed": seed,
        "accuracy": accuracy,
        "eval_mode_accuracy": result.final_val_accuracy,
        "eval_mode_curve": [round(a, 4) for a in result.val_accuracy],
        "train_loss": round(result.train_loss[-1], 4),
        "train_seconds": round(result.seconds, 1),
    }


def run_jobs(imap: Callable[..., Any], function: Callable[..., Any], jobs: list, what: str):
    """``function`` over ``jobs`` with one progress line per finished job; results in job
    order (each result's ``index`` and ``seed``)."""
    started, results = time.perf_counter(), []
    for done, outcome in enumerate(imap(function, jobs), start=1):
        results.append(outcome)
        elapsed = time.perf_counter() - started
        detail = (
            f"acc {outcome['accuracy']:.3f} (eval mode {outcome['eval_mode_accuracy']:.3f})"
            if "accuracy" in outcome
            else f"{outcome['stratum']} convs, sahd {outcome['sahd']:.2f}"
        )
        log(
            f"  {what} {done}/{len(jobs)}: arch {outcome['index']}"
            f"{' seed ' + str(outcome['seed']) if 'seed' in outcome else ''}: {detail}; about "
            f"{elapsed / done * (len(jobs) - done):.0f}s to go"
        )
    return sorted(results, key=lambda r: (r["index"], r.get("seed", 0)))


# --- the run ---------------------------------------------------------------------------------


SCORE_KEYS = ("architecture", "stratum", "parameters", "within_budget", *PROXIES)


def reused_scores(path: Path, archs: list[Architecture], config: Config) -> list[dict[str, Any]]:
    """The proxy values of an earlier run's JSON (``--scores-from``): scores are deterministic
    for a config, so relabelling the same architectures with another recipe need not rescore
    them. Refused unless that run scored these architectures, in this order, with these score
    settings."""
    earlier = json.loads(path.read_text())
    if earlier["settings"]["score"] != dataclasses.asdict(config.score) | {
        "width": archs[0].width
    } or [r["architecture"] for r in earlier["rows"]] != [str(a) for a in archs]:
        raise SystemExit(f"--scores-from {path}: other architectures or score settings")
    log(f"proxy values of {len(archs)} architectures reused from {path}")
    return [
        {"index": i, **{key: row[key] for key in SCORE_KEYS}}
        for i, row in enumerate(earlier["rows"])
    ]


def proxy_objectives(config: Config, device: str) -> dict[str, SpikeNASObjective]:
    """One objective per proxy of the registry: same dataset, batches and weight seeds."""
    return {
        kind: SpikeNASObjective(
            dataclasses.replace(config, score=dataclasses.replace(config.score, kind=kind)),
            device=device,
        )
        for kind in PROXIES
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    total = Probe()
    config = load_config(args.config)
    if args.quick:
        config = dataclasses.replace(config, score=dataclasses.replace(config.score, **QUICK_SCORE))
    reference = SpikeNASObjective(config, device=args.device)
    archs = stratified_architectures(reference, args.archs, args.seed)
    settings = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=0.0,
        optimizer="adam",
        timesteps=args.timesteps,
        max_train_batches=args.max_train_batches,
    )
    log(f"{len(archs)} architectures x {args.seeds} seeds; labels: width {args.width}, {settings}")
    trainable = [Architecture(arch.cells, args.width) for arch in archs]
    with worker_pool(config, args) as imap:
        if args.scores_from is None:
            rows = run_jobs(imap, score_row, list(enumerate(archs)), "scored")
        else:
            rows = reused_scores(args.scores_from, archs, config)
        jobs = [
            (i, a, seed, settings) for i, a in enumerate(trainable) for seed in range(args.seeds)
        ]
        for result in run_jobs(imap, train_label, jobs, "trained"):
            row = rows[result.pop("index")]
            for key, value in result.items():
                if key != "seed":
                    row.setdefault(key, []).append(value)
    for row in rows:
        del row["index"]
    accuracy = np.array([r["accuracy"] for r in rows]).T  # [seed, arch]
    eval_mode = np.array([r["eval_mode_accuracy"] for r in rows]).T
    label = accuracy.mean(axis=0)
    strata = np.array([r["stratum"] for r in rows])
    reproducibility = label_reproducibility(accuracy)
    measurable = (reproducibility["mean"] or -1.0) >= REPRODUCIBLE_TAU
    proxies = {
        kind: correlations(
            np.array([r[kind] for r in rows]), label, strata, args.bootstrap, args.seed
        )
        for kind in PROXIES
    }
    return {
        "question": "rank correlation of each training-free proxy with trained accuracy",
        "quick": args.quick,
        "training_seeds": args.seeds,
        "label_reproducibility_tau": reproducibility["mean"],
        "label_reproducibility_pairs": reproducibility["pairs"],
        "eval_mode_reproducibility_tau": label_reproducibility(eval_mode)["mean"],
        "labels_measure_proxies": measurable,
        "verdict": (
            f"labels reproduce (mean seed-to-seed tau >= {REPRODUCIBLE_TAU}): the correlations "
            "below measure the proxies"
            if measurable
            else f"labels do NOT reproduce (mean seed-to-seed tau < {REPRODUCIBLE_TAU}): this "
            "run cannot measure any proxy; its correlations are not results"
        ),
        "proxies": proxies,
        "paper_kendall_tau": PAPER_TAU,
        "strata": {str(k): int((strata == k).sum()) for k in np.unique(strata)},
        "accuracy": {
            "mean": number(label.mean()),
            "min": number(label.min()),
            "max": number(label.max()),
            "seed_sd_mean": number(accuracy.std(axis=0, ddof=1).mean()) if args.seeds > 1 else None,
            "between_arch_sd": number(label.std(ddof=1)),
            "chance": round(1 / reference.dataset.num_classes, 4),
        },
        "settings": {
            "config": str(args.config),
            "dataset": config.dataset.name,
            "macro": config.space.macro,
            "num_cells": reference.space.num_cells[0],
            "score": dataclasses.asdict(config.score) | {"width": reference.space.widths[0]},
            "labels": dataclasses.asdict(settings)
            | {
                "width": args.width,
                "split": "validation",
                "evaluation": f"batch statistics, shuffled batches of {LABEL_EVAL_BATCH}",
            },
            "archs": len(rows),
            "seed": args.seed,
            "bootstrap": args.bootstrap,
            "workers": args.workers,
            "scores_from": None if args.scores_from is None else str(args.scores_from),
        },
        "rows": rows,
        "machine": machine_info(reference.device),
        "contention": total.report(),
        "total_seconds": round(time.perf_counter() - total.wall, 1),
        "command": " ".join(["python benchmarks/proxy_quality.py", *sys.argv[1:]]),
    }


# --- output ----------------------------------------------------------------------------------


def figure(report: dict[str, Any]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows, corr = report["rows"], report["proxies"]
    kinds = list(corr)
    titles = [f"{kind}: τ {show(corr[kind]['kendall_tau'])}" for kind in kinds]
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=titles)
    for col, kind in enumerate(kinds, start=1):
        fig.add_trace(
            go.Scatter(
                x=[r[kind] for r in rows],
                y=[float(np.mean(r["accuracy"])) for r in rows],
                error_y=dict(array=[float(np.std(r["accuracy"])) for r in rows], thickness=1),
                mode="markers",
                marker=dict(color=[r["stratum"] for r in rows], colorscale="Viridis"),
                text=[f"{r['architecture']}<br>{r['stratum']} convs" for r in rows],
                hovertemplate="%{text}<br>proxy %{x:.3f}<br>accuracy %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text=kind, row=1, col=col)
    fig.update_yaxes(title_text="validation accuracy (mean, SD over seeds)", row=1, col=1)
    s = report["settings"]
    quick = " (--quick: smoke test, not for quoting)" if report["quick"] else ""
    fig.update_layout(
        title=f"Proxies vs accuracy: {s['archs']} architectures x {report['training_seeds']} "
        f"seeds, label reproducibility τ {report['label_reproducibility_tau']}{quick}",
        template="plotly_white",
        showlegend=False,
    )
    return fig


def write_outputs(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "proxy_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    figure(report).write_html(out / "proxy_quality.html", include_plotlyjs=True)
    log(f"wrote {out / 'proxy_quality.json'} and {out / 'proxy_quality.html'}")


def print_table(report: dict[str, Any]) -> None:
    m, s, a = report["machine"], report["settings"], report["accuracy"]
    print(
        f"machine: {m['cpu_model']}, {m['cpu_count']} CPUs, torch {m['torch']}, device "
        f"{m['device']}\nscores: {s['dataset']}, macro {s['macro']}, width "
        f"{s['score']['width']}, {s['num_cells']} cells, T = {s['score']['timesteps']}\n"
        f"labels: {s['labels']}\n"
    )
    print(f"{'architecture':<22} {'convs':>5} {'sahd':>8} {'hamming':>8} {'acc per seed':>20}")
    for r in report["rows"]:
        accs = " ".join(f"{v:.2f}" for v in r["accuracy"])
        print(
            f"{r['architecture'].split(' / ')[0]:<22} {r['stratum']:>5} {r['sahd']:>8.2f} "
            f"{r['hamming']:>8.2f} {accs:>20}"
        )
    print(
        f"\naccuracy: mean {a['mean']:.3f}, min {a['min']:.3f}, max {a['max']:.3f}, SD between "
        f"architectures {a['between_arch_sd']}, mean SD between seeds {a['seed_sd_mean']}\n"
        f"label reproducibility: tau {report['label_reproducibility_tau']} "
        f"{report['label_reproducibility_pairs']} (eval mode: "
        f"{report['eval_mode_reproducibility_tau']})\n{report['verdict']}\n"
    )
    print(f"{'proxy':<10} {'Kendall tau':>24} {'tau within strata':>24} {'Spearman rho':>24}")
    for kind, c in report["proxies"].items():
        cells = (show(c["kendall_tau"]), show(c["kendall_tau_within_strata"]))
        print(f"{kind:<10} {cells[0]:>24} {cells[1]:>24} {show(c['spearman_rho']):>24}")
    share = report["contention"].get("other_processes_cpu_share")
    print(
        f"\nintervals: stratified bootstrap 95 %, {s['bootstrap']} resamples; strata "
        f"{report['strata']}; other processes' CPU "
        f"{'?' if share is None else f'{100 * share:.0f}%'}; run {report['total_seconds']:.0f}s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="7 archs, tiny recipe, under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="write proxy_quality.json and .html here")
    parser.add_argument("--config", type=Path, default=QUICKSTART, help="study config (TOML)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--archs", type=int, help="architectures (cpu 40, cuda 80)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds (default 3)")
    parser.add_argument("--epochs", type=int, help="label training epochs (cpu 6, cuda 8)")
    parser.add_argument("--lr", type=float, help="Adam's peak lr (default 0.005)")
    parser.add_argument("--width", type=int, help="label networks' width (cpu 8, cuda 16)")
    parser.add_argument("--timesteps", type=int, help="label training T (cpu 2, cuda 5)")
    parser.add_argument("--workers", type=int, help="training processes (cpu 2, cuda 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1)")
    parser.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed (0)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (2000)")
    parser.add_argument(
        "--scores-from", type=Path, help="reuse the proxy values of an earlier run's JSON"
    )
    args = parser.parse_args(argv)
    scale = SCALES["quick" if args.quick else args.device]
    for key, value in scale.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.max_train_batches = scale.get("max_train_batches")
    args.batch_size = scale["batch_size"]
    if args.device == "cuda":
        args.workers = 1
        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA GPU here")
    if (
        args.archs < 3
        or args.seeds < 2
        or args.bootstrap < 1
        or min(args.workers, args.threads) < 1
    ):
        parser.error("--archs must be >= 3, --seeds >= 2, --bootstrap, --workers, --threads >= 1")
    torch.set_num_threads(args.threads)
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
