"""The command line as a user runs it: a real study, `describe`'s anchors, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from spikesim_reference import layers_of, spikesim

from optuna_spikenas.cli import main

BIN = Path(sys.executable).parent
OPTUNA = str(BIN / "optuna")
SPIKENAS = str(BIN / "optuna-spikenas")
TINY_TOML = """
seed = 1
[dataset]
name = "digits"
[space]
macro = "light"
widths = [4]
[score]
batch_size = 16
repeats = 1
timesteps = 2
[budget]
max_parameters = 6000
[search]
n_trials = 12
"""


def run(program: str, *args, check: bool = False) -> subprocess.CompletedProcess:
    """Run one of the installed commands as a user would."""
    argv = [*program.split(), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def create_study(storage, name: str, *extra: str) -> None:
    run(OPTUNA, "create-study", "--storage", storage, "--study-name", name, *extra,
        "--direction", "maximize", check=True)


@pytest.fixture
def study_db(tmp_path):
    """A study made by Optuna's own CLI, and a small config."""
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    create_study(url, "s")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    return url, config


def test_optimize_runs_a_study_made_by_optuna_create_study(study_db):
    url, config = study_db
    result = run(SPIKENAS, "optimize", "--storage", url, "--study-name", "s", "--config", config,
                 "--quiet")
    assert result.returncode == 0, result.stderr
    assert "best trial" in result.stdout
    assert f"optuna-spikenas dashboard --storage {url}" in result.stdout
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.trials) == 12
    artifacts = Path(url[len("sqlite:///"):]).with_name("nas-artifacts")
    # architecture JSON, diagram and its thumbnail per trial; spikes per layer where measured
    measured = sum("spikes_per_image" in t.user_attrs for t in study.trials)
    assert measured and len(list(artifacts.iterdir())) == 3 * 12 + measured
    best = run(OPTUNA, "best-trial", "--storage", url, "--study-name", "s", "-f", "json")
    shown = json.loads(best.stdout)
    assert shown["value"] == {"score": study.best_value}  # named by save_study_figures
    assert shown["user_attrs"]["feasible"] is True
    assert shown["user_attrs"]["memory_bits"] <= 6000 * 32


def test_optimize_without_artifacts_writes_none(study_db, tmp_path):
    url, config = study_db
    assert main(["optimize", "--storage", url, "--study-name", "s", "--config", str(config),
                 "--n-trials", "2", "--quiet", "--no-artifacts"]) == 0
    assert not (tmp_path / "nas-artifacts").exists()
    study = optuna.load_study(study_name="s", storage=url)
    assert all("artifacts:" not in key for t in study.trials for key in t.system_attrs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--storage", "sqlite:///missing.db"], "does not exist"),
        (["--port", "0"], "--port must be between 1 and 65535"),
        (["--storage", "nonsense"], "neither a database URL"),
    ],
)
def test_dashboard_bad_input_is_one_line(study_db, capsys, args, message):
    url, _ = study_db
    argv = ["dashboard", "--storage", url, *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_dashboard_refuses_an_empty_storage(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.storages.RDBStorage(url)  # a database with no study
    assert main(["dashboard", "--storage", url]) == 2
    assert "has no studies yet" in capsys.readouterr().err


def describe_json(capsys, *args) -> dict:
    assert main(["describe", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_describe_reproduces_snasnet_parameter_counts(capsys):
    c100 = describe_json(capsys, "--macro", "snasnet-cifar100", "--arch", "0302 0030 3003 0000")
    assert abs(c100["parameters"] / 1e6 - 20.62) <= 0.01
    c10 = describe_json(
        capsys, "--macro", "snasnet-cifar10", "--arch", "0303 0030 2002 0200", "--final-pool", "4"
    )
    assert abs(c10["parameters"] / 1e6 - 19.52) <= 0.01
    eight = describe_json(
        capsys, "--macro", "snasnet-cifar10", "--arch", "0303 0030 2002 0200", "--weight-bits", "8"
    )
    assert eight["memory_bits"] == eight["parameters"] * 8


def test_describe_with_hardware_adds_costs_and_a_per_layer_breakdown(capsys):
    args = ["--macro", "light", "--arch", "0302 0030 3003 0000", "--weight-bits", "8"]
    info = describe_json(capsys, *args, "--hardware", "spikesim-64")
    assert info["profile"] == "spikesim-64" and info["weight_bits"] == 8
    layers = info["layers"]
    assert [layer["name"] for layer in layers][:2] == ["stem", "cell1.edge01.conv3x3"]
    memory = sum(layer["memory_area_um2"] for layer in layers)
    assert info["area_mm2"] == pytest.approx((info["tile_area_um2"] + memory) / 1e6)
    assert info["tiles"] == -(-sum(layer["pes"] for layer in layers) // 8)
    assert info["energy_uj"] == pytest.approx(sum(layer["energy_pj"] for layer in layers) / 1e6)
    wider = describe_json(capsys, *args, "--hardware", "spikesim-64", "--width", "128")
    assert wider["energy_uj"] > info["energy_uj"] and wider["area_mm2"] > info["area_mm2"]
    other = describe_json(capsys, *args, "--hardware", "neurosim-128")
    assert other["profile"] == "neurosim-128" and other["energy_uj"] != info["energy_uj"]
    assert main(["describe", *args, "--hardware", "spikesim-64-sliced"]) == 0
    table = capsys.readouterr().out
    assert "PE mm²" in table and "tile periphery + empty PE slots" in table


@pytest.mark.parametrize(
    "macro, cell",
    [("light", "0334 0023 0000 0000"), ("snasnet-cifar10", "0303 0030 2002 0200")],
)
def test_describe_hardware_is_spikesims_formulas_and_latency_grows_with_width(capsys, macro, cell):
    args = ["--macro", macro, "--arch", cell, "--hardware", "spikesim-64", "--weight-bits", "8"]
    narrow = describe_json(capsys, *args, "--timesteps", "5")
    wide = describe_json(capsys, *args, "--timesteps", "5", "--width", str(2 * narrow["width"]))
    for info in (narrow, wide, describe_json(capsys, *args, "--timesteps", "2")):
        reference = spikesim(layers_of(info["layers"]), time_steps=info["timesteps"])
        assert info["area_mm2"] == pytest.approx(reference.area_um2 / 1e6, rel=0.01)
        assert info["latency_ms"] == pytest.approx(reference.latency_ns / 1e6, rel=0.01)
        assert info["energy_uj"] == pytest.approx(reference.energy_pj / 1e6, rel=0.01)
    # Twice the width (light: 16 -> 32): every output channel is one more crossbar read.
    assert wide["latency_ms"] >= 1.8 * narrow["latency_ms"]


HARDWARE_TOML = TINY_TOML.replace(
    "max_parameters = 6000",
    "weight_bits = 8\nmax_parameters = 6000\narea_mm2 = 1.0\nlatency_ms = 0.3\nenergy_uj = 0.5",
)


def test_optuna_trials_shows_which_budget_each_infeasible_trial_broke(tmp_path):
    url = f"sqlite:///{tmp_path / 'hw.db'}"
    create_study(url, "hw")
    config = tmp_path / "hw.toml"
    config.write_text(HARDWARE_TOML)
    result = run(SPIKENAS, "optimize", "--storage", url, "--study-name", "hw", "--config", config,
                 "--quiet")
    assert result.returncode == 0, result.stderr
    assert "hardware" in result.stdout and "mm²" in result.stdout
    shown = run(OPTUNA, "trials", "--storage", url, "--study-name", "hw", "-f", "json", "--flatten")
    rows = json.loads(shown.stdout)
    assert len(rows) == 12
    broken = [r for r in rows if r["user_attrs_feasible"] is False]
    assert broken, "the budgets are tight enough that some of 12 random trials break them"
    for row in rows:
        names = [n for n in ("memory", "area", "latency", "energy")
                 if row[f"user_attrs_constraint_{n}"] > 0]
        assert row["user_attrs_broken_budgets"] == ", ".join(names)
        assert row["user_attrs_feasible"] == (not names and row["user_attrs_constraint_valid"] == 0)


def test_two_objective_config_needs_a_two_direction_study(study_db, capsys):
    url, config = study_db
    config.write_text(TINY_TOML + "[train]\nepochs = 1\n")
    code = main(["optimize", "--storage", url, "--study-name", "s", "--config", str(config)])
    assert code == 2
    assert "--directions maximize maximize" in capsys.readouterr().err
    assert optuna.load_study(study_name="s", storage=url).trials == []


BAD_INPUTS = {
    "unknown op": (["describe", "--macro", "light", "--arch", "0309 0030 3003 0000"], "unknown"),
    "malformed arch": (["describe", "--macro", "light", "--arch", "0302 003"], "malformed"),
    "invalid config value": ("space.num_cells = 'two'", "num_cells must be an integer"),
    "unknown config key": ("search.n_trails = 3", "unknown key"),
    "study does not exist": ("--study-name nope", "does not exist"),
    "dataset path does not exist": ("dataset.path = '/no/such.npz'", "does not exist"),
    "database does not exist": ("--storage sqlite:////no/such/dir/x.db", "does not exist"),
    "unknown hardware profile": (
        ["describe", "--macro", "light", "--arch", "0302 0030 3003 0000", "--hardware", "x"],
        "unknown hardware profile",
    ),
    "hardware profile file missing": ("hardware.profile = '/no/such.toml'", "cannot read"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_ends_in_one_clear_line(study_db, case):
    url, config = study_db
    change, expected = BAD_INPUTS[case]
    if isinstance(change, list):
        argv = change
    else:
        argv = ["optimize", "--storage", url, "--study-name", "s", "--config", str(config)]
        if change.startswith("--"):
            flag, value = change.split(" ", 1)
            argv[argv.index(flag) + 1] = value
        else:
            key, value = change.split(" = ")
            section, name = key.split(".")
            text = config.read_text()
            if f"[{section}]" not in text:
                text += f"[{section}]\n"
            text = text.replace(f"[{section}]", f"[{section}]\n{name} = {value}")
            if section == "dataset":
                text = text.replace('name = "digits"', 'name = "npz"')
            config.write_text(text)
    result = run(SPIKENAS, *argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 0


def test_study_with_another_direction_is_refused_before_any_trial(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'min.db'}"
    optuna.create_study(storage=url, study_name="m", direction="minimize")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    code = main(["optimize", "--storage", url, "--study-name", "m", "--config", str(config)])
    assert code == 2
    assert "maximize" in capsys.readouterr().err
    assert optuna.load_study(study_name="m", storage=url).trials == []


def test_journal_file_storage_and_python_m_entry_point(tmp_path):
    journal = tmp_path / "nas.log"
    create_study(journal, "j", "--storage-class", "JournalFileBackend")
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    result = run(f"{sys.executable} -m optuna_spikenas", "optimize", "--storage", journal,
                 "--storage-class", "JournalFileBackend", "--study-name", "j",
                 "--config", config, "--n-trials", 3, "--quiet")
    assert result.returncode == 0, result.stderr
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    trials = optuna.load_study(study_name="j", storage=storage).trials
    assert len(trials) == 3
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


# --- the command line's polish: version, help, describe's table, plurals ----------------------


def test_version_is_the_installed_distributions(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    version = metadata.version("optuna-spikenas")
    assert capsys.readouterr().out.strip() == f"optuna-spikenas {version}"


def test_every_option_says_its_default():
    """Every option a user may leave out says in its help what happens then; flags (off unless
    given) and required options have no default to state."""
    import argparse

    from optuna_spikenas.cli.parser import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = []
    for name, command in [("", parser), *commands.choices.items()]:
        formatter = command._get_formatter()
        for action in command._actions:
            if action.required or not action.option_strings or action.nargs == 0:
                continue  # positional, required, or a flag (store_true, --help, --version)
            text = formatter._expand_help(action) if action.help else ""
            if "default" not in text.lower():
                missing.append(f"{name} {action.option_strings[0]}")
    assert missing == []


def test_help_loads_no_torch():
    """Help is printed without importing torch or SpikingJelly (seconds of start-up)."""
    commands = ["", "optimize", "compare", "dashboard", "export", "train", "recover", "describe",
                "analyze-ops"]
    code = (
        "import contextlib, io, sys\nfrom optuna_spikenas.cli import main\n"
        f"for command in {commands!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main([command, '--help'] if command else ['--help'])\n"
        "print(sorted(m for m in ('torch', 'spikingjelly') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    help_text = run(f"{sys.executable} -m optuna_spikenas", "--help")
    assert help_text.returncode == 0 and "--version" in help_text.stdout


def describe_text(capsys, *args: str) -> tuple[list[str], dict]:
    assert main(["describe", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    return lines, describe_json(capsys, *args)


def row(lines: list[str], label: str) -> str:
    (found,) = [line for line in lines if line.startswith(f"{label} ")]
    return found[len(label) :].strip()


def test_describe_prints_a_table_with_exact_counts(capsys):
    import re

    lines, info = describe_text(
        capsys, "--macro", "light", "--arch", "0302 0030 3003 0000", "--hardware", "spikesim-64"
    )
    text = "\n".join(lines)
    assert not re.search(r"[{}\[\]]", text)  # no Python dicts or lists
    assert not re.search(r"\d\.\d{5,}", text.split("\nlayer ")[0])  # no 13-decimal floats
    assert row(lines, "  total") == f"{info['parameters']:,}" == "53,114"  # not "0.05 M"
    parts = info["parameters_by_part"]
    assert row(lines, "  cell 2") == f"{parts['cells'][1]:,}"
    assert row(lines, "valid") == "yes"
    assert row(lines, "input") == "1 x 28 x 28 images, 10 classes"
    assert row(lines, "  area").startswith(f"{info['area_mm2']:.4g} mm²")
    assert row(lines, "  energy") == f"{info['energy_uj']:.4g} µJ"
    assert row(lines, "memory") == (
        f"{info['memory_bits']:,} bits at 32-bit weights = {info['memory_bits'] / 8e6:.4g} MB"
    )
    big, _ = describe_text(capsys, "--macro", "snasnet-cifar100", "--arch", "0302 0030 3003 0000")
    assert row(big, "  total") == "20,624,500 (20.62 M)"
    blocks, info = describe_text(
        capsys, "--macro", "autosnn-16", "--arch", "SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5"
    )
    assert row(blocks, "parameters") == f"{info['parameters']:,}" == "417,626"


def test_describe_says_why_a_cell_is_invalid(capsys):
    lines, info = describe_text(
        capsys, "--macro", "light", "--arch", "0100 0000 0000 0000 / 0302 0030 3003 0000"
    )
    assert info["valid"] is False
    assert row(lines, "valid") == "no: cell 1 has no path from its input to its output"
    assert row(lines, "canonical form") == "0000 0000 0000 0000 / 0302 0030 3003 0000"


def test_counts_read_in_the_singular_for_one():
    from optuna_spikenas.wording import plural

    assert plural(1, "epoch") == "1 epoch"
    assert plural(0, "epoch") == "0 epochs"
    assert plural(1200, "trial") == "1,200 trials"
    assert plural(1, "class", "classes") == "1 class"
    assert plural(2, "class", "classes") == "2 classes"


def test_ctrl_c_while_the_super_network_trains_says_what_was_kept(tmp_path, capsys, monkeypatch):
    """Stopped in its second epoch, the super-network keeps its first; the next run resumes."""
    from optuna_spikenas import supernet

    config = tmp_path / "autosnn.toml"
    config.write_text(
        'seed = 2\n[dataset]\nname = "digits"\n[space]\nmacro = "autosnn-16"\nwidths = [4]\n'
        "[supernet]\nepochs = 2\ntimesteps = 2\nbatch_size = 32\nmax_train_batches = 2\n"
        'eval_images = 32\ncheckpoint_dir = "ckpt"\n[search]\nsampler = "evolution"\n'
        "n_trials = 2\n"
    )
    url = f"sqlite:///{tmp_path / 'a.db'}"
    optuna.create_study(storage=url, study_name="a", direction="maximize")
    argv = ["optimize", "--storage", url, "--study-name", "a", "--config", str(config)]
    real, batches = supernet.augment_batch, []

    def stop_in_epoch_two(images, kind, generator):
        batches.append(kind)
        if len(batches) == 3:  # 2 batches per epoch
            raise KeyboardInterrupt
        return real(images, kind, generator)

    monkeypatch.setattr(supernet, "augment_batch", stop_in_epoch_two)
    assert main(argv) == 130
    (kept,) = (tmp_path / "ckpt").iterdir()
    assert kept.name.endswith(".epoch.pt")
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"optuna-spikenas: interrupted: super-network training stopped after epoch 1 of 2: kept "
        f"in {kept}; the next run with the same settings resumes there"
    )
    assert optuna.load_study(study_name="a", storage=url).trials == []
    monkeypatch.setattr(supernet, "augment_batch", real)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"resuming super-network training after epoch 1 of 2 from {kept}" in err
    assert "supernet epoch 1/2" not in err and "supernet epoch 2/2" in err
