"""What the objectives of a study share: the study's dataset and macro, the device, each
candidate's seed, the values of a trial that was not scored, and reuse of a duplicate's values.

``objective.py`` (SpikeNAS, NeuroNAS) and ``autosnn_objective.py`` (AutoSNN) use these, and so do
``export``, ``final_training`` and ``op_analysis`` when they rebuild what a study scored.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import weakref
from dataclasses import replace

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.attribute_batch import AttributeBatch
from optuna_spikenas.config import Config, ConfigError
from optuna_spikenas.data import Dataset, load_dataset
from optuna_spikenas.limits import physical_memory
from optuna_spikenas.macros import Macro, get_macro
from optuna_spikenas.space import Architecture
from optuna_spikenas.study_binding import FINGERPRINT_ATTR

NOT_SCORED = float("-inf")
"""The value of a trial that was not scored because it is invalid or over budget."""


def candidate_seed(study_seed: int, arch: Architecture) -> int:
    """Training seed of a candidate (initial weights, batch order): the same architecture always
    trains the same way, whichever worker trains it and whenever."""
    digest = hashlib.sha256(f"{study_seed}|{arch.canonical_key()}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def init_seed(study_seed: int, init: int) -> int:
    """Seed of a study's ``init``-th scoring initialisation, the same for every candidate: with
    ``snn.network.build_common_network`` candidates share the weights of what they have in
    common (common random numbers), and a candidate's weights depend on the study seed and its
    own architecture only."""
    digest = hashlib.sha256(f"{study_seed}|init {init}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was asked for but PyTorch sees no CUDA GPU; use cpu or auto"
        )
    return torch.device(name)


def study_dataset(config: Config) -> Dataset:
    """The config's dataset, split with the study seed."""
    return load_dataset(
        config.dataset.name,
        seed=config.seed,
        val_fraction=config.dataset.val_fraction,
        test_fraction=config.dataset.test_fraction,
        path=config.dataset.path or None,
        verify=config.dataset.verify,
        timesteps=config.supernet.timesteps if config.is_autosnn else config.score.timesteps,
        frame_size=config.dataset.frame_size,
    )


def study_macro(config: Config, dataset: Dataset) -> Macro:
    """The config's macro, fitted to the dataset's image shape and classes."""
    macro = get_macro(config.space.macro).for_data(
        dataset.in_channels, dataset.image_size, dataset.num_classes
    )
    if config.space.final_pool:
        macro = replace(macro, final_pool=config.space.final_pool)
    return macro


def check_scoring_batches(config: Config, dataset: Dataset) -> None:
    """Refuse ``[score]`` settings whose scoring batches cannot exist, before allocating them
    (they stay in memory for the whole search)."""
    batch_size, repeats, n = config.score.batch_size, config.score.repeats, len(dataset.train)
    if batch_size > n:
        raise ConfigError(
            f"[score] batch_size {batch_size} is larger than the train split of "
            f"{dataset.name!r} ({n} images); the largest allowed is {n}"
        )
    image = dataset.train.images[0]
    needed = repeats * batch_size * image.numel() * image.element_size()
    memory = physical_memory()
    if memory is not None and needed > memory:
        raise ConfigError(
            f"[score] repeats = {repeats:,} batches of batch_size = {batch_size} images need "
            f"{needed / 1e9:,.1f} GB, more than this machine's {memory / 1e9:,.1f} GB of memory"
        )


def reuse_values(attrs: AttributeBatch, previous: FrozenTrial) -> float | tuple[float, ...]:
    """``previous``'s values for ``attrs.trial``, a duplicate of it, whose user attributes get
    what ``previous`` measured (spikes, accuracy, ...; not its timings) and ``duplicate_of``,
    through the trial's batch ``attrs``."""
    mine = {**attrs.trial.user_attrs, **attrs.user_attrs}
    for key, value in previous.user_attrs.items():
        if key not in mine and not key.endswith("_seconds"):  # its own time is ~0
            attrs.set_user_attr(key, value)
    attrs.set_user_attr("duplicate_of", previous.user_attrs.get("duplicate_of", previous.number))
    values = tuple(float(v) for v in previous.values)
    return values[0] if len(values) == 1 else values


class _ScoredIndex:
    """The lowest-numbered completed, scored trial per (canonical form, fingerprint), built
    from the finished trials of one study; each trial is looked at once, when first seen
    finished (a finished trial never changes)."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], FrozenTrial] = {}
        self.below = 0  # every trial numbered below this one is finished and indexed
        self.indexed: set[int] = set()  # finished and indexed trials numbered from ``below`` on
        self.lock = threading.Lock()  # Optuna's n_jobs runs trials in threads

    def update(self, trials: list[FrozenTrial]) -> None:
        """Index the finished trials not seen before (``trials`` in trial-number order)."""
        for trial in trials[bisect.bisect_left(trials, self.below, key=_number) :]:
            if trial.number in self.indexed or not trial.state.is_finished():
                continue
            self.indexed.add(trial.number)
            attrs = trial.user_attrs
            canonical, fingerprint = attrs.get("canonical"), attrs.get(FINGERPRINT_ATTR)
            scored = trial.state == TrialState.COMPLETE and attrs.get("feasible")
            if scored and isinstance(canonical, str) and isinstance(fingerprint, str):
                known = self.first.get((canonical, fingerprint))
                if known is None or trial.number < known.number:
                    self.first[canonical, fingerprint] = trial
        while self.below in self.indexed:
            self.indexed.remove(self.below)
            self.below += 1


_SCORED: weakref.WeakKeyDictionary[optuna.Study, _ScoredIndex] = weakref.WeakKeyDictionary()


def _number(trial: FrozenTrial) -> int:
    return trial.number


def find_scored_duplicate(
    study: optuna.Study, canonical_key: str, fingerprint: str
) -> FrozenTrial | None:
    """A completed, scored trial of ``study`` whose architecture has this canonical form, made
    with the same value-defining settings (``study_binding``); the lowest-numbered one.

    Each call asks the storage for the study's trials, so that trials other workers finished
    are seen (Optuna's RDB storage fetches only new and unfinished ones), and indexes only the
    trials it has not seen finished before: a lookup does not test every trial again."""
    index = _SCORED.get(study)
    if index is None:
        index = _SCORED.setdefault(study, _ScoredIndex())
    with index.lock:
        index.update(study.get_trials(deepcopy=False))
        return index.first.get((canonical_key, fingerprint))
