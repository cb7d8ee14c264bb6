"""AutoSNN's objective: score five searched blocks through a trained weight-sharing super-network.

Built once per worker: the dataset, the super-network (trained, or read from its checkpoint when
the same settings and data trained it before) and the reference spike count S_ref. Per trial:

  1. the sampler's ``block1`` .. ``block5`` become an ``AutoSNNArchitecture``;
  2. its parameters and memory are computed analytically and, with a memory budget, recorded as
     the ``memory`` constraint (an over-budget candidate returns ``-inf`` unscored);
  3. an architecture already evaluated reuses its values (``duplicate_of``);
  4. otherwise the path is run with the shared weights on the search's held-out images: its
     accuracy, spikes per image and SynOp energy become user attributes (the per-layer spikes
     go to ``activity``, for the trial's artifact), and the value is AutoSNN's fitness
     F = accuracy x (spikes / S_ref)^lambda, or, with ``[fitness] objectives =
     "accuracy+spikes"``, the pair (accuracy, spikes) for NSGA-II.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from weakref import WeakKeyDictionary

import optuna

from optuna_spikenas.attribute_batch import AttributeBatch
from optuna_spikenas.autosnn_space import AutoSNNArchitecture, autosnn_parameters, suggest_autosnn
from optuna_spikenas.budgets import excess
from optuna_spikenas.config import Config, require_config
from optuna_spikenas.spikes import Activity
from optuna_spikenas.study_binding import bound_to_settings, config_fingerprint
from optuna_spikenas.study_setup import (
    NOT_SCORED,
    find_scored_duplicate,
    reuse_values,
    study_dataset,
)
from optuna_spikenas.supernet import (
    SuperNetSettings,
    evaluate_path,
    fitness,
    load_or_train_supernet,
    reference_spikes,
    split_for_search,
    supernet_macro,
)

REFERENCE_PATHS = 5
"""Sampled paths whose mean spikes per image is the default S_ref."""


class AutoSNNObjective:
    """Callable objective for ``study.optimize`` over AutoSNN's space (see the module doc)."""

    default_width = 8  # CPU-sized; the paper's AutoSNN_16 is width 16

    def __init__(self, config: Config, log: Callable[[str], None] | None = None) -> None:
        self.config = config = require_config(config, "AutoSNNObjective")
        self.fingerprint = config_fingerprint(config)
        self.device = "cpu"  # the super-network is trained and evaluated on the CPU
        self.dataset = study_dataset(config)
        s = config.supernet
        width = config.space.widths[0] if config.space.widths else self.default_width
        self.settings = SuperNetSettings(
            width=width,
            timesteps=s.timesteps,
            epochs=s.epochs,
            batch_size=s.batch_size,
            lr=s.lr,
            seed=config.seed,
            train_fraction=s.train_fraction,
            max_train_batches=s.max_train_batches,
            eval_images=s.eval_images,
        )
        self.macro = supernet_macro(self.dataset, self.settings)
        self.supernet = load_or_train_supernet(self.dataset, self.settings, s.checkpoint_dir, log)
        _, self.heldout = split_for_search(self.dataset, self.settings)
        self.reference_spikes = config.fitness.reference_spikes or reference_spikes(
            self.supernet, self.heldout, self.settings, REFERENCE_PATHS, seed=config.seed
        )
        self.activity: WeakKeyDictionary[optuna.Trial, Activity] = WeakKeyDictionary()
        """Each live trial's measured spikes, with their per-layer counts, which are no user
        attribute (too long for the dashboard): ``dashboard.TrialArtifacts`` writes them as the
        trial's ``spikes_by_layer.csv``."""

    @property
    def directions(self) -> tuple[str, ...]:
        return self.config.directions

    @bound_to_settings
    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        arch = suggest_autosnn(trial)
        with AttributeBatch(trial) as attrs:  # one storage transaction for all of them
            attrs.set_user_attr("architecture", str(arch))
            attrs.set_user_attr("canonical", str(arch))
            feasible = self._record_memory(attrs, arch)
        if not feasible:
            return NOT_SCORED if len(self.directions) == 1 else (NOT_SCORED, math.inf)
        previous = find_scored_duplicate(trial.study, str(arch), self.fingerprint)
        if previous is not None:
            with AttributeBatch(trial) as attrs:
                return reuse_values(attrs, previous)
        start = time.perf_counter()
        result = evaluate_path(self.supernet, arch, self.heldout, self.settings)
        value = fitness(
            result.accuracy,
            result.spikes_per_image,
            self.reference_spikes,
            self.config.fitness.spike_exponent,
        )
        with AttributeBatch(trial) as attrs:
            attrs.set_user_attr("evaluate_seconds", round(time.perf_counter() - start, 4))
            attrs.set_user_attr("accuracy", result.accuracy)
            attrs.set_user_attr("fitness", value)
            attrs.set_user_attr("reference_spikes", round(self.reference_spikes, 3))
            attrs.set_user_attr("spike_exponent", self.config.fitness.spike_exponent)
            weight_bits = self.config.budget.weight_bits
            for key, attr in result.activity.as_user_attrs(weight_bits).items():
                attrs.set_user_attr(key, attr)
            attrs.set_user_attr("spikes_measured_on", "super-network path, held-out images")
        self.activity[trial] = result.activity
        if len(self.directions) == 2:
            return result.accuracy, result.spikes_per_image
        return value

    def memory_excess(self, arch: AutoSNNArchitecture) -> float | None:
        """The ``memory`` constraint of ``arch`` (None: the study has no memory budget)."""
        budget = self.config.budget.memory_bits
        bits = autosnn_parameters(arch, self.macro) * self.config.budget.weight_bits
        return None if budget is None else excess(bits, budget)

    def fits_budget(self, arch: AutoSNNArchitecture) -> bool:
        over = self.memory_excess(arch)
        return over is None or over <= 0

    def _record_memory(self, attrs: AttributeBatch, arch: AutoSNNArchitecture) -> bool:
        """Parameters and memory; the ``memory`` constraint when the study has a budget (and
        the constraints' list for the dashboard, ``AttributeBatch``)."""
        parameters = autosnn_parameters(arch, self.macro)
        bits = self.config.budget.weight_bits
        attrs.set_constraint("valid", 0.0)
        attrs.set_user_attr("constraint_valid", 0.0)
        attrs.set_user_attr("parameters", parameters)
        attrs.set_user_attr("memory_bits", parameters * bits)
        attrs.set_user_attr("weight_bits", bits)
        over = self.memory_excess(arch)
        feasible = True
        if over is not None:
            feasible = over <= 0
            attrs.set_constraint("memory", over)
            attrs.set_user_attr("constraint_memory", over)
            attrs.set_user_attr("memory_budget_bits", self.config.budget.memory_bits)
        attrs.set_user_attr("broken_budgets", "" if feasible else "memory")
        attrs.set_user_attr("feasible", feasible)
        return feasible
