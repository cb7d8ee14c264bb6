"""The GPU check (issue 18): the same scores on a GPU as on the CPU, and how fast it runs there.

``scripts/gpu_check.sh`` installs what this needs on a CUDA machine and runs it. Without a CUDA GPU
(``--device cuda`` and ``torch.cuda.is_available()`` False) it prints one line, ``no CUDA GPU
here: gpu_check needs one; nothing was run``, and exits 0. It measures, in this order (progress
lines on stderr, then ONE markdown table on stdout, ready to paste into README):

1. **CPU against GPU scores.** The objective's own scoring (``SpikeNASObjective(config,
   device=...).score(arch)``, i.e. SAHD averaged over the config's initialisations, common random
   numbers, the study's fixed batches) at the quickstart setting (``studies/quickstart.toml``,
   with 4 initialisations instead of 32 to keep it short), for 5 random valid forward
   architectures drawn with a fixed seed from ``optuna_spikenas.space`` (within the 40k-parameter
   budget), once on the CPU and once on ``--device``. On the GPU the network runs multi-step (the
   CPU per-step), so this also checks the two execution modes against each other across devices.
   Agreement: every score's relative difference ``|cpu - gpu| / max(|cpu|, |gpu|)`` is at most
   ``1e-3``. Not exact, because float32 convolutions and sums round differently on the two
   devices (other algorithms, other summation orders): a membrane potential within rounding of
   the threshold fires on one device and not on the other, and a flipped spike moves one entry of
   one B x B kernel. How much that moves a score was measured on the CPU by perturbing the
   scoring images of 5 quickstart architectures (4 initialisations): by 1e-6 relative (float32
   rounding) the scores moved by at most 2.1e-5 relative, by 1e-4 at most 2.4e-4, by 1e-3 at
   most 4.1e-3; the spread between initialisations is several per cent, so a real bug (another
   network, other weights or batches) moves a score far more than 1e-3. On a GPU the scores are
   taken twice: in full float32 (TF32 off), whose agreement is the verdict and sets the exit
   status; and with torch's default precision, as a search runs, where cuDNN may run float32
   convolutions in TF32 (a 10-bit mantissa, about 1e-3 relative rounding): reported with its own
   difference, which may exceed 1e-3 without anything being wrong. The Kendall tau of each pair of
   rankings is reported too: 1.0 means the GPU would pick the same architectures. CPU against CPU
   (``--device cpu``) must agree exactly.
2. **The quickstart on the GPU.** README's quickstart commands, ``optuna create-study`` then
   ``optuna-spikenas optimize --config C`` where ``C`` is a copy of ``studies/quickstart.toml``
   with ``[score] device = "cuda"``, in a temporary folder (SQLite storage there). Reported: the
   wall time of the ``optimize`` process (start to end: imports, dataset, all 72 trials), the mean
   scoring time of a scored trial (32 initialisations) and the best trial (read back with Optuna).
3. **SNASNet's CIFAR-10 macro** (``snasnet-cifar10``: width 256, 2 cells, SNASNet's voting head)
   at batch 256 and T = 5, on random-normal 3x32x32 images:

   * candidates scored per second: random valid forward cells with the direct input-output edge
     (SNASNet's sampler, ``studies/snasnet_cifar10.toml``), each built (``build_network``, its own
     seed), moved to the device and scored once (``sahd_score(network, [batch])``), in step mode
     ``auto`` as a search runs them (multi-step on a GPU); the first candidate is a warm-up;
   * the multi-step speed-up for scoring: the same networks built with ``step_mode="multi"`` and
     ``"single"``, one SAHD score of the batch each, timed interleaved and repeated (median); the
     two modes' scores are compared too;
   * training images per second, per-step and multi-step, and the speed-up: SGD (lr 0.1, momentum
     0.9, SNASNet's), one step per batch of cross-entropy on the network output, with
     ``functional.reset_net`` after each batch; two warm-up steps, then timed steps; peak GPU
     memory of the step.

   Every timing is taken between ``torch.cuda.synchronize()`` calls, after a warm-up.

``--quick`` shrinks everything for a smoke test (3 architectures and 1 initialisation for the
agreement, 3 quickstart trials of 2 initialisations, width 8, batch 4, T = 2); with ``--device cpu``
it runs on any machine in well under a minute (``tests/test_gpu_check.py``). ``--json`` prints the
table's data as one JSON object instead of the table; ``--json FILE`` writes it to FILE and still
prints the table. A part that raises is reported as a FAILED row (its traceback on stderr) and the
others still run. Exit status 1 when a part failed or the CPU and GPU scores do not agree (the
table is printed anyway), 0 otherwise.

    bash scripts/gpu_check.sh                             # on a CUDA machine: installs, then runs
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick     # the code path, on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "studies" / "quickstart.toml"
NO_GPU_LINE = "no CUDA GPU here: gpu_check needs one; nothing was run"
TOLERANCE = 1e-3
"""Largest relative difference |cpu - gpu| / max(|cpu|, |gpu|) allowed between two scores."""
SNASNET_MACRO = "snasnet-cifar10"
SEED = 0

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build


@dataclass(frozen=True)
class Sizes:
    """How much each part does; ``QUICK`` is the smoke test."""

    agreement_archs: int = 5
    agreement_inits: int = 4
    quickstart_trials: int | None = None  # None: the config's (72)
    quickstart_inits: int | None = None  # None: the config's (32)
    width: int = 256  # SNASNet's CIFAR-10 width
    batch: int = 256  # SNASNet's scoring batch
    timesteps: int = 5
    candidates: int = 6  # the first is a warm-up
    mode_archs: int = 2  # architectures of the multi- against per-step comparison
    score_repeats: int = 3
    train_warmup: int = 2
    train_steps: int = 5


FULL = Sizes()
QUICK = Sizes(
    agreement_archs=3,
    agreement_inits=1,
    quickstart_trials=3,
    quickstart_inits=2,
    width=8,
    batch=4,
    timesteps=2,
    candidates=2,
    mode_archs=1,
    score_repeats=1,
    train_warmup=1,
    train_steps=2,
)


class Progress:
    """Progress lines on stderr, with the seconds since the start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, text: str) -> None:
        print(f"[gpu_check {time.perf_counter() - self.start:6.1f} s] {text}", file=sys.stderr)
        sys.stderr.flush()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn()`` takes, the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def relative_difference(a: float, b: float) -> float:
    """``|a - b| / max(|a|, |b|)``; 0 when equal (``-inf`` twice included)."""
    if a == b:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def random_cells(rng: random.Random, count: int, *, direct_edge: bool = False, accept=None):
    """``count`` random valid forward cells computing distinct functions (``function_key``),
    each edge's op drawn uniformly from ``OPS``; ``direct_edge`` keeps only cells with a
    non-zero input-output edge (SNASNet's sampler); ``accept(cell)`` filters further."""
    from optuna_spikenas.space import EDGES, OPS, ZERO, Cell

    cells, seen = [], set()
    for _ in range(100_000):
        cell = Cell.from_edges({edge: rng.randrange(len(OPS)) for edge in EDGES})
        if not cell.is_valid() or (direct_edge and cell.matrix[0][3] == ZERO):
            continue
        key = cell.function_key()
        if key in seen or (accept is not None and not accept(cell)):
            continue
        seen.add(key)
        cells.append(cell)
        if len(cells) == count:
            return cells
    raise RuntimeError(f"found only {len(cells)} of {count} random cells")


# --- 1. CPU against GPU scores ------------------------------------------------------------------


def quickstart_config(inits: int):
    from optuna_spikenas.config import load_config

    config = load_config(QUICKSTART)
    return replace(config, score=replace(config.score, inits=inits, device="cpu"))


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """cuDNN convolutions and CUDA matmuls in full float32 (no TF32) inside the block."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch prefers fp32_precision; both still work
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def compared(cpu_scores: list[float], other: list[float]) -> dict:
    """How far ``other`` is from ``cpu_scores``: relative differences and Kendall's tau."""
    from scipy.stats import kendalltau

    diffs = [relative_difference(a, b) for a, b in zip(cpu_scores, other, strict=True)]
    tau = float(kendalltau(cpu_scores, other).statistic) if len(other) > 1 else math.nan
    return {
        "scores": other,
        "relative_differences": diffs,
        "max_relative_difference": max(diffs),
        "kendall_tau": tau,
        "agree": max(diffs) <= TOLERANCE,
    }


def agreement(device: torch.device, sizes: Sizes, progress: Progress) -> dict:
    from optuna_spikenas.objective import SpikeNASObjective
    from optuna_spikenas.space import Architecture

    config = quickstart_config(sizes.agreement_inits)
    on_cpu = SpikeNASObjective(config, device="cpu")
    on_device = SpikeNASObjective(config, device=str(device))
    space = on_cpu.space
    num_cells, width = space.num_cells[0], space.widths[0]

    def fits(cell) -> bool:
        return on_cpu.fits_budget(Architecture((cell,) * num_cells, width))

    cells = random_cells(random.Random(SEED), sizes.agreement_archs, accept=fits)
    archs = [Architecture((cell,) * num_cells, width) for cell in cells]
    cpu_scores, device_scores, strict_scores = [], [], []
    for k, arch in enumerate(archs, 1):
        cpu_scores.append(on_cpu.score(arch))
        device_scores.append(on_device.score(arch))
        line = f"cpu {cpu_scores[-1]:.6f}  {device.type} {device_scores[-1]:.6f}"
        if device.type == "cuda":
            with strict_float32():
                strict_scores.append(on_device.score(arch))
            line += f"  cuda without TF32 {strict_scores[-1]:.6f}"
        progress(f"agreement {k}/{len(archs)}: {arch.cells[0]}  {line}")
    result = {
        "setting": "quickstart (light, Animal-MNIST, width 16, 2 cells, batch 32, T = 5)",
        "archs": [str(arch.cells[0]) for arch in archs],
        "inits": sizes.agreement_inits,
        "tolerance": TOLERANCE,
        "cpu_scores": cpu_scores,
        "device": compared(cpu_scores, device_scores),
        "strict_float32": compared(cpu_scores, strict_scores) if strict_scores else None,
    }
    # The verdict: full float32 on a GPU (rounding only); CPU against CPU must be exact.
    result["agree"] = (result["strict_float32"] or result["device"])["agree"]
    return result


# --- 2. the quickstart on the device ------------------------------------------------------------


def console_script(name: str) -> str:
    """``name`` beside this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed beside {sys.executable} nor on PATH")
    return found


def quickstart_text(device: torch.device, inits: int | None) -> str:
    """``studies/quickstart.toml`` with ``[score] device`` set to ``device`` (and ``inits``)."""
    text = QUICKSTART.read_text()
    text, n = re.subn(r'(?m)^device\s*=\s*"[a-z]+"', f'device = "{device.type}"', text, count=1)
    if n != 1:
        raise RuntimeError(f"{QUICKSTART} has no [score] device line to change")
    if inits is not None:
        text, n = re.subn(r"(?m)^inits\s*=\s*\d+", f"inits = {inits}", text, count=1)
        if n != 1:
            raise RuntimeError(f"{QUICKSTART} has no [score] inits line to change")
    return text


def quickstart(device: torch.device, sizes: Sizes, threads: int | None, progress: Progress):
    import optuna

    from optuna_spikenas.config import load_config

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        config = Path(tmp) / "quickstart.toml"
        config.write_text(quickstart_text(device, sizes.quickstart_inits))
        storage = f"sqlite:///{tmp}/quickstart.db"
        study = ["--storage", storage, "--study-name", "quickstart"]
        run([console_script("optuna"), "create-study", *study, "--direction", "maximize"])
        optimize = [console_script("optuna-spikenas"), "optimize", *study]
        optimize += ["--config", str(config), "--quiet"]
        if sizes.quickstart_trials is not None:
            optimize += ["--n-trials", str(sizes.quickstart_trials)]
        if threads is not None:
            optimize += ["--threads", str(threads)]
        progress(f"quickstart on {device.type}: {' '.join(optimize[1:])}")
        start = time.perf_counter()
        output = run(optimize)
        wall = time.perf_counter() - start
        for line in output.splitlines():
            if line.startswith(("best trial", "  architecture")) or " trials: " in line:
                progress(f"quickstart: {line.strip()}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        loaded = optuna.load_study(study_name="quickstart", storage=storage)
        trials = loaded.trials
        best = loaded.best_trial
        scoring = [
            t.user_attrs["score_seconds"]
            for t in trials
            if t.user_attrs.get("score_seconds", 0) > 0
        ]
    return {
        "trials": len(trials),
        "scored_trials": len(scoring),
        "inits": sizes.quickstart_inits or load_config(QUICKSTART).score.inits,
        "wall_seconds": wall,
        "mean_score_seconds": statistics.fmean(scoring) if scoring else math.nan,
        "best_trial": best.number,
        "best_score": best.value,
        "best_architecture": best.user_attrs.get("architecture"),
    }


def run(command: list[str]) -> str:
    """Run ``command``; its stdout, or a RuntimeError with the end of its output."""
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{tail}")
    return result.stdout


# --- 3. SNASNet's CIFAR-10 macro ----------------------------------------------------------------


def snasnet(device: torch.device, sizes: Sizes, progress: Progress) -> dict:
    from spikingjelly.activation_based import functional

    from optuna_spikenas.macros import get_macro
    from optuna_spikenas.score import sahd_score
    from optuna_spikenas.snn.network import build_network
    from optuna_spikenas.space import Architecture
    from optuna_spikenas.train import batch_loss

    macro = get_macro(SNASNET_MACRO).for_data(3, 32, 10)
    generator = torch.Generator().manual_seed(SEED)
    images = torch.randn(sizes.batch, 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, 10, (sizes.batch,), generator=generator).to(device)
    cells = random_cells(random.Random(SEED + 1), sizes.candidates, direct_edge=True)
    archs = [Architecture((cell,) * macro.num_cells, sizes.width) for cell in cells]
    T = sizes.timesteps

    def build(arch: Architecture, seed: int, step_mode: str = "auto"):
        return build_network(arch, macro, T, seed=seed, step_mode=step_mode).to(device)

    # Candidates scored per second: build, move, score, as a search does (the first warms up).
    candidate_seconds = []
    for k, arch in enumerate(archs):
        seconds = timed(lambda arch=arch, k=k: sahd_score(build(arch, k), [images]), device)
        if k > 0:
            candidate_seconds.append(seconds)
        progress(f"snasnet candidate {k + 1}/{len(archs)}: {arch.cells[0]} {seconds:.3f} s")

    # Multi-step against per-step: scoring.
    score_seconds: dict[str, list[float]] = {"single": [], "multi": []}
    mode_scores: list[tuple[float, float]] = []
    for a, arch in enumerate(archs[: sizes.mode_archs]):
        networks = {mode: build(arch, SEED, mode) for mode in ("single", "multi")}
        values = {mode: sahd_score(net, [images]) for mode, net in networks.items()}  # warm-up
        mode_scores.append((values["single"], values["multi"]))
        for r in range(sizes.score_repeats):
            order = ("single", "multi") if (a + r) % 2 == 0 else ("multi", "single")
            for mode in order:
                net = networks[mode]
                score_seconds[mode].append(timed(lambda net=net: sahd_score(net, [images]), device))
        progress(
            f"snasnet scoring {arch.cells[0]}: per-step "
            f"{statistics.median(score_seconds['single']):.3f} s, multi-step "
            f"{statistics.median(score_seconds['multi']):.3f} s"
        )
        del networks

    # Multi-step against per-step: training.
    def train_steps(network, steps: int) -> None:
        optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
        network.train()
        for _ in range(steps):
            loss = batch_loss(network(images), labels, "cross-entropy")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            functional.reset_net(network)

    train_seconds: dict[str, list[float]] = {"single": [], "multi": []}
    peak_bytes: dict[str, int] = {"single": 0, "multi": 0}
    for a, arch in enumerate(archs[: sizes.mode_archs]):
        for mode in ("single", "multi") if a % 2 == 0 else ("multi", "single"):
            network = build(arch, SEED, mode)
            train_steps(network, sizes.train_warmup)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = timed(lambda network=network: train_steps(network, sizes.train_steps), device)
            train_seconds[mode].append(seconds / sizes.train_steps)
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device)
                peak_bytes[mode] = max(peak_bytes[mode], peak)
            del network
            if device.type == "cuda":
                torch.cuda.empty_cache()
            progress(
                f"snasnet training {arch.cells[0]} {mode}-step: "
                f"{sizes.batch * sizes.train_steps / seconds:.1f} images/s"
            )

    score_single = statistics.median(score_seconds["single"])
    score_multi = statistics.median(score_seconds["multi"])
    step_single = statistics.median(train_seconds["single"])
    step_multi = statistics.median(train_seconds["multi"])
    return {
        "setting": f"{SNASNET_MACRO}, width {sizes.width}, {macro.num_cells} cells, "
        f"batch {sizes.batch}, T = {T}",
        "width": sizes.width,
        "batch": sizes.batch,
        "timesteps": T,
        "candidate_archs": [str(arch.cells[0]) for arch in archs],
        "candidate_seconds": candidate_seconds,
        "candidates_per_second": 1.0 / statistics.median(candidate_seconds),
        "score_seconds_single": score_single,
        "score_seconds_multi": score_multi,
        "score_speedup": score_single / score_multi,
        "mode_scores": mode_scores,
        "mode_max_relative_difference": max(relative_difference(a, b) for a, b in mode_scores),
        "train_step_seconds_single": step_single,
        "train_step_seconds_multi": step_multi,
        "train_images_per_second_single": sizes.batch / step_single,
        "train_images_per_second_multi": sizes.batch / step_multi,
        "train_speedup": step_single / step_multi,
        "train_peak_gib_single": peak_bytes["single"] / 2**30 if device.type == "cuda" else None,
        "train_peak_gib_multi": peak_bytes["multi"] / 2**30 if device.type == "cuda" else None,
    }


# --- the table ----------------------------------------------------------------------------------


def device_description(device: torch.device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        threads = torch.get_num_threads()
        cpu = platform.processor() or platform.machine()
        name = f"CPU: {cpu}, {threads} thread{'s' if threads > 1 else ''}"
    return {
        "device": device.type,
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "python": platform.python_version(),
    }


def number(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, no exponent for ordinary sizes."""
    if value is None or not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:,.{max(digits - 1 - int(math.floor(math.log10(abs(value) or 1))), 0)}f}"
    return f"{value:.{digits - 1}e}"


Row = tuple[str, str, str]
"""One table row: measurement, value, unit."""

PARTS = ("agreement", "quickstart", "snasnet")
PART_NAMES = {
    "agreement": "CPU vs GPU scores",
    "quickstart": "quickstart",
    "snasnet": "SNASNet CIFAR-10",
}


def rows(report: dict) -> list[Row]:
    """The table: the machine, then each part's rows (one FAILED row for a part that raised)."""
    info = report["machine"]
    out: list[Row] = [
        ("device", info["device_name"], ""),
        ("torch / CUDA / cuDNN", f"{info['torch']} / {info['cuda']} / {info['cudnn']}", ""),
    ]
    makers = {"agreement": agreement_rows, "quickstart": quickstart_rows, "snasnet": snasnet_rows}
    for part in PARTS:
        data = report[part]
        if "error" in data:
            out.append((f"{PART_NAMES[part]}: FAILED", data["error"].replace("|", "/"), ""))
        else:
            out += makers[part](data, info)
    out.append(("whole check, wall time", number(report["total_seconds"]), "s"))
    return out


def agreement_rows(agree: dict, info: dict) -> list[Row]:
    if agree["strict_float32"] is None:
        return [agreement_row(agree, default_precision(info))]
    return [
        agreement_row(agree, "CPU vs GPU SAHD scores, full float32", strict=True),
        agreement_row(agree, default_precision(info)),
    ]


def quickstart_rows(quick: dict, info: dict) -> list[Row]:
    return [
        (
            f"quickstart on {info['device']}: `optuna-spikenas optimize` wall time "
            f"({quick['trials']} trials, {quick['scored_trials']} scored, {quick['inits']} "
            "initialisations each)",
            number(quick["wall_seconds"]),
            "s",
        ),
        (
            "quickstart: scoring time of a scored trial (mean)",
            number(quick["mean_score_seconds"]),
            "s",
        ),
        (
            "quickstart: best trial",
            f"#{quick['best_trial']}, score {quick['best_score']:.4f}, "
            f"{quick['best_architecture']}",
            "",
        ),
    ]


def snasnet_rows(snn: dict, info: dict) -> list[Row]:
    c10 = "SNASNet CIFAR-10"
    out = [
        (f"{c10} setting", f"{snn['setting']}, random-normal 3x32x32 images", ""),
        (
            f"{c10}: candidates scored (build + SAHD, step mode auto)",
            number(snn["candidates_per_second"]),
            "candidates/s",
        ),
        (f"{c10}: SAHD score of one batch, per-step", number(snn["score_seconds_single"]), "s"),
        (f"{c10}: SAHD score of one batch, multi-step", number(snn["score_seconds_multi"]), "s"),
        (f"{c10}: multi-step speed-up, scoring", number(snn["score_speedup"]), "x"),
        (
            f"{c10}: per-step vs multi-step score, max relative difference",
            f"{snn['mode_max_relative_difference']:.1e}",
            "",
        ),
        (
            f"{c10}: training (SGD, cross-entropy), per-step",
            number(snn["train_images_per_second_single"]),
            "images/s",
        ),
        (
            f"{c10}: training (SGD, cross-entropy), multi-step",
            number(snn["train_images_per_second_multi"]),
            "images/s",
        ),
        (f"{c10}: multi-step speed-up, training", number(snn["train_speedup"]), "x"),
    ]
    if snn["train_peak_gib_multi"] is not None:
        out.append(
            (
                f"{c10}: peak GPU memory of a training step, per-step / multi-step",
                f"{snn['train_peak_gib_single']:.1f} / {snn['train_peak_gib_multi']:.1f}",
                "GiB",
            )
        )
    return out


def default_precision(info: dict) -> str:
    if info["device"] != "cuda":
        return "CPU vs CPU SAHD scores"
    tf32 = "on" if info["cudnn_allow_tf32"] else "off"
    return f"CPU vs GPU SAHD scores, torch's default precision (cuDNN TF32 {tf32})"


def agreement_row(agree: dict, what: str, strict: bool = False) -> Row:
    """The agreement line: the largest relative difference against the tolerance, and tau."""
    side = agree["strict_float32" if strict else "device"]
    verdict = "agree" if side["agree"] else "DISAGREE"
    if agree["strict_float32"] is not None and not strict:  # informational: TF32 rounding
        verdict = "within tolerance" if side["agree"] else "beyond tolerance"
    inits = agree["inits"]
    return (
        f"{what} (quickstart setting, {len(agree['archs'])} random architectures x {inits} "
        f"initialisation{'s' if inits > 1 else ''})",
        f"max relative difference {side['max_relative_difference']:.1e} (tolerance "
        f"{agree['tolerance']:.0e}): {verdict}; Kendall tau of the rankings "
        f"{side['kendall_tau']:.2f}",
        "",
    )


def markdown(table: list[Row]) -> str:
    lines = ["| measurement | value | unit |", "| --- | --- | --- |"]
    lines += [f"| {m} | {v} | {u} |" for m, v, u in table]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="print the table's data as JSON instead of the table; with FILE, write it there",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: its own)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_GPU_LINE)
        build = "a CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        print(f"(torch {torch.__version__}, {build}, sees no CUDA device)", file=sys.stderr)
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = QUICK if args.quick else FULL
    progress = Progress()
    progress(f"{device_description(device)['device_name']}, torch {torch.__version__}")
    report: dict = {"machine": device_description(device), "quick": args.quick}
    parts = {
        "agreement": lambda: agreement(device, sizes, progress),
        "quickstart": lambda: quickstart(device, sizes, args.threads, progress),
        "snasnet": lambda: snasnet(device, sizes, progress),
    }
    for part, measure in parts.items():
        try:  # a part that fails is reported in the table; the others still run
            report[part] = measure()
        except Exception as err:
            progress(f"{part} FAILED:\n{traceback.format_exc()}")
            report[part] = {"error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["total_seconds"] = time.perf_counter() - progress.start
    table = rows(report)
    report["table"] = [list(row) for row in table]
    report["markdown"] = markdown(table)
    progress("done")
    if args.json == "-":
        print(json.dumps(report, indent=2, default=float))
    else:
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
        print(report["markdown"])
    failed = [part for part in PARTS if "error" in report[part]]
    if failed:
        print(f"gpu_check: failed: {', '.join(failed)} (see above)", file=sys.stderr)
    if "error" not in report["agreement"] and not report["agreement"]["agree"]:
        print(
            f"gpu_check: CPU and {device.type} scores differ by more than {TOLERANCE:g} relative",
            file=sys.stderr,
        )
        failed.append("agreement")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
