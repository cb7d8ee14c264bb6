"""Study settings: plain dataclasses loaded from TOML and validated once, here, with clear errors.

A config file has these tables (every key optional; see ``studies/*.toml`` for commented examples):

    seed = 0                      # study seed: data split, scoring batches, weight initialisation
    [dataset]  name, path, val_fraction, test_fraction, verify, frame_size
    [space]    macro, num_cells, widths, shared_cell, backward, require_direct_edge, final_pool
    [score]    kind, batch_size, repeats, inits, timesteps, device
    [budget]   weight_bits, max_parameters | memory_megabytes, area_mm2, latency_ms, energy_uj
    [hardware] profile, measure_activity
    [train]    epochs, objectives, batch_size, optimizer, lr, min_lr, momentum, weight_decay,
               max_train_batches
    [search]   sampler, n_trials, timeout, ops, reuse_scores, pruner, screen, train_top
    [supernet] epochs, batch_size, lr, timesteps, train_fraction, max_train_batches,
               eval_images, checkpoint_dir                                  (AutoSNN macros)
    [fitness]  spike_exponent, reference_spikes, objectives                 (AutoSNN macros)
    [compare]  samplers, seeds, n_trials, timeout, quick_seeds, quick_n_trials, study_prefix
                                                        (``optuna-spikenas compare`` only)

Paths (``[dataset] path``, ``[supernet] checkpoint_dir``, a ``[hardware] profile`` file) are
relative to the config file's folder, so that a config means the same files from any working
directory; ``~`` is the home folder and absolute paths stay as they are. A config built in code
(``config_from_dict``) keeps paths relative to the working directory unless given a
``base_dir``. ``Config.base_dir`` remembers the folder, and ``Config.as_written`` gives a path
back in the form the file wrote it (what a study binds: ``study_binding.py``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from math import isfinite
from pathlib import Path
from typing import Any

from optuna_spikenas.autosnn_space import AUTOSNN_MACROS
from optuna_spikenas.dataset_catalog import DATASET_NAMES, PATH_DATASETS
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.hardware.imc import HardwareProfileError, load_profile
from optuna_spikenas.limits import (
    brief,
    too_many_cells,
    too_many_parameters,
    too_many_timesteps,
    widest_architecture,
)
from optuna_spikenas.macros import MACROS
from optuna_spikenas.paths import MAX_TEXT_FILE_BYTES, read_capped
from optuna_spikenas.proxy_catalog import SCORE_KINDS
from optuna_spikenas.sampler_catalog import SAMPLERS, SCREEN_BASES
from optuna_spikenas.space import OPS, SearchSpace

PRUNERS = ("none", "median", "hyperband", "successive_halving")
TRAIN_OBJECTIVES = ("score+accuracy", "accuracy")
HARDWARE_BUDGETS = ("area_mm2", "latency_ms", "energy_uj")
FITNESS_OBJECTIVES = ("fitness", "accuracy+spikes")
DEVICES = ("cpu", "cuda", "auto")
DEFAULT_TRAIN_TOP = 5  # [search] train_top when screen is set and train_top is not
MAX_INITS = 64  # scoring initialisations per candidate
MAX_SEED = 2**32 - 1  # Optuna's samplers (numpy RandomState) take seeds 0 .. 2**32 - 1


class ConfigError(SpikeNASError):
    """A config value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "animal-mnist"
    path: str = ""  # npz: the .npz file; cifar10/cifar100/tinyimagenet: the download's folder
    val_fraction: float = 0.1
    test_fraction: float = 0.1  # not used by cifar10/cifar100/tinyimagenet (official test set)
    verify: bool = False  # cifar10/cifar100: check the files' published md5s before loading
    frame_size: int = 64  # dvs128-gesture/cifar10-dvs: frames summed down to this size


@dataclass(frozen=True)
class SpaceConfig:
    macro: str = "light"
    num_cells: tuple[int, ...] = (2,)
    widths: tuple[int, ...] = ()  # empty: the macro's own width
    shared_cell: bool = True
    backward: bool = False
    require_direct_edge: bool = False
    final_pool: int = 0  # 0: the macro's own


@dataclass(frozen=True)
class ScoreConfig:
    kind: str = "sahd"
    batch_size: int = 64
    repeats: int = 2
    inits: int = 1
    timesteps: int = 5
    device: str = "cpu"


@dataclass(frozen=True)
class BudgetConfig:
    weight_bits: int = 32  # memory and hardware models; < 32 also quantizes training ([train])
    max_parameters: int | None = None
    memory_megabytes: float | None = None
    area_mm2: float | None = None  # IMC hardware budgets, per inference ([hardware] profile)
    latency_ms: float | None = None
    energy_uj: float | None = None

    def hardware_budgets(self) -> dict[str, float]:
        """The hardware budgets the study has, by name (``area_mm2``, ...)."""
        values = {name: getattr(self, name) for name in HARDWARE_BUDGETS}
        return {name: value for name, value in values.items() if value is not None}

    @property
    def memory_bits(self) -> int | None:
        """The memory budget in bits, or None when the study has none."""
        if self.max_parameters is not None:
            return self.max_parameters * self.weight_bits
        if self.memory_megabytes is not None:
            return round(self.memory_megabytes * 8e6)
        return None


@dataclass(frozen=True)
class HardwareConfig:
    profile: str = "spikesim-64"  # a shipped profile's name, or the path of a .toml copy
    # Also record SpikingJelly's activity-based SpikeSim energy of each scored (or trained)
    # network, from the spikes it fires on one batch: about half a score's time more per trial.
    measure_activity: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optional training of every scored candidate, after the score (NeuroNAS)."""

    epochs: int = 0  # 0: no training, the trial's value is the training-free score
    objectives: str = "score+accuracy"  # or "accuracy": one objective, prunable per epoch
    batch_size: int = 64
    # Adam suits short CPU runs on the embedded data (SGD at SNASNet's lr 0.1 does not move in
    # one epoch there); for CIFAR use SNASNet's: optimizer "sgd", lr 0.1, min_lr 0.001.
    optimizer: str = "adam"
    lr: float = 0.005
    min_lr: float = 0.0
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # L2 penalty of the optimizer; SNASNet's recipe: 5e-4
    max_train_batches: int | None = None  # cap per epoch, for quick runs

    @property
    def directions(self) -> tuple[str, ...]:
        if self.epochs and self.objectives == "score+accuracy":
            return ("maximize", "maximize")
        return ("maximize",)


@dataclass(frozen=True)
class SupernetConfig:
    """AutoSNN's weight-sharing super-network (``[space] macro = "autosnn-16"``)."""

    epochs: int = 3  # AutoSNN trains 600 on a GPU; 3 (at width 8) is CPU-sized
    batch_size: int = 96
    lr: float = 0.001  # Adam
    timesteps: int = 8
    train_fraction: float = 0.8  # of the train split; the rest is the search's held-out part
    max_train_batches: int | None = None
    eval_images: int | None = None  # held-out images per evaluated architecture; None: all
    checkpoint_dir: str = "checkpoints"  # reused by later searches with the same settings


@dataclass(frozen=True)
class FitnessConfig:
    """AutoSNN's spike-aware fitness F = accuracy x (spikes / reference_spikes)^spike_exponent."""

    spike_exponent: float = -0.08
    reference_spikes: float | None = None  # spikes per image; None: the super-network's mean
    objectives: str = "fitness"  # or "accuracy+spikes": two objectives (NSGA-II's comparison)


@dataclass(frozen=True)
class SearchConfig:
    sampler: str = "random"
    n_trials: int | None = None  # None: until the sampler stops (cellbycell) or the timeout
    timeout: float | None = None
    ops: tuple[str, ...] = ("skip", "conv3x3")  # cellbycell's pruned op set
    reuse_scores: bool = True  # a canonical duplicate of a scored trial reuses its score
    pruner: str = "none"  # median | hyperband | successive_halving: stop a lagging trial
    # Screen, then train (samplers/screen.py): score `screen` candidates training-free, then
    # train the `train_top` best-scoring ones (default 5); off while screen is unset.
    screen: int | None = None
    train_top: int | None = None

    @property
    def trained(self) -> int:
        """How many screened candidates are trained: ``train_top``, by default 5 (at most
        ``screen``)."""
        if self.train_top is not None:
            return self.train_top
        return min(DEFAULT_TRAIN_TOP, self.screen or DEFAULT_TRAIN_TOP)


@dataclass(frozen=True)
class CompareConfig:
    """``optuna-spikenas compare``: each sampler once per seed, one study each, equal budgets."""

    samplers: tuple[str, ...] = ("cellbycell", "tpe", "nsga2", "random")  # ours first
    seeds: tuple[int, ...] = (0, 1, 2)
    n_trials: int | None = None  # trials per study (None: [search] n_trials)
    timeout: float | None = None  # seconds per study, instead of or besides n_trials
    quick_seeds: tuple[int, ...] = (0,)  # --quick: fewer seeds and trials
    quick_n_trials: int = 24  # TPE past its 10 start-ups, NSGA-II 3 generations of 8
    study_prefix: str = "compare"  # studies are named PREFIX-SAMPLER-seedN


@dataclass(frozen=True)
class Config:
    seed: int = 0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    # The folder the paths were resolved against (the config file's); "": the working directory.
    base_dir: str = ""

    def as_written(self, path: str) -> str:
        """One of the config's paths as its file wrote it: relative to ``base_dir`` when it lies
        there (a path written absolute into the file's own folder reads as relative, the same
        file), otherwise unchanged."""
        folder = os.path.join(self.base_dir, "") if self.base_dir else ""
        return path[len(folder) :] if folder and path.startswith(folder) else path

    @property
    def is_autosnn(self) -> bool:
        """True for AutoSNN's space (five block positions), False for SNASNet's cells."""
        return self.space.macro in AUTOSNN_MACROS

    @property
    def directions(self) -> tuple[str, ...]:
        """The study's directions, one per value the objective returns."""
        if self.is_autosnn:
            two = self.fitness.objectives == "accuracy+spikes"
            return ("maximize", "minimize") if two else ("maximize",)
        return self.train.directions

    def search_space(self) -> SearchSpace:
        if self.is_autosnn:
            raise ValueError("AutoSNN macros have block positions, not SNASNet cells")
        widths = self.space.widths or (MACROS[self.space.macro].width,)
        return SearchSpace(
            num_cells=self.space.num_cells,
            widths=widths,
            shared_cell=self.space.shared_cell,
            backward=self.space.backward,
            require_direct_edge=self.space.require_direct_edge,
        )


# --- loading and validation ----------------------------------------------------------------

_SECTIONS = {
    "dataset": DatasetConfig,
    "space": SpaceConfig,
    "score": ScoreConfig,
    "budget": BudgetConfig,
    "hardware": HardwareConfig,
    "train": TrainConfig,
    "search": SearchConfig,
    "supernet": SupernetConfig,
    "fitness": FitnessConfig,
    "compare": CompareConfig,
}


OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
"""``[train] optimizer``: SNASNet trains with SGD, AutoSNN's super-network with Adam."""


def require_config(config: object, who: str) -> Config:
    """``config`` when it is a :class:`Config`; otherwise a TypeError that says how to make one
    (a path is the usual slip: ``SpikeNASObjective("study.toml")``)."""
    if isinstance(config, Config):
        return config
    path = str(config) if isinstance(config, str | Path) else "PATH"
    example = f"load_config({path!r})"
    raise TypeError(
        f"{who} takes a Config, e.g. {who}({example}) with "
        f"`from optuna_spikenas.config import load_config`; got {type(config).__name__}"
    )


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    path = Path(path)
    try:
        data = read_capped(path)  # capped: `--config /dev/zero` never ends otherwise
        if data is None:
            raise ConfigError(
                f"config file {path} is larger than {MAX_TEXT_FILE_BYTES:,} bytes: not a config"
            )
        raw = tomllib.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as err:  # a directory, no permission, ...
        raise ConfigError(f"config file {path} cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text (UTF-8) file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
    try:
        return config_from_dict(raw, base_dir=os.path.dirname(os.path.abspath(path)))
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from None


PATH_KEYS: tuple[tuple[str, str], ...] = (
    ("dataset", "path"),
    ("supernet", "checkpoint_dir"),
    ("hardware", "profile"),  # a path when it ends in .toml (hardware/imc.py's load_profile)
)
"""The ``(table, key)`` of every config value that names a file or folder."""


def _names_a_path(key: str, value: str) -> bool:
    return value.endswith(".toml") if key == "profile" else bool(value)


def resolve_paths(config: Config, base_dir: str | Path) -> Config:
    """``config`` with each relative path of :data:`PATH_KEYS` joined to ``base_dir`` (made
    absolute), ``~`` expanded to the home folder, absolute paths unchanged."""
    base = os.path.abspath(base_dir)
    tables: dict[str, Any] = {}
    for table, key in PATH_KEYS:
        section = tables.get(table, getattr(config, table))
        value = getattr(section, key)
        if _names_a_path(key, value):
            path = os.path.expanduser(value)
            tables[table] = replace(section, **{key: os.path.join(base, path)})
    return replace(config, base_dir=base, **tables)


def config_from_dict(raw: dict[str, Any], base_dir: str | Path | None = None) -> Config:
    """A validated config from TOML's tables; its relative paths are relative to ``base_dir``
    when given (a config file's folder), to the working directory otherwise."""
    unknown = set(raw) - set(_SECTIONS) - {"seed"}
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(sorted(unknown))}; known: seed, {', '.join(_SECTIONS)}"
        )
    sections = {}
    for name, cls in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = _build_section(name, cls, table)
    config = Config(seed=_int("seed", raw.get("seed", 0), minimum=0, maximum=MAX_SEED), **sections)
    if base_dir is not None:
        config = resolve_paths(config, base_dir)
    validate(config)
    return config


def _build_section(section: str, cls: type, table: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(table) - set(known)
    if unknown:
        raise ConfigError(
            f"[{section}] unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}"
        )
    values = {}
    for key, value in table.items():
        default = getattr(cls(), key)
        values[key] = _coerce(f"[{section}] {key}", value, default, str(known[key].type))
    return cls(**values)


def _coerce(name: str, value: Any, default: Any, annotation: str) -> Any:
    if "tuple[str" in annotation:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{name} must be a list of names, got {brief(value)}")
        return tuple(items)
    if "tuple[int" in annotation:
        items = value if isinstance(value, list) else [value]
        if name.endswith("seeds"):
            return tuple(_int(name, v, minimum=0, maximum=MAX_SEED) for v in items)
        if not items and name != "[space] widths":  # widths = []: the macro's own width
            raise ConfigError(f"{name} must list at least one value, got []")
        return tuple(_int(name, v, minimum=1) for v in items)
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {brief(value)}")
        return value
    if annotation.startswith("int"):
        zero_allowed = name in ("[train] epochs", "[space] final_pool")  # 0: off, the macro's
        return _int(name, value, minimum=0 if zero_allowed else 1)
    if annotation.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {brief(value)}")
        return float(value)
    if annotation == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {brief(value)}")
        return value
    raise AssertionError(f"unhandled config type {annotation} for {name}")


def _int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {brief(value)}")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _one_of(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {brief(value)}")


def validate(config: Config) -> None:
    """Raise ConfigError for values that cannot be used together."""
    _one_of("[dataset] name", config.dataset.name, DATASET_NAMES)
    if (config.dataset.name in PATH_DATASETS) != bool(config.dataset.path):
        names = ", ".join(repr(n) for n in PATH_DATASETS)
        raise ConfigError(f"[dataset] path is needed by, and only by, name = {names}")
    if not 1 <= config.dataset.frame_size <= 128:
        raise ConfigError("[dataset] frame_size must be between 1 and 128 (the DVS sensor)")
    if config.dataset.verify and config.dataset.name not in ("cifar10", "cifar100"):
        raise ConfigError("[dataset] verify checks CIFAR's published md5s: only for cifar10/100")
    _one_of("[space] macro", config.space.macro, (*MACROS, *AUTOSNN_MACROS))
    macro = MACROS.get(config.space.macro)
    if config.space.final_pool and (macro is None or macro.head != "snasnet"):
        raise ConfigError(
            f"[space] final_pool sets the pooling before SNASNet's classifier head; macro "
            f"{config.space.macro!r} has no such pooling: remove final_pool"
        )
    _one_of("[score] kind", config.score.kind, SCORE_KINDS)
    _one_of("[score] device", config.score.device, DEVICES)
    _one_of("[search] sampler", config.search.sampler, SAMPLERS)
    reason = too_many_cells(max(config.space.num_cells, default=0), "[space] num_cells")
    if reason:
        raise ConfigError(reason)
    for key in ("val_fraction", "test_fraction"):
        value = getattr(config.dataset, key)
        if not 0 < value < 0.5:
            raise ConfigError(f"[dataset] {key} must be between 0 and 0.5, got {value}")
    if config.score.batch_size < 2:
        raise ConfigError("[score] batch_size must be at least 2 (the kernel compares samples)")
    if config.score.inits > MAX_INITS:
        raise ConfigError(
            f"[score] inits must be at most {MAX_INITS} (each scores every candidate once "
            f"more), got {config.score.inits}"
        )
    if config.budget.max_parameters is not None and config.budget.memory_megabytes is not None:
        raise ConfigError("[budget] give max_parameters or memory_megabytes, not both")
    if config.budget.memory_megabytes is not None and config.budget.memory_megabytes <= 0:
        raise ConfigError("[budget] memory_megabytes must be positive")
    if config.budget.memory_bits == 0:  # rounds to no bit at all: nothing could ever fit
        raise ConfigError(
            f"[budget] memory_megabytes = {config.budget.memory_megabytes:g} is less than one "
            "bit (1.25e-07 MB); give a budget of at least one weight"
        )
    if config.search.timeout is not None and config.search.timeout <= 0:
        raise ConfigError("[search] timeout must be positive")
    for op in config.search.ops:
        _one_of("[search] ops", op, OPS)
    if not set(config.search.ops) - {"zero"}:
        raise ConfigError(
            f"[search] ops = {list(config.search.ops)} has no op that carries a signal: every "
            "cell would be empty; add skip, conv1x1, conv3x3 or avgpool3x3"
        )
    for name, value in config.budget.hardware_budgets().items():
        if value <= 0:
            raise ConfigError(f"[budget] {name} must be positive, got {value}")
    _check_train(config)
    _check_screen(config)
    try:
        load_profile(config.hardware.profile)
    except HardwareProfileError as err:
        raise ConfigError(f"[hardware] profile: {err}") from None
    if config.is_autosnn:
        _check_autosnn(config)
    elif config.search.sampler == "cellbycell":
        _check_cell_by_cell(config)
    if config.search.sampler == "evolution" and len(config.directions) > 1:
        raise ConfigError(
            "sampler 'evolution' ranks one fitness: use [fitness] objectives = 'fitness' "
            "(or [train] epochs = 0), or sampler 'nsga2' for two objectives"
        )
    if config.budget.weight_bits > 64:
        raise ConfigError("[budget] weight_bits must be between 1 and 64")
    _check_sizes(config)


def _check_screen(config: Config) -> None:
    """Screen, then train: one objective (validation accuracy), a base sampler of Optuna's."""
    search = config.search
    if search.screen is None:
        if search.train_top is not None:
            raise ConfigError("[search] train_top trains the best of a screen: set screen = N too")
        return
    if search.trained > search.screen:
        raise ConfigError(
            f"[search] train_top = {search.trained} is more than screen = {search.screen}: only "
            "screened candidates are trained"
        )
    if config.is_autosnn:
        raise ConfigError(f"[search] screen ranks SNASNet cells, not {config.space.macro}'s blocks")
    _one_of("[search] sampler (the screen's proposer)", search.sampler, SCREEN_BASES)
    if not config.train.epochs:
        raise ConfigError("[search] screen then trains the best: set [train] epochs > 0")
    if config.train.objectives != "accuracy":
        raise ConfigError(
            "[search] screen: the study's one value is the validation accuracy; set "
            "[train] objectives = 'accuracy' (the score is a user attribute)"
        )


def _check_sizes(config: Config) -> None:
    """Refuse a search whose networks no machine could run, before any is built."""
    for name, timesteps in (
        ("[score] timesteps", config.score.timesteps),
        ("[supernet] timesteps", config.supernet.timesteps),
    ):
        reason = too_many_timesteps(timesteps, name)
        if reason:
            raise ConfigError(reason)
    if config.is_autosnn:
        return
    macro = MACROS[config.space.macro]
    if config.space.final_pool:
        macro = replace(macro, final_pool=config.space.final_pool)
    widths = config.space.widths or (macro.width,)
    widest = widest_architecture(max(config.space.num_cells), max(widths))
    try:
        reason = too_many_parameters(widest, macro, f"[space] widths = {list(config.space.widths)}")
    except ValueError:  # the macro's own images are too small for these cells: the data decides
        return
    if reason:
        raise ConfigError(reason)


def _check_train(config: Config) -> None:
    train = config.train
    _one_of("[train] objectives", train.objectives, TRAIN_OBJECTIVES)
    _one_of("[train] optimizer", train.optimizer, OPTIMIZERS)
    _one_of("[search] pruner", config.search.pruner, PRUNERS)
    if not 0 <= train.min_lr <= train.lr or train.lr <= 0:
        raise ConfigError(f"[train] needs 0 <= min_lr <= lr, lr > 0; got {train.min_lr} {train.lr}")
    if not 0 <= train.momentum < 1:
        raise ConfigError(f"[train] momentum must be in [0, 1), got {train.momentum}")
    if not train.weight_decay >= 0:
        raise ConfigError(f"[train] weight_decay must be 0 or positive, got {train.weight_decay}")
    if config.search.pruner != "none" and train.directions != ("maximize",):
        raise ConfigError(
            "[search] pruner needs one objective: Optuna cannot prune multi-objective trials; "
            "set [train] objectives = 'accuracy' (and epochs > 0)"
        )
    if config.search.pruner != "none" and not train.epochs:
        raise ConfigError("[search] pruner stops training early: set [train] epochs > 0")


def _check_autosnn(config: Config) -> None:
    """AutoSNN's space is five block positions scored through a super-network."""
    macro = config.space.macro
    if config.search.sampler == "cellbycell":
        raise ConfigError(f"sampler 'cellbycell' grows SNASNet cells, not {macro}'s blocks")
    if config.budget.hardware_budgets():
        raise ConfigError(
            f"[budget] area/latency/energy price SNASNet cells on the IMC model, not {macro}"
        )
    if config.train.epochs:
        raise ConfigError(f"{macro} is scored through the super-network: set [train] epochs = 0")
    if len(config.space.widths) > 1:
        raise ConfigError(f"{macro} searches blocks at one width: give [space] widths one value")
    _one_of("[fitness] objectives", config.fitness.objectives, FITNESS_OBJECTIVES)
    if not 0 < config.supernet.train_fraction < 1:
        raise ConfigError("[supernet] train_fraction must be between 0 and 1")
    if config.fitness.reference_spikes is not None and config.fitness.reference_spikes <= 0:
        raise ConfigError("[fitness] reference_spikes must be positive")
    if config.supernet.lr <= 0:
        raise ConfigError("[supernet] lr must be positive")
    if config.supernet.batch_size < 2:
        raise ConfigError("[supernet] batch_size must be at least 2")


def _check_cell_by_cell(config: Config) -> None:
    """SpikeNAS grows the network cell by cell: one architecture per cell, 2 .. N cells."""
    space = config.space
    wanted = list(range(2, max(space.num_cells) + 1))
    if list(space.num_cells) != wanted or len(wanted) < 1:
        raise ConfigError(
            f"sampler 'cellbycell' grows 2 .. N cells: set [space] num_cells = {wanted or [2, 3]}"
        )
    if space.shared_cell:
        raise ConfigError(
            "sampler 'cellbycell' gives each cell its own architecture: "
            "set [space] shared_cell = false"
        )
    if len(space.widths) > 1:
        raise ConfigError("sampler 'cellbycell' searches one width: give [space] widths one value")
    if space.backward:
        raise ConfigError(
            "sampler 'cellbycell' searches forward cells: set [space] backward = false"
        )


def validate_compare(config: Config, quick: bool = False) -> Config:
    """Check ``[compare]`` for ``optuna-spikenas compare``: every sampler must be usable on
    this config, as ``optimize`` would check it, and the studies need a budget."""
    compare = config.compare
    if not compare.samplers:
        raise ConfigError("[compare] samplers must name at least one sampler")
    if len(set(compare.samplers)) != len(compare.samplers):
        raise ConfigError(f"[compare] samplers lists a sampler twice: {list(compare.samplers)}")
    seeds = compare.quick_seeds if quick else compare.seeds
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"[compare] seeds must be distinct and at least one, got {list(seeds)}")
    n_trials = compare.n_trials or config.search.n_trials
    if compare.timeout is None and n_trials is None:
        raise ConfigError("[compare] needs a budget per study: n_trials or timeout (seconds)")
    if compare.timeout is not None and compare.timeout <= 0:
        raise ConfigError("[compare] timeout must be positive")
    if not compare.study_prefix or any(c in compare.study_prefix for c in " /\\"):
        raise ConfigError(
            f"[compare] study_prefix must be a plain name, got {compare.study_prefix!r}"
        )
    for name in compare.samplers:
        _one_of("[compare] samplers", name, SAMPLERS)
        try:
            validate(replace(config, search=replace(config.search, sampler=name)))
        except ConfigError as err:
            raise ConfigError(f"[compare] sampler {name!r} cannot run this config: {err}") from None
    return config
