"""Export a found architecture: ``optuna-spikenas export``.

From a study's trial, write into a folder:

- ``architecture.json``: the trial's architecture document (``architecture_file``) with the
  input contract of the study's data, taken from the trial's ``architecture.json`` artifact,
  or, for a trial without artifacts, rebuilt from its user attributes and the study's config
  (which the storage does not keep: pass it; an artifact written before the input contract
  gets it from the config too);
- ``model.py``: a standalone module that builds the same network with PyTorch and SpikingJelly
  only and prepares raw data for it (``model_template``), with ``weights.pt`` beside it when a
  state dict is given;
- ``model.nir`` on request: the network as an NIR graph (``nir_graph``), checked before the
  export reports it: SpikingJelly's NIR reader runs the file and must reproduce the network's
  outputs and spikes (``nir_replay``), or the file is removed and the export says why.

Which trial, without ``--trial``: the search's own result where the sampler finds one (the
network the cell-by-cell search grew, the fittest candidate of the evolutionary search), else the
best feasible trial (``exported_trial``).
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from optuna.trial import FrozenTrial
from torch import nn

from optuna_spikenas.architecture_file import (
    VERSION,
    ArchitectureFileError,
    architecture_record,
    input_contract_problem,
    read_architecture,
)
from optuna_spikenas.autosnn_space import AutoSNNArchitecture, AutoSNNMacro
from optuna_spikenas.config import Config
from optuna_spikenas.dashboard import artifact_dir_for
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.export_folder import ExportFolderError, check_export_folder, record_export
from optuna_spikenas.exported_trial import (
    Selection,
    TrialChoiceError,
    best_feasible_trial,
    select_trial,
)
from optuna_spikenas.macros import Macro
from optuna_spikenas.model_template import write_model_py
from optuna_spikenas.nir_graph import NIR_INSTALL, NIRExportError, import_nir, write_nir
from optuna_spikenas.nir_replay import check_graph
from optuna_spikenas.paths import make_folder, not_a_file
from optuna_spikenas.quantize import FLOAT_BITS, k_bit_copy
from optuna_spikenas.snn.autosnn import build_autosnn
from optuna_spikenas.snn.network import build_network
from optuna_spikenas.space import Architecture, SpaceError
from optuna_spikenas.storage import StorageError, load_study, open_storage, redact
from optuna_spikenas.study_binding import (
    FINGERPRINT_ATTR,
    fingerprint,
    settings_differences,
    value_settings,
)

__all__ = [
    "ExportError",
    "ExportResult",
    "Selection",
    "best_feasible_trial",
    "build_from_document",
    "export_trial",
    "write_model_py",
]

ARTIFACT_NAME = "architecture.json"


class ExportError(SpikeNASError):
    """The trial cannot be exported as asked; the message (one line) says why."""


@dataclass(frozen=True)
class ExportResult:
    """The files written, and the trial they come from."""

    architecture_json: Path
    model_py: Path
    weights: Path | None
    nir: Path | None
    trial_number: int
    nir_check: str | None = None  # what the NIR reader's run of ``nir`` showed
    why: str = ""  # why this trial: "as asked", the search's result, the best feasible trial
    input_problem: str | None = None  # why architecture.json has no input contract, if it has none


def export_trial(
    storage_url: str,
    study_name: str,
    out_dir: str | Path,
    trial_number: int | None = None,
    nir: bool = False,
    weights: str | Path | None = None,
    config: Config | None = None,
    artifact_dir: str | Path | None = None,
    force: bool = False,
) -> ExportResult:
    """Export trial ``trial_number`` of the study (default: the search's result, see
    :func:`select_trial`) into ``out_dir``: ``architecture.json``, ``model.py``, ``weights.pt``
    (a copy of ``weights``, a state-dict file checked against the architecture) and with ``nir``
    ``model.nir``.

    The document comes from the trial's artifact in ``artifact_dir`` (default: the storage's
    artifact folder, see ``dashboard.artifact_dir_for``); without one, from the trial's user
    attributes and ``config``, the study's config (refused when its value-defining settings are
    not the ones the trial was made with: the input contract's statistics depend on them). A
    file in ``out_dir`` that no export wrote (or that changed since) is never overwritten unless
    ``force`` (``export_folder``)."""
    names = ["architecture.json", "model.py"]
    names += ["weights.pt"] if weights is not None else []
    names += ["model.nir"] if nir else []
    given_from_folder = weights is not None and (
        Path(weights).resolve() == (Path(out_dir) / "weights.pt").resolve()
    )
    try:
        out = check_export_folder(
            out_dir, names, force, kept=["weights.pt"] if given_from_folder else []
        )
    except ExportFolderError as err:
        raise ExportError(str(err)) from None
    try:
        storage = open_storage(storage_url, heartbeat_seconds=None, writes=False)
        names = optuna.get_all_study_names(storage)
        if study_name not in names:
            known = f"studies there: {', '.join(names)}" if names else "it has no studies"
            raise ExportError(
                f"study {study_name!r} does not exist in {redact(storage_url)} ({known})"
            )
        study = load_study(storage, study_name, storage_url)
    except StorageError as err:
        raise ExportError(str(err)) from None
    try:
        selection = select_trial(study, trial_number)
    except TrialChoiceError as err:
        raise ExportError(str(err)) from None
    trial = selection.trial
    folder = Path(artifact_dir) if artifact_dir is not None else artifact_dir_for(storage_url)
    document = trial_document(study, trial, folder, config)
    input_problem = input_contract_problem(document)  # only a missing one: see trial_document
    if nir:
        try:
            import_nir()  # fail before writing anything when the extra is missing
            import nirtorch  # noqa: F401  # the reader that checks the file
        except ImportError:
            raise ExportError(f"checking an NIR file needs nirtorch: {NIR_INSTALL}") from None
        except NIRExportError as err:
            raise ExportError(str(err)) from None
    network = None
    if weights is not None or nir:
        network = build_from_document(document)
        if weights is not None:
            _load_weights(network, Path(weights))

    problem = make_folder(out)
    if problem:
        raise ExportError(f"--out {out}: {problem}")
    architecture_json = out / "architecture.json"
    architecture_json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    model_py = write_model_py(document, out)
    written = [architecture_json, model_py]
    weights_pt = None
    if weights is not None:
        weights_pt = out / "weights.pt"
        if not given_from_folder:
            shutil.copyfile(weights, weights_pt)
            written.append(weights_pt)
    record_export(out, written)  # before the NIR graph, which may refuse
    nir_path, nir_check = None, None
    if network is not None and nir:
        nir_path, nir_check = export_nir(network, document, out / "model.nir")
        record_export(out, [nir_path])
    files = (architecture_json, model_py, weights_pt, nir_path)
    return ExportResult(*files, trial.number, nir_check, selection.why, input_problem)


# --- the architecture document --------------------------------------------------------------


def trial_document(
    study: optuna.Study, trial: FrozenTrial, artifact_dir: Path, config: Config | None
) -> dict[str, Any]:
    """The trial's architecture document: its artifact, else rebuilt with ``config``; an
    artifact written before the input contract gets it from ``config`` when given."""
    if config is not None:
        _check_config(study, trial, config)
    document = _artifact_document(study, trial, artifact_dir)
    where = f"the {ARTIFACT_NAME} artifact of trial {trial.number}"
    if document is None:
        if config is None:
            raise ExportError(
                f"trial {trial.number} has no {ARTIFACT_NAME} artifact in {artifact_dir} (a "
                "search run with --no-artifacts, or another artifact folder); pass --config "
                "with the study's config to rebuild it"
            )
        document = _document_from_attrs(study, trial, config)
        where = f"trial {trial.number}'s attributes and the config"
    try:
        arch, _, timesteps = read_architecture(document)
    except ArchitectureFileError as err:
        raise ExportError(f"{where}: {err}") from None
    recorded = trial.user_attrs.get("architecture")
    if recorded is not None and str(arch) != recorded:
        raise ExportError(f"{where} describes {arch}, but the trial searched {recorded}")
    if document.get("input") is None and config is not None:  # an artifact that predates it
        document = _with_input_contract(document, config, timesteps)
    damaged = input_contract_problem(document) if document.get("input") is not None else None
    if damaged:  # refused; a missing one is only noted (model.py's preprocess needs it)
        raise ExportError(f"{where}: {damaged}")
    return document


def _artifact_document(
    study: optuna.Study, trial: FrozenTrial, artifact_dir: Path
) -> dict[str, Any] | None:
    """The trial's last uploaded ``architecture.json``, or None when there is none."""
    if not artifact_dir.is_dir():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        metas = get_all_artifact_meta(trial, storage=study._storage)
    metas = [m for m in metas if m.filename == ARTIFACT_NAME]
    if not metas:
        return None
    store = FileSystemArtifactStore(str(artifact_dir))
    try:
        with store.open_reader(metas[-1].artifact_id) as reader:
            text = reader.read().decode("utf-8")
    except Exception:  # the store's file is gone (ArtifactNotFound) or unreadable
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ExportError(f"the {ARTIFACT_NAME} artifact of trial {trial.number}: {err}") from None


def _check_config(study: optuna.Study, trial: FrozenTrial, config: Config) -> None:
    """Refuse a config whose value-defining settings (dataset, split, seed, ...) are not those
    the trial was made with: the rebuilt document, and its train-split statistics, would not be
    the ones the search used."""
    made_with = trial.user_attrs.get(FINGERPRINT_ATTR)
    settings = value_settings(config)
    if made_with is None or fingerprint(settings) == made_with:
        return
    differing = settings_differences(study, settings, str(made_with))
    raise ExportError(
        f"--config is not the config trial {trial.number} was made with{differing}; pass the "
        "study's config"
    )


def _with_input_contract(
    document: dict[str, Any], config: Config, timesteps: int
) -> dict[str, Any]:
    """A document written before the input contract, with the contract of ``config``'s data."""
    from optuna_spikenas.study_setup import study_dataset

    contract = study_dataset(config).input_contract
    return {**document, "version": VERSION, "input": contract.as_dict(timesteps)}


def _document_from_attrs(study: optuna.Study, trial: FrozenTrial, config: Config) -> dict:
    """The document that ``dashboard.TrialArtifacts`` uploads, from the trial and the config."""
    from optuna_spikenas.autosnn_objective import AutoSNNObjective
    from optuna_spikenas.study_setup import study_dataset, study_macro
    from optuna_spikenas.supernet import SuperNetSettings, supernet_macro

    attrs = dict(trial.user_attrs)
    if "architecture" not in attrs:
        raise ExportError(f"trial {trial.number} has no 'architecture' user attribute")
    if trial.values and all(math.isfinite(v) for v in trial.values):
        attrs["values"] = [float(v) for v in trial.values]
    dataset = study_dataset(config)
    arch: Architecture | AutoSNNArchitecture
    macro: Macro | AutoSNNMacro
    try:
        if config.is_autosnn:
            arch = AutoSNNArchitecture.parse(attrs["architecture"])
            widths = config.space.widths or (AutoSNNObjective.default_width,)
            settings = SuperNetSettings(width=widths[0], timesteps=config.supernet.timesteps)
            macro = supernet_macro(dataset, settings)
            timesteps = macro.timesteps
        else:
            if "num_cells" not in attrs or "width" not in attrs:
                raise ExportError(f"trial {trial.number} has no num_cells or width attribute")
            arch = Architecture.parse(attrs["architecture"], attrs["num_cells"], attrs["width"])
            macro = study_macro(config, dataset)
            timesteps = config.score.timesteps
    except SpaceError as err:
        raise ExportError(
            f"trial {trial.number}'s architecture {attrs['architecture']!r} is not one of the "
            f"config's macro {config.space.macro}: {err}"
        ) from None
    origin = {
        "study": study.study_name,
        "trial": trial.number,
        "dataset": config.dataset.name,
        "seed": config.seed,
    }
    return architecture_record(arch, macro, timesteps, attrs, origin, dataset.input_contract)


def build_from_document(document: dict[str, Any], seed: int | None = None) -> nn.Module:
    """The package's network of an architecture document (what ``model.py`` builds too)."""
    arch, macro, timesteps = read_architecture(document)
    if isinstance(arch, AutoSNNArchitecture) and isinstance(macro, AutoSNNMacro):
        return build_autosnn(arch, macro, seed=seed)
    assert isinstance(arch, Architecture) and isinstance(macro, Macro)  # read_architecture's pairs
    return build_network(arch, macro, timesteps, seed=seed)


def _load_weights(network: nn.Module, path: Path) -> None:
    """Load a state-dict file into ``network``, or say why it does not fit."""
    problem = not_a_file(path)
    if problem:
        raise ExportError(f"weights file {path} {problem}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch explains weights_only over many lines
        raise ExportError(
            f"cannot read weights {path}: it holds pickled objects other than tensors, which "
            "are not loaded (save a state dict: torch.save(model.state_dict(), PATH))"
        ) from None
    except Exception as err:  # zip and unpickler errors vary
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ExportError(f"cannot read weights {path}: {type(err).__name__}: {first}") from None
    if not isinstance(state, dict):
        raise ExportError(f"weights {path} hold a {type(state).__name__}, not a state dict")
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not value.isfinite().all():
            raise ExportError(f"weights {path}: {name} holds NaN or infinite values")
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise ExportError(f"weights {path} do not fit the architecture: {first}") from None


# --- NIR ------------------------------------------------------------------------------------


def export_nir(network: nn.Module, document: dict[str, Any], path: Path) -> tuple[Path, str]:
    """Write ``network`` as an NIR graph to ``path`` (``nir_graph``), then run the file with
    SpikingJelly's reader on random images and compare it with the network (``nir_replay``).
    Returns the path and the comparison's one-line summary; a graph the reader does not
    reproduce is removed and reported as an ``ExportError``.

    A trial measured with k-bit weights (``measured.weight_bits`` below 32, NeuroNAS) is written
    with its k-bit weights, the network the search measured (``quantize.quantize_weights`` of the
    float weights that ``weights.pt`` holds, frozen to plain weights)."""
    _, macro, timesteps = read_architecture(document)
    bits = document.get("measured", {}).get("weight_bits")
    if isinstance(bits, int) and not isinstance(bits, bool) and 0 < bits < FLOAT_BITS:
        network = k_bit_copy(network, bits)
    try:
        written = write_nir(network, timesteps, path)
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(
            4, macro.in_channels, macro.image_size, macro.image_size, generator=generator
        )
        check = check_graph(path, network, written.neurons, timesteps, images)
    except NIRExportError as err:
        path.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path.name}: {err}") from None
    if not check.agrees:
        path.unlink(missing_ok=True)
        raise ExportError(f"{path.name} not written: {check.summary()}")
    return path, check.summary()
