"""The catalogue of bad input, ``docs/bad-input.md``: every row, run as a user runs it.

Each row of ``ROWS`` is one bad input given to ``optuna-spikenas`` (in-process through
``cli.main``, and a sample of them as a real subprocess); it must end with exit status 2, exactly
one line on stderr naming the problem (no traceback), and the study untouched. Inputs that are
not errors of the command (budgets nothing meets, scores of -inf or NaN) and Ctrl-C have tests of
their own, named ``test_row_<row>``. The last test checks that the markdown catalogue and these
tests list the same rows.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.cli import main

BIN = Path(sys.executable).parent
DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
STUDY = "s"
PREFIX = "optuna-spikenas: error: "
DELETE = object()  # a config change that removes the key

BASE: dict[str, Any] = {
    "seed": 1,
    "dataset": {"name": "digits"},
    "space": {"macro": "light", "widths": [4]},
    "score": {"batch_size": 16, "repeats": 1, "timesteps": 2},
    "budget": {"max_parameters": 6000},
    "search": {"n_trials": 3},
}
AUTOSNN = {
    "space": {"macro": "autosnn-16", "widths": [4]},
    "budget": {"max_parameters": DELETE},
    "supernet": {
        "epochs": 1,
        "batch_size": 32,
        "timesteps": 2,
        "max_train_batches": 1,
        "eval_images": 20,
    },
    "fitness": {"reference_spikes": 100.0},
    "search": {"n_trials": 1},
}
GOOD_CELL = "0302 0030 3003 0000"
PAPER_BLOCKS = "SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5"


# --- a workspace: a study made as `optuna create-study` makes it, configs, files ------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def toml_text(config: dict[str, Any]) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for name, table in config.items():
        if isinstance(table, dict):
            lines += [f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


class Workspace:
    def __init__(self, root: Path, template: Path) -> None:
        self.root = root
        shutil.copyfile(template, root / "nas.db")  # faster than creating it for every row
        self.url = f"sqlite:///{root / 'nas.db'}"

    def path(self, name: str) -> str:
        return str(self.root / name)

    def file(self, name: str, content: str | bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return str(path)

    def config(self, *changes: dict[str, Any], name: str = "config.toml") -> str:
        config = BASE
        for change in changes:
            config = merged(config, change)
        return self.file(name, toml_text(config))

    def study(self, name: str, *directions: str) -> str:
        optuna.create_study(storage=self.url, study_name=name, directions=list(directions))
        return name

    def optimize(self, *extra: object, config: str | None = None, study: str = STUDY) -> list:
        config = config or self.config()
        argv = ["optimize", "--storage", self.url, "--study-name", study, "--config", config]
        return [*argv, *map(str, extra)]

    def npz(self, name: str, **arrays: np.ndarray) -> str:
        np.savez(self.root / name, **arrays)
        return self.path(name)

    def trials(self, study: str = STUDY) -> list[FrozenTrial]:
        return optuna.load_study(study_name=study, storage=self.url).get_trials()

    def states(self, study: str = STUDY) -> list[str]:
        """The study's trial states, read straight from the database (quick)."""
        with sqlite3.connect(self.root / "nas.db") as db:
            rows = db.execute(
                "SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                "WHERE s.study_name = ? ORDER BY t.number",
                (study,),
            )
            return [state for (state,) in rows]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A database with study ``s`` (maximize), as `optuna create-study` makes it."""
    path = tmp_path_factory.mktemp("template") / "nas.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=f"sqlite:///{path}", study_name=STUDY, direction="maximize")
    return path


@pytest.fixture
def ws(tmp_path, monkeypatch, template) -> Workspace:
    monkeypatch.chdir(tmp_path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return Workspace(tmp_path, template)


def one_line(err: str) -> str:
    """The single line a bad input must end with on stderr."""
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err.strip()


# --- the rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    argv: Callable[[Workspace], list]
    words: tuple[str, ...]  # in the one line on stderr
    hidden: tuple[str, ...] = ()  # nowhere in the output
    study: str = STUDY  # the study that must stay empty
    without_gpu: bool = False  # only meaningful on a machine without CUDA


def bad_config(*changes: dict[str, Any]) -> Callable[[Workspace], list]:
    return lambda ws: ws.optimize(config=ws.config(*changes))


def config_file(content: str | bytes) -> Callable[[Workspace], list]:
    return lambda ws: ws.optimize(config=ws.file("bad.toml", content))


def flags(*extra: object) -> Callable[[Workspace], list]:
    return lambda ws: ws.optimize(*extra)


def describe(*args: str) -> Callable[[Workspace], list]:
    return lambda ws: ["describe", *args]


def storage(url: Callable[[Workspace], str], *extra: str) -> Callable[[Workspace], list]:
    def argv(ws: Workspace) -> list:
        command = ws.optimize()
        command[command.index("--storage") + 1] = url(ws)
        return [*command, *extra]

    return argv


def npz_dataset(**arrays: Callable[[], np.ndarray]) -> Callable[[Workspace], list]:
    def argv(ws: Workspace) -> list:
        path = ws.npz("data.npz", **{k: make() for k, make in arrays.items()})
        return ws.optimize(config=ws.config({"dataset": {"name": "npz", "path": path}}))

    return argv


def dataset_file(content: bytes) -> Callable[[Workspace], list]:
    def argv(ws: Workspace) -> list:
        path = ws.file("data.npz", content)
        return ws.optimize(config=ws.config({"dataset": {"name": "npz", "path": path}}))

    return argv


def cifar(files: dict[str, bytes] | None) -> Callable[[Workspace], list]:
    """CIFAR-10 from a folder holding ``cifar-10-batches-py/`` with ``files``; ``{}``: an empty
    folder, None: no folder."""

    def argv(ws: Workspace) -> list:
        folder = ws.root / "cifar"
        if files is not None:
            folder.mkdir()
        if files:
            (folder / "cifar-10-batches-py").mkdir()
            for name, content in files.items():
                (folder / "cifar-10-batches-py" / name).write_bytes(content)
        return ws.optimize(config=ws.config({"dataset": {"name": "cifar10", "path": str(folder)}}))

    return argv


def images(n: int, size: int = 8, constant: bool = False, dtype=np.uint8) -> Callable:
    def make() -> np.ndarray:
        if constant:
            return np.full((n, size, size), 7, dtype=dtype)
        return np.random.default_rng(0).integers(0, 255, (n, size, size)).astype(dtype)

    return make


def labels(n: int, classes: int = 3) -> Callable[[], np.ndarray]:
    return lambda: np.arange(n) % classes


def architecture_document(ws: Workspace, **changes: Any) -> str:
    """An ``architecture.json`` as ``export`` writes it (a 2-cell ``light`` network for digits),
    with ``changes``; a value of DELETE removes the key."""
    from optuna_spikenas.architecture_file import architecture_record
    from optuna_spikenas.macros import get_macro
    from optuna_spikenas.space import Architecture

    arch = Architecture.parse(GOOD_CELL, 2, 4)
    document = architecture_record(arch, get_macro("light").for_data(1, 8, 10), 2)
    document = merged(document, changes)
    return ws.file("architecture.json", json.dumps(document))


def train(document: Callable[[Workspace], str], *extra: str) -> Callable[[Workspace], list]:
    def argv(ws: Workspace) -> list:
        config = ws.config({"train": {"batch_size": 32, "max_train_batches": 2}})
        command = ["train", "--arch-json", document(ws), "--config", config, "--epochs", "1"]
        return [*command, "--out", ws.path("trained"), "--device", "cpu", "--quiet", *extra]

    return argv


def empty_storage_dashboard(ws: Workspace) -> list:
    url = f"sqlite:///{ws.path('empty.db')}"
    optuna.storages.RDBStorage(url)  # a database with no study
    return ["dashboard", "--storage", url]


def cifar_batches(junk: bool) -> dict[str, bytes]:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    return {name: b"junk" for name in (names if junk else names[:1])}


ROWS: dict[str, Row] = {
    # config files and values
    "config-file-missing": Row(
        lambda ws: ws.optimize(config=ws.path("missing.toml")), ("missing.toml", "does not exist")
    ),
    "config-file-is-a-directory": Row(
        lambda ws: ws.optimize(config=str(ws.root)), ("cannot be read", "Is a directory")
    ),
    "config-file-not-text": Row(config_file(b"\xff\xfe\x00seed"), ("not a text (UTF-8) file",)),
    "config-invalid-toml": Row(config_file("seed = [\n"), ("is not valid TOML",)),
    "config-unknown-section": Row(
        config_file("[serach]\nn_trials = 3\n"), ("unknown key(s) serach", "known: seed")
    ),
    "config-unknown-key": Row(
        bad_config({"search": {"n_trails": 3}}), ("[search] unknown key(s) n_trails", "n_trials")
    ),
    "config-section-not-a-table": Row(config_file("space = 3\n"), ("[space] must be a table",)),
    "config-integer-wrong-type": Row(
        bad_config({"space": {"num_cells": "two"}}),
        ("[space] num_cells must be an integer", "'two'"),
    ),
    "config-integer-is-a-float": Row(
        bad_config({"search": {"n_trials": 2.5}}), ("[search] n_trials must be an integer", "2.5")
    ),
    "config-boolean-wrong-type": Row(
        bad_config({"space": {"shared_cell": "yes"}}),
        ("[space] shared_cell must be true or false",),
    ),
    "config-number-wrong-type": Row(
        bad_config({"budget": {"max_parameters": DELETE, "memory_megabytes": "big"}}),
        ("[budget] memory_megabytes must be a finite number", "'big'"),
    ),
    "config-number-infinite": Row(
        bad_config({"budget": {"area_mm2": math.inf}}),
        ("[budget] area_mm2 must be a finite number", "inf"),
    ),
    "config-number-nan": Row(
        bad_config({"dataset": {"val_fraction": math.nan}}),
        ("[dataset] val_fraction must be a finite number", "nan"),
    ),
    "config-string-wrong-type": Row(
        bad_config({"score": {"kind": 3}}), ("[score] kind must be a string",)
    ),
    "config-list-wrong-type": Row(
        bad_config({"search": {"ops": [1, 3]}}), ("[search] ops must be a list of names",)
    ),
    "config-unknown-choice": Row(
        bad_config({"space": {"macro": "huge"}}), ("[space] macro must be one of", "'huge'")
    ),
    "config-fraction-out-of-range": Row(
        bad_config({"dataset": {"val_fraction": 0.9}}),
        ("[dataset] val_fraction must be between 0 and 0.5", "0.9"),
    ),
    "config-zero-timesteps": Row(
        bad_config({"score": {"timesteps": 0}}), ("[score] timesteps must be at least 1",)
    ),
    "config-negative-budget": Row(
        bad_config({"budget": {"max_parameters": -5}}),
        ("[budget] max_parameters must be at least 1", "-5"),
    ),
    "config-negative-weight-decay": Row(
        bad_config({"train": {"weight_decay": -5e-4}}),
        ("[train] weight_decay must be 0 or positive", "-0.0005"),
    ),
    "config-memory-budget-below-one-bit": Row(
        bad_config({"budget": {"max_parameters": DELETE, "memory_megabytes": 1e-9}}),
        ("[budget] memory_megabytes = 1e-09 is less than one bit",),
    ),
    "config-negative-seed": Row(bad_config({"seed": -1}), ("seed must be at least 0",)),
    "config-seed-too-large": Row(bad_config({"seed": 2**32}), ("seed must be at most 4294967295",)),
    "config-both-memory-budgets": Row(
        bad_config({"budget": {"memory_megabytes": 1.0}}),
        ("max_parameters or memory_megabytes, not both",),
    ),
    "config-incompatible-sampler": Row(
        bad_config({"search": {"sampler": "cellbycell"}}),
        ("sampler 'cellbycell'", "shared_cell = false"),
    ),
    "config-no-stopping-rule": Row(
        bad_config({"search": {"n_trials": DELETE}}), ("never stops by itself", "--n-trials")
    ),
    "config-device-file": Row(
        lambda ws: ws.optimize(config="/dev/zero"), ("/dev/zero is larger than 1,048,576 bytes",)
    ),
    "config-nested-too-deep": Row(
        config_file("a = " + "[" * 20000 + "]" * 20000 + "\n"), ("nested too deeply",)
    ),
    "config-long-string-cut": Row(
        bad_config({"dataset": {"name": "x" * 500_000}}),
        ("[dataset] name must be one of", "(500,002 characters)"),
    ),
    "config-width-beyond-memory": Row(
        bad_config({"space": {"widths": [1_000_000]}, "budget": {"max_parameters": DELETE}}),
        ("[space] widths = [1000000]", "parameters", "more than this machine's"),
    ),
    "config-timesteps-too-many": Row(
        bad_config({"score": {"timesteps": 10**9}}),
        ("[score] timesteps must be at most 10,000",),
    ),
    "config-cells-too-many": Row(
        bad_config({"space": {"num_cells": 10**10}}),
        ("[space] num_cells: 10,000,000,000 cells", "more than the 64"),
    ),
    "config-final-pool-without-snasnet-head": Row(
        bad_config({"space": {"final_pool": 2}}),
        ("[space] final_pool", "macro 'light' has no such pooling"),
    ),
    "config-cellbycell-num-cells-empty": Row(
        bad_config({"space": {"num_cells": []}, "search": {"sampler": "cellbycell"}}),
        ("[space] num_cells must list at least one value",),
    ),
    "config-cellbycell-only-zero-ops": Row(
        bad_config({"search": {"sampler": "cellbycell", "ops": ["zero"], "n_trials": DELETE}}),
        ("[search] ops = ['zero'] has no op that carries a signal",),
    ),
    "config-hardware-profile-binary": Row(
        lambda ws: ws.optimize(
            config=ws.config(
                {"hardware": {"profile": ws.file("chip.toml", b"\xff\xfe\x00\x01binary")}}
            )
        ),
        ("[hardware] profile", "chip.toml is not a text (UTF-8) file"),
    ),
    "config-dataset-path-not-used": Row(
        bad_config({"dataset": {"path": "data.npz"}}), ("[dataset] path is needed by, and only by",)
    ),
    # architecture strings
    "arch-malformed-cell": Row(
        describe("--macro", "light", "--arch", "0302 003"), ("malformed cell '0302 003'",)
    ),
    "arch-wrong-digit": Row(
        describe("--macro", "light", "--arch", "0302 0030 3003 0005"),
        ("unknown operation 5", "zero, skip, conv1x1, conv3x3, avgpool3x3"),
    ),
    "arch-not-a-digit": Row(
        describe("--macro", "light", "--arch", "0302 0030 3003 000x"), ("malformed cell",)
    ),
    "arch-self-edge": Row(
        describe("--macro", "light", "--arch", "1302 0030 3003 0000"), ("diagonal entry 00",)
    ),
    "arch-two-directions": Row(
        describe("--macro", "light", "--arch", "0302 3030 3003 0000"),
        ("node pair 01", "both a forward and a backward edge"),
    ),
    "arch-wrong-number-of-cells": Row(
        describe("--macro", "light", "--num-cells", "2", "--arch", " / ".join([GOOD_CELL] * 3)),
        ("architecture has 3 cells but the macro has 2",),
    ),
    "arch-empty": Row(describe("--macro", "light", "--arch", ""), ("malformed cell ''",)),
    "arch-too-many-cells-for-images": Row(
        describe("--macro", "light", "--arch", GOOD_CELL, "--num-cells", "40"),
        ("too small for 40 cells",),
    ),
    "autosnn-too-few-blocks": Row(
        describe("--macro", "autosnn-16", "--arch", "SRB_k5,SRB_k5,skip,SRB_k3"),
        ("5 comma-separated blocks, got 4",),
    ),
    "autosnn-unknown-block": Row(
        describe("--macro", "autosnn-16", "--arch", "SRB_k7,SRB_k5,skip,SRB_k3,SRB_k5"),
        ("unknown block 'SRB_k7' at position 1", "SRB_k5"),
    ),
    "autosnn-cell-string": Row(
        describe("--macro", "autosnn-16", "--arch", GOOD_CELL), ("5 comma-separated blocks",)
    ),
    "autosnn-blocks-for-a-cell-macro": Row(
        describe("--macro", "light", "--arch", PAPER_BLOCKS), ("malformed cell",)
    ),
    "autosnn-image-too-small": Row(
        describe("--macro", "autosnn-16", "--arch", PAPER_BLOCKS, "--image-size", "4"),
        ("4x4 images are too small", "at least 8x8"),
    ),
    # budgets nothing can meet
    "budget-cellbycell-nothing-fits": Row(
        bad_config(
            {
                "space": {"num_cells": [2, 3], "shared_cell": False},
                "budget": {"max_parameters": 10},
                "search": {"sampler": "cellbycell", "n_trials": DELETE},
            }
        ),
        ("no candidate fits the budget", "39 cells over skip, conv3x3"),
    ),
    # datasets
    "dataset-npz-missing": Row(
        bad_config({"dataset": {"name": "npz", "path": "/no/such.npz"}}),
        ("dataset file /no/such.npz does not exist",),
    ),
    "dataset-npz-not-a-zip": Row(dataset_file(b"garbage\n"), ("is not a .npz file",)),
    "dataset-npz-wrong-arrays": Row(
        npz_dataset(x=images(10)), ("needs arrays 'images' and 'labels'",)
    ),
    "dataset-npz-float-images": Row(
        npz_dataset(images=images(30, dtype=np.float32), labels=labels(30)),
        ("'images' must be uint8", "float32"),
    ),
    "dataset-npz-constant-images": Row(
        npz_dataset(images=images(30, constant=True), labels=labels(30)), ("constant channel",)
    ),
    "dataset-npz-too-few-images": Row(
        npz_dataset(images=images(3), labels=labels(3)), ("split would be empty",)
    ),
    "dataset-cifar-folder-missing": Row(
        cifar(None), ("CIFAR-10 dataset path", "does not exist", "cifar.html")
    ),
    "dataset-cifar-folder-empty": Row(cifar({}), ("no CIFAR-10 in", "cifar-10-batches-py")),
    "dataset-cifar-download-incomplete": Row(
        cifar(cifar_batches(junk=False)), ("data_batch_2 is missing",)
    ),
    "dataset-cifar-file-corrupted": Row(
        cifar(cifar_batches(junk=True)), ("data_batch_1 is truncated or corrupted",)
    ),
    # storages and studies
    "storage-unknown-scheme": Row(storage(lambda ws: "foo://bar/baz"), ("foo://bar/baz",)),
    "storage-sqlite-file-missing": Row(
        storage(lambda ws: f"sqlite:///{ws.root / 'missing.db'}"),
        ("missing.db does not exist", "optuna create-study"),
    ),
    "storage-sqlite-not-a-database": Row(
        storage(lambda ws: f"sqlite:///{ws.file('garbage.db', b'not sqlite' * 100)}"),
        ("garbage.db",),
    ),
    "storage-postgres-unreachable": Row(
        storage(lambda ws: "postgresql://u:secret@127.0.0.1:1/db"),
        ("127.0.0.1",),
        hidden=("secret",),
    ),
    "storage-sqlite-no-file": Row(
        storage(lambda ws: "sqlite:///"), ("sqlite:/// names no database file",)
    ),
    "storage-sqlite-read-only-url": Row(
        storage(lambda ws: ws.url + "?mode=ro"),
        ("?mode=ro opens the database read-only", "records trials"),
    ),
    "storage-sqlite-a-directory": Row(
        storage(lambda ws: f"sqlite:///{ws.root}"), ("is a directory",)
    ),
    "storage-journal-garbage": Row(
        storage(lambda ws: ws.file("nas.log", "hello\nworld\n")),
        ("nas.log is not an Optuna journal file", "nothing was written"),
    ),
    "storage-journal-is-sqlite": Row(
        storage(lambda ws: str(ws.root / "nas.db"), "--storage-class", "JournalFileBackend"),
        ("is an SQLite database, not a journal file", "sqlite:///"),
    ),
    "storage-journal-file-missing": Row(
        storage(lambda ws: ws.path("missing.log"), "--storage-class", "JournalFileBackend"),
        ("journal file", "missing.log does not exist"),
    ),
    "storage-neither-url-nor-file": Row(
        storage(lambda ws: "nonsense"), ("neither a database URL",)
    ),
    "study-missing": Row(
        lambda ws: ws.optimize(study="nope"), ("study 'nope' does not exist", "studies there: s")
    ),
    "study-other-direction": Row(
        lambda ws: ws.optimize(study=ws.study("m", "minimize")),
        ("has directions ['minimize']", "maximize"),
        study="m",
    ),
    "study-one-direction-for-two-objectives": Row(
        bad_config({"train": {"epochs": 1}}), ("--directions maximize maximize",)
    ),
    "dashboard-empty-storage": Row(empty_storage_dashboard, ("has no studies yet",)),
    # scores and memory
    "score-batch-larger-than-split": Row(
        bad_config({"score": {"batch_size": 100_000}}),
        ("[score] batch_size 100000 is larger than the train split of 'digits'",),
    ),
    "score-repeats-out-of-memory": Row(
        bad_config({"score": {"repeats": 10**12}}), ("[score] repeats", "more than this machine")
    ),
    "score-inits-too-many": Row(
        bad_config({"score": {"inits": 1000}}),
        ("[score] inits must be at most 64 (each scores every candidate once more), got 1000",),
    ),
    "score-device-cuda-without-gpu": Row(
        flags("--device", "cuda"), ("device 'cuda'", "no CUDA GPU"), without_gpu=True
    ),
    # architecture files for `train`
    "train-arch-json-missing": Row(
        train(lambda ws: ws.path("missing.json")), ("missing.json", "No such file")
    ),
    "train-arch-json-not-json": Row(
        train(lambda ws: ws.file("architecture.json", "{architecture")), ("is not JSON",)
    ),
    "train-arch-json-not-an-architecture": Row(
        train(lambda ws: ws.file("architecture.json", '{"hello": 1}')),
        ("not an architecture document",),
    ),
    "train-arch-json-bad-architecture": Row(
        train(lambda ws: architecture_document(ws, architecture="0302 0030")),
        ("architecture document", "malformed cell '0302 0030'"),
    ),
    "train-arch-json-bad-timesteps": Row(
        train(lambda ws: architecture_document(ws, timesteps=0)),
        ("timesteps must be a positive integer",),
    ),
    "train-arch-json-timesteps-too-many": Row(
        train(lambda ws: architecture_document(ws, timesteps=10**9)),
        ("timesteps must be at most 10,000, got 1,000,000,000",),
    ),
    "train-arch-json-width-beyond-memory": Row(
        train(lambda ws: architecture_document(ws, macro={"width": 10**6})),
        ("width 1000000", "parameters", "more than this machine's"),
    ),
    "train-arch-json-final-pool-zero": Row(
        train(lambda ws: architecture_document(ws, macro={"head": "snasnet", "final_pool": 0})),
        ("macro final_pool must be a positive integer, got 0",),
    ),
    "train-arch-json-negative-hidden": Row(
        train(lambda ws: architecture_document(ws, macro={"hidden": -5})),
        ("macro hidden must be a positive integer, got -5",),
    ),
    "train-arch-json-no-voters": Row(
        train(lambda ws: architecture_document(ws, macro={"voters_per_class": 0})),
        ("macro voters_per_class must be a positive integer, got 0",),
    ),
    "train-arch-json-unknown-macro": Row(
        train(lambda ws: architecture_document(ws, macro={"name": "nonexistent"})),
        ("macro name 'nonexistent' is not a macro of this search space", "light"),
    ),
    "train-arch-json-unknown-head": Row(
        train(lambda ws: architecture_document(ws, macro={"head": "bogus"})),
        ("macro head 'bogus' is not one of snasnet, gap",),
    ),
    "train-arch-json-nested-too-deep": Row(
        train(lambda ws: ws.file("architecture.json", "[" * 20000 + "]" * 20000)),
        ("is nested too deeply",),
    ),
    # the other commands and flags
    "export-missing-trial": Row(
        lambda ws: [
            "export",
            "--storage",
            ws.url,
            "--study-name",
            STUDY,
            "--trial",
            "999",
            "--out",
            ws.path("exported"),
        ],
        ("study 's' has no trial 999",),
    ),
    "export-out-empty": Row(
        lambda ws: ["export", "--storage", ws.url, "--study-name", STUDY, "--out", ""],
        ("--out is empty: name the folder to export into",),
    ),
    "export-missing-study": Row(
        lambda ws: [
            "export",
            "--storage",
            ws.url,
            "--study-name",
            "nope",
            "--out",
            ws.path("exported"),
        ],
        ("study 'nope' does not exist",),
    ),
    "compare-sampler-twice": Row(
        lambda ws: [
            "compare",
            "--config",
            ws.config({"compare": {"samplers": ["tpe", "random", "tpe"]}}),
            "--out",
            ws.path("report"),
        ],
        ("[compare] samplers lists a sampler twice", "['tpe', 'random', 'tpe']"),
    ),
    "compare-unknown-sampler": Row(
        lambda ws: [
            "compare",
            "--config",
            ws.config({"compare": {"samplers": ["tpe", "bogus"]}}),
            "--out",
            ws.path("report"),
        ],
        ("[compare] samplers must be one of", "'bogus'"),
    ),
    "dashboard-artifact-dir-missing": Row(
        lambda ws: ["dashboard", "--storage", ws.url, "--artifact-dir", ws.path("typo/path")],
        ("--artifact-dir", "typo/path is not an existing folder"),
    ),
    "dashboard-journal-garbage": Row(
        lambda ws: ["dashboard", "--storage", ws.file("nas.log", "not a journal\n")],
        ("nas.log is not an Optuna journal file",),
    ),
    "describe-weight-bits-above-64": Row(
        describe("--macro", "light", "--arch", GOOD_CELL, "--weight-bits", "100"),
        ("--weight-bits must be at most 64, got 100",),
    ),
    "train-weight-bits-above-64": Row(
        train(architecture_document, "--weight-bits", "65"),
        ("--weight-bits must be at most 64, got 65",),
    ),
    "train-out-existing-file": Row(
        lambda ws: [*train(architecture_document)(ws), "--out", ws.file("taken", "mine\n")],
        ("--out", "taken: exists and is not a folder"),
    ),
    "train-out-under-a-file": Row(
        lambda ws: [*train(architecture_document)(ws), "--out", ws.file("f", "x\n") + "/sub"],
        ("--out", "cannot be created", "is a file, not a folder"),
    ),
    "export-out-existing-file": Row(
        lambda ws: [
            "export",
            "--storage",
            ws.url,
            "--study-name",
            STUDY,
            "--out",
            ws.file("f", ""),
        ],
        ("--out", "exists and is not a folder"),
    ),
    "export-out-under-a-file": Row(
        lambda ws: [
            "export",
            "--storage",
            ws.url,
            "--study-name",
            STUDY,
            "--out",
            ws.file("f", "x\n") + "/sub",
        ],
        ("cannot be created", "is a file, not a folder"),
    ),
    "dashboard-port-out-of-range": Row(
        lambda ws: ["dashboard", "--storage", ws.url, "--port", "70000"],
        ("--port must be between 1 and 65535",),
    ),
    "n-trials-zero": Row(flags("--n-trials", 0), ("--n-trials must be positive, got 0",)),
    "n-trials-negative": Row(flags("--n-trials", -3), ("--n-trials must be positive, got -3",)),
    "threads-zero": Row(flags("--threads", 0), ("--threads must be positive, got 0",)),
    "seed-negative": Row(flags("--seed", -1), ("--seed must be between 0 and 4294967295",)),
    "seed-too-large": Row(flags("--seed", 2**32), ("--seed must be between 0 and 4294967295",)),
    "timeout-negative": Row(flags("--timeout", -1), ("--timeout must be positive",)),
    "heartbeat-zero": Row(flags("--heartbeat", 0), ("--heartbeat must be positive",)),
    "heartbeat-too-long": Row(
        flags("--heartbeat", 99999999999), ("--heartbeat must be at most 3,600",)
    ),
    "threads-beyond-cpus": Row(
        flags("--threads", 100000), ("--threads must be at most", "(the CPUs of this machine)")
    ),
    "dataset-npz-not-a-regular-file": Row(
        lambda ws: ws.optimize(config=ws.config({"dataset": {"name": "npz", "path": "/dev/zero"}})),
        ("dataset file /dev/zero is not a regular file",),
    ),
    "supernet-checkpoint-dir-under-a-file": Row(
        lambda ws: ws.optimize(
            config=ws.config(AUTOSNN, {"supernet": {"checkpoint_dir": ws.file("f", "x") + "/ck"}})
        ),
        ("[supernet] checkpoint_dir", "cannot be created", "is a file, not a folder"),
    ),
}


def check_row(row: Row, code: int, out: str, err: str, ws: Workspace) -> None:
    assert code == 2, err
    line = one_line(err)
    assert line.startswith(PREFIX), line
    for word in row.words:
        assert word in line, line
    for word in row.hidden:
        assert word not in out + err
    assert ws.states(row.study) == []  # refused before any trial


@pytest.mark.parametrize("name", list(ROWS))
def test_rows(name, ws, capsys):
    row = ROWS[name]
    if row.without_gpu and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    argv = row.argv(ws)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    check_row(row, code, out, err, ws)


AS_A_USER = (
    "config-invalid-toml",
    "config-file-is-a-directory",
    "arch-wrong-digit",
    "autosnn-unknown-block",
    "dataset-cifar-folder-missing",
    "storage-postgres-unreachable",
    "seed-negative",
)


def run(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """An installed command, as a user runs it."""
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"OMP_NUM_THREADS": "1", "PATH": str(BIN)},
    )


@pytest.mark.parametrize("name", AS_A_USER)
def test_rows_as_a_user_runs_them(name, ws):
    row = ROWS[name]
    done = run(BIN / "optuna-spikenas", *row.argv(ws))
    check_row(row, done.returncode, done.stdout, done.stderr, ws)


# --- rows with tests of their own --------------------------------------------------------------


def test_row_budget_nothing_fits(ws, capsys):
    """Every trial over budget: the search runs, each trial is complete and infeasible with its
    constraint recorded, and the summary says that nothing feasible was found."""
    config = ws.config({"budget": {"max_parameters": 10}})
    assert main(ws.optimize("--quiet", "--no-artifacts", config=config)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "3 trials: 0 scored, 0 duplicates reused, 3 invalid or over budget" in out
    assert "no feasible architecture was found; loosen the budget" in out
    trials = ws.trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for trial in trials:
        assert trial.value == -math.inf and trial.user_attrs["feasible"] is False
        assert "memory" in trial.user_attrs["broken_budgets"]
        assert trial.constraints["memory"] > 0


def test_row_study_made_with_other_settings(ws, capsys):
    """A study run with one config, then with another whose value-defining settings differ: the
    second run is refused in one line naming the keys, before any trial; settings that do not
    change values (here n_trials) stay free."""
    assert main(ws.optimize("--quiet", "--no-artifacts")) == 0
    capsys.readouterr()
    other = ws.config({"score": {"timesteps": 3}, "dataset": {"val_fraction": 0.2}}, name="o.toml")
    assert main(ws.optimize("--quiet", "--no-artifacts", config=other)) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(PREFIX)
    assert "holds trials made with other value-defining settings" in line
    assert "[score] timesteps 2 there, 3 here" in line
    assert "[dataset] val_fraction 0.1 there, 0.2 here" in line
    assert len(ws.trials()) == 3  # nothing ran
    more = ws.config({"search": {"n_trials": 5}}, name="more.toml")
    assert main(ws.optimize("--quiet", "--no-artifacts", config=more)) == 0
    assert len(ws.trials()) == 8


def test_row_compare_rerun_with_other_settings(ws, capsys):
    """`compare` into the same --out after a value-defining setting changed: no stale run is
    reused; each is started again, and the log says why."""
    config = {"compare": {"samplers": ["random"], "seeds": [0], "n_trials": 2}}
    first = ws.config(config, name="c1.toml")
    out = ws.path("report")
    assert main(["compare", "--config", first, "--out", out, "--no-png", "--no-artifacts"]) == 0
    again = ["compare", "--config", first, "--out", out, "--no-png", "--no-artifacts"]
    capsys.readouterr()
    assert main(again) == 0
    assert "finished earlier (2 trials, budget 2 trials), reused" in capsys.readouterr().err
    changed = ws.config(config, {"score": {"timesteps": 3}}, name="c2.toml")
    assert main(["compare", "--config", changed, "--out", out, "--no-png", "--no-artifacts"]) == 0
    err = capsys.readouterr().err
    assert "made with other value-defining settings, started again" in err
    study = optuna.load_study(
        study_name="compare-random-seed0", storage=f"sqlite:///{out}/compare.db"
    )
    assert {t.user_attrs["config_fingerprint"] for t in study.trials} == {
        study.user_attrs["config_fingerprint"]
    }
    assert len(study.trials) == 2


def test_row_export_over_a_user_file(ws, capsys):
    """`export --out DIR` where DIR holds a file no export wrote (the user's own model.py), or
    an exported file edited since: refused in one line before anything is written, the file
    byte-for-byte unchanged; exporting again over its own files is fine; --force overwrites."""
    assert main(ws.optimize("--quiet")) == 0
    export = ["export", "--storage", ws.url, "--study-name", STUDY, "--out"]
    mine = ws.file("best/model.py", b"# my own model, not to be lost\n")
    capsys.readouterr()
    assert main([*export, ws.path("best")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "model.py exists and was not written by an earlier export" in line and "--force" in line
    assert Path(mine).read_bytes() == b"# my own model, not to be lost\n"
    assert not Path(ws.path("best/architecture.json")).exists()
    assert main([*export, ws.path("fresh")]) == 0
    assert main([*export, ws.path("fresh")]) == 0  # its own files: replaced without a word
    Path(ws.path("fresh/model.py")).write_text("# edited by hand\n")
    capsys.readouterr()
    assert main([*export, ws.path("fresh")]) == 2
    assert "fresh/model.py exists" in one_line(capsys.readouterr().err)
    assert Path(ws.path("fresh/model.py")).read_text() == "# edited by hand\n"
    assert main([*export, ws.path("fresh"), "--force"]) == 0
    assert "def build_model" in Path(ws.path("fresh/model.py")).read_text()


def test_row_score_minus_inf(ws, capsys):
    """Identical images: every network's spike patterns are identical, the kernel is singular
    and the score is -inf. The trials are complete and feasible, the search goes on."""
    same = np.repeat(images(1)()[:1], 60, axis=0)
    path = ws.npz("same.npz", images=same, labels=labels(60)())
    config = ws.config({"dataset": {"name": "npz", "path": path}, "score": {"batch_size": 8}})
    assert main(ws.optimize("--quiet", "--no-artifacts", config=config)) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "3 trials: 3 scored" in out
    assert "no architecture within the budget got a finite score" in out  # not "loosen it"
    trials = ws.trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.value == -math.inf and t.user_attrs["feasible"] for t in trials)


def test_row_score_nan(ws, capfd, monkeypatch):
    """A scorer that returns NaN: each such trial fails (Optuna's rule for a NaN value) with
    the reason in ``score_error``, and the search goes on to its last trial."""
    from optuna_spikenas import score

    monkeypatch.setattr(score, "sahd_score", lambda *args, **kwargs: math.nan)
    assert main(ws.optimize("--quiet", "--no-artifacts")) == 0
    out, err = capfd.readouterr()
    assert "no architecture within the budget got a finite score" in out
    assert "Traceback" not in err
    trials = ws.trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert all(t.user_attrs["score_error"].endswith("is NaN") for t in trials)


def test_row_supernet_checkpoint_corrupted(ws, capsys):
    """A truncated super-network checkpoint: refused with its name before any trial."""
    config = ws.config(AUTOSNN, {"supernet": {"checkpoint_dir": ws.path("checkpoints")}})
    assert main(ws.optimize("--quiet", "--no-artifacts", config=config)) == 0
    before = [(t.number, t.state) for t in ws.trials()]
    assert before == [(0, TrialState.COMPLETE)]
    (checkpoint,) = (ws.root / "checkpoints").glob("*.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    capsys.readouterr()
    assert main(ws.optimize("--quiet", "--no-artifacts", config=config)) == 2
    line = one_line(capsys.readouterr().err)
    assert str(checkpoint) in line and "unusable" in line and "delete it to retrain" in line
    assert [(t.number, t.state) for t in ws.trials()] == before


def test_row_train_checkpoint_corrupted(ws, capsys):
    """``train`` after an interruption finds a damaged checkpoint: refused, the file is kept."""
    argv = train(architecture_document)(ws)
    assert main(argv) == 0
    checkpoint = ws.root / "trained" / "checkpoint.pt"
    damaged = checkpoint.read_bytes()[:50]
    checkpoint.write_bytes(damaged)
    capsys.readouterr()
    assert main([*argv, "--epochs", "2"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "checkpoint" in line and "cannot be read" in line and "use --fresh" in line
    assert checkpoint.read_bytes() == damaged


def test_row_dashboard_port_in_use(ws):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            BIN / "optuna-spikenas", "dashboard", "--storage", ws.url, "--port", port, timeout=60
        )
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert f"cannot serve on 127.0.0.1:{port}" in line and "Address already in use" in line


def completed(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT count(*) FROM trials WHERE state = 'COMPLETE'"
        ).fetchone()[0]


def test_row_sigint_during_search(ws):
    """Ctrl-C in the middle of a search: exit 130, one line, completed trials kept, the trial it
    stopped failed, none left RUNNING."""
    process = subprocess.Popen(
        [str(BIN / "optuna-spikenas"), *ws.optimize("--n-trials", 500, "--quiet")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"OMP_NUM_THREADS": "1", "PATH": str(BIN)},
    )
    try:
        deadline = time.monotonic() + 120
        while completed(ws.root / "nas.db") < 2:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert one_line(err) == "interrupted: every completed trial is saved in the study"
    states = [t.state for t in ws.trials()]
    assert TrialState.RUNNING not in states and states.count(TrialState.COMPLETE) >= 2
    assert set(states) <= {TrialState.COMPLETE, TrialState.FAIL}
    assert states.count(TrialState.FAIL) <= 1


def test_row_sigint_before_search(ws, capsys, monkeypatch):
    """Ctrl-C while the data loads or the super-network trains: exit 130, one line."""
    from optuna_spikenas import objective_factory

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(objective_factory, "make_objective", interrupted)
    capsys.readouterr()
    assert main(ws.optimize()) == 130
    assert one_line(capsys.readouterr().err) == "optuna-spikenas: interrupted"
    assert ws.states() == []


# --- the catalogue and the tests list the same rows ----------------------------------------------


def rows_under_test() -> set[str]:
    own = {
        name.removeprefix("test_row_").replace("_", "-")
        for name in globals()
        if name.startswith("test_row_")
    }
    return set(ROWS) | own


def test_catalogue_lists_exactly_the_tested_rows():
    found = re.findall(r"^\| `([a-z0-9-]+)`( †)? \|", DOC.read_text(), flags=re.MULTILINE)
    rows = [row for row, _ in found]
    assert len(rows) == len(set(rows)), "a row is listed twice"
    assert len(rows) >= 25
    assert set(rows) == rows_under_test()
    assert {row for row, dagger in found if dagger} == set(AS_A_USER)  # † rows: subprocess too


# --- signals, dead workers and a locked database (subprocesses, as a user runs them) -------------


def journal_study(ws: Workspace) -> str:
    """A journal file with study ``s`` (maximize), as `optuna create-study` makes it."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = ws.path("nas.log")
    storage = JournalStorage(JournalFileBackend(path))
    optuna.create_study(storage=storage, study_name=STUDY, direction="maximize")
    return path


def opened(storage: str) -> optuna.Study:
    """Study ``s`` of an SQLite URL or a journal file."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if not storage.startswith("sqlite"):
        storage = JournalStorage(JournalFileBackend(storage))
    return optuna.load_study(study_name=STUDY, storage=storage)


def trial_states(storage: str) -> list[TrialState]:
    return [t.state for t in opened(storage).trials]


def started_search(ws: Workspace, storage: str, *extra: object, env: dict | None = None):
    argv = ws.optimize("--n-trials", 5000, "--quiet", *extra)
    argv[argv.index("--storage") + 1] = storage
    return subprocess.Popen(
        [str(BIN / "optuna-spikenas"), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"OMP_NUM_THREADS": "1", "PATH": str(BIN), **(env or {})},
    )


def wait_for_trials(storage: str, process: subprocess.Popen, n: int = 1) -> None:
    deadline = time.monotonic() + 120
    while len(trial_states(storage)) < n:
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)


def test_row_sigterm_during_search(ws):
    """SIGTERM (kill, systemd, SLURM) at 20 random moments of a search, on SQLite and on a
    journal file: exit 143 with one line, no trial left RUNNING, completed trials kept, and the
    journal's lock file never left behind (the next worker would wait 30 s for it)."""
    rng = np.random.default_rng(15)
    journal = f"{journal_study(ws)}"
    for attempt in range(20):
        storage = ws.url if attempt % 2 == 0 else journal
        before = len(trial_states(storage))
        process = started_search(ws, storage, "--no-artifacts")
        try:
            wait_for_trials(storage, process, before + 1)
            time.sleep(rng.uniform(0.0, 1.5))
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
        finally:
            process.kill()
        assert process.returncode == 143, (attempt, err)
        assert one_line(err) == "terminated: every completed trial is saved in the study"
        states = trial_states(storage)
        assert TrialState.RUNNING not in states, (attempt, states)
        assert set(states) <= {TrialState.COMPLETE, TrialState.FAIL}
        assert not Path(f"{journal}.lock").exists()  # the journal's lock file is let go


def test_row_journal_worker_killed(ws, capsys):
    """A journal worker killed by SIGKILL leaves its trial RUNNING (journals have no
    heartbeat); `recover` fails it, since its process is gone, and leaves alone a RUNNING
    trial whose worker runs elsewhere unless told --all."""
    from optuna_spikenas.recovery import WORKER_KEY

    journal = journal_study(ws)
    process = started_search(ws, journal, "--no-artifacts")
    try:
        wait_for_trials(journal, process, 3)
        process.send_signal(signal.SIGSTOP)  # between two writes, as a kill finds it
        running = opened(journal).get_trials(states=(TrialState.RUNNING,))
        assert all(WORKER_KEY in t.system_attrs for t in running), running  # recorded at once
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert trial_states(journal).count(TrialState.RUNNING) == 1
    study = opened(journal)
    other = study.ask()  # a trial another host's worker runs
    study._storage.set_trial_system_attr(other._trial_id, WORKER_KEY, "elsewhere:12:34")
    capsys.readouterr()
    assert main(["recover", "--storage", journal, "--study-name", STUDY]) == 0
    out = capsys.readouterr().out
    assert "failed (was RUNNING, its worker is gone)" in out
    assert f"trial {other.number}: left RUNNING (its worker elsewhere:12:34 is on another" in out
    assert "1 trial(s) failed, 1 left RUNNING; --all fails these too" in out
    assert trial_states(journal).count(TrialState.RUNNING) == 1
    assert main(["recover", "--storage", journal, "--study-name", STUDY, "--all"]) == 0
    assert TrialState.RUNNING not in trial_states(journal)
    assert main(ws.optimize("--quiet", "--no-artifacts", "--n-trials", 2)) == 0  # SQLite: fine


def test_row_storage_journal_truncated(ws, capsys):
    """A journal whose last record was cut off: reading it is fine (Optuna skips the cut
    record), but a run that would append to it is refused, the file unchanged."""
    journal = journal_study(ws)
    cut = Path(journal).read_bytes() + b'{"op_code": 4, "worker'
    Path(journal).write_bytes(cut)
    argv = ws.optimize("--no-artifacts")
    argv[argv.index("--storage") + 1] = journal
    capsys.readouterr()
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert "ends in a cut-off record" in line and "sed -i '$d'" in line
    assert Path(journal).read_bytes() == cut


def test_row_storage_locked_mid_run(ws):
    """Another process locks the SQLite database mid-run: a lock shorter than the wait is
    waited out (the run ends normally); one held longer ends the run with one line, exit 1."""

    def hold_lock(seconds: float) -> None:
        with sqlite3.connect(ws.root / "nas.db", isolation_level=None) as db:
            db.execute("BEGIN EXCLUSIVE")
            time.sleep(seconds)
            db.execute("COMMIT")

    for busy, held, code in (("30", 1.5, None), ("1", 15.0, 1)):
        before = len(trial_states(ws.url))
        process = started_search(ws, ws.url, env={"SPIKENAS_SQLITE_BUSY_SECONDS": busy})
        try:
            wait_for_trials(ws.url, process, before + 2)  # the search runs
            hold_lock(held)
            if code is None:
                wait_for_trials(ws.url, process, len(trial_states(ws.url)) + 2)
                process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            process.kill()
        if code is None:
            assert process.returncode == 130, err  # it lived through the lock
        else:
            assert process.returncode == 1
            assert "the database stayed locked by another process for over 1 s" in one_line(err)


@pytest.mark.parametrize("content", [b"", b"SQLite-app"])
def test_row_storage_sqlite_not_optuna(ws, capsys, content):
    """Another application's SQLite database, or an empty file: refused in one line, the file
    byte-for-byte unchanged and nothing created beside it."""
    path = ws.root / "app.db"
    if content:
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
            db.execute("INSERT INTO users VALUES (1, 'ada')")
            db.commit()
    else:
        path.write_bytes(b"")
    argv = ws.optimize()
    argv[argv.index("--storage") + 1] = f"sqlite:///{path}"
    before, files = path.read_bytes(), sorted(ws.root.iterdir())
    capsys.readouterr()
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert ("its tables: users" if content else "is empty, not an Optuna database") in line
    assert path.read_bytes() == before and sorted(ws.root.iterdir()) == files


def read_only_even_for_root(monkeypatch, module: Any, path: Path) -> None:
    """Root may write to a read-only file: there, answer ``module``'s permission checks for
    ``path`` as for any other user."""
    import os

    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(
            module.os,
            "access",
            lambda p, mode: (
                real(p, mode) and not (mode & os.W_OK and Path(p).resolve() == path.resolve())
            ),
        )


def test_row_storage_sqlite_read_only_file(ws, capsys, monkeypatch):
    """A database file without write permission: refused in one line before any trial (as root,
    who may write anyway, the permission check is answered as for any other user)."""

    from optuna_spikenas import storage

    path = ws.root / "nas.db"
    path.chmod(0o444)
    read_only_even_for_root(monkeypatch, storage, path)
    capsys.readouterr()
    assert main(ws.optimize()) == 2
    assert "database file" in one_line(capsys.readouterr().err)
    assert ws.states() == []
    path.chmod(0o644)


def test_row_export_out_read_only(ws, capsys, monkeypatch):
    """`export --out` in a read-only folder: refused in one line, nothing written."""

    from optuna_spikenas import paths

    assert main(ws.optimize("--quiet", "--n-trials", 1)) == 0
    locked = ws.root / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    read_only_even_for_root(monkeypatch, paths, locked)
    capsys.readouterr()
    argv = ["export", "--storage", ws.url, "--study-name", STUDY, "--out", str(locked / "x")]
    assert main(argv) == 2
    assert "cannot be created" in one_line(capsys.readouterr().err)
    assert list(locked.iterdir()) == []
    locked.chmod(0o755)


def test_row_train_out_read_only(ws, capsys, monkeypatch):
    """`train --out` in a read-only folder: refused in one line before any training."""
    from optuna_spikenas import paths

    locked = ws.root / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    read_only_even_for_root(monkeypatch, paths, locked)
    capsys.readouterr()
    assert main([*train(architecture_document)(ws), "--out", str(locked / "run")]) == 2
    assert "cannot be created" in one_line(capsys.readouterr().err)
    assert list(locked.iterdir()) == []
    locked.chmod(0o755)


def export_weights(ws: Workspace, weights: str) -> int:
    """Export the study's best trial with ``--weights weights``; the exit status."""
    export = ["export", "--storage", ws.url, "--study-name", STUDY, "--out", ws.path("out")]
    return main([*export, "--weights", weights])


def test_row_export_weights_checked(ws, capsys):
    """`export --weights`: NaN weights, pickled objects, /dev/null and a folder are refused in
    one line each, and nothing is written."""
    assert main(ws.optimize("--quiet", "--n-trials", 1)) == 0
    capsys.readouterr()
    for state, words in (
        ({"w": torch.tensor([1.0, math.nan])}, "w holds NaN or infinite values"),
        ({"w": Path("pickled")}, "holds pickled objects other than tensors"),
    ):
        torch.save(state, ws.path("weights.pt"))
        assert export_weights(ws, ws.path("weights.pt")) == 2
        assert words in one_line(capsys.readouterr().err)
    for path, words in (("/dev/null", "is not a regular file"), (str(ws.root), "is a folder")):
        assert export_weights(ws, path) == 2
        assert words in one_line(capsys.readouterr().err)
    assert not Path(ws.path("out")).exists()


# --- the Python API --------------------------------------------------------------------------


def api_config(ws: Workspace, *changes: dict[str, Any]):
    from optuna_spikenas.config import load_config

    return load_config(ws.config(*changes))


def test_row_api_minimize_study(ws):
    """An objective run by a study that minimizes: refused when it runs, no value written."""
    from optuna_spikenas.config import ConfigError
    from optuna_spikenas.objective import SpikeNASObjective

    objective = SpikeNASObjective(api_config(ws))
    study = optuna.create_study(direction="minimize")
    with pytest.raises(ConfigError, match=r"has directions \['minimize'\].*maximize"):
        study.optimize(objective, n_trials=1)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_row_api_cellbycell_contradicts_objective(ws):
    """A CellByCellSampler built with settings other than the objective's config: refused,
    naming each; make_sampler builds one that agrees."""
    from optuna_spikenas.config import ConfigError
    from optuna_spikenas.objective import SpikeNASObjective
    from optuna_spikenas.samplers import CellByCellSampler, make_sampler

    config = api_config(
        ws,
        {"search": {"sampler": "cellbycell", "n_trials": DELETE}, "budget": DELETE},
        {"space": {"shared_cell": False}},
    )
    objective = SpikeNASObjective(config)
    sampler = CellByCellSampler(ops=("skip", "conv1x1"), max_cells=3, width=16)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    with pytest.raises(ConfigError) as refused:
        study.optimize(objective, n_trials=1)
    message = str(refused.value)
    assert "CellByCellSampler contradicts the objective's config" in message
    for words in (
        "width 16 here, widths [4] there",
        "max_cells 3 here, 2 there",
        "ops ['skip', 'conv1x1'] here, ['skip', 'conv3x3'] there",
    ):
        assert words in message
    agreeing = optuna.create_study(
        direction="maximize", sampler=make_sampler(
            "cellbycell", 0, space=objective.space, fits_budget=objective.fits_budget
        )
    )
    agreeing.optimize(objective, n_trials=1)
    assert agreeing.trials[0].state == TrialState.COMPLETE


def test_row_api_cellbycell_bad_ops():
    """``CellByCellSampler(ops="conv3x3")`` (a string), no ops, or only 'zero': one sentence
    saying what it wants, not "unknown operation 'c'"."""
    from optuna_spikenas.samplers import CellByCellSampler

    with pytest.raises(ValueError, match=r"ops must be a list of operation names, e.g\. \['conv"):
        CellByCellSampler(ops="conv3x3")
    for ops in ((), ("zero",)):
        with pytest.raises(ValueError, match="has no op that carries a signal"):
            CellByCellSampler(ops=ops)


def test_row_api_objective_given_a_path(ws):
    """``SpikeNASObjective("study.toml")``: says it takes a Config and how to load one."""
    from optuna_spikenas.autosnn_objective import AutoSNNObjective
    from optuna_spikenas.objective import SpikeNASObjective
    from optuna_spikenas.objective_factory import make_objective

    for build in (SpikeNASObjective, AutoSNNObjective, make_objective):
        with pytest.raises(
            TypeError, match=r"takes a Config, e\.g\. .*load_config\('study.toml'\)"
        ):
            build("study.toml")
