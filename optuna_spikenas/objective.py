"""The provided objective: suggest an architecture, check its budgets, score it, optionally train.

Per trial, in this order:
  1. the sampler's parameters become an ``Architecture``;
  2. validity and the budgets (memory, and the IMC hardware model's area, latency and energy)
     are recorded as Optuna's constraints (feasible when <= 0), as the list optuna-dashboard
     reads (``constraint_list.py``) and as user attributes (``broken_budgets`` names the ones
     broken), with the architecture's, in one storage transaction (``attribute_batch.py``);
     an invalid or over-budget candidate is never built or scored and returns ``-inf`` for
     every objective;
  3. a candidate that computes the same function as a completed trial's (the same canonical
     key, ``Cell.function_key``) reuses that trial's values (``duplicate_of`` says which), so
     repeated proposals cost nothing and workers agree;
  4. otherwise the proxy (``[score] kind``) scores it: a count from the architecture, or the
     untrained network of its canonical cells built once per initialisation (``[score] inits``,
     common random numbers: candidates share the weights of the modules they have in common)
     and scored on the study's fixed batches, the values averaged and their spread recorded
     (a NaN score fails the trial, as Optuna fails any NaN value, and the search goes on);
  5. with ``[train] epochs``, it is then trained with k-bit weights (``quantize.py``) and its
     validation accuracy becomes an objective.

With ``[search] screen`` (``samplers/screen.py``) each trial's stage, set by the sampler, decides:
a ``screen`` trial stops after step 4 (its score a user attribute, its value -inf), a ``train``
trial skips step 4 and trains, a ``surplus`` trial ends PRUNED at once.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from weakref import WeakKeyDictionary

import optuna
import torch
from torch.nn.utils import parametrize

from optuna_spikenas.attribute_batch import AttributeBatch
from optuna_spikenas.budgets import HARDWARE_COST, Budgets, Check
from optuna_spikenas.config import Config, require_config
from optuna_spikenas.data import batch_for_scoring
from optuna_spikenas.hardware.imc import load_profile
from optuna_spikenas.hardware.spikesim_runtime import spikesim_energy_uj
from optuna_spikenas.proxy_catalog import PROXIES
from optuna_spikenas.quantize import FLOAT_BITS, float_weights
from optuna_spikenas.samplers.screen import (
    SCREEN,
    STAGE_ATTR,
    SURPLUS,
    TRAIN,
    TRAINED_CONSTRAINT,
    find_trained_duplicate,
)
from optuna_spikenas.snn.network import build_common_network
from optuna_spikenas.space import Architecture, suggest_architecture
from optuna_spikenas.spikes import Activity, ActivityCounter, measure_activity
from optuna_spikenas.study_binding import bound_to_settings, config_fingerprint
from optuna_spikenas.study_setup import (
    NOT_SCORED,
    candidate_seed,
    check_scoring_batches,
    find_scored_duplicate,
    init_seed,
    resolve_device,
    reuse_values,
    study_dataset,
    study_macro,
)
from optuna_spikenas.train import build_trainable, evaluate, recipe_of, train_network


class SpikeNASObjective:
    """Callable objective for ``study.optimize``. Its values, all maximized: the training-free
    score; with ``[train] epochs`` the score and the validation accuracy (or the accuracy alone
    with ``[train] objectives = "accuracy"``). ``log`` receives one line per training epoch."""

    def __init__(
        self, config: Config, device: str | None = None, log: Callable[[str], None] | None = None
    ) -> None:
        self.config = config = require_config(config, "SpikeNASObjective")
        self.fingerprint = config_fingerprint(config)
        self.space = config.search_space()
        self.profile = load_profile(config.hardware.profile)
        self.dataset = study_dataset(config)
        self.macro = study_macro(config, self.dataset)
        self.budgets = Budgets(
            self.space, self.macro, self.profile, config.budget, config.score.timesteps
        )
        self.device = resolve_device(device or config.score.device)
        self.log = log
        check_scoring_batches(config, self.dataset)
        self.batches = [
            batch_for_scoring(self.dataset.train, config.score.batch_size, config.seed + r).to(
                self.device
            )
            for r in range(config.score.repeats)
        ]
        self.proxy = PROXIES[config.score.kind]
        self.proxy_function = self.proxy.load()
        self.inits = [init_seed(config.seed, k) for k in range(config.score.inits)]
        """The seed of each scoring initialisation (``[score] inits``), shared by candidates."""
        self.train_settings = recipe_of(
            config.train,
            epochs=max(config.train.epochs, 1),
            timesteps=config.score.timesteps,
            weight_bits=config.budget.weight_bits,
        )
        self.activity: WeakKeyDictionary[optuna.Trial, Activity] = WeakKeyDictionary()
        """Each live trial's measured spikes, with their per-layer counts, which are no user
        attribute (too long for the dashboard): ``dashboard.TrialArtifacts`` writes them as the
        trial's ``spikes_by_layer.csv``."""

    @property
    def directions(self) -> tuple[str, ...]:
        return self.config.train.directions

    @bound_to_settings
    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        stage = self._stage(trial)
        if stage == SURPLUS:  # not a candidate: marked not trained, for the dashboard too
            with AttributeBatch(trial) as attrs:
                attrs.set_constraint(TRAINED_CONSTRAINT, 1.0)
            raise optuna.TrialPruned("nothing left to screen or train: the search is complete")
        arch = suggest_architecture(trial, self.space)
        with AttributeBatch(trial) as attrs:  # one storage transaction for all of them
            attrs.set_user_attr("architecture", str(arch))
            attrs.set_user_attr("canonical", arch.canonical_key())
            attrs.set_user_attr("num_cells", arch.num_cells)
            attrs.set_user_attr("width", arch.width)
            if stage is not None:  # the study's value is the accuracy after training
                attrs.set_constraint(TRAINED_CONSTRAINT, 1.0 if stage == SCREEN else 0.0)
            feasible = self._record_constraints(attrs, arch)
        if not feasible:
            return self._values(NOT_SCORED, NOT_SCORED)
        if stage == TRAIN:
            return self._train_stage(trial, arch)
        previous = None
        if self.config.search.reuse_scores:
            previous = find_scored_duplicate(trial.study, arch.canonical_key(), self.fingerprint)
        if previous is not None:
            with AttributeBatch(trial) as attrs:
                attrs.set_user_attr("score_seconds", 0.0)
                return reuse_values(attrs, previous)
        start = time.perf_counter()
        if not self.proxy.uses_network:  # a count from the architecture: no network
            score = self.score(arch)
            trial.set_user_attr("score_seconds", round(time.perf_counter() - start, 4))
            return self._scored(trial, arch, score)
        network = self.build(arch)
        with ActivityCounter(network) as counter:  # spikes of the scoring passes, no extra pass
            try:
                values = self.scores_per_init(arch, network)
            except FloatingPointError as err:  # NaN: Optuna fails the trial, the search goes on
                trial.set_user_attr("score_error", str(err))
                return self._values(math.nan, math.nan)
        with AttributeBatch(trial) as attrs:
            attrs.set_user_attr("score_seconds", round(time.perf_counter() - start, 4))
            if len(values) > 1:
                attrs.set_user_attr("score_per_init", [round(v, 4) for v in values])
                if all(math.isfinite(v) for v in values):
                    attrs.set_user_attr("score_spread", round(statistics.stdev(values), 4))
            self._record_spikes(attrs, counter.result(), "initial weights, scoring batches")
            if not self.config.train.epochs:
                self._record_activity_energy(attrs, network, self.batches[0], "initial")
        return self._scored(trial, arch, statistics.fmean(values))

    def _scored(self, trial: optuna.Trial, arch: Architecture, score: float):
        """The trial's values once ``score`` is known: the score, or with ``[train] epochs``
        the score and the accuracy after training (a screen trial: -inf, not trained)."""
        if not self.config.train.epochs:
            return score
        trial.set_user_attr("score", score)
        if self.config.search.screen is not None:
            return NOT_SCORED
        return self._values(score, self.train(trial, arch))

    def _stage(self, trial: optuna.Trial) -> str | None:
        """The trial's stage with ``[search] screen`` (set by its sampler), else None."""
        if self.config.search.screen is None:
            return None
        stage = trial.user_attrs.get(STAGE_ATTR)
        if stage not in (SCREEN, TRAIN, SURPLUS):
            raise ValueError(
                "[search] screen needs ScreenThenTrainSampler, which gives every trial its "
                "stage: build the sampler with make_sampler(..., screen=N)"
            )
        return str(stage)

    def _train_stage(self, trial: optuna.Trial, arch: Architecture) -> float:
        """Stage 2: train ``arch`` (no score); a trained duplicate's accuracy is reused."""
        if self.config.search.reuse_scores:
            previous = find_trained_duplicate(
                trial.study, arch.canonical_key(), self.fingerprint, trial.number
            )
            if previous is not None:
                with AttributeBatch(trial) as attrs:
                    attrs.set_user_attr("train_seconds", 0.0)
                    return float(reuse_values(attrs, previous))  # type: ignore[arg-type]
        return self.train(trial, arch)

    def _values(self, score: float, accuracy: float) -> float | tuple[float, ...]:
        if self.directions == ("maximize", "maximize"):
            return score, accuracy
        return accuracy if self.config.train.epochs else score

    def check(self, arch: Architecture) -> Check:
        """Validity and costs of ``arch`` against the budgets (analytic: no network is built)."""
        return self.budgets.check(arch)

    def fits_budget(self, arch: Architecture) -> bool:
        """True when ``arch`` is valid and within every budget (for samplers)."""
        return self.budgets.fits(arch)

    def _record_constraints(self, attrs: AttributeBatch, arch: Architecture) -> bool:
        """Set the constraints (with their list for the dashboard, ``AttributeBatch``) and
        their user attributes; True when the candidate is feasible."""
        check = self.check(arch)
        valid = 0.0 if check.reason is None else 1.0
        attrs.set_constraint("valid", valid)
        attrs.set_user_attr("constraint_valid", valid)
        if check.reason is not None:
            attrs.set_user_attr("invalid_reason", check.reason)
        if check.memory is not None:
            attrs.set_user_attr("parameters", check.memory.parameters)
            attrs.set_user_attr("memory_bits", check.memory.memory_bits)
            attrs.set_user_attr("weight_bits", check.memory.weight_bits)
        if check.hardware is not None:
            attrs.set_user_attr("hardware_profile", self.profile.name)
            for key in HARDWARE_COST.values():
                attrs.set_user_attr(key, round(getattr(check.hardware, key), 6))
        units = {"memory": "bits", "area": "mm2", "latency": "ms", "energy": "uj"}
        for name, excess in check.excess.items():
            attrs.set_constraint(name, excess)
            attrs.set_user_attr(f"constraint_{name}", excess)
            attrs.set_user_attr(f"{name}_budget_{units[name]}", check.budgets[name])
        attrs.set_user_attr("broken_budgets", ", ".join(check.broken))
        attrs.set_user_attr("feasible", check.feasible)
        return check.feasible

    def build(self, arch: Architecture, init: int = 0) -> torch.nn.Module:
        """The untrained network scored for ``arch`` at initialisation ``init``: its class's
        representative (``Cell.canonical``), with common random numbers (``init_seed``)."""
        seed = self.inits[init]
        network = build_common_network(
            arch.canonical(), self.macro, self.config.score.timesteps, seed
        )
        return network if self.device.type == "cpu" else network.to(self.device)

    def score(self, arch: Architecture) -> float:
        """The training-free score of ``arch``: the proxy's mean over the initialisations
        (deterministic for a given config)."""
        if not self.proxy.uses_network:
            return float(self.proxy_function(arch.canonical(), self.macro))
        return statistics.fmean(self.scores_per_init(arch, self.build(arch)))

    def scores_per_init(self, arch: Architecture, first: torch.nn.Module) -> list[float]:
        """The network proxy's value at every initialisation of ``arch``; ``first`` is
        ``build(arch)`` (initialisation 0), passed in so that a caller can watch it."""
        return [self.score_network(first, arch)] + [
            self.score_network(self.build(arch, k), arch, k) for k in range(1, len(self.inits))
        ]

    def score_network(self, network: torch.nn.Module, arch: Architecture, init: int = 0) -> float:
        """The proxy's value on ``network``, freshly built by ``build(arch, init)``; any random
        draw while scoring (a dropout mask) comes from the initialisation's seed."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.inits[init])
            value = float(self.proxy_function(network, self.batches))
        if math.isnan(value):
            raise FloatingPointError(f"the score of {arch} is NaN")
        return value

    def train(self, trial: optuna.Trial, arch: Architecture) -> float:
        """Train ``arch`` with ``[train]``'s recipe and k-bit weights; return the final
        validation accuracy. Accuracy per epoch goes to the user attributes, and to
        ``trial.report`` when the study has one objective (so a pruner can stop the trial).
        The test split is measured once at the end for the final report, never returned."""
        settings = replace(self.train_settings, epochs=self.config.train.epochs)
        seed = candidate_seed(self.config.seed, arch)
        network = build_trainable(arch, self.macro, self.dataset, settings, seed=seed)
        prunable = len(self.directions) == 1
        per_epoch: list[float] = []

        def on_epoch(epoch: int, accuracy: float, loss: float) -> None:
            per_epoch.append(accuracy)
            trial.set_user_attr("val_accuracy_per_epoch", per_epoch)
            if self.log is not None:
                self.log(
                    f"trial {trial.number} epoch {epoch + 1}/{settings.epochs}: val accuracy "
                    f"{accuracy:.4f}, loss {loss:.4f} ({settings.weight_bits}-bit weights)"
                )
            if prunable:
                trial.report(accuracy, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"val accuracy {accuracy:.4f} after epoch {epoch + 1}")

        result = train_network(
            network, self.dataset, settings, seed=seed, device=self.device, on_epoch=on_epoch
        )
        batch = settings.batch_size
        with AttributeBatch(trial) as attrs:  # one storage transaction for all of them
            attrs.set_user_attr("val_accuracy", result.final_val_accuracy)
            attrs.set_user_attr("train_seconds", round(result.seconds, 2))
            if settings.weight_bits < FLOAT_BITS:
                with float_weights(network):
                    float_accuracy = evaluate(network, self.dataset.val, batch, self.device)
                attrs.set_user_attr("val_accuracy_float", float_accuracy)
            test_accuracy = evaluate(network, self.dataset.test, batch, self.device)
            attrs.set_user_attr("test_accuracy", test_accuracy)
            images = self.dataset.val.images[: self.config.score.batch_size].to(self.device)
            with parametrize.cached():
                activity = measure_activity(network, images)
            self._record_spikes(attrs, activity, "trained weights, validation images")
            self._record_activity_energy(attrs, network, images, "trained")
        return result.final_val_accuracy

    def _record_spikes(self, attrs: AttributeBatch, activity: Activity, measured_on: str) -> None:
        """Spikes per image and the digital SynOp energy; the per-layer counts in
        :attr:`activity`."""
        for key, value in activity.as_user_attrs(self.config.budget.weight_bits).items():
            attrs.set_user_attr(key, value)
        attrs.set_user_attr("spikes_measured_on", measured_on)
        self.activity[attrs.trial] = activity

    def _record_activity_energy(
        self, attrs: AttributeBatch, network: torch.nn.Module, images: torch.Tensor, weights: str
    ) -> None:
        """With ``[hardware] measure_activity``: SpikingJelly's SpikeSim energy per image from
        the spikes the network really fires on ``images``, beside the analytic (dense) figure."""
        if not self.config.hardware.measure_activity:
            return
        energy = spikesim_energy_uj(network, images, self.profile, activity="event")
        attrs.set_user_attr("spikesim_event_energy_uj", round(energy, 6))
        attrs.set_user_attr("spikesim_event_weights", weights)
