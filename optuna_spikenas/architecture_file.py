"""A found architecture as a JSON document: what to build (architecture + macro), what its input
is (the input contract) and what was measured in the search. Written for every trial as a
dashboard artifact; read back by :func:`read_architecture` to build the same network outside the
study, and by :func:`read_input_contract` to prepare data for it.

Two kinds, told apart by ``search_space``: ``"snasnet-cells"`` (``space.Architecture`` in a
``snn.network.Macro``) and ``"autosnn-blocks"`` (``AutoSNNArchitecture`` in an ``AutoSNNMacro``).

Versions: 2 adds ``"input"``, the input contract (``input_contract.py``: normalisation, shape,
timesteps, encoding, class names), or null where the writer did not know the data. Version 1
documents (no ``"input"``) are still read; only what needs the contract refuses them, saying so.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, fields, replace
from typing import Any

from optuna_spikenas.autosnn_space import AutoSNNArchitecture, AutoSNNMacro
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.input_contract import DIRECT, EVENT_FRAMES, FLOAT32, FLOAT64, InputContract
from optuna_spikenas.limits import (
    brief,
    parameters_beyond_memory,
    too_many_parameters,
    too_many_timesteps,
)
from optuna_spikenas.macros import HEADS, MACROS, Macro
from optuna_spikenas.space import Architecture, SpaceError

FORMAT = "optuna-spikenas.architecture"
VERSION = 2
READ_VERSIONS = (1, 2)
"""The document versions :func:`read_architecture` reads (1: written before the input contract)."""
SNASNET_CELLS, AUTOSNN_BLOCKS = "snasnet-cells", "autosnn-blocks"

MEASURED_ATTRS = (
    "values",
    "feasible",
    "broken_budgets",
    "parameters",
    "memory_bits",
    "weight_bits",
    "score",
    "fitness",
    "accuracy",
    "val_accuracy",
    "test_accuracy",
    "area_mm2",
    "latency_ms",
    "energy_uj",
    "hardware_profile",
    "spikes_per_image",
    "neuron_spikes_per_image",
    "synops_per_image",
    "synops_energy_uj",
    "duplicate_of",
)
"""Trial user attributes copied into the document's ``measured`` section when present."""


class ArchitectureFileError(SpikeNASError):
    """A document that is not an architecture this version can build; the message says why."""


def architecture_record(
    arch: Architecture | AutoSNNArchitecture,
    macro: Macro | AutoSNNMacro,
    timesteps: int,
    measured: dict[str, Any] | None = None,
    origin: dict[str, Any] | None = None,
    input_contract: InputContract | None = None,
) -> dict[str, Any]:
    """The JSON-safe document of ``arch`` in ``macro`` (fitted to the architecture's cells and
    width), with ``measured`` trial attributes, ``origin`` (study, trial, dataset) and the input
    contract of the data the network was searched on (``Dataset.input_contract``; null without
    one)."""
    if isinstance(arch, Architecture):
        kind = SNASNET_CELLS
        assert isinstance(macro, Macro)
        macro = replace(macro, num_cells=arch.num_cells, width=arch.width)
        shape = {
            "num_cells": arch.num_cells,
            "width": arch.width,
            "canonical": arch.canonical_key(),
        }
    else:
        kind, shape = AUTOSNN_BLOCKS, {"width": macro.width}
    kept = {k: measured[k] for k in MEASURED_ATTRS if measured and k in measured}
    return {
        "format": FORMAT,
        "version": VERSION,
        "search_space": kind,
        "architecture": str(arch),
        **shape,
        "timesteps": timesteps,
        "macro": asdict(macro),
        "input": None if input_contract is None else input_contract.as_dict(timesteps),
        "measured": {k: v for k, v in kept.items() if _json_safe(v)},
        "origin": origin or {},
    }


def _json_safe(value: Any) -> bool:
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool | type(None))


def read_architecture(
    document: dict[str, Any] | str,
) -> tuple[Architecture | AutoSNNArchitecture, Macro | AutoSNNMacro, int]:
    """``(architecture, macro, timesteps)`` from a document or its JSON text."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as err:
            raise ArchitectureFileError(f"not JSON: {err}") from None
        except RecursionError:
            raise ArchitectureFileError("nested too deeply to be an architecture") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ArchitectureFileError(f'not an architecture document (no "format": "{FORMAT}")')
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version not in READ_VERSIONS:
        raise ArchitectureFileError(
            f"architecture document version {document.get('version')!r}; this version of "
            f"optuna-spikenas reads versions {' and '.join(map(str, READ_VERSIONS))}"
        )
    kind = document.get("search_space")
    classes = {SNASNET_CELLS: Macro, AUTOSNN_BLOCKS: AutoSNNMacro}
    macro_class = classes.get(kind) if isinstance(kind, str) else None
    if macro_class is None:
        raise ArchitectureFileError(
            f"unknown search_space {kind!r}; known: {SNASNET_CELLS}, {AUTOSNN_BLOCKS}"
        )
    macro = _macro(macro_class, document.get("macro"))
    timesteps = document.get("timesteps")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ArchitectureFileError(f"timesteps must be a positive integer, got {timesteps!r}")
    arch: Architecture | AutoSNNArchitecture
    try:
        if isinstance(macro, Macro):
            arch = Architecture.parse(str(document["architecture"]), macro.num_cells, macro.width)
        else:
            arch = AutoSNNArchitecture.parse(str(document["architecture"]))
    except KeyError:
        raise ArchitectureFileError('the document has no "architecture"') from None
    except SpaceError as err:
        raise ArchitectureFileError(f"architecture: {err}") from None
    _check_size(arch, macro, timesteps)
    return arch, macro, timesteps


def _macro(macro_class: type, values: Any) -> Macro | AutoSNNMacro:
    if not isinstance(values, dict):
        raise ArchitectureFileError('the document has no "macro" object')
    names = {f.name for f in fields(macro_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ArchitectureFileError(f"macro has unknown keys: {', '.join(unknown)}")
    for f in fields(macro_class):  # JSON gives any type: check before the macro uses them
        value = values.get(f.name)
        wanted = {"int": int, "str": str}.get(str(f.type))
        if (
            f.name in values
            and wanted
            and (isinstance(value, bool) or not isinstance(value, wanted))
        ):
            raise ArchitectureFileError(f"macro {f.name} must be {str(f.type)}, got {value!r}")
    for f in fields(macro_class):
        value = values.get(f.name)
        if str(f.type) == "int" and value is not None and value < 1:
            raise ArchitectureFileError(f"macro {f.name} must be a positive integer, got {value}")
    name = values.get("name")
    if macro_class is Macro:
        known, named = ", ".join(MACROS), name is None or name in MACROS
    else:  # AutoSNN's macros are named by a width: autosnn-16, ...
        known = "autosnn-N"
        named = name is None or re.fullmatch(r"autosnn-[1-9][0-9]*", str(name)) is not None
    if not named:
        raise ArchitectureFileError(
            f"macro name {brief(name)} is not a macro of this search space; known: {known}"
        )
    if macro_class is Macro and values.get("head", "snasnet") not in HEADS:
        raise ArchitectureFileError(
            f"macro head {brief(values['head'])} is not one of {', '.join(HEADS)}"
        )
    try:
        return macro_class(**values)
    except (TypeError, ValueError) as err:
        raise ArchitectureFileError(f"macro: {err}") from None


def _check_size(arch: Architecture | AutoSNNArchitecture, macro: Any, timesteps: int) -> None:
    """Refuse a document no machine could build (hand-edited widths and timesteps)."""
    reason = too_many_timesteps(timesteps, "timesteps")
    if reason is None and isinstance(arch, Architecture):
        try:
            reason = too_many_parameters(arch, macro, f"width {arch.width}")
        except ValueError as err:  # images too small for the cells: the data decides later
            reason = None if "too small" in str(err) else str(err)
    elif reason is None:  # AutoSNN: at least one 3x3 conv at the macro's width
        reason = parameters_beyond_memory(9 * macro.width**2, f"width {macro.width}")
    if reason:
        raise ArchitectureFileError(reason)


def read_input_contract(document: dict[str, Any]) -> dict[str, Any]:
    """The document's input contract (its ``"input"``), checked; an ``ArchitectureFileError``
    that says why when the document has none (version 1, or written without the data)."""
    contract = document.get("input")
    if contract is None:
        why = (
            f"version {document.get('version')} documents predate it"
            if document.get("version") == 1
            else "it was written without the study's data"
        )
        raise ArchitectureFileError(
            f"the architecture document records no input contract ({why}): export the trial "
            "again with `optuna-spikenas export --config STUDY.toml` to record it"
        )
    problem = _contract_problem(contract, document.get("timesteps"))
    if problem:
        raise ArchitectureFileError(f"input contract: {problem}")
    return contract


def input_contract_problem(document: dict[str, Any]) -> str | None:
    """Why the document's input contract cannot be used (missing or damaged), or None."""
    try:
        read_input_contract(document)
    except ArchitectureFileError as err:
        return str(err)
    return None


def _contract_problem(contract: Any, timesteps: Any) -> str | None:
    """What makes ``contract`` unusable, or None."""
    if not isinstance(contract, dict):
        return f"must be an object, got {brief(contract)}"
    encoding, shape = contract.get("encoding"), contract.get("shape")
    if encoding not in (DIRECT, EVENT_FRAMES):
        return f"encoding {brief(encoding)} is not {DIRECT} or {EVENT_FRAMES}"
    dims = 3 if encoding == DIRECT else 4
    if not (
        isinstance(shape, list)
        and len(shape) == dims
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        return f"shape must be {dims} positive integers, got {brief(shape)}"
    if contract.get("timesteps") != timesteps:
        return f"timesteps {brief(contract.get('timesteps'))}, the network's are {timesteps}"
    classes = contract.get("classes")
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    ):
        return f"classes must be a list of names or null, got {brief(classes)}"
    raw, normalise = contract.get("raw"), contract.get("normalise")
    if not isinstance(raw, dict):
        return 'no "raw" object'
    if not isinstance(normalise, dict):
        return 'no "normalise" object'
    if encoding == EVENT_FRAMES:
        return None if shape[0] == timesteps else f"{shape[0]} frames for {timesteps} timesteps"
    for key in ("mean", "std"):
        values = normalise.get(key)
        if not (
            isinstance(values, list)
            and len(values) == shape[0]
            and all(_json_safe(v) and isinstance(v, int | float) for v in values)
        ):
            return f"normalise {key} must be {shape[0]} numbers, one per channel"
    top = raw.get("max")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        return f"raw max must be a positive integer, got {brief(top)}"
    scale = normalise.get("scale")
    if not isinstance(scale, int | float) or not _json_safe(scale) or scale <= 0:
        return f"normalise scale must be a positive number, got {brief(scale)}"
    if any(v <= 0 for v in normalise["std"]):
        return "normalise std must be positive"
    if normalise.get("precision") not in (FLOAT32, FLOAT64):
        return f"normalise precision must be {FLOAT32} or {FLOAT64}"
    return None
