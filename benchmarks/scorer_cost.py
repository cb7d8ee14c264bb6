"""What one SAHD score costs, next to a plain forward pass of the same network on the same batch.

For each setting below, several architectures are built with the weights the objective gives them
(``candidate_seed``), and for each one the script times, interleaved and repeated:

* ``score``: ``kernel_score(network, [batch], kind)``, i.e. the scorer with ``repeats = 1``, so that
  both sides see exactly one batch (a study with ``repeats = R`` pays about R times this);
* ``forward``: the floor, ``network.train()`` (batch statistics, as the scorer runs it), then under
  ``torch.no_grad()`` one ``network(batch)`` followed by ``functional.reset_net(network)``.

The forward pass is the floor because the scorer must run it anyway: the SAHD kernels are built
from the spikes that this very pass emits, and no gradient is taken. Everything above it is the
scorer's own overhead: building one ``B x B`` kernel per (LIF layer, timestep) from the spike maps
(forward hooks, ``x xᵀ`` on ``x ∈ {0,1}^(B×N)``), ``log|det K|``, switching BatchNorm's
running statistics off for the pass and resetting the neurons. A third, instrumented call of
the scorer times the first two of these parts by wrapping the kernel functions and
``log_abs_det`` (``kernel_seconds`` and ``logdet_seconds``); ``rest_seconds`` is what the
overhead leaves after them.

Settings:

1. ``quickstart``: read from ``studies/quickstart.toml`` through ``load_config`` and the
   objective's own dataset and batches (macro ``light`` fitted to Animal-MNIST 1x28x28,
   10 classes, width 16, 2 cells, batch 32, T = 5): the README's job.
2. ``snasnet-cifar10``: SNASNet's CIFAR10 macro at its real width 256 (2 cells, T = 5), on
   random-normal 3x32x32 images. SNASNet scores batches of 256 on a GPU; on a CPU the batch is
   small (``--snasnet-batch``, default 8; 2 with ``--quick``).

Architectures, the first ``--archs`` of a list, shared by every network cell: for ``quickstart``,
seeded random valid forward cells (the quickstart searches forward cells only, so its networks run
as the study runs them); for ``snasnet-cifar10``, SNASNet's released CIFAR10 cell
``0303 0030 2002 0200`` and CIFAR100 cell ``0302 0030 3003 0000`` (both have backward edges), then
seeded random forward cells. Networks run in the step mode the study would use on the device
(``SpikingNetwork``'s ``"auto"``: one timestep at a time on the CPU). Each network is warmed up
once (one untimed score) before timing. Per repeat and architecture the forward and the score are
timed back to back, their order alternating, so that a change of machine load hits both.

Reported per setting: ``score_seconds`` and ``forward_seconds`` (medians over all
architecture x repeat samples), ``ratio`` (median of the paired score / forward ratios, each
score timed right next to its forward; robust to load drift), ``overhead_fraction``
(``ratio - 1``), the overhead's split, the fastest samples (``*_min``, ``ratio_of_mins``: the
least disturbed by other processes), the same figures per architecture and, on a CPU,
``gram_routes``: per spike-map shape, the Gram matrix route the scorer timed fastest
(``spike_counts.py``) and each allowed route's median time alone. ``contention`` says
how much CPU other processes took during the run (from ``/proc/stat``): on a shared machine,
quote the numbers with it.

Rerun (from the repository root):

    .venv/bin/python benchmarks/scorer_cost.py                 # readable table, a few minutes
    .venv/bin/python benchmarks/scorer_cost.py --quick --json  # one JSON object, about a minute
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from machine_load import Probe, cpu_model  # noqa: E402
from spikingjelly.activation_based import functional  # noqa: E402

from optuna_spikenas import score as score_module  # noqa: E402

try:  # absent in trees before issue 18's twins (run those with --no-split)
    from optuna_spikenas import spike_counts
except ImportError:  # pragma: no cover
    spike_counts = None  # type: ignore[assignment]
from optuna_spikenas.config import load_config  # noqa: E402
from optuna_spikenas.macros import Macro, get_macro  # noqa: E402
from optuna_spikenas.objective import SpikeNASObjective  # noqa: E402
from optuna_spikenas.score import kernel_score  # noqa: E402
from optuna_spikenas.snn.network import build_network  # noqa: E402
from optuna_spikenas.space import EDGES, OPS, Architecture, Cell  # noqa: E402
from optuna_spikenas.study_setup import candidate_seed  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "studies" / "quickstart.toml"
RELEASED_CELLS = (
    ("SNASNet CIFAR10", "0303 0030 2002 0200"),
    ("SNASNet CIFAR100", "0302 0030 3003 0000"),
)
SNASNET_MACRO = "snasnet-cifar10"
SNASNET_WIDTH = 256
SNASNET_TIMESTEPS = 5
SEED = 0
# Above this share of the machine's CPU taken by other processes, the run is flagged as disturbed.
DISTURBED_SHARE = 0.05


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- architectures ---------------------------------------------------------------------------


def random_forward_cells(count: int, seed: int) -> list[Cell]:
    """``count`` distinct (by canonical form) random valid forward cells, uniform over the ops."""
    rng = random.Random(seed)
    cells: list[Cell] = []
    seen: set[str] = set()
    while len(cells) < count:
        cell = Cell.from_edges({edge: rng.randrange(len(OPS)) for edge in EDGES})
        key = str(cell.canonical())
        if cell.is_valid() and key not in seen:
            seen.add(key)
            cells.append(cell)
    return cells


def candidate_cells(count: int, seed: int) -> list[tuple[str, Cell]]:
    named = [(name, Cell.parse(text)) for name, text in RELEASED_CELLS]
    extra = max(0, count - len(named))
    named += [
        (f"random forward {k + 1}", c) for k, c in enumerate(random_forward_cells(extra, seed))
    ]
    return named[:count]


# --- timing ----------------------------------------------------------------------------------


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_forward(network: torch.nn.Module, batch: torch.Tensor, sync: Callable[[], None]) -> float:
    """The floor: one no-grad forward in training mode (as the scorer runs it), then a reset."""
    network.train()
    sync()
    start = time.perf_counter()
    with torch.no_grad():
        network(batch)
        functional.reset_net(network)
    sync()
    return time.perf_counter() - start


def time_score(
    network: torch.nn.Module, batch: torch.Tensor, kind: str, sync: Callable[[], None]
) -> tuple[float, float]:
    """One call of the scorer on one batch; returns (seconds, score)."""
    sync()
    start = time.perf_counter()
    value = kernel_score(network, [batch], kernel_of(kind))
    sync()
    return time.perf_counter() - start, value


KERNEL_KINDS = ("sahd", "hamming")
"""The proxies of ``score.py``'s kernel family, whose kernels this script times."""


def kernel_of(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``score.py``'s kernel of ``kind`` (the key of its batched form in ``BATCHED_KERNELS``)."""
    return getattr(score_module, f"{kind}_kernel")  # type: ignore[no-any-return]


@contextmanager
def timed_score_parts(sync: Callable[[], None]) -> Iterator[dict[str, float] | None]:
    """Wrap the scorer's parts with timers while inside: ``spike_grams`` (the Gram matrices,
    one batched matmul per neuron output) and the batched kernels of ``BATCHED_KERNELS`` (the
    ``B x B`` arithmetic) are ``kernel``; ``log_abs_det`` is ``logdet``.

    Yields ``{"kernel": s, "logdet": s, "gram_maps": n}`` (``gram_maps``: the maps whose
    Gram matrix was computed; a twin neuron's output, counted again, is not computed again),
    or None when the package no longer has the names this relies on.
    """
    counter = None if spike_counts is None else getattr(spike_counts, "spike_grams", None)
    batched = getattr(score_module, "BATCHED_KERNELS", None)
    logdet = getattr(score_module, "log_abs_det", None)
    if counter is None or batched is None or logdet is None:
        yield None
        return
    totals = {"kernel": 0.0, "logdet": 0.0, "gram_maps": 0.0}

    def wrap(fn: Callable[..., Any], key: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            sync()
            totals[key] += time.perf_counter() - start
            if fn is counter:
                totals["gram_maps"] += int(args[0].shape[0])
            return out

        return timed

    saved = dict(batched)
    spike_counts.spike_grams = wrap(counter, "kernel")  # looked up by name at each call
    for kernel, fn in saved.items():
        batched[kernel] = wrap(fn, "kernel")
    score_module.log_abs_det = wrap(logdet, "logdet")
    try:
        yield totals
    finally:
        spike_counts.spike_grams = counter
        batched.update(saved)
        score_module.log_abs_det = logdet


def time_score_parts(
    network: torch.nn.Module, batch: torch.Tensor, kind: str, sync: Callable[[], None]
) -> dict[str, float] | None:
    with timed_score_parts(sync) as totals:
        if totals is None:
            return None
        kernel_score(network, [batch], kernel_of(kind))
    return totals


# --- one setting -----------------------------------------------------------------------------


@dataclass
class Setting:
    name: str
    macro: Macro
    width: int
    num_cells: int
    timesteps: int
    kind: str
    batch: torch.Tensor
    study_seed: int
    note: str
    archs: list[tuple[str, Architecture]] = field(default_factory=list)


def kernels_per_score(network: torch.nn.Module, batch: torch.Tensor) -> int:
    """The (LIF layer, timestep) kernels one score of ``batch`` averages."""
    with score_module.scoring_mode(network), torch.no_grad():
        with score_module.SpikeKernelRecorder(network) as recorder:
            network(batch)
    return recorder.count


def gram_route_timings(batch_size: int, calls: int = 20) -> list[dict[str, Any]] | None:
    """Per map shape this process met at ``batch_size`` (``spike_counts._fastest``'s keys): the
    route the scorer chose and each allowed route's median time in microseconds, on a random
    binary map of that shape (10 % ones; a dense matmul's time does not depend on the values).
    None in trees without the timed route."""
    fastest = getattr(spike_counts, "_fastest", None)
    routes = getattr(spike_counts, "GRAM_ROUTES", None)
    if fastest is None or routes is None:
        return None
    threads = torch.get_num_threads()
    rows = []
    generator = torch.Generator().manual_seed(SEED)
    for (shape, dtype, key_threads, main), chosen in sorted(fastest.items(), key=str):
        if shape[1] != batch_size or key_threads != threads or not main:
            continue
        x = (torch.rand(tuple(shape), generator=generator) < 0.1).to(dtype)
        micros = {}
        for route in spike_counts.allowed_routes(x):
            routes[route](x)
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                routes[route](x)
                times.append(time.perf_counter() - start)
            micros[route] = round(1e6 * median(times), 1)
        rows.append({"shape": list(shape), "chosen": chosen, "microseconds": micros})
    return rows


def median(values: list[float]) -> float:
    return statistics.median(values)


def run_setting(
    setting: Setting, repeats: int, device: torch.device, split: bool
) -> dict[str, Any]:
    sync = synchronizer(device)
    batch = setting.batch.to(device)
    log(
        f"[{setting.name}] macro {setting.macro.name}, width {setting.width}, "
        f"{setting.num_cells} cells, T={setting.timesteps}, batch {tuple(batch.shape)}, "
        f"{len(setting.archs)} archs x {repeats} repeats"
    )
    networks = []
    build_seconds = []
    for label, arch in setting.archs:
        start = time.perf_counter()
        network = build_network(
            arch, setting.macro, setting.timesteps, seed=candidate_seed(setting.study_seed, arch)
        ).to(device)
        sync()
        build_seconds.append(time.perf_counter() - start)
        params = sum(p.numel() for p in network.parameters())
        # Warm-up: one untimed score (it runs the forward pass too).
        start = time.perf_counter()
        value = kernel_score(network, [batch], kernel_of(setting.kind))
        log(
            f"  built {label} ({arch.cells[0]}): {params:,} parameters, "
            f"warm-up score {value:.2f} in {time.perf_counter() - start:.3f}s"
        )
        networks.append(network)

    samples: list[list[dict[str, float]]] = [[] for _ in networks]
    others_share: list[float | None] = []
    for r in range(repeats):
        probe = ContentionProbe()
        for i, network in enumerate(networks):
            if (r + i) % 2 == 0:
                forward = time_forward(network, batch, sync)
                scored, _ = time_score(network, batch, setting.kind, sync)
            else:
                scored, _ = time_score(network, batch, setting.kind, sync)
                forward = time_forward(network, batch, sync)
            sample = {"score": scored, "forward": forward}
            parts = time_score_parts(network, batch, setting.kind, sync) if split else None
            if parts is not None:
                sample |= {"kernel": parts["kernel"], "logdet": parts["logdet"]}
                sample["gram_maps"] = parts["gram_maps"]
                sample["kernels"] = kernels_per_score(network, batch)
            samples[i].append(sample)
        share = probe.report().get("other_processes_cpu_share")
        others_share.append(share)
        log(
            f"  repeat {r + 1}/{repeats}: "
            + ", ".join(f"{s[-1]['score']:.3f}s/{s[-1]['forward']:.3f}s" for s in samples)
            + " (score/forward per arch); other processes used "
            + ("?" if share is None else f"{100 * share:.0f}%")
            + " of the CPU"
        )

    def summary(rows: list[dict[str, float]]) -> dict[str, Any]:
        score_s = median([row["score"] for row in rows])
        forward_s = median([row["forward"] for row in rows])
        ratio = median([row["score"] / row["forward"] for row in rows])
        score_min = min(row["score"] for row in rows)
        forward_min = min(row["forward"] for row in rows)
        out: dict[str, Any] = {
            "score_seconds": round(score_s, 5),
            "forward_seconds": round(forward_s, 5),
            "ratio": round(ratio, 3),
            "overhead_fraction": round(ratio - 1.0, 3),
            "overhead_seconds": round(median([row["score"] - row["forward"] for row in rows]), 5),
            # The fastest samples: the least disturbed by other processes.
            "score_seconds_min": round(score_min, 5),
            "forward_seconds_min": round(forward_min, 5),
            "ratio_of_mins": round(score_min / forward_min, 3),
        }
        if all("kernel" in row for row in rows):
            kernel_s = median([row["kernel"] for row in rows])
            logdet_s = median([row["logdet"] for row in rows])
            out |= {
                "kernel_seconds": round(kernel_s, 5),
                "logdet_seconds": round(logdet_s, 5),
                "rest_seconds": round(out["overhead_seconds"] - kernel_s - logdet_s, 5),
                "kernel_fraction_of_forward": round(kernel_s / forward_s, 3),
                "kernels_per_score": round(median([row["kernels"] for row in rows])),
                "gram_matrices_per_score": round(median([row["gram_maps"] for row in rows])),
            }
        return out

    all_rows = [row for rows in samples for row in rows]
    result: dict[str, Any] = {
        "macro": setting.macro.name,
        "batch_size": int(batch.shape[0]),
        "image_shape": list(batch.shape[1:]),
        "width": setting.width,
        "num_cells": setting.num_cells,
        "timesteps": setting.timesteps,
        "kind": setting.kind,
        "note": setting.note,
        "archs": len(networks),
        "repeats": repeats,
        **summary(all_rows),
        "build_seconds": round(median(build_seconds), 5),
        # The Gram matrix routes per map shape: which one was timed fastest, and each one's time.
        "gram_routes": gram_route_timings(int(batch.shape[0])) if device.type == "cpu" else None,
        # Share of the machine's CPU that other processes used during each repeat.
        "other_processes_cpu_share_per_repeat": others_share,
        "per_arch": [
            {"name": label, "arch": str(arch.cells[0]), **summary(rows)}
            for (label, arch), rows in zip(setting.archs, samples, strict=True)
        ],
    }
    del networks
    return result


def quickstart_setting(device: torch.device, archs: int) -> Setting:
    config = load_config(QUICKSTART)
    objective = SpikeNASObjective(config, device=str(device))
    width = config.search_space().widths[0]
    num_cells = config.space.num_cells[0]
    return Setting(
        name="quickstart",
        macro=objective.macro,
        width=width,
        num_cells=num_cells,
        timesteps=config.score.timesteps,
        kind=config.score.kind,
        batch=objective.batches[0],
        study_seed=config.seed,
        note=(
            f"studies/quickstart.toml: {config.dataset.name} "
            f"{objective.dataset.in_channels}x{objective.dataset.image_size}x"
            f"{objective.dataset.image_size}, {objective.dataset.num_classes} classes; "
            f"the study scores {config.score.repeats} batches per candidate"
        ),
        archs=[
            (f"random forward {k + 1}", Architecture((cell,) * num_cells, width))
            for k, cell in enumerate(random_forward_cells(archs, SEED))
        ],
    )


def snasnet_setting(batch_size: int, archs: int) -> Setting:
    macro = get_macro(SNASNET_MACRO)
    generator = torch.Generator().manual_seed(SEED)
    images = torch.randn(
        batch_size, macro.in_channels, macro.image_size, macro.image_size, generator=generator
    )
    return Setting(
        name=SNASNET_MACRO,
        macro=macro,
        width=SNASNET_WIDTH,
        num_cells=macro.num_cells,
        timesteps=SNASNET_TIMESTEPS,
        kind="sahd",
        batch=images,
        study_seed=SEED,
        note=(
            "random-normal images; SNASNet itself scores batches of 256 on a GPU "
            "(the kernel part grows with B^2, the forward with B)"
        ),
        archs=[
            (label, Architecture((cell,) * macro.num_cells, SNASNET_WIDTH))
            for label, cell in candidate_cells(archs, SEED)
        ],
    )


# --- machine and output ----------------------------------------------------------------------


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class ContentionProbe(Probe):
    """``machine_load.Probe`` (wall and own CPU time, other processes' share of the CPU, with
    their CPU seconds) and the load average before and after."""

    def __init__(self) -> None:
        super().__init__()
        self.load = load_average()

    def report(self) -> dict[str, Any]:
        out = super().report()
        share = out.get("other_processes_cpu_share")
        if share is not None:
            cores = os.cpu_count() or 1
            out["other_processes_cpu_seconds"] = round(share * out["wall_seconds"] * cores, 2)
        return out | {"load_average_before": self.load, "load_average_after": load_average()}


def machine_info(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {
        "processor": platform.processor(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": name,
    }


def print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"machine: {m['cpu_model']} ({m['machine']}), {m['cpu_count']} CPUs, "
        f"torch {m['torch']} with {m['torch_threads']} threads, device {m['device']} "
        f"({m['device_name']})"
    )
    c = report["contention"]
    others = c.get("other_processes_cpu_share")
    print(
        f"run: {c['wall_seconds']:.0f}s wall, {c['own_cpu_seconds']:.0f}s own CPU; other processes "
        f"used {'?' if others is None else f'{100 * others:.0f}%'} of the machine's CPU meanwhile; "
        f"load average {c['load_average_before']} -> {c['load_average_after']}"
    )
    print()
    header = (
        f"{'setting / arch':<36} {'batch':>5} {'score s':>9} {'forward s':>9} {'ratio':>6} "
        f"{'min ratio':>9} {'kernel s':>9} {'logdet s':>9} {'rest s':>8}"
    )
    print(header)
    print("-" * len(header))

    def row(label: str, batch: int | str, r: dict[str, Any]) -> None:
        def opt(key: str, width: int) -> str:
            return f"{r[key]:>{width}.4f}" if key in r else f"{'-':>{width}}"

        print(
            f"{label:<36} {batch!s:>5} {r['score_seconds']:>9.4f} {r['forward_seconds']:>9.4f} "
            f"{r['ratio']:>6.2f} {r['ratio_of_mins']:>9.2f} {opt('kernel_seconds', 9)} "
            f"{opt('logdet_seconds', 9)} {opt('rest_seconds', 8)}"
        )

    for name, s in report["settings"].items():
        label = name if name == s["macro"] else f"{name} ({s['macro']})"
        row(f"{label}, median", s["batch_size"], s)
        for a in s["per_arch"]:
            row(f"  {a['arch']}", "", a)
    print()
    for name, s in report["settings"].items():
        pairs, grams = (
            "-".join(str(n) for n in sorted({min(v), max(v)})) if v else "?"
            for v in (
                [a[key] for a in s["per_arch"] if key in a]
                for key in ("kernels_per_score", "gram_matrices_per_score")
            )
        )
        print(
            f"{name}: {s['archs']} archs x {s['repeats']} repeats; width {s['width']}, "
            f"{s['num_cells']} cells, T={s['timesteps']}, images {s['image_shape']}; "
            f"overhead {100 * s['overhead_fraction']:.0f}% of the forward pass "
            f"({pairs} kernels per score, one per LIF layer x timestep, from {grams} Gram "
            "matrices: twin neurons share one); "
            f"build {s['build_seconds']:.3f}s. {s['note']}."
        )
    print(
        "\nscore = kernel_score on one batch; forward = no-grad forward in train mode + reset_net "
        "(the floor); all medians over archs x repeats; ratio = median of paired score/forward; "
        "min ratio = fastest score / fastest forward; kernel/logdet = time inside the kernel "
        "functions and log|det| (instrumented call); rest = overhead - kernel - logdet."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time the SAHD scorer against a plain forward pass of the same network.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats and archs, batch 2")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, help="timed repeats per arch (default 5; quick 3)")
    parser.add_argument("--archs", type=int, help="architectures per setting (default 3; quick 2)")
    parser.add_argument(
        "--snasnet-batch", type=int, help="SNASNet CIFAR batch size (default 8; quick 2)"
    )
    parser.add_argument(
        "--no-split",
        action="store_true",
        help="skip the instrumented call that splits the overhead",
    )
    parser.add_argument(
        "--only", choices=("quickstart", SNASNET_MACRO), help="run one setting only"
    )
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (default: torch's own choice)"
    )
    args = parser.parse_args(argv)
    flags = sys.argv[1:] if argv is None else argv
    repeats = args.repeats or (3 if args.quick else 5)
    archs = args.archs or (2 if args.quick else 3)
    snasnet_batch = args.snasnet_batch or (2 if args.quick else 8)
    if repeats < 1 or archs < 1 or snasnet_batch < 2:
        parser.error("--repeats and --archs must be >= 1, --snasnet-batch >= 2")

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA GPU")
    else:
        device = torch.device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)

    probe = ContentionProbe()
    settings: dict[str, Any] = {}
    if args.only in (None, "quickstart"):
        settings["quickstart"] = run_setting(
            quickstart_setting(device, archs), repeats, device, not args.no_split
        )
    if args.only in (None, SNASNET_MACRO):
        settings[SNASNET_MACRO] = run_setting(
            snasnet_setting(snasnet_batch, archs), repeats, device, not args.no_split
        )
    report = {
        "machine": machine_info(device),
        "settings": settings,
        "contention": probe.report(),
        "command": " ".join(["python benchmarks/scorer_cost.py", *flags]),
    }
    log(f"done in {report['contention']['wall_seconds']:.1f}s")
    others = report["contention"].get("other_processes_cpu_share")
    if others is not None and others > DISTURBED_SHARE:
        log(
            f"WARNING: other processes used {100 * others:.0f}% of the machine's CPU during the "
            "run; the timings are disturbed (2-thread kernels stall when a core is taken). "
            "Rerun on a quiet machine."
        )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
