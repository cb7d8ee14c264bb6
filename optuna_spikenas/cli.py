"""``optuna-spikenas``: run a study made by ``optuna create-study``, and describe architectures.

Every expected failure (bad config, architecture, storage, study, dataset) ends with one line on
stderr and exit status 2; nothing is written to the study before the inputs are validated.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna

from optuna_spikenas.architecture_file import ArchitectureFileError
from optuna_spikenas.autosnn_space import AUTOSNN_MACROS
from optuna_spikenas.config import (
    MAX_SEED,
    Config,
    load_config,
    validate,
)
from optuna_spikenas.dashboard import DEFAULT_HOST, artifact_dir_for
from optuna_spikenas.describe import UsageError, describe
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.hardware.imc import PROFILES
from optuna_spikenas.interrupts import CtrlC, Terminated, report_stop, signals_handled
from optuna_spikenas.limits import MAX_HEARTBEAT_SECONDS, MAX_THREADS, MAX_TIMESTEPS
from optuna_spikenas.macros import MACROS
from optuna_spikenas.paths import not_a_file, unwritable_folder
from optuna_spikenas.sampler_catalog import SAMPLER_CATALOG, SAMPLERS
from optuna_spikenas.samplers import CellByCellSampler, make_sampler
from optuna_spikenas.storage import (
    SQLITE_BUSY_SECONDS,
    STORAGE_CLASSES,
    StorageError,
    load_study,
    open_storage,
    redact,
)
from optuna_spikenas.study_binding import bind_study
from optuna_spikenas.summary import (
    PhaseProgress,
    print_cell_by_cell_result,
    print_summary,
    progress_line,
)

MAX_DOCUMENT_BYTES = 1 << 20
"""An architecture file is a few kilobytes; more than a megabyte is the wrong file."""


def with_overrides(config: Config, args: argparse.Namespace) -> Config:
    """The config with the command line's overrides, validated again as a whole."""
    search = config.search
    for key in ("sampler", "n_trials", "timeout"):
        if getattr(args, key) is not None:
            search = replace(search, **{key: getattr(args, key)})
    config = replace(config, search=search)
    if args.device is not None:
        config = replace(config, score=replace(config.score, device=args.device))
    validate(config)
    stops = SAMPLER_CATALOG[search.sampler].stops_by_itself
    if not stops and search.n_trials is None and search.timeout is None:
        raise UsageError(
            f"sampler {search.sampler!r} never stops by itself: give [search] n_trials or "
            "timeout, or --n-trials / --timeout"
        )
    return config


def cmd_optimize(args: argparse.Namespace) -> int:
    config = with_overrides(load_config(args.config), args)
    search = config.search
    seed = config.seed if args.seed is None else args.seed
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be between 0 and {MAX_SEED}, got {seed}")
    if args.threads is not None:
        torch_threads(args.threads)
    storage = open_storage(args.storage, args.storage_class, args.heartbeat)
    study = load_study(storage, args.study_name, args.storage)
    wanted = config.directions
    found = tuple(d.name.lower() for d in study.directions)
    if found != wanted:
        raise UsageError(
            f"study {args.study_name!r} has directions {list(found)}; the config's objectives "
            f"need {' '.join(wanted)} (`optuna create-study ... --directions {' '.join(wanted)}`)"
        )
    bind_study(study, config)  # refuses settings other than the study's, before any allocation
    log = None if args.quiet else progress_line
    from optuna_spikenas.dashboard import TrialArtifacts, open_artifact_store, save_study_figures
    from optuna_spikenas.objective_factory import make_objective  # torch imports: after validation
    from optuna_spikenas.supernet import SuperNetCheckpointError

    artifact_dir = (
        None if args.no_artifacts else args.artifact_dir or artifact_dir_for(args.storage)
    )
    store = None if artifact_dir is None else open_artifact_store(artifact_dir)
    try:
        objective = make_objective(config, log=log)
    except SuperNetCheckpointError as err:
        raise UsageError(str(err)) from None
    if config.search.pruner == "median":
        study.pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    study.sampler = make_sampler(
        search.sampler,
        seed,
        space=None if config.is_autosnn else objective.space,
        ops=search.ops,
        fits_budget=objective.fits_budget,
    )
    if isinstance(study.sampler, CellByCellSampler) and study.sampler.foreign_trials(study):
        raise UsageError(
            f"study {args.study_name!r} already has trials made by another sampler; the "
            "cell-by-cell search needs a study of its own (`optuna create-study` a new one)"
        )
    if isinstance(study.sampler, CellByCellSampler) and not study.sampler.state(study).phases:
        raise UsageError(
            f"no candidate fits the budget: none of the {len(study.sampler.cells)} cells over "
            f"{', '.join(study.sampler.ops)} fits [budget] as a 2-cell network; loosen the budget"
        )
    if not args.quiet:
        budget = f"{search.n_trials} trials" if search.n_trials else "until the search ends"
        print(
            f"Searching {config.space.macro} architectures on {config.dataset.name} with "
            f"{search.sampler} (seed {seed}): {budget}, scoring on {objective.device}",
            file=sys.stderr,
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    phases = SAMPLER_CATALOG[search.sampler].grows_cells  # a line per phase, not a bar
    ctrl_c = CtrlC(objective if store is None else TrialArtifacts(objective, store), study)
    try:
        with ctrl_c:
            study.optimize(
                ctrl_c,
                n_trials=search.n_trials,
                timeout=search.timeout,
                show_progress_bar=not args.quiet and not phases,
                callbacks=[PhaseProgress()] if phases and not args.quiet else [],
            )
        if ctrl_c.pending:
            raise ctrl_c.stop()
    except KeyboardInterrupt as err:
        return report_stop(err, "every completed trial is saved in the study")
    finally:
        save_study_figures(study)  # the dashboard's study-level figures, up to date
    print_summary(study, args.storage, args.study_name)
    if isinstance(study.sampler, CellByCellSampler):
        print_cell_by_cell_result(study, study.sampler)
    print(dashboard_hint(args.storage, artifact_dir))
    return 0


def dashboard_hint(storage: str, artifact_dir: str | Path | None) -> str:
    command = f"optuna-spikenas dashboard --storage {redact(storage)}"
    if artifact_dir is not None and Path(artifact_dir).resolve() != artifact_dir_for(storage):
        command += f" --artifact-dir {artifact_dir}"
    return f"dashboard:   {command}"


def cmd_dashboard(args: argparse.Namespace) -> int:
    from optuna_spikenas.dashboard import run_dashboard

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, got {args.port}")
    load_study_names(args.storage, args.storage_class)  # a wrong URL: one line, not a server
    check_port_free(args.host, args.port)  # before the server announces that it listens
    if args.artifact_dir and not Path(args.artifact_dir).is_dir():  # a typo: not a new tree
        raise UsageError(f"--artifact-dir {args.artifact_dir} is not an existing folder")
    artifact_dir = args.artifact_dir or artifact_dir_for(args.storage)
    try:
        run_dashboard(args.storage, artifact_dir, args.port, args.host, log=progress_line)
    except OSError as err:  # e.g. the port is taken
        raise UsageError(
            f"cannot serve on {args.host}:{args.port}: {err.strerror or err}"
        ) from None
    except KeyboardInterrupt as err:  # Ctrl-C is how a dashboard is stopped
        return 143 if isinstance(err, Terminated) else 0
    return 0


def check_port_free(host: str, port: int) -> None:
    """Bind to ``host:port`` as the server will (address reuse on, so only a listening socket
    counts as taken) and let go at once."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as err:
        raise UsageError(f"cannot serve on {host}:{port}: {err.strerror or err}") from None


def load_study_names(url: str, storage_class: str | None) -> list[str]:
    storage = open_storage(url, storage_class, heartbeat_seconds=None, writes=False)
    names = optuna.get_all_study_names(storage)
    if not names:
        raise StorageError(
            f"{redact(url)} has no studies yet; create one with `optuna create-study` and run "
            "`optuna-spikenas optimize` (or `compare`) first"
        )
    return names


def cmd_export(args: argparse.Namespace) -> int:
    from optuna_spikenas.export import ExportError, export_trial  # torch imports

    config = load_config(args.config) if args.config else None
    try:
        result = export_trial(
            args.storage,
            args.study_name,
            args.out,
            trial_number=args.trial,
            nir=args.nir,
            weights=args.weights,
            config=config,
            artifact_dir=args.artifact_dir,
            force=args.force,
        )
    except ExportError as err:
        raise UsageError(str(err)) from None
    print(f"trial {result.trial_number} exported to {args.out}")
    print(f"  architecture  {result.architecture_json}")
    print(f"  model         {result.model_py}  (python {result.model_py} runs a forward pass)")
    if result.weights is not None:
        print(f"  weights       {result.weights}")
    if result.nir is not None:
        print(f"  NIR graph     {result.nir}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from optuna_spikenas.final_training import TrainingError, train_final  # torch imports

    config = load_config(args.config)
    try:
        problem = not_a_file(args.arch_json)
        if problem and problem != "does not exist":
            raise UsageError(f"--arch-json {args.arch_json} {problem}")
        with open(args.arch_json, "rb") as file:
            text = file.read(MAX_DOCUMENT_BYTES + 1)
        if len(text) > MAX_DOCUMENT_BYTES:
            raise UsageError(f"--arch-json {args.arch_json} is larger than an architecture file")
        document = json.loads(text.decode("utf-8"))
    except OSError as err:
        raise UsageError(f"--arch-json {args.arch_json}: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise ArchitectureFileError(f"{args.arch_json} is not JSON: {err}") from None
    except RecursionError:
        raise ArchitectureFileError(f"{args.arch_json} is nested too deeply") from None
    except UnicodeDecodeError:
        raise ArchitectureFileError(f"{args.arch_json} is not a text (UTF-8) file") from None
    out = args.out or str(Path(args.arch_json).with_suffix("")) + "-trained"
    problem = unwritable_folder(out)
    if problem:
        raise UsageError(f"--out {out}: {problem}")
    if args.threads is not None:
        torch_threads(args.threads)
    try:
        result = train_final(
            document,
            config,
            out,
            epochs=args.epochs,
            weight_bits=args.weight_bits,
            device=args.device,
            fresh=args.fresh,
            log=None if args.quiet else progress_line,
        )
    except TrainingError as err:
        raise UsageError(str(err)) from None
    except KeyboardInterrupt as err:
        return report_stop(
            err,
            f"the last finished epoch is saved in {out}; run the same command again to resume",
        )
    print(f"trained {result.epochs_done} epochs: {result.result_json}")
    print(f"weights: {result.weights}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from optuna_spikenas.compare import ComparisonPlan, run_comparison

    config = load_config(args.config)
    if args.device is not None:
        config = replace(config, score=replace(config.score, device=args.device))
    plan = ComparisonPlan.from_config(config, args.quick)  # validates before any work
    out = Path(args.out or ("compare_quick" if args.quick else "compare_report"))
    storage = args.storage or f"sqlite:///{out / 'compare.db'}"
    if args.threads is not None:
        torch_threads(args.threads)
    log = None if args.quiet else progress_line
    if log is not None:
        log(
            f"Comparing {', '.join(plan.samplers)} on {config.space.macro} / "
            f"{config.dataset.name}: {len(plan.runs())} runs of {plan.budget}, seeds "
            f"{list(plan.seeds)}"
        )
    artifact_dir = chosen_artifact_dir(args, storage)
    from optuna_spikenas.supernet import SuperNetCheckpointError  # torch: after validation

    try:
        files = run_comparison(
            config,
            storage,
            out,
            args.quick,
            artifact_dir,
            log,
            progress_bar=not args.quiet,
            png=not args.no_png,
        )
    except SuperNetCheckpointError as err:
        raise UsageError(str(err)) from None
    except KeyboardInterrupt as err:
        return report_stop(
            err, "finished runs are kept in the storage; run the command again to finish the others"
        )
    print(f"report: {files.html}")
    print(f"data:   {files.json}")
    for png in files.pngs:
        print(f"figure: {png}")
    print(dashboard_hint(storage, artifact_dir))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    """``describe`` computes from its arguments alone: any ValueError is a bad argument (e.g.
    images too small for the macro's pooling)."""
    try:
        return describe(args)
    except SpikeNASError:
        raise
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_analyze_ops(args: argparse.Namespace) -> int:
    """SpikeNAS's operation analysis: score samples of every op set, propose a pruned one."""
    if args.samples < 1:
        raise UsageError(f"--samples must be positive, got {args.samples}")
    if args.train_epochs < 0:
        raise UsageError(f"--train-epochs must be 0 (off) or positive, got {args.train_epochs}")
    config = load_config(args.config)
    seed = config.seed if args.seed is None else args.seed
    if seed < 0:
        raise UsageError(f"--seed must be 0 or positive, got {seed}")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        raise UsageError(f"--out {args.out}: cannot create the directory ({err})") from None
    from optuna_spikenas import op_analysis  # torch import: after validation
    from optuna_spikenas.objective import SpikeNASObjective
    from optuna_spikenas.train import TrainSettings

    settings = None
    if args.train_epochs:
        settings = TrainSettings(epochs=args.train_epochs, timesteps=config.score.timesteps)
    objective = SpikeNASObjective(config)
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    if progress is not None:
        progress(
            f"Analysing ops: {args.samples} {config.space.macro} architectures per op set on "
            f"{config.dataset.name}, scoring on {objective.device}"
        )
    analysis = op_analysis.analyze_ops(objective, args.samples, seed, settings, progress)
    html, data = op_analysis.write_outputs(analysis, args.out)  # first: the numbers are kept
    print(op_analysis.format_table(analysis))
    print(f"figure: {html}\ndata:   {data}")
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """Fail the RUNNING trials whose worker is gone: journal storages have no heartbeat."""
    from optuna_spikenas.recovery import recover

    storage = open_storage(args.storage, args.storage_class, heartbeat_seconds=None)
    study = load_study(storage, args.study_name, args.storage)
    result = recover(study, everything=args.all)
    for number in result.failed:
        print(f"trial {number}: failed (was RUNNING, its worker is gone)")
    for number, why in result.kept:
        print(f"trial {number}: left RUNNING ({why})")
    hint = ""
    if any("running" not in why for _, why in result.kept):
        hint = "; --all fails these too, when no worker of this study runs anywhere"
    print(f"{len(result.failed)} trial(s) failed, {len(result.kept)} left RUNNING{hint}")
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
    opt.add_argument(
        "--threads", type=int, default=None, help="CPU threads for PyTorch (default: its own)"
    )
    opt.add_argument(
        "--heartbeat",
        type=int,
        default=10,
        help="seconds between RDB heartbeats; a dead worker's trial is retried after two missed",
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
    cmp.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None)
    cmp.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    add_artifact_options(cmp)
    cmp.add_argument("--no-png", action="store_true", help="no PNG figures beside the HTML")
    cmp.add_argument("--quiet", action="store_true", help="no progress lines or bars")
    cmp.set_defaults(func=cmd_compare)

    dash = sub.add_parser("dashboard", help="optuna-dashboard with the trials' artifacts")
    dash.add_argument("--storage", required=True, help="the storage URL the search used")
    dash.add_argument("--storage-class", choices=STORAGE_CLASSES, default=None)
    dash.add_argument("--port", type=int, default=8080)
    dash.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default: this machine only)"
    )
    dash.add_argument(
        "--artifact-dir", default=None, help="default: STORAGE-artifacts beside the database"
    )
    dash.set_defaults(func=cmd_dashboard)

    exp = sub.add_parser("export", help="a trial's architecture JSON, standalone model.py, NIR")
    exp.add_argument("--storage", required=True)
    exp.add_argument("--study-name", required=True)
    exp.add_argument("--trial", type=int, default=None, help="default: the best feasible trial")
    exp.add_argument("--out", required=True, help="folder to write into")
    exp.add_argument("--weights", default=None, help="a state-dict file to ship as weights.pt")
    exp.add_argument(
        "--config", default=None, help="the study's config, when the trial has no artifacts"
    )
    exp.add_argument(
        "--artifact-dir", default=None, help="default: STORAGE-artifacts beside the database"
    )
    exp.add_argument("--nir", action="store_true", help="also an NIR graph (extra: nir)")
    exp.add_argument(
        "--force", action="store_true", help="overwrite files in --out that no export wrote"
    )
    exp.set_defaults(func=cmd_export)

    trn = sub.add_parser("train", help="train a found architecture, resumable, with a report")
    trn.add_argument("--arch-json", required=True, help="architecture.json (export, dashboard)")
    trn.add_argument("--config", required=True, help="dataset and [train] recipe (TOML)")
    trn.add_argument("--out", default=None, help="default: ARCH-trained beside the JSON")
    trn.add_argument("--epochs", type=int, default=None, help="default: [train] epochs")
    trn.add_argument("--weight-bits", type=int, default=None, help="default: [budget]")
    trn.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    trn.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    trn.add_argument("--fresh", action="store_true", help="ignore a checkpoint, start over")
    trn.add_argument("--quiet", action="store_true", help="no progress lines")
    trn.set_defaults(func=cmd_train)

    rec = sub.add_parser(
        "recover", help="fail RUNNING trials whose worker is gone (journal storages)"
    )
    rec.add_argument("--storage", required=True, help="the storage URL or journal file")
    rec.add_argument("--storage-class", choices=STORAGE_CLASSES, default=None)
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
    desc.add_argument("--weight-bits", type=int, default=32)
    desc.add_argument("--final-pool", type=int, default=None)
    desc.add_argument("--num-cells", type=int, default=None)
    desc.add_argument("--width", type=int, default=None)
    desc.add_argument("--num-classes", type=int, default=None)
    desc.add_argument("--in-channels", type=int, default=None)
    desc.add_argument("--image-size", type=int, default=None)
    desc.add_argument(
        "--hardware",
        default=None,
        metavar="PROFILE",
        help=f"add IMC area, latency and energy: {', '.join(PROFILES)} or a profile .toml",
    )
    desc.add_argument(
        "--timesteps", type=int, default=5, help="timesteps per inference (with --hardware)"
    )
    desc.add_argument("--json", action="store_true")
    desc.set_defaults(func=cmd_describe)

    ops = sub.add_parser("analyze-ops", help="SpikeNAS operation analysis: which ops to prune")
    ops.add_argument("--config", required=True, help="study settings (TOML), see studies/")
    ops.add_argument("--samples", type=int, default=40, help="architectures per op set")
    ops.add_argument("--seed", type=int, default=None, help="sampling seed (default: config seed)")
    ops.add_argument(
        "--train-epochs", type=int, default=0, help="short-train each set's top 3 (0: off)"
    )
    ops.add_argument("--out", default="op_analysis", help="directory for the HTML and JSON")
    ops.add_argument("--quiet", action="store_true", help="no progress lines")
    ops.set_defaults(func=cmd_analyze_ops)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Heartbeats are "experimental" in Optuna; they are on by design here, so don't warn.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with signals_handled(one_line_thread_errors):
            check_positive(args)
            return args.func(args)
    except KeyboardInterrupt as err:  # a signal before a command's own handler (loading data)
        terminated = isinstance(err, Terminated)
        print(f"optuna-spikenas: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:  # e.g. `... | head`: the reader has gone, not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except SpikeNASError as err:  # every error of the user's input or environment
        if args.traceback:
            raise
        print(f"optuna-spikenas: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except optuna.exceptions.StorageInternalError as err:  # the database failed mid-run
        if args.traceback:
            raise
        print(f"optuna-spikenas: error: {storage_failure(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # an unexpected failure: one line, the traceback on request
        if args.traceback or os.environ.get("OPTUNA_SPIKENAS_TRACEBACK"):
            raise
        print(
            f"optuna-spikenas: internal error: {type(err).__name__}: {one_line(str(err))} "
            "(rerun with --traceback for details)",
            file=sys.stderr,
        )
        return 1


def one_line(message: str, limit: int = 1000) -> str:
    """A message as the one line a command ends with: no line breaks, at most ``limit``
    characters (the rest is cut, and said to be)."""
    text = " ".join(message.split())
    return text if len(text) <= limit else f"{text[:limit]}... (cut; --traceback shows all)"


def one_line_thread_errors(info: Any) -> None:
    """A background thread's failure in one line instead of a traceback. A storage failure
    (Optuna's heartbeat on a database locked too long) is left to the main thread, which meets
    the same lock and says so, or outlives it: each trial has a heartbeat thread of its own."""
    err = info.exc_value
    if not isinstance(err, optuna.exceptions.StorageInternalError):
        text = f"{type(err).__name__}: {one_line(str(err))}"
        print(f"optuna-spikenas: warning: a background thread stopped: {text}", file=sys.stderr)


def storage_failure(err: BaseException) -> str:
    """One line for a storage that failed while the command ran."""
    cause = str(err.__cause__ or err).splitlines()[0]
    if "database is locked" in cause:
        return (
            f"the database stayed locked by another process for over {SQLITE_BUSY_SECONDS:g} s "
            "(SQLite retried all along); completed trials are saved, and the trial that could "
            "not be written is failed by the next worker once its heartbeat stops"
        )
    return f"the storage failed: {cause}; completed trials are saved"


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


def chosen_artifact_dir(args: argparse.Namespace, storage: str) -> str | Path | None:
    if args.no_artifacts:
        return None
    return args.artifact_dir or artifact_dir_for(storage)


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


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
