"""Multi-step against per-step execution: scoring and training time per batch, side by side.

A network without backward edges can run one timestep at a time through the whole network
(``step_mode="single"``, SNASNet's way) or each layer over all T timesteps at once
(``step_mode="multi"``, SpikingJelly's multi-step mode: convs over T·B images, one neuron call
per layer; ``optuna_spikenas/snn/multistep.py``). Both give the same outputs and spikes
(``tests/test_multistep.py``); this script measures which is faster, per batch:

* ``score``: one SAHD score of one batch, ``kernel_score(network, [batch], sahd_kernel)``
  (forward pass in training mode without gradients, the spike kernels, ``log|det K|``);
* ``train``: one training step on one batch: forward, cross-entropy, backward, an SGD step,
  ``functional.reset_net``.

For each setting, ``--archs`` random valid forward cells (seeded, shared by every network cell)
are built once per mode with the same weights; each repeat times every (architecture, mode,
task) once, the modes back to back in alternating order, after one untimed warm-up each.
Reported: medians over architectures x repeats, and ``multi_over_single`` (median of the paired
ratios, below 1: multi-step is faster), with the share of the CPU that other processes took.

Settings:

1. ``quickstart``: macro ``light`` fitted to 1x28x28 images, 10 classes, width 16, 2 cells,
   T = 5; scoring batch 32 (``studies/quickstart.toml``), training batch 64.
2. ``snasnet-cifar10``: SNASNet's CIFAR10 macro at width 256, 3x32x32, T = 5. SNASNet uses batches
   of 256 on a GPU; on a CPU the batch is ``--snasnet-batch`` (8; 2 with ``--quick``).

Images are random normal (timing does not depend on the data). ``--device cuda`` runs the same
on a GPU (synchronised timings), where ``scripts/gpu_check.sh`` also measures it at batch 256.

Rerun (from the repository root, on a quiet machine):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/step_modes.py --threads 1 --json  # ~5 min
    .venv/bin/python benchmarks/step_modes.py --quick                              # < 1 min
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from machine_load import Probe, cpu_model  # noqa: E402
from search_speedup import machine_info  # noqa: E402
from spikingjelly.activation_based import functional  # noqa: E402

from optuna_spikenas.macros import Macro, get_macro  # noqa: E402
from optuna_spikenas.score import sahd_score  # noqa: E402
from optuna_spikenas.snn.network import SpikingNetwork, build_network  # noqa: E402
from optuna_spikenas.space import EDGES, OPS, Architecture, Cell  # noqa: E402

MODES = ("single", "multi")
SEED = 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Setting:
    name: str
    macro: Macro
    width: int
    num_cells: int
    timesteps: int
    score_batch: int
    train_batch: int


def settings(quick: bool, snasnet_batch: int) -> list[Setting]:
    light = get_macro("light").for_data(1, 28, 10)
    snasnet = get_macro("snasnet-cifar10")
    return [
        Setting("quickstart", light, 16, 2, 5, 32, 64 if not quick else 16),
        Setting(
            "snasnet-cifar10",
            snasnet,
            256 if not quick else 32,
            snasnet.num_cells,
            5,
            snasnet_batch,
            snasnet_batch,
        ),
    ]


def forward_cells(count: int, seed: int) -> list[Cell]:
    """``count`` random valid cells without backward edges, uniform over the ops."""
    rng = random.Random(seed)
    cells: list[Cell] = []
    while len(cells) < count:
        cell = Cell.from_edges({edge: rng.randrange(len(OPS)) for edge in EDGES})
        if cell.is_valid() and str(cell) not in {str(c) for c in cells}:
            cells.append(cell)
    return cells


def timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def timed(run: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return timed


def tasks(
    network: SpikingNetwork, setting: Setting, device: torch.device
) -> dict[str, Callable[[], object]]:
    generator = torch.Generator().manual_seed(SEED)
    shape = (setting.macro.in_channels, setting.macro.image_size, setting.macro.image_size)
    score_images = torch.randn(setting.score_batch, *shape, generator=generator).to(device)
    train_images = torch.randn(setting.train_batch, *shape, generator=generator).to(device)
    labels = torch.randint(
        setting.macro.num_classes, (setting.train_batch,), generator=generator
    ).to(device)
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-3, momentum=0.9)

    def train_step() -> None:
        network.train()
        loss = torch.nn.functional.cross_entropy(network(train_images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        functional.reset_net(network)

    return {"score": lambda: sahd_score(network, [score_images]), "train": train_step}


def run_setting(setting: Setting, archs: int, repeats: int, device: torch.device) -> dict[str, Any]:
    timed = timer(device)
    cells = forward_cells(archs, SEED)
    log(
        f"[{setting.name}] width {setting.width}, {setting.num_cells} cells, "
        f"T={setting.timesteps}, score batch {setting.score_batch}, train batch "
        f"{setting.train_batch}, {archs} archs x {repeats} repeats"
    )
    runs: list[dict[str, dict[str, Callable[[], object]]]] = []
    for cell in cells:
        arch = Architecture((cell,) * setting.num_cells, setting.width)
        by_mode = {}
        for mode in MODES:
            network = build_network(arch, setting.macro, setting.timesteps, seed=SEED)
            network.set_step_mode(mode)
            network.to(device)
            by_mode[mode] = tasks(network, setting, device)
            for run in by_mode[mode].values():
                run()  # warm-up
        runs.append(by_mode)
    samples: dict[str, dict[str, list[float]]] = {
        t: {m: [] for m in MODES} for t in ("score", "train")
    }
    ratios: dict[str, list[float]] = {"score": [], "train": []}
    probe = Probe()
    for r in range(repeats):
        for i, by_mode in enumerate(runs):
            for task in ("score", "train"):
                order = MODES if (r + i) % 2 == 0 else MODES[::-1]
                seconds = {mode: timed(by_mode[mode][task]) for mode in order}
                for mode in MODES:
                    samples[task][mode].append(seconds[mode])
                ratios[task].append(seconds["multi"] / seconds["single"])
        log(
            f"  repeat {r + 1}/{repeats}: score single/multi "
            f"{statistics.median(samples['score']['single']):.4f}/"
            f"{statistics.median(samples['score']['multi']):.4f}s, train "
            f"{statistics.median(samples['train']['single']):.4f}/"
            f"{statistics.median(samples['train']['multi']):.4f}s"
        )
    result: dict[str, Any] = {
        "width": setting.width,
        "num_cells": setting.num_cells,
        "timesteps": setting.timesteps,
        "score_batch": setting.score_batch,
        "train_batch": setting.train_batch,
        "archs": [str(c) for c in cells],
        "repeats": repeats,
    }
    for task in ("score", "train"):
        result[task] = {
            **{
                f"{mode}_seconds": round(statistics.median(samples[task][mode]), 5)
                for mode in MODES
            },
            "multi_over_single": round(statistics.median(ratios[task]), 3),
        }
    result["load"] = probe.report()
    return result


def machine(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {**machine_info(device), "name": name}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--archs", type=int, help="architectures per setting (default 3; 2 quick)")
    parser.add_argument("--repeats", type=int, help="timed repeats (default 5; 2 quick)")
    parser.add_argument(
        "--snasnet-batch",
        type=int,
        help="batch of the snasnet-cifar10 setting (default 8; 2 quick)",
    )
    parser.add_argument("--only", choices=("quickstart", "snasnet-cifar10"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    archs = args.archs or (2 if args.quick else 3)
    repeats = args.repeats or (2 if args.quick else 5)
    snasnet_batch = args.snasnet_batch or (2 if args.quick else 8)
    start = time.perf_counter()
    out: dict[str, Any] = {"machine": machine(device), "quick": args.quick, "settings": {}}
    for setting in settings(args.quick, snasnet_batch):
        if args.only and setting.name != args.only:
            continue
        out["settings"][setting.name] = run_setting(setting, archs, repeats, device)
    out["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{'setting':<17} {'task':<6} {'single s':>9} {'multi s':>9} {'multi/single':>13}")
        for name, result in out["settings"].items():
            for task in ("score", "train"):
                row = result[task]
                print(
                    f"{name:<17} {task:<6} {row['single_seconds']:>9.4f} "
                    f"{row['multi_seconds']:>9.4f} {row['multi_over_single']:>13.3f}"
                )
        print(f"({out['machine']['name']}, {out['machine']['torch_threads']} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
