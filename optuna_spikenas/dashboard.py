"""What optuna-dashboard shows of a search: per-trial artifacts, study figures, and the launcher.

Every trial gets, in a file-system artifact store, ``architecture.json``
(:mod:`architecture_file`), ``cell.svg`` (:mod:`diagram`), ``cell-thumbnail.svg`` (the same
architecture drawn for the dashboard's 200 x 150 artifact card) and, when its spikes were
measured, ``spikes_by_layer.csv`` (too long for a user attribute: it made the trial page scroll
sideways; the dashboard shows a CSV artifact as a table), and a note (:mod:`dashboard_notes`),
which the dashboard shows at the top of the trial's page. The study gets two plotly figures
(search progress, Pareto front) through ``optuna_dashboard.save_plotly_graph_object``, which
the dashboard shows on the study page below its own (their place is fixed), and a note naming
the search's result. The artifact store lives next to the storage (:func:`artifact_dir_for`),
so ``optuna-spikenas dashboard --storage URL`` finds it again.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.exceptions import StorageInternalError
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.architecture_file import architecture_record
from optuna_spikenas.autosnn_space import AutoSNNArchitecture
from optuna_spikenas.dashboard_notes import (
    STUDY_NOTE_MARK,
    TrialOutcome,
    study_note,
    trial_counts,
    trial_note,
    value_names,
)
from optuna_spikenas.diagram import (
    autosnn_diagram_svg,
    autosnn_thumbnail_svg,
    cell_diagram_svg,
    cell_thumbnail_svg,
)
from optuna_spikenas.samplers.result_mark import RESULT_ATTR
from optuna_spikenas.samplers.screen import ScreenThenTrainSampler
from optuna_spikenas.space import Architecture
from optuna_spikenas.storage import open_storage

DEFAULT_HOST = "127.0.0.1"
FIGURE_IDS = ("search-progress", "pareto-front")
THUMBNAIL_FILE = "cell-thumbnail.svg"
SPIKES_FILE = "spikes_by_layer.csv"


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
    trial can still be written to, uploads its artifacts (module doc) and writes its note.
    ``objective.macro`` and ``objective.config`` describe the network,
    ``objective.dataset.input_contract`` its input, and ``objective.activity`` (when it has
    one) the trial's spikes per layer."""

    def __init__(self, objective: Any, store: FileSystemArtifactStore) -> None:
        self.objective = objective
        self.store = store

    def __call__(self, trial: optuna.Trial) -> Any:
        values = None
        problem = None  # why the trial did not return, for its note
        interrupted = False
        try:
            values = self.objective(trial)
            return values
        except optuna.TrialPruned as err:
            problem = f"pruned: {err}" if str(err) else "pruned"
            raise
        except BaseException as err:
            # Ctrl-C or SIGTERM may land between two of the trial's attributes, and a storage
            # that failed takes no artifact either: leave at once.
            interrupted = not isinstance(err, Exception) or isinstance(err, StorageInternalError)
            problem = f"failed: {type(err).__name__}: {err}"
            raise
        finally:
            if not interrupted and "architecture" in trial.user_attrs:
                try:
                    self.upload(trial, values, problem)
                except StorageInternalError:  # the storage failed: the run stops, as elsewhere
                    raise
                except Exception as err:  # never hide the trial's own error, nor lose its result
                    warnings.warn(
                        f"trial {trial.number}: artifacts not uploaded ({type(err).__name__}: "
                        f"{err})",
                        stacklevel=2,
                    )

    def upload(
        self,
        trial: optuna.Trial,
        values: float | Sequence[float] | None,
        problem: str | None = None,
    ) -> None:
        """Upload the artifacts of ``trial`` and write its note; its objective returned
        ``values``, or did not, for the reason ``problem`` ("pruned: ...", "failed: ...")."""
        attrs = dict(trial.user_attrs)
        values = [values] if isinstance(values, int | float) else values
        outcome = TrialOutcome(None if values is None else [float(v) for v in values], problem)
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
        contract = self.objective.dataset.input_contract  # what the network's input is
        record = architecture_record(arch, macro, timesteps, attrs, origin, contract)
        caption = [f"study {study.study_name}, trial {trial.number}", _caption(attrs)]
        if isinstance(arch, Architecture):
            svg = cell_diagram_svg(arch, caption)
            thumbnail = cell_thumbnail_svg(arch)
        else:
            svg = autosnn_diagram_svg(arch, macro, caption)
            thumbnail = autosnn_thumbnail_svg(arch)
        files = {
            "architecture.json": (json.dumps(record, indent=2), "application/json"),
            "cell.svg": (svg, "image/svg+xml"),
            THUMBNAIL_FILE: (thumbnail, "image/svg+xml"),
        }
        activity = getattr(self.objective, "activity", {}).get(trial)
        spikes = None if activity is None else activity.layer_csv()  # measured in this trial
        if spikes is None and "duplicate_of" in attrs and "spikes_per_image" in attrs:
            spikes = self._artifact_text(study, int(attrs["duplicate_of"]), SPIKES_FILE)
        if spikes is not None:
            files[SPIKES_FILE] = (spikes, "text/csv")
        ids = {}
        with tempfile.TemporaryDirectory(prefix="spikenas-artifacts-") as tmp:
            for name, (text, mimetype) in files.items():
                path = Path(tmp) / name
                path.write_text(text, encoding="utf-8")
                ids[name] = upload_artifact(
                    artifact_store=self.store,
                    file_path=str(path),
                    study_or_trial=trial,
                    mimetype=mimetype,
                )
        from optuna_dashboard import save_note

        diagram = f"/artifacts/{study._study_id}/{trial._trial_id}/{ids['cell.svg']}"
        names = value_names(attrs, len(study.directions))
        busiest = None if spikes is None else _busiest_layer(spikes)
        save_note(trial, trial_note(attrs, outcome, names, diagram, busiest))

    def _artifact_text(self, study: optuna.Study, number: int, filename: str) -> str | None:
        """The text of trial ``number``'s artifact ``filename``, or None when it has none."""
        storage = study._storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
        metas = get_all_artifact_meta(storage.get_trial(trial_id), storage=storage)
        for meta in metas:
            if meta.filename == filename:
                with self.store.open_reader(meta.artifact_id) as reader:
                    return reader.read().decode("utf-8")
        return None


def _busiest_layer(spikes_csv: str) -> tuple[str, float] | None:
    """The layer of ``Activity.layer_csv`` with the most spikes, and its share in percent."""
    rows = list(csv.DictReader(io.StringIO(spikes_csv)))
    if not rows:
        return None
    top = max(rows, key=lambda row: float(row["spikes_per_image"]))
    return top["layer"], float(top["share"])


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


def save_study_note(study: optuna.Study) -> None:
    """Write the study's note (``dashboard_notes.study_note``: the search's result, the trials
    by kind), unless the study has a note the user wrote (one without ``STUDY_NOTE_MARK``)."""
    from optuna_dashboard import get_note, save_note

    current = get_note(study)
    if current.strip() and not current.rstrip().endswith(STUDY_NOTE_MARK):
        return
    trials = study.get_trials(deepcopy=False)
    found = search_result(study, trials)
    result, diagram = None, None
    if found is not None:
        trial, why = found
        result = (trial.user_attrs, trial.number, why)
        for meta in get_all_artifact_meta(trial, storage=study._storage):
            if meta.filename == "cell.svg":
                diagram = f"/artifacts/{study._study_id}/{trial._trial_id}/{meta.artifact_id}"
    front = []
    if len(study.directions) > 1:
        front = [t.number for t in study.best_trials if t.user_attrs.get("feasible")]
    save_note(study, study_note(result, trial_counts(trials), front, diagram))


def search_result(
    study: optuna.Study, trials: Sequence[FrozenTrial]
) -> tuple[FrozenTrial, str] | None:
    """The trial the search found, and why it is the one: the mark of a search that finds its
    own result (``samplers/result_mark.py``), screen-then-train's trained winner, or else (one
    objective) the best feasible value; None before there is one, or with two objectives."""
    by_number = {t.number: t for t in trials}
    marked = study.user_attrs.get(RESULT_ATTR)
    if marked in by_number:
        return by_number[marked], "the search's result"
    marks = [t.user_attrs[RESULT_ATTR] for t in trials if RESULT_ATTR in t.user_attrs]
    if marks and marks[-1] in by_number:
        return by_number[marks[-1]], "the search's result so far (the search is not complete)"
    if isinstance(study.sampler, ScreenThenTrainSampler):
        winner = study.sampler.result(study)
        return None if winner is None else (winner, "the trained winner")
    if len(study.directions) > 1:
        return None
    scored = [(value, t) for t in trials if (value := _value(t)) is not None]
    if not scored:
        return None
    best = max(scored, key=lambda pair: (pair[0], -pair[1].number))[1]
    return best, f"the best feasible {objective_names(study, list(trials))[0]}"


def _value(trial: FrozenTrial) -> float | None:
    if not trial.user_attrs.get("feasible") or not trial.values:
        return None
    return trial.values[0] if math.isfinite(trial.values[0]) else None


def objective_names(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    """What each objective is, from what the objective recorded (``value_names``) in the first
    scored trial (an unscored one does not say)."""
    said = ("score", "fitness", "val_accuracy")
    scored = (t for t in trials if any(key in t.user_attrs for key in said))
    return value_names(next(scored, trials[0]).user_attrs, len(study.directions))


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
