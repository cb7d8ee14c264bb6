"""Final training of one found architecture, resumable after any interruption.

``train_final(document, config, out_dir)`` builds the network of an architecture document
(``architecture_file.py``) fitted to the config's dataset, trains it and writes into ``out_dir``:

* ``checkpoint.pt`` after every epoch, atomically (temporary file + ``os.replace``): model and
  optimizer state, completed epochs, the shuffle and augmentation generators' states, torch's CPU
  RNG state (dropout) and the GPU's when training on one, the per-epoch history, and a fingerprint
  of what is trained (architecture, macro, recipe, seed, data). Started again with the same
  arguments, a run resumes after the last completed epoch and ends with exactly the weights of an
  uninterrupted run (on the CPU); a checkpoint of other settings is refused; ``fresh`` starts over.
  A run stopped by Ctrl-C or SIGTERM re-raises the same kind of stop saying what the checkpoint
  holds ("no epoch finished, nothing saved", or the epochs saved and how to resume).
* ``weights.pt``: the trained state dict with float weights under plain names (for k-bit weights,
  the float "shadow" weights), for ``build_network`` / ``build_autosnn``; then
  ``quantize.quantize_weights(network, bits)`` gives the network that was evaluated.
* ``result.json``: what was trained and how, per-epoch validation accuracy and loss, the test
  accuracy (measured once, at the end; with k-bit weights also that of the float weights), spikes
  per test image, parameters, memory and, for SNASNet cells, the IMC hardware costs; and the
  input contract of the data the weights were trained on (``"input"``, ``input_contract.py``).

The recipe: SNASNet cells train with the config's ``[train]`` optimizer, lr, min_lr, momentum,
weight_decay and batch_size (a cosine schedule over every step of the run) and cross-entropy;
SNASNet's own values are SGD, lr 0.1, momentum 0.9, weight decay 5e-4, min_lr 0.001, batch 64.
AutoSNN block architectures train with AutoSNN's: Adam at a constant ``[supernet] lr`` (1e-3),
batches of ``[supernet] batch_size`` (96), MSE between output firing rates and one-hot labels.
Both use ``[train] max_train_batches``.
Epochs: ``epochs`` or ``[train] epochs``; weights: ``weight_bits`` or ``[budget] weight_bits``.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from optuna_spikenas import data
from optuna_spikenas.architecture_file import (
    AUTOSNN_BLOCKS,
    SNASNET_CELLS,
    ArchitectureFileError,
    read_architecture,
)
from optuna_spikenas.atomic_file import write_atomically
from optuna_spikenas.autosnn_space import AutoSNNArchitecture, AutoSNNMacro
from optuna_spikenas.checkpoint import load_checkpoint, save_checkpoint, tensors_sha256
from optuna_spikenas.config import Config
from optuna_spikenas.data import Dataset
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.hardware.imc import imc_report, load_profile
from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.macros import Macro
from optuna_spikenas.paths import make_folder
from optuna_spikenas.quantize import FLOAT_BITS, float_weights, quantize_weights
from optuna_spikenas.snn.autosnn import build_autosnn
from optuna_spikenas.space import Architecture
from optuna_spikenas.spikes import ActivityCounter
from optuna_spikenas.study_setup import resolve_device, study_dataset
from optuna_spikenas.train import (
    TrainSettings,
    build_trainable,
    epoch_batches,
    evaluate,
    make_optimizer,
    recipe_of,
    restore_training_state,
    seeded_rng,
    train_epoch,
    training_state,
)
from optuna_spikenas.wording import plural

__all__ = ["FinalTrainingResult", "TrainingError", "train_final"]

CHECKPOINT, WEIGHTS, RESULT = "checkpoint.pt", "weights.pt", "result.json"
CHECKPOINT_FORMAT = 1
RESULT_FORMAT = "optuna-spikenas.final-training"
AUGMENT_SEED_OFFSET = 1  # the augmentation generator starts from config.seed + 1
HISTORY_KEYS = ("train_loss", "val_accuracy", "seconds")
_CHECKPOINT_KEYS = {"format", "fingerprint", "epoch", "state", "history"}

Log = Callable[[str], None]


class TrainingError(SpikeNASError):
    """Final training cannot start or resume; the one-line message says why and what to do."""


@dataclass(frozen=True)
class FinalTrainingResult:
    """Where the outputs are and how the run went."""

    out_dir: Path
    epochs_done: int  # completed epochs, in this call and before it (= the recipe's epochs)
    resumed_from: int | None  # completed epochs found in the checkpoint; None: started afresh
    result_json: Path
    weights: Path


@dataclass(frozen=True)
class Plan:
    """What a run trains, checked: the architecture, its fitted macro, the data and the recipe."""

    kind: str  # SNASNET_CELLS or AUTOSNN_BLOCKS
    arch: Architecture | AutoSNNArchitecture
    macro: Macro | AutoSNNMacro
    dataset: Dataset
    settings: TrainSettings
    seed: int
    device: torch.device

    @property
    def augmentation(self) -> str:
        kind = getattr(self.dataset, "augmentation", "none")
        return kind if hasattr(data, "augment_batch") else "none"


# --------------------------------------------------------------------------------------------
# The plan


def recipe(
    kind: str, config: Config, epochs: int | None, weight_bits: int | None, timesteps: int
) -> TrainSettings:
    """The training settings of an architecture of ``kind`` (see the module docstring)."""
    n = config.train.epochs if epochs is None else epochs
    if not n:
        raise TrainingError("no epochs to train: give --epochs N or set [train] epochs")
    bits = config.budget.weight_bits if weight_bits is None else weight_bits
    supernet = config.supernet
    try:
        if kind == SNASNET_CELLS:
            return recipe_of(config.train, epochs=n, timesteps=timesteps, weight_bits=bits)
        return TrainSettings(
            epochs=n,
            max_train_batches=config.train.max_train_batches,
            timesteps=timesteps,
            batch_size=supernet.batch_size,
            lr=supernet.lr,
            min_lr=supernet.lr,  # constant, as AutoSNN's super-network training
            optimizer="adam",
            weight_bits=bits,
            loss="mse-rates",
        )
    except ValueError as err:
        raise TrainingError(f"training settings: {err}") from None


def make_plan(
    document: dict[str, Any], config: Config, epochs: int | None, bits: int | None, device: str
) -> Plan:
    """Read the document, load the data, fit the macro to it and choose the recipe."""
    try:
        arch, macro, timesteps = read_architecture(document)
    except ArchitectureFileError as err:
        raise TrainingError(f"architecture document: {err}") from None
    try:
        dataset = study_dataset(config)
        fitted = macro.for_data(dataset.in_channels, dataset.image_size, dataset.num_classes)
        if isinstance(fitted, AutoSNNMacro):
            fitted = replace(fitted, timesteps=timesteps)
        torch_device = resolve_device(device)
    except ValueError as err:  # DatasetError, images too small for the macro, no GPU
        raise TrainingError(str(err)) from None
    kind = SNASNET_CELLS if isinstance(arch, Architecture) else AUTOSNN_BLOCKS
    settings = recipe(kind, config, epochs, bits, timesteps)
    if epoch_batches(len(dataset.train), settings.batch_size, settings.max_train_batches) < 1:
        raise TrainingError(f"the train split of {dataset.name!r} is too small to train on")
    return Plan(kind, arch, fitted, dataset, settings, config.seed, torch_device)


def build(plan: Plan) -> nn.Module:
    """The plan's network: initial weights from the seed, k-bit weights below 32 bits."""
    try:
        if isinstance(plan.arch, Architecture):
            assert isinstance(plan.macro, Macro)
            return build_trainable(
                plan.arch, plan.macro, plan.dataset, plan.settings, seed=plan.seed
            )
        assert isinstance(plan.macro, AutoSNNMacro)
        network = build_autosnn(plan.arch, plan.macro, seed=plan.seed)
        return quantize_weights(network, plan.settings.weight_bits)
    except ValueError as err:  # e.g. images too small for this many cells
        raise TrainingError(str(err)) from None


def fingerprint(plan: Plan) -> dict[str, Any]:
    """What the trained weights and the history depend on; a checkpoint must match it."""
    ds = plan.dataset
    digest = tensors_sha256((ds.train.images, ds.train.labels, ds.val.images, ds.val.labels))
    return {
        "format": CHECKPOINT_FORMAT,
        "search_space": plan.kind,
        "architecture": str(plan.arch),
        "macro": asdict(plan.macro),
        "recipe": asdict(plan.settings),
        "seed": plan.seed,
        "dataset": {
            "name": ds.name,
            "augmentation": plan.augmentation,
            "sha256": digest,
        },
    }


# --------------------------------------------------------------------------------------------
# The run and its checkpoints


@dataclass
class TrainingRun:
    """The mutable state of a run: network, optimizer, generators and history."""

    plan: Plan
    network: nn.Module
    optimizer: torch.optim.Optimizer
    generators: dict[str, torch.Generator]
    history: dict[str, list[float]]
    fingerprint: dict[str, Any]

    @classmethod
    def start(cls, plan: Plan) -> TrainingRun:
        network = build(plan).to(plan.device)
        generators = {
            "shuffle": torch.Generator().manual_seed(plan.seed),
            "augment": torch.Generator().manual_seed(plan.seed + AUGMENT_SEED_OFFSET),
        }
        history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
        optimizer = make_optimizer(network, plan.settings)
        return cls(plan, network, optimizer, generators, history, fingerprint(plan))

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        return data.augment_batch(images, self.plan.augmentation, self.generators["augment"])


def write_checkpoint(path: Path, epoch: int, run: TrainingRun) -> None:
    """Everything needed to continue after ``epoch`` completed epochs (``train.training_state``:
    weights, optimizer, generators, global RNG) with the fingerprint and the history."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": json.dumps(run.fingerprint, sort_keys=True),
        "epoch": epoch,
        "state": training_state(run.network, run.optimizer, run.generators, run.plan.device),
        "history": run.history,
    }
    save_checkpoint(path, payload)


def _differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """Names of the (nested) keys whose values differ."""
    names = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            names.append(f"{prefix}{key}")
    return names


def _refusal(path: Path, reason: str) -> TrainingError:
    reason = " ".join(reason.split())[:200]
    return TrainingError(f"checkpoint {path} {reason}; delete it or use --fresh")


def read_checkpoint(path: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, checked against the fingerprint ``wanted``."""
    saved = load_checkpoint(
        path, _CHECKPOINT_KEYS, lambda reason: _refusal(path, reason), "final-training"
    )
    try:
        found = json.loads(saved["fingerprint"])
    except (TypeError, ValueError):
        raise _refusal(path, "has no readable fingerprint") from None
    if found != wanted:
        changed = ", ".join(_differences(found, wanted) if isinstance(found, dict) else ["all"])
        raise _refusal(path, f"was written for other settings (they differ in {changed})")
    epoch, history, epochs = saved["epoch"], saved["history"], wanted["recipe"]["epochs"]
    if not isinstance(epoch, int) or not 0 <= epoch <= epochs:
        raise _refusal(path, f"counts {epoch!r} epochs, not 0 .. {epochs}")
    keys = set(history) if isinstance(history, dict) else set()
    if keys != set(HISTORY_KEYS) or any(len(v) != epoch for v in history.values()):
        raise _refusal(path, "has a damaged history")
    return saved


def restore(run: TrainingRun, saved: dict[str, Any], path: Path) -> None:
    """Load a checked checkpoint into the run and the RNGs (call inside ``seeded_rng``)."""
    try:
        restore_training_state(
            saved["state"], run.network, run.optimizer, run.generators, run.plan.device
        )
    except ValueError as err:
        raise _refusal(path, f"does not fit the network: {err}") from None
    run.history = saved["history"]


# --------------------------------------------------------------------------------------------
# Training


def run_epoch(run: TrainingRun, epoch: int, show_bar: bool) -> None:
    """Train epoch ``epoch`` (0-based), evaluate on the validation split, extend the history."""
    plan, settings = run.plan, run.plan.settings
    train = plan.dataset.train
    batches = epoch_batches(len(train), settings.batch_size, settings.max_train_batches)
    bar = functools.partial(
        tqdm, desc=f"epoch {epoch + 1}/{settings.epochs}", leave=False, file=sys.stderr
    )
    started = time.perf_counter()
    loss = train_epoch(
        run.network,
        train,
        run.optimizer,
        settings,
        order=torch.randperm(len(train), generator=run.generators["shuffle"]),
        first_step=epoch * batches,
        total_steps=settings.epochs * batches,
        device=plan.device,
        augment=run.augment if plan.augmentation != "none" else None,
        progress=bar if show_bar else None,
    )
    accuracy = evaluate(run.network, plan.dataset.val, settings.batch_size, plan.device)
    seconds = time.perf_counter() - started
    for key, value in zip(HISTORY_KEYS, (loss, accuracy, seconds), strict=True):
        run.history[key].append(value)


def train_final(
    document: dict[str, Any],
    config: Config,
    out_dir: str | Path,
    *,
    epochs: int | None = None,
    weight_bits: int | None = None,
    device: str = "auto",
    fresh: bool = False,
    log: Log | None = None,
) -> FinalTrainingResult:
    """Train the architecture of ``document`` with ``config``'s data and recipe into
    ``out_dir``, resuming from its checkpoint unless ``fresh`` (see the module docstring).
    ``log`` gets one line per epoch (and a progress bar goes to stderr). Raises
    :class:`TrainingError` for anything that keeps the run from starting or resuming."""
    out = Path(out_dir)
    kept = KeptAfterStop(out / CHECKPOINT)
    try:
        return _train_final(document, config, out, kept, epochs, weight_bits, device, fresh, log)
    except KeyboardInterrupt as stop:  # the same kind of stop, saying what is kept
        raise type(stop)(kept.line()).with_traceback(stop.__traceback__) from None


def _train_final(
    document: dict[str, Any],
    config: Config,
    out: Path,
    kept: KeptAfterStop,
    epochs: int | None,
    weight_bits: int | None,
    device: str,
    fresh: bool,
    log: Log | None,
) -> FinalTrainingResult:
    """:func:`train_final`, telling ``kept`` what its checkpoint holds as it goes."""
    started = time.perf_counter()
    plan = make_plan(document, config, epochs, weight_bits, device)
    problem = make_folder(out)
    if problem:
        raise TrainingError(f"--out {out}: {problem}")
    checkpoint = kept.checkpoint
    if fresh:
        checkpoint.unlink(missing_ok=True)
    run = TrainingRun.start(plan)
    saved = read_checkpoint(checkpoint, run.fingerprint) if checkpoint.exists() else None
    resumed = None if saved is None else saved["epoch"]
    total = kept.total = plan.settings.epochs
    kept.epochs = resumed or 0
    if saved is None:
        for name in (WEIGHTS, RESULT):  # never a stale result beside a new run
            (out / name).unlink(missing_ok=True)
    say = log or (lambda line: None)
    say(describe(plan, resumed))
    with seeded_rng(plan.seed, plan.device):
        if saved is not None:
            restore(run, saved, checkpoint)
        for epoch in range(resumed or 0, total):
            run_epoch(run, epoch, show_bar=log is not None)
            write_checkpoint(checkpoint, epoch + 1, run)  # before the line: a kill loses nothing
            kept.epochs = epoch + 1
            loss, accuracy, seconds = (run.history[key][-1] for key in HISTORY_KEYS)
            say(
                f"epoch {epoch + 1}/{total}: train loss {loss:.4f}, val accuracy "
                f"{accuracy:.4f}, {seconds:.1f} s"
            )
    result = final_report(run, config, resumed)
    weights = float_state_dict(run.network)
    write_atomically(out / WEIGHTS, lambda f: torch.save(weights, f))
    result["seconds"]["this_call"] = round(time.perf_counter() - started, 3)
    text = json.dumps(_json_safe(result), indent=2, allow_nan=False) + "\n"
    write_atomically(out / RESULT, lambda f: f.write(text.encode()))
    say(f"test accuracy {result['test_accuracy']:.4f}; wrote {out / RESULT} and {out / WEIGHTS}")
    return FinalTrainingResult(out, total, resumed, out / RESULT, out / WEIGHTS)


@dataclass
class KeptAfterStop:
    """What a run stopped now leaves in its checkpoint, as far as the run knows."""

    checkpoint: Path
    epochs: int | None = None  # finished epochs saved; None: not read yet (an earlier run's?)
    total: int | None = None

    def line(self) -> str:
        if self.epochs is None and self.checkpoint.exists():
            return f"nothing trained yet; {self.checkpoint} of an earlier run is kept as it was"
        if not self.epochs:
            return "no epoch finished, nothing saved"
        return (
            f"{self.epochs} of {plural(self.total or self.epochs, 'epoch')} finished, saved in "
            f"{self.checkpoint}; run the same command again to resume after epoch {self.epochs}"
        )


def describe(plan: Plan, resumed: int | None) -> str:
    """The run's first log line."""
    s = plan.settings
    bits = f"{s.weight_bits}-bit" if s.weight_bits < FLOAT_BITS else "float"
    where = "from the start" if resumed is None else f"resuming after epoch {resumed}"
    return (
        f"training {plan.arch} ({plan.kind}) on {plan.dataset.name} on {plan.device}, {where}: "
        f"{plural(s.epochs, 'epoch')}, {s.optimizer} lr {s.lr:g} -> {s.min_lr:g}, batch "
        f"{s.batch_size}, {s.loss} loss, {bits} weights"
    )


# --------------------------------------------------------------------------------------------
# The result


def float_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each quantized weight's float original under the weight's own name."""
    suffix = ".parametrizations.weight.original"
    return {k.replace(suffix, ".weight"): v.detach().cpu() for k, v in network.state_dict().items()}


def measure_test_split(run: TrainingRun) -> dict[str, Any]:
    """Test accuracy (and the float weights' with k-bit weights) and spikes per test image,
    counted during the test evaluation itself."""
    network, plan, bits = run.network, run.plan, run.plan.settings.weight_bits
    test, batch = plan.dataset.test, plan.settings.batch_size
    with ActivityCounter(network) as counter:
        measured: dict[str, Any] = {"test_accuracy": evaluate(network, test, batch, plan.device)}
    if bits < FLOAT_BITS:
        with float_weights(network):
            measured["test_accuracy_float"] = evaluate(network, test, batch, plan.device)
    activity = counter.result()
    measured["spikes"] = {
        **activity.as_user_attrs(bits),
        **activity.by_layer(),
        "measured_on": f"{len(test)} test images",
    }
    return measured


def costs(plan: Plan, config: Config, parameters: int) -> dict[str, Any]:
    """Memory at the weight width and, for SNASNet cells, the IMC hardware model's costs."""
    bits = plan.settings.weight_bits
    if not isinstance(plan.arch, Architecture):
        memory = {"parameters": parameters, "weight_bits": bits, "memory_bits": parameters * bits}
        return {"memory": memory}
    assert isinstance(plan.macro, Macro)
    profile = load_profile(config.hardware.profile)
    hardware = imc_report(plan.arch, plan.macro, profile, bits, plan.settings.timesteps)
    return {
        "memory": memory_report(plan.arch, plan.macro, bits).as_dict(),
        "hardware": hardware.as_dict(),
    }


def final_report(run: TrainingRun, config: Config, resumed: int | None) -> dict[str, Any]:
    """The contents of ``result.json`` (the network is evaluated on the test split here)."""
    plan, history = run.plan, run.history
    parameters = sum(p.numel() for p in run.network.parameters())
    ds = plan.dataset
    return {
        "format": RESULT_FORMAT,
        "search_space": plan.kind,
        "architecture": str(plan.arch),
        "timesteps": plan.settings.timesteps,
        "macro": asdict(plan.macro),
        "dataset": {
            "name": ds.name,
            "augmentation": plan.augmentation,
            "images": {"train": len(ds.train), "val": len(ds.val), "test": len(ds.test)},
        },
        "input": ds.input_contract.as_dict(plan.settings.timesteps),  # what weights.pt expects
        "recipe": {
            **asdict(plan.settings),
            "seed": plan.seed,
            "schedule": "cosine, lr to min_lr, per step",
        },
        "epochs": plan.settings.epochs,
        "resumed_from": resumed,
        "history": history,  # per epoch: train_loss, val_accuracy, seconds
        "final_val_accuracy": history["val_accuracy"][-1],
        **measure_test_split(run),
        "parameters": parameters,
        **costs(plan, config, parameters),
        "weights": {"file": WEIGHTS, "weight_bits": plan.settings.weight_bits, "stored": "float"},
        "seconds": {"training": round(sum(history["seconds"]), 3)},
        "device": str(plan.device),
        "torch": torch.__version__,
    }


def _json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` and tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
