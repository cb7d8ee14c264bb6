"""The commands of ``optuna-spikenas``, one function each: ``cmd_NAME(args) -> exit status``.

Each validates its inputs first and raises a ``SpikeNASError`` for what the user must fix;
torch is imported only once the inputs are valid.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import optuna

from optuna_spikenas.architecture_file import ArchitectureFileError
from optuna_spikenas.config import (
    MAX_SEED,
    Config,
    load_config,
    validate,
)
from optuna_spikenas.cpu_load import LoadWatch, ThreadsUnderLoad
from optuna_spikenas.dashboard import artifact_dir_for
from optuna_spikenas.describe import UsageError, describe
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.interrupts import CtrlC, Terminated, report_stop
from optuna_spikenas.paths import not_a_file, read_capped, unwritable_folder
from optuna_spikenas.sampler_catalog import SAMPLER_CATALOG
from optuna_spikenas.samplers import (
    CellByCellSampler,
    ScreenThenTrainSampler,
    make_pruner,
    make_sampler,
)
from optuna_spikenas.storage import (
    StorageError,
    load_study,
    open_storage,
    redact,
)
from optuna_spikenas.study_binding import bind_study
from optuna_spikenas.summary import (
    PhaseProgress,
    elapsed_line,
    print_cell_by_cell_result,
    print_screen_result,
    print_summary,
    progress_line,
)
from optuna_spikenas.wording import plural


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
    stops = SAMPLER_CATALOG[search.sampler].stops_by_itself or search.screen is not None
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
    from optuna_spikenas.dashboard import (
        TrialArtifacts,
        open_artifact_store,
        save_study_figures,
        save_study_note,
    )
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
    study.pruner = make_pruner(config)
    study.sampler = make_sampler(
        search.sampler,
        seed,
        space=None if config.is_autosnn else objective.space,
        ops=search.ops,
        fits_budget=objective.fits_budget,
        screen=search.screen,
        train_top=search.trained,
    )
    if isinstance(study.sampler, ScreenThenTrainSampler) and study.sampler.foreign_trials(study):
        raise UsageError(
            f"study {args.study_name!r} already has trials made without [search] screen; "
            "screen-then-train needs a study of its own (`optuna create-study` a new one)"
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
        if search.screen is not None:
            budget = f"screen {search.screen}, train the best {search.trained} ({search.pruner})"
        print(
            f"Searching {config.space.macro} architectures on {config.dataset.name} with "
            f"{search.sampler} (seed {seed}): {budget}, scoring on {objective.device}",
            file=sys.stderr,
        )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    phases = SAMPLER_CATALOG[search.sampler].grows_cells  # a line per phase, not a bar
    bar = not args.quiet and not phases and (search.n_trials or search.timeout) is not None
    ctrl_c = CtrlC(objective if store is None else TrialArtifacts(objective, store), study)
    progress = PhaseProgress(study) if phases and not args.quiet else None
    say = (lambda _: None) if args.quiet else progress_line
    threads = None if args.threads is not None else threads_under_load(say)
    # warns once if the CPU is busy, and tells ``threads`` each window's load
    watch = LoadWatch(say, on_window=None if threads is None else threads.observe)
    callbacks: list = [] if progress is None else [progress]
    callbacks += [] if threads is None else [threads.apply]
    try:
        with ctrl_c, progress or nullcontext(), watch:
            study.optimize(
                ctrl_c,
                n_trials=search.n_trials,
                timeout=search.timeout,
                show_progress_bar=bar,
                callbacks=callbacks,
            )
        if ctrl_c.pending:
            raise ctrl_c.stop()
    except KeyboardInterrupt as err:
        return report_stop(err, "every completed trial is saved in the study")
    finally:
        save_study_figures(study)  # the dashboard's study-level figures, up to date
        save_study_note(study)  # and its note: the search's result
    if not args.quiet:
        progress_line(elapsed_line(watch))
    best = print_summary(study, args.storage, args.study_name)
    if isinstance(study.sampler, CellByCellSampler):
        print_cell_by_cell_result(study, study.sampler, shown=best)
    if isinstance(study.sampler, ScreenThenTrainSampler):
        print_screen_result(study, study.sampler)
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
    print(f"trial {result.trial_number} exported to {args.out} ({result.why})")
    print(f"  architecture  {result.architecture_json}")
    print(f"  model         {result.model_py}  (python {result.model_py} runs a forward pass)")
    if result.input_problem is not None:  # model.py's preprocess() needs the contract
        print(f"  note          {result.input_problem}")
    if result.weights is not None:
        print(f"  weights       {result.weights}")
    if result.nir is not None:
        print(f"  NIR graph     {result.nir}")
        print(f"                {result.nir_check}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from optuna_spikenas.final_training import TrainingError, train_final  # torch imports

    config = load_config(args.config)
    try:
        problem = not_a_file(args.arch_json)
        if problem and problem != "does not exist":
            raise UsageError(f"--arch-json {args.arch_json} {problem}")
        text = read_capped(args.arch_json)
        if text is None:
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
    except KeyboardInterrupt as err:  # its message says what the checkpoint holds
        return report_stop(err)
    print(f"trained {plural(result.epochs_done, 'epoch')}: {result.result_json}")
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


def chosen_artifact_dir(args: argparse.Namespace, storage: str) -> str | Path | None:
    if args.no_artifacts:
        return None
    return args.artifact_dir or artifact_dir_for(storage)


def threads_under_load(say) -> ThreadsUnderLoad | None:
    """PyTorch's thread count while the machine is quiet, one while it is busy (``cpu_load``);
    None when PyTorch runs on one thread anyway."""
    import torch

    threads = torch.get_num_threads()
    return None if threads <= 1 else ThreadsUnderLoad(threads, torch.set_num_threads, say)


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
