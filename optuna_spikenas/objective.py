"""The provided objective: suggest an architecture, check its budget, score it without training.

Per trial, in this order:
  1. the sampler's parameters become an ``Architecture``;
  2. validity and the memory budget are recorded with ``trial.set_constraint`` (feasible when
     <= 0) and as user attributes; an invalid or over-budget candidate is never built or scored
     and returns ``-inf``;
  3. a candidate whose canonical form already has a completed trial reuses that trial's score
     (``duplicate_of`` says which), so repeated proposals cost nothing and workers agree;
  4. otherwise the network is built with weights seeded by (study seed, architecture) and scored.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, replace

import optuna
import torch
from optuna.trial import TrialState

from optuna_spikenas.config import Config
from optuna_spikenas.data import Dataset, batch_for_scoring, load_dataset
from optuna_spikenas.hardware.memory import MemoryReport, memory_report
from optuna_spikenas.score import sahd_score
from optuna_spikenas.snn.network import Macro, build_network, get_macro
from optuna_spikenas.space import Architecture, invalid_reason, suggest_architecture

NOT_SCORED = float("-inf")
"""The value of a trial that was not scored because it is invalid or over budget."""


def candidate_seed(study_seed: int, arch: Architecture) -> int:
    """Weight-initialisation seed of a candidate: the same architecture always gets the same
    weights, whichever worker scores it and whenever."""
    digest = hashlib.sha256(f"{study_seed}|{arch.canonical_key()}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was asked for but PyTorch sees no CUDA GPU; use cpu or auto"
        )
    return torch.device(name)


def study_macro(config: Config, dataset: Dataset) -> Macro:
    """The config's macro, fitted to the dataset's image shape and classes."""
    macro = get_macro(config.space.macro).for_data(
        dataset.in_channels, dataset.image_size, dataset.num_classes
    )
    if config.space.final_pool:
        macro = replace(macro, final_pool=config.space.final_pool)
    return macro


@dataclass(frozen=True)
class Check:
    """An architecture's validity and memory against the study's budget."""

    reason: str | None  # why it is invalid, or None
    report: MemoryReport | None
    budget_bits: int | None
    excess: float | None  # (memory - budget) / budget; feasible when <= 0

    @property
    def feasible(self) -> bool:
        return self.reason is None and (self.excess is None or self.excess <= 0)


class SpikeNASObjective:
    """Callable objective for ``study.optimize``; returns the training-free score (maximize)."""

    def __init__(self, config: Config, device: str | None = None) -> None:
        self.config = config
        self.space = config.search_space()
        self.dataset = load_dataset(
            config.dataset.name,
            seed=config.seed,
            val_fraction=config.dataset.val_fraction,
            test_fraction=config.dataset.test_fraction,
            path=config.dataset.path or None,
        )
        self.macro = study_macro(config, self.dataset)
        self.device = resolve_device(device or config.score.device)
        self.batches = [
            batch_for_scoring(self.dataset.train, config.score.batch_size, config.seed + r).to(
                self.device
            )
            for r in range(config.score.repeats)
        ]

    def __call__(self, trial: optuna.Trial) -> float:
        arch = suggest_architecture(trial, self.space)
        trial.set_user_attr("architecture", str(arch))
        trial.set_user_attr("canonical", arch.canonical_key())
        trial.set_user_attr("num_cells", arch.num_cells)
        trial.set_user_attr("width", arch.width)
        if not self._record_constraints(trial, arch):
            return NOT_SCORED
        previous = None
        if self.config.search.reuse_scores:
            previous = find_scored_duplicate(trial.study, arch.canonical_key())
        if previous is not None:
            trial.set_user_attr(
                "duplicate_of", previous.user_attrs.get("duplicate_of", previous.number)
            )
            trial.set_user_attr("score_seconds", 0.0)
            return float(previous.value)
        start = time.perf_counter()
        score = self.score(arch)
        trial.set_user_attr("score_seconds", round(time.perf_counter() - start, 4))
        return score

    def check(self, arch: Architecture) -> Check:
        """Validity and memory of ``arch``, computed analytically (no network is built)."""
        reason = invalid_reason(arch, self.space)
        try:
            report = memory_report(arch, self.macro, self.config.budget.weight_bits)
        except ValueError as err:  # images too small for this many cells
            report, reason = None, reason or str(err)
        budget = self.config.budget.memory_bits
        excess = None
        if budget is not None:
            excess = 1.0 if report is None else (report.memory_bits - budget) / budget
        return Check(reason, report, budget, excess)

    def fits_budget(self, arch: Architecture) -> bool:
        """True when ``arch`` is valid and within the memory budget (for samplers)."""
        return self.check(arch).feasible

    def _record_constraints(self, trial: optuna.Trial, arch: Architecture) -> bool:
        """Set the constraints and their user attributes; True when the candidate is feasible."""
        check = self.check(arch)
        trial.set_constraint("valid", 0.0 if check.reason is None else 1.0)
        trial.set_user_attr("constraint_valid", 0.0 if check.reason is None else 1.0)
        if check.reason is not None:
            trial.set_user_attr("invalid_reason", check.reason)
        if check.report is not None:
            trial.set_user_attr("parameters", check.report.parameters)
            trial.set_user_attr("memory_bits", check.report.memory_bits)
            trial.set_user_attr("weight_bits", check.report.weight_bits)
        if check.excess is not None:
            trial.set_constraint("memory", check.excess)
            trial.set_user_attr("constraint_memory", check.excess)
            trial.set_user_attr("memory_budget_bits", check.budget_bits)
        trial.set_user_attr("feasible", check.feasible)
        return check.feasible

    def build(self, arch: Architecture) -> torch.nn.Module:
        seed = candidate_seed(self.config.seed, arch)
        network = build_network(arch, self.macro, self.config.score.timesteps, seed=seed)
        return network if self.device.type == "cpu" else network.to(self.device)

    def score(self, arch: Architecture) -> float:
        """The training-free score of ``arch`` (deterministic for a given config)."""
        network = self.build(arch)
        value = sahd_score(network, self.batches, kind=self.config.score.kind)
        if math.isnan(value):
            raise FloatingPointError(f"the score of {arch} is NaN")
        return value


def find_scored_duplicate(
    study: optuna.Study, canonical_key: str
) -> optuna.trial.FrozenTrial | None:
    """A completed, scored trial of ``study`` whose architecture has this canonical form."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("canonical") == canonical_key and t.user_attrs.get("feasible"):
            return t
    return None
