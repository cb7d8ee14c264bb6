"""``optuna-spikenas``: run a study made by ``optuna create-study``, and describe architectures.

Every expected failure (bad config, architecture, storage, study, dataset) ends with one line on
stderr and exit status 2; nothing is written to the study before the inputs are validated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import replace

import optuna

from optuna_spikenas.config import SAMPLERS, ConfigError, load_config
from optuna_spikenas.data import DatasetError
from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.snn.network import MACROS, get_macro
from optuna_spikenas.space import Architecture, SpaceError
from optuna_spikenas.storage import STORAGE_CLASSES, StorageError, load_study, open_storage

USER_ERRORS = (ConfigError, DatasetError, SpaceError, StorageError)


class UsageError(ValueError):
    """A command-line value that cannot be used."""


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's samplers with their settings named, not left to Optuna's defaults."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=10, multivariate=False, constant_liar=False
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=20, mutation_prob=None, crossover_prob=0.9
        )
    raise UsageError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def cmd_optimize(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.device is not None:
        config = replace(config, score=replace(config.score, device=args.device))
    sampler_name = args.sampler or config.search.sampler
    seed = config.seed if args.seed is None else args.seed
    n_trials = args.n_trials if args.n_trials is not None else config.search.n_trials
    timeout = args.timeout if args.timeout is not None else config.search.timeout
    storage = open_storage(args.storage, args.storage_class)
    study = load_study(storage, args.study_name, args.storage, make_sampler(sampler_name, seed))
    if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
        raise UsageError(
            f"study {args.study_name!r} has directions "
            f"{[d.name.lower() for d in study.directions]}; the training-free score needs one "
            "direction, maximize (`optuna create-study ... --direction maximize`)"
        )
    from optuna_spikenas.objective import SpikeNASObjective  # torch import: after validation

    objective = SpikeNASObjective(config)
    if not args.quiet:
        print(
            f"Searching {config.space.macro} cells on {config.dataset.name} with {sampler_name} "
            f"(seed {seed}): {n_trials} trials, scoring on {objective.device}",
            file=sys.stderr,
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study.optimize(
            objective, n_trials=n_trials, timeout=timeout, show_progress_bar=not args.quiet
        )
    except KeyboardInterrupt:
        print("interrupted: every completed trial is saved in the study", file=sys.stderr)
        return 130
    print_summary(study, args.storage, args.study_name)
    return 0


def print_summary(study: optuna.Study, url: str, study_name: str) -> None:
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    scored = [
        t for t in trials if t.user_attrs.get("feasible") and "duplicate_of" not in t.user_attrs
    ]
    duplicates = [t for t in trials if "duplicate_of" in t.user_attrs]
    infeasible = [t for t in trials if not t.user_attrs.get("feasible")]
    print(
        f"{len(trials)} trials: {len(scored)} scored, {len(duplicates)} duplicates reused, "
        f"{len(infeasible)} invalid or over budget"
    )
    feasible = [t for t in trials if t.user_attrs.get("feasible") and math.isfinite(t.value)]
    if not feasible:
        print("no feasible architecture was found; loosen the budget or run more trials")
        return
    best = max(feasible, key=lambda t: t.value)
    attrs = best.user_attrs
    print(f"best trial {best.number}: score {best.value:.4f}")
    print(f"  architecture  {attrs['architecture']}  (width {attrs['width']})")
    print(f"  parameters    {attrs['parameters']:,}  ({attrs['memory_bits'] / 8e6:.3f} MB)")
    print(f"inspect it:  optuna best-trial --storage {url} --study-name {study_name}")
    print(f"dashboard:   optuna-dashboard {url}")


def cmd_describe(args: argparse.Namespace) -> int:
    macro = get_macro(args.macro)
    if args.final_pool is not None:
        macro = replace(macro, final_pool=args.final_pool)
    for key in ("num_classes", "in_channels", "image_size"):
        if getattr(args, key) is not None:
            macro = replace(macro, **{key: getattr(args, key)})
    num_cells = args.num_cells or macro.num_cells
    if len(args.arch.split("/")) > 1 and args.num_cells is None:
        num_cells = len(args.arch.split("/"))
    arch = Architecture.parse(args.arch, num_cells, args.width or macro.width)
    try:
        report = memory_report(arch, macro, args.weight_bits)
    except ValueError as err:
        raise UsageError(str(err)) from None
    info = {
        "macro": macro.name,
        "architecture": str(arch),
        "canonical": str(arch.canonical()),
        "valid": arch.is_valid(),
        "num_cells": arch.num_cells,
        "width": arch.width,
        "final_pool": macro.final_pool,
        "input": [macro.in_channels, macro.image_size, macro.image_size],
        "num_classes": macro.num_classes,
        **report.as_dict(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:18} {value}")
        print(f"{'':18} = {report.parameters / 1e6:.2f} M parameters")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optuna-spikenas",
        description="Spiking neural network architecture search on Optuna.",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the Python traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    opt = sub.add_parser("optimize", help="run a study made by `optuna create-study`")
    opt.add_argument("--storage", required=True, help="RDB URL or journal file, as in Optuna's CLI")
    opt.add_argument("--storage-class", choices=STORAGE_CLASSES, default=None)
    opt.add_argument("--study-name", required=True)
    opt.add_argument("--config", required=True, help="study settings (TOML), see studies/")
    opt.add_argument("--sampler", choices=SAMPLERS, default=None, help="default: the config's")
    opt.add_argument("--seed", type=int, default=None, help="sampler seed (default: config seed)")
    opt.add_argument("--n-trials", type=int, default=None)
    opt.add_argument("--timeout", type=float, default=None, help="seconds")
    opt.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None)
    opt.add_argument("--quiet", action="store_true", help="no progress bar")
    opt.set_defaults(func=cmd_optimize)

    desc = sub.add_parser("describe", help="parameters and memory of one architecture")
    desc.add_argument("--macro", required=True, choices=tuple(MACROS))
    desc.add_argument("--arch", required=True, help="e.g. '0302 0030 3003 0000'")
    desc.add_argument("--weight-bits", type=int, default=32)
    desc.add_argument("--final-pool", type=int, default=None)
    desc.add_argument("--num-cells", type=int, default=None)
    desc.add_argument("--width", type=int, default=None)
    desc.add_argument("--num-classes", type=int, default=None)
    desc.add_argument("--in-channels", type=int, default=None)
    desc.add_argument("--image-size", type=int, default=None)
    desc.add_argument("--json", action="store_true")
    desc.set_defaults(func=cmd_describe)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_positive(args)
        return args.func(args)
    except (*USER_ERRORS, UsageError) as err:
        if args.traceback:
            raise
        print(f"optuna-spikenas: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # an unexpected failure: one line, the traceback on request
        if args.traceback or os.environ.get("OPTUNA_SPIKENAS_TRACEBACK"):
            raise
        print(
            f"optuna-spikenas: internal error: {type(err).__name__}: {err} "
            "(rerun with --traceback for details)",
            file=sys.stderr,
        )
        return 1


def check_positive(args: argparse.Namespace) -> None:
    for key in (
        "n_trials",
        "timeout",
        "weight_bits",
        "final_pool",
        "num_cells",
        "width",
        "num_classes",
        "in_channels",
        "image_size",
    ):
        value = getattr(args, key, None)
        if value is not None and value <= 0:
            raise UsageError(f"--{key.replace('_', '-')} must be positive, got {value}")
