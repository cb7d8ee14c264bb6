"""What optuna-dashboard shows of a search: per-trial artifacts, study figures, and the launcher.

Every trial gets two artifacts in a file-system artifact store: ``architecture.json``
(:mod:`architecture_file`) and ``cell.svg`` (:mod:`diagram`). The study gets two plotly figures
(search progress, Pareto front) through ``optuna_dashboard.save_plotly_graph_object``, which
the dashboard shows on the study page. The artifact store lives next to the storage
(:func:`artifact_dir_for`), so ``optuna-spikenas dashboard --storage URL`` finds it again.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.exceptions import StorageInternalError
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.architecture_file import architecture_record
from optuna_spikenas.autosnn_space import AutoSNNArchitecture
from optuna_spikenas.diagram import autosnn_diagram_svg, cell_diagram_svg
from optuna_spikenas.space import Architecture
from optuna_spikenas.storage import open_storage

DEFAULT_HOST = "127.0.0.1"
FIGURE_IDS = ("search-progress", "pareto-front")


def artifact_dir_for(storage_url: str) -> Path:
    """Where a storage's artifacts go: ``nas-artifacts/`` beside ``sqlite:///nas.db`` or a
    journal file ``nas.log``; ``./optuna-artifacts`` for server databases."""
    path = storage_url[len("sqlite:///") :] if storage_url.startswith("sqlite:///") else None
    if path is None and "://" not in storage_url:
        path = storage_url  # a journal file
    if not path or path == ":memory:":
        return Path("optuna-artifacts").resolve()
    file = Path(path).resolve()
    return file.with_name(f"{file.stem}-artifacts")


def open_artifact_store(directory: str | Path) -> FileSystemArtifactStore:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(directory))


class TrialArtifacts:
    """Wraps an objective: at the end of each trial (complete, pruned or failed), while the
    trial can still be written to, uploads its architecture JSON and its diagram.
    ``objective.macro`` and ``objective.config`` describe the network."""

    def __init__(self, objective: Any, store: FileSystemArtifactStore) -> None:
        self.objective = objective
        self.store = store

    def __call__(self, trial: optuna.Trial) -> Any:
        values = None
        interrupted = False
        try:
            values = self.objective(trial)
            return values
        except BaseException as err:
            # Ctrl-C or SIGTERM may land between two of the trial's attributes, and a storage
            # that failed takes no artifact either: leave at once.
            interrupted = not isinstance(err, Exception) or isinstance(err, StorageInternalError)
            raise
        finally:
            if not interrupted and "architecture" in trial.user_attrs:
                try:
                    self.upload(trial, values)
                except StorageInternalError:  # the storage failed: the run stops, as elsewhere
                    raise
                except Exception as err:  # never hide the trial's own error, nor lose its result
                    warnings.warn(
                        f"trial {trial.number}: artifacts not uploaded ({type(err).__name__}: "
                        f"{err})",
                        stacklevel=2,
                    )

    def upload(self, trial: optuna.Trial, values: float | Sequence[float] | None) -> None:
        """Upload the two artifacts of ``trial``, whose objective returned ``values``."""
        attrs = dict(trial.user_attrs)
        values = [values] if isinstance(values, int | float) else values
        if values and all(math.isfinite(v) for v in values):
            attrs["values"] = [float(v) for v in values]
        study = trial.study
        config = self.objective.config
        macro = self.objective.macro
        arch: Architecture | AutoSNNArchitecture
        if config.is_autosnn:
            arch = AutoSNNArchitecture.parse(attrs["architecture"])
            timesteps = macro.timesteps
        else:
            arch = Architecture.parse(attrs["architecture"], attrs["num_cells"], attrs["width"])
            timesteps = config.score.timesteps
        origin = {
            "study": study.study_name,
            "trial": trial.number,
            "dataset": config.dataset.name,
            "seed": config.seed,
        }
        record = architecture_record(arch, macro, timesteps, attrs, origin)
        caption = [f"study {study.study_name}, trial {trial.number}", _caption(attrs)]
        if isinstance(arch, Architecture):
            svg = cell_diagram_svg(arch, caption)
        else:
            svg = autosnn_diagram_svg(arch, macro, caption)
        with tempfile.TemporaryDirectory(prefix="spikenas-artifacts-") as tmp:
            files = {
                "architecture.json": (json.dumps(record, indent=2), "application/json"),
                "cell.svg": (svg, "image/svg+xml"),
            }
            for name, (text, mimetype) in files.items():
                path = Path(tmp) / name
                path.write_text(text, encoding="utf-8")
                upload_artifact(
                    artifact_store=self.store,
                    file_path=str(path),
                    study_or_trial=trial,
                    mimetype=mimetype,
                )


def _caption(attrs: dict[str, Any]) -> str:
    parts = []
    if "values" in attrs:
        parts.append("value " + ", ".join(f"{v:.4f}" for v in attrs["values"]))
    if "parameters" in attrs:
        parts.append(f"{attrs['parameters']:,} parameters")
        parts.append(f"{attrs['memory_bits'] / 8e6:.3f} MB at {attrs['weight_bits']} bits")
    if isinstance(attrs.get("spikes_per_image"), float):
        parts.append(f"{attrs['spikes_per_image']:,.0f} spikes per image")
    if attrs.get("feasible") is False:
        parts.append(f"over budget: {attrs.get('broken_budgets') or attrs.get('invalid_reason')}")
    return ", ".join(parts)


def save_study_figures(study: optuna.Study) -> None:
    """Objective names, search progress and Pareto front, stored in the study for the
    dashboard's study page."""
    from optuna_dashboard import save_plotly_graph_object

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if trials:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2; the dashboard reads it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(objective_names(study, trials))
    for figure_id, figure in zip(
        FIGURE_IDS, (progress_figure(study, trials), pareto_figure(study, trials)), strict=True
    ):
        save_plotly_graph_object(study, figure, graph_object_id=figure_id)


def _value(trial: FrozenTrial) -> float | None:
    if not trial.user_attrs.get("feasible") or not trial.values:
        return None
    return trial.values[0] if math.isfinite(trial.values[0]) else None


def objective_names(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    """What each objective is, from what the objective recorded (see ``objective.py``)."""
    attrs = trials[0].user_attrs
    if "fitness" in attrs:  # AutoSNN: the fitness, or (accuracy, spikes)
        if len(study.directions) == 1:
            return ["fitness"]
        return ["held-out accuracy", "spikes per image"]
    if len(study.directions) == 2:
        return ["score", "validation accuracy"]
    return ["validation accuracy" if "score" in attrs else "score"]


def progress_figure(study: optuna.Study, trials: list[FrozenTrial]):
    """Each feasible trial's value, and the best so far, against the trial number."""
    import plotly.graph_objects as go

    name = objective_names(study, trials)[0] if trials else "value"
    feasible = [
        (t.number, value, t.user_attrs.get("architecture", ""))
        for t in trials
        if (value := _value(t)) is not None
    ]
    best, best_x, best_y = -math.inf, [], []
    for number, value, _ in feasible:
        best = max(best, value)
        best_x.append(number)
        best_y.append(best)
    figure = go.Figure()
    figure.add_scatter(
        x=[p[0] for p in feasible],
        y=[p[1] for p in feasible],
        mode="markers",
        name=f"{name} (feasible)",
        text=[p[2] for p in feasible],
    )
    figure.add_scatter(x=best_x, y=best_y, mode="lines", name="best so far", line_shape="hv")
    title = f"Search progress ({len(feasible)} of {len(trials)} trials feasible)"
    figure.update_layout(title=title, xaxis_title="trial", yaxis_title=name)
    return figure


def pareto_figure(study: optuna.Study, trials: list[FrozenTrial]):
    """Value against memory for every feasible trial; the non-dominated ones joined."""
    import plotly.graph_objects as go

    name = objective_names(study, trials)[0] if trials else "value"
    points = [
        (
            t.user_attrs["memory_bits"] / 8e6,
            value,
            f"trial {t.number}: {t.user_attrs.get('architecture', '')}",
        )
        for t in trials
        if (value := _value(t)) is not None and "memory_bits" in t.user_attrs
    ]
    front, best = [], -math.inf
    for point in sorted(points, key=lambda p: (p[0], -p[1])):
        if point[1] > best:
            front.append(point)
            best = point[1]
    figure = go.Figure()
    figure.add_scatter(
        x=[p[0] for p in points],
        y=[p[1] for p in points],
        mode="markers",
        name="feasible trials",
        text=[p[2] for p in points],
        marker={"opacity": 0.5},
    )
    figure.add_scatter(
        x=[p[0] for p in front],
        y=[p[1] for p in front],
        mode="lines+markers",
        name="Pareto front",
        text=[p[2] for p in front],
        line_shape="hv",
    )
    figure.update_layout(
        title=f"Pareto front: {name} against memory",
        xaxis_title="weight memory (MB)",
        yaxis_title=name,
    )
    return figure


def run_dashboard(
    storage_url: str,
    artifact_dir: str | Path,
    port: int = 8080,
    host: str = DEFAULT_HOST,
    log: Callable[[str], None] | None = None,
) -> None:
    """Serve optuna-dashboard for ``storage_url`` with the artifact store set (blocks)."""
    from optuna_dashboard import run_server

    storage = open_storage(storage_url, heartbeat_seconds=None, writes=False)
    store = open_artifact_store(artifact_dir)
    if log is not None:
        log(f"optuna-dashboard on http://{host}:{port}/  (artifacts: {artifact_dir}); Ctrl-C stops")
        if host not in (DEFAULT_HOST, "localhost", "::1"):
            log(f"warning: listening on {host}: anyone who reaches this address sees the studies")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_server(storage, host=host, port=port, artifact_store=store)
