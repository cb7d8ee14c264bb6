"""The command line's arguments: the parser of every command and the bounds every number
must keep (checked before any command runs)."""

from __future__ import annotations

import argparse
import os
from importlib import metadata

from optuna_spikenas import __version__
from optuna_spikenas.autosnn_space import AUTOSNN_MACROS
from optuna_spikenas.cli.commands import (
    cmd_analyze_ops,
    cmd_compare,
    cmd_dashboard,
    cmd_describe,
    cmd_export,
    cmd_optimize,
    cmd_recover,
    cmd_train,
)
from optuna_spikenas.dashboard import DEFAULT_HOST
from optuna_spikenas.describe import UsageError
from optuna_spikenas.hardware.imc import PROFILES
from optuna_spikenas.limits import MAX_HEARTBEAT_SECONDS, MAX_THREADS, MAX_TIMESTEPS
from optuna_spikenas.macros import MACROS
from optuna_spikenas.sampler_catalog import SAMPLERS
from optuna_spikenas.storage import (
    STORAGE_CLASSES,
)

STORAGE_CLASS_HELP = "the storage's class (default: from the URL, as Optuna's CLI decides)"
THREADS_HELP = (
    "CPU threads for PyTorch (default for optimize: PyTorch's own choice while the machine is "
    "quiet, 1 while other processes take a quarter of it; elsewhere PyTorch's own choice)"
)
ARTIFACT_DIR_HELP = "the trials' artifacts (default: STORAGE-artifacts beside the database)"
MACRO_OWN = "(default: the macro's)"


def installed_version() -> str:
    """The installed distribution's version (the package's own when run from a source tree)."""
    try:
        return metadata.version("optuna-spikenas")
    except metadata.PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optuna-spikenas",
        description="Spiking neural network architecture search on Optuna.",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the Python traceback of an error"
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {installed_version()}"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    opt = sub.add_parser("optimize", help="run a study made by `optuna create-study`")
    opt.add_argument("--storage", required=True, help="RDB URL or journal file, as in Optuna's CLI")
    opt.add_argument(
        "--storage-class", choices=STORAGE_CLASSES, default=None, help=STORAGE_CLASS_HELP
    )
    opt.add_argument("--study-name", required=True)
    opt.add_argument("--config", required=True, help="study settings (TOML), see studies/")
    opt.add_argument(
        "--sampler", choices=SAMPLERS, default=None, help="(default: the config's [search] sampler)"
    )
    opt.add_argument("--seed", type=int, default=None, help="sampler seed (default: config seed)")
    opt.add_argument(
        "--n-trials", type=int, default=None, help="(default: the config's [search] n_trials)"
    )
    opt.add_argument(
        "--timeout", type=float, default=None, help="seconds (default: [search] timeout)"
    )
    opt.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default=None,
        help="(default: the config's [score] device)",
    )
    opt.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    opt.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        help="seconds between RDB heartbeats; a dead worker's trial is retried after two "
        "missed (default: %(default)s)",
    )
    add_artifact_options(opt)
    opt.add_argument("--quiet", action="store_true", help="no progress bar")
    opt.set_defaults(func=cmd_optimize)

    cmp = sub.add_parser("compare", help="our sampler against TPE, NSGA-II and random, a report")
    cmp.add_argument("--config", required=True, help="study settings with [compare], see studies/")
    cmp.add_argument("--quick", action="store_true", help="[compare] quick_seeds/quick_n_trials")
    cmp.add_argument(
        "--out", default=None, help="report folder (default: compare_report, or compare_quick)"
    )
    cmp.add_argument(
        "--storage", default=None, help="where the runs' studies go (default: OUT/compare.db)"
    )
    cmp.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default=None,
        help="(default: the config's [score] device)",
    )
    cmp.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    add_artifact_options(cmp)
    cmp.add_argument("--no-png", action="store_true", help="no PNG figures beside the HTML")
    cmp.add_argument("--quiet", action="store_true", help="no progress lines or bars")
    cmp.set_defaults(func=cmd_compare)

    dash = sub.add_parser("dashboard", help="optuna-dashboard with the trials' artifacts")
    dash.add_argument("--storage", required=True, help="the storage URL the search used")
    dash.add_argument(
        "--storage-class", choices=STORAGE_CLASSES, default=None, help=STORAGE_CLASS_HELP
    )
    dash.add_argument("--port", type=int, default=8080, help="(default: %(default)s)")
    dash.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on (default: %(default)s, this machine only)",
    )
    dash.add_argument("--artifact-dir", default=None, help=ARTIFACT_DIR_HELP)
    dash.set_defaults(func=cmd_dashboard)

    exp = sub.add_parser("export", help="a trial's architecture JSON, standalone model.py, NIR")
    exp.add_argument("--storage", required=True)
    exp.add_argument("--study-name", required=True)
    exp.add_argument(
        "--trial",
        type=int,
        default=None,
        help="default: the search's result (the network a cell-by-cell search grew, the fittest "
        "of an evolution), else the best feasible trial",
    )
    exp.add_argument("--out", required=True, help="folder to write into")
    exp.add_argument(
        "--weights",
        default=None,
        help="a state-dict file to ship as weights.pt (default: none, model.py starts untrained)",
    )
    exp.add_argument(
        "--config",
        default=None,
        help="the study's config, when the trial has no artifacts (default: none needed)",
    )
    exp.add_argument(
        "--artifact-dir", default=None, help="default: STORAGE-artifacts beside the database"
    )
    exp.add_argument(
        "--nir",
        action="store_true",
        help="also an NIR graph, checked by running it with SpikingJelly's NIR reader "
        "(extra: nir)",
    )
    exp.add_argument(
        "--force", action="store_true", help="overwrite files in --out that no export wrote"
    )
    exp.set_defaults(func=cmd_export)

    trn = sub.add_parser("train", help="train a found architecture, resumable, with a report")
    trn.add_argument("--arch-json", required=True, help="architecture.json (export, dashboard)")
    trn.add_argument("--config", required=True, help="dataset and [train] recipe (TOML)")
    trn.add_argument("--out", default=None, help="default: ARCH-trained beside the JSON")
    trn.add_argument("--epochs", type=int, default=None, help="(default: [train] epochs)")
    trn.add_argument(
        "--weight-bits", type=int, default=None, help="(default: [budget] weight_bits)"
    )
    trn.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="auto",
        help="(default: %(default)s, a GPU when there is one)",
    )
    trn.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    trn.add_argument("--fresh", action="store_true", help="ignore a checkpoint, start over")
    trn.add_argument("--quiet", action="store_true", help="no progress lines")
    trn.set_defaults(func=cmd_train)

    rec = sub.add_parser(
        "recover", help="fail RUNNING trials whose worker is gone (journal storages)"
    )
    rec.add_argument("--storage", required=True, help="the storage URL or journal file")
    rec.add_argument(
        "--storage-class", choices=STORAGE_CLASSES, default=None, help=STORAGE_CLASS_HELP
    )
    rec.add_argument("--study-name", required=True)
    rec.add_argument(
        "--all",
        action="store_true",
        help="fail every RUNNING trial (when no worker of the study runs anywhere)",
    )
    rec.set_defaults(func=cmd_recover)

    desc = sub.add_parser("describe", help="parameters and memory of one architecture")
    desc.add_argument("--macro", required=True, choices=(*MACROS, *AUTOSNN_MACROS))
    desc.add_argument(
        "--arch",
        required=True,
        help="e.g. '0302 0030 3003 0000', or for autosnn-16 'SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5'",
    )
    desc.add_argument("--weight-bits", type=int, default=32, help="(default: %(default)s)")
    desc.add_argument(
        "--final-pool", type=int, default=None, help="pooling before SNASNet's head " + MACRO_OWN
    )
    desc.add_argument(
        "--num-cells",
        type=int,
        default=None,
        help="(default: one per cell of --arch, or the macro's for a shared cell)",
    )
    for option in ("--width", "--num-classes", "--in-channels", "--image-size"):
        desc.add_argument(option, type=int, default=None, help=MACRO_OWN)
    desc.add_argument(
        "--hardware",
        default=None,
        metavar="PROFILE",
        help=f"add IMC area, latency and energy: {', '.join(PROFILES)} or a profile .toml "
        "(default: none)",
    )
    desc.add_argument(
        "--timesteps",
        type=int,
        default=5,
        help="timesteps per inference (with --hardware; default: %(default)s)",
    )
    desc.add_argument("--json", action="store_true", help="JSON instead of a table")
    desc.set_defaults(func=cmd_describe)

    ops = sub.add_parser("analyze-ops", help="SpikeNAS operation analysis: which ops to prune")
    ops.add_argument("--config", required=True, help="study settings (TOML), see studies/")
    ops.add_argument(
        "--samples", type=int, default=40, help="architectures per op set (default: %(default)s)"
    )
    ops.add_argument("--seed", type=int, default=None, help="sampling seed (default: config seed)")
    ops.add_argument(
        "--train-epochs",
        type=int,
        default=0,
        help="short-train each set's top 3 for this many epochs (default: 0, off)",
    )
    ops.add_argument(
        "--out",
        default="op_analysis",
        help="directory for the HTML and JSON (default: %(default)s)",
    )
    ops.add_argument("--quiet", action="store_true", help="no progress lines")
    ops.set_defaults(func=cmd_analyze_ops)
    return parser


def add_artifact_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--artifact-dir",
        default=None,
        help="where trial artifacts (architecture JSON, cell diagram) go (default: "
        "NAME-artifacts beside a SQLite or journal file, ./optuna-artifacts otherwise)",
    )
    parser.add_argument(
        "--no-artifacts", action="store_true", help="do not write per-trial artifacts"
    )


def check_positive(args: argparse.Namespace) -> None:
    for key in (
        "threads",
        "heartbeat",
        "epochs",
        "n_trials",
        "timeout",
        "weight_bits",
        "timesteps",
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
    for key, most in (
        ("threads", min(MAX_THREADS, os.cpu_count() or MAX_THREADS)),
        ("heartbeat", MAX_HEARTBEAT_SECONDS),
        ("timesteps", MAX_TIMESTEPS),
        ("weight_bits", 64),
    ):
        value = getattr(args, key, None)
        if value is not None and value > most:
            why = " (the CPUs of this machine)" if key == "threads" else ""
            raise UsageError(
                f"--{key.replace('_', '-')} must be at most {most:,}{why}, got {value:,}"
            )
