"""A study bound to the settings that define its values.

A trial's values (score, accuracy, fitness) and constraints depend on the dataset and its split,
the study seed, the macro, the scorer, the budgets, the hardware profile and, where candidates are
trained or evaluated through a super-network, their recipe. Two runs of one study with different
such settings would mix values that cannot be compared (and reuse one run's scores for the other's
duplicates). Settings that only steer the search or say where it runs (sampler, ``n_trials``,
``timeout``, ``ops``, widths and cell counts searched, device, threads, checkpoint folder) do not
change any trial's values and stay free.

Every trial records the fingerprint of its run's value-defining settings (``config_fingerprint``).
The study's binding is the fingerprint of its lowest-numbered trial that has one: storages number
trials atomically, so of two workers started at once with different settings, the one whose trial
came first keeps the study and the other's trial fails before it writes a value. The settings
themselves are kept as study user attributes, so that a refusal names the keys that differ.
"""

from __future__ import annotations

import functools
import hashlib
import json
import weakref
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import optuna

from optuna_spikenas.config import PATH_KEYS, Config, ConfigError
from optuna_spikenas.recovery import mark_worker

FINGERPRINT_ATTR = "config_fingerprint"
"""Trial and study user attribute: the fingerprint of the run's value-defining settings."""
SETTINGS_ATTR = "config_settings"
"""Study user attribute: the value-defining settings of the run that bound the study."""

# Per table, the keys that define values (all of the table's keys when None).
_SPIKENAS_KEYS: dict[str, tuple[str, ...] | None] = {
    "dataset": ("name", "path", "val_fraction", "test_fraction", "frame_size"),
    "space": ("macro", "final_pool"),
    "score": ("kind", "batch_size", "repeats", "inits", "timesteps"),
    "budget": None,
    "hardware": ("profile",),
    "train": None,
}
_AUTOSNN_KEYS: dict[str, tuple[str, ...] | None] = {
    "dataset": ("name", "path", "val_fraction", "test_fraction", "frame_size"),
    "space": ("macro", "widths"),  # the super-network's width
    "budget": ("weight_bits", "max_parameters", "memory_megabytes"),
    "supernet": (
        "epochs",
        "batch_size",
        "lr",
        "timesteps",
        "train_fraction",
        "max_train_batches",
        "eval_images",
    ),
    "fitness": None,
}


class StudySettingsError(ConfigError):
    """A run whose value-defining settings differ from those its study is bound to."""


def value_settings(config: Config) -> dict[str, object]:
    """The settings that define a trial's values, as ``{"[table] key": value}`` (JSON-safe).
    Paths are bound as the config file wrote them (``Config.as_written``): relative to the
    file, so that one config run from any folder, or by workers whose copies of the project
    lie in different places, binds the same settings."""
    settings: dict[str, object] = {"seed": config.seed}
    for table, keys in (_AUTOSNN_KEYS if config.is_autosnn else _SPIKENAS_KEYS).items():
        section = getattr(config, table)
        for key in keys or [f.name for f in fields(section)]:
            value = getattr(section, key)
            if (table, key) in PATH_KEYS:
                value = config.as_written(value)
            settings[f"[{table}] {key}"] = list(value) if isinstance(value, tuple) else value
    return settings


def fingerprint(settings: dict[str, object]) -> str:
    """A short, stable hash of ``settings``."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_fingerprint(config: Config) -> str:
    """The fingerprint of ``config``'s value-defining settings."""
    return fingerprint(value_settings(config))


_SETTLED: weakref.WeakKeyDictionary[optuna.Study, str] = weakref.WeakKeyDictionary()
"""Per study object, a binding that can no longer change (read once, not on every trial)."""


def bound_fingerprint(study: optuna.Study) -> str | None:
    """The fingerprint the study is bound to: its lowest-numbered trial's that has one (None
    for a study no run of this package has written to yet).

    Once every trial numbered below that one is finished, no trial can take the binding over
    (finished trials take no attributes; new trials get higher numbers): it is remembered and
    the storage is not read again for this study object."""
    settled = _SETTLED.get(study)
    if settled is not None:
        return settled
    below_finished = True
    for trial in study.get_trials(deepcopy=False):  # in trial-number order
        found = trial.user_attrs.get(FINGERPRINT_ATTR)
        if found is not None:
            if below_finished:
                _SETTLED[study] = str(found)
            return str(found)
        below_finished = below_finished and trial.state.is_finished()
    return None


def settings_differences(study: optuna.Study, settings: dict[str, object], bound: str) -> str:
    """``": KEY THERE there, HERE here; ..."`` for each value-defining setting where the
    settings the study recorded for the fingerprint ``bound`` differ from ``settings``; ""
    when the study did not record them (its settings are those of another fingerprint)."""
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if not isinstance(stored, dict) or study.user_attrs.get(FINGERPRINT_ATTR) != bound:
        return ""
    keys = [*settings, *(key for key in stored if key not in settings)]
    changes = [
        f"{key} {stored.get(key)!r} there, {settings.get(key)!r} here"
        for key in keys
        if stored.get(key) != settings.get(key)
    ]
    return ": " + "; ".join(changes)


def _refusal(study: optuna.Study, settings: dict[str, object], bound: str) -> StudySettingsError:
    differing = settings_differences(study, settings, bound)
    return StudySettingsError(
        f"study {study.study_name!r} holds trials made with other value-defining settings"
        f"{differing}; run it with those settings or use a new study (`optuna create-study`)"
    )


def bind_study(study: optuna.Study, config: Config) -> str:
    """Refuse a run whose settings differ from those ``study`` is bound to; bind a study that
    is not bound yet. Returns the run's fingerprint."""
    settings = value_settings(config)
    mine = fingerprint(settings)
    bound = bound_fingerprint(study) or study.user_attrs.get(FINGERPRINT_ATTR)
    if bound is None:
        study.set_user_attr(FINGERPRINT_ATTR, mine)
        study.set_user_attr(SETTINGS_ATTR, settings)
    elif bound != mine:
        raise _refusal(study, settings, bound)
    return mine


def _check_trial(trial: optuna.Trial, config: Config, mine: str) -> None:
    bound = bound_fingerprint(trial.study)
    if bound != mine:
        raise _refusal(trial.study, value_settings(config), str(bound))


def check_study_fits(study: optuna.Study, objective: Any) -> None:
    """Refuse a study whose directions are not the objective's (all its values are maximized),
    or whose sampler was given settings that contradict the objective's config (the CLI builds
    both from one config; through the Python API they can disagree)."""
    wanted = tuple(objective.config.directions)
    found = tuple(d.name.lower() for d in study.directions)
    if found != wanted:
        raise StudySettingsError(
            f"study {study.study_name!r} has directions {list(found)}, but this objective's "
            f"values are to {' and '.join(wanted)}: create the study with "
            f"directions={list(wanted)}"
        )
    mismatches = getattr(study.sampler, "mismatches", None)
    space = getattr(objective, "space", None)
    if mismatches is not None and space is not None:
        differing = mismatches(space, objective.config.search.ops)
        if differing:
            raise StudySettingsError(
                f"{type(study.sampler).__name__} contradicts the objective's config: "
                f"{'; '.join(differing)}; build both from one config (make_sampler)"
            )


def bound_to_settings(call: Callable[[Any, optuna.Trial], Any]) -> Callable[..., Any]:
    """Wrap an objective's ``__call__`` (an object with ``config`` and ``fingerprint``): mark the
    trial with the run's fingerprint and check the study's binding before the objective runs and
    again before its values are returned (a lower-numbered trial of another worker may mark
    itself meanwhile). A trial of other settings raises :class:`StudySettingsError` and writes
    no value."""

    @functools.wraps(call)
    def bound_call(objective: Any, trial: optuna.Trial) -> Any:
        mark_worker(trial.study, trial._trial_id)
        check_study_fits(trial.study, objective)
        trial.set_user_attr(FINGERPRINT_ATTR, objective.fingerprint)
        _check_trial(trial, objective.config, objective.fingerprint)
        values = call(objective, trial)
        _check_trial(trial, objective.config, objective.fingerprint)
        return values

    return bound_call
