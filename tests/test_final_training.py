"""Tests for the resumable final training (optuna_spikenas.final_training) on tiny ``digits`` runs.

The acceptance test: a run interrupted after its first epoch and started again ends with exactly
the weights and history of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from optuna_spikenas import data, final_training
from optuna_spikenas import train as train_module
from optuna_spikenas.architecture_file import architecture_record
from optuna_spikenas.autosnn_space import AUTOSNN_MACROS, AutoSNNArchitecture, autosnn_parameters
from optuna_spikenas.cli import main
from optuna_spikenas.config import Config, config_from_dict
from optuna_spikenas.final_training import (
    CHECKPOINT,
    FinalTrainingResult,
    TrainingError,
    train_final,
)
from optuna_spikenas.interrupts import Terminated
from optuna_spikenas.macros import get_macro
from optuna_spikenas.quantize import quantize_weights
from optuna_spikenas.snn.network import build_network
from optuna_spikenas.space import Architecture
from optuna_spikenas.study_setup import study_dataset
from optuna_spikenas.train import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

CELL = "0301 0001 0000 0000"  # conv3x3 0 -> 1, skips 1 -> 3 and 0 -> 3
RAW_CONFIG: dict[str, Any] = {
    "seed": 0,
    "dataset": {"name": "digits"},
    "space": {"macro": "light"},
    "train": {"epochs": 3, "batch_size": 32, "optimizer": "adam", "lr": 0.03},
}
RAW_CONFIG["train"]["max_train_batches"] = 3
CONFIG = config_from_dict(RAW_CONFIG)
LIGHT_DOC = architecture_record(Architecture.parse(CELL, 2, 4), get_macro("light"), 2)
# SNASNet's head (dropout: the global RNG), shrunk for 8x8 digits.
SMALL_SNASNET = dataclasses.replace(get_macro("snasnet-cifar10"), hidden=32, voters_per_class=2)
SNASNET_DOC = architecture_record(Architecture.parse(CELL, 2, 4), SMALL_SNASNET, 2)


def run(doc: dict, out: Path, config: Config = CONFIG, **kwargs: Any) -> FinalTrainingResult:
    return train_final(doc, config, out, device="cpu", **kwargs)


def saved_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "weights.pt", weights_only=True)


def result_of(out: Path) -> dict[str, Any]:
    def no_constants(name: str) -> None:
        raise AssertionError(f"result.json holds {name}")

    return json.loads((out / "result.json").read_text(), parse_constant=no_constants)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def interrupt_after_first_epoch(lines: list[str]):
    """A ``log`` that records its lines and raises KeyboardInterrupt (Ctrl-C) after epoch 1."""

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt

    return log


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 3-epoch run of the light network (do not modify: copy it)."""
    out = tmp_path_factory.mktemp("reference")
    run(LIGHT_DOC, out)
    return out


def copy_of(reference: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "copy"))


# 1. Resuming gives exactly the uninterrupted run -------------------------------------------


@pytest.mark.parametrize("doc", [LIGHT_DOC, SNASNET_DOC], ids=["light", "snasnet-head"])
def test_interrupted_then_resumed_equals_uninterrupted(
    doc: dict, reference: Path, tmp_path: Path
) -> None:
    if doc is LIGHT_DOC:
        whole = reference
    else:
        whole = tmp_path / "whole"
        run(doc, whole)
    parts, lines = tmp_path / "parts", []
    rng_before = torch.random.get_rng_state()
    with pytest.raises(KeyboardInterrupt):
        run(doc, parts, log=interrupt_after_first_epoch(lines))
    assert (parts / CHECKPOINT).exists()
    assert not (parts / "weights.pt").exists() and not (parts / "result.json").exists()

    lines.clear()
    resumed = run(doc, parts, log=lines.append)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's RNG untouched
    assert (resumed.resumed_from, resumed.epochs_done) == (1, 3)
    assert "resuming after epoch 1" in lines[0]
    assert [line.split(":")[0] for line in lines[1:3]] == ["epoch 2/3", "epoch 3/3"]
    assert_same_weights(saved_weights(whole), saved_weights(parts))
    first, second = result_of(whole), result_of(parts)
    for key in ("train_loss", "val_accuracy"):
        assert first["history"][key] == second["history"][key]
    assert first["test_accuracy"] == second["test_accuracy"]
    assert (first["resumed_from"], second["resumed_from"]) == (None, 1)
    # The optimizer's state too (Adam's moments), not only the weights.
    optimizers = [
        torch.load(out / CHECKPOINT, weights_only=True)["state"]["optimizer"]["state"]
        for out in (whole, parts)
    ]
    assert optimizers[0].keys() == optimizers[1].keys()
    for index, moments in optimizers[0].items():
        assert all(torch.equal(value, optimizers[1][index][k]) for k, value in moments.items())


def test_the_schedule_continues_after_a_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int]] = []
    real_cosine_lr = train_module.cosine_lr

    def spy(step: int, total_steps: int, lr: float, min_lr: float) -> float:
        seen.append((step, total_steps))
        return real_cosine_lr(step, total_steps, lr, min_lr)

    monkeypatch.setattr(train_module, "cosine_lr", spy)
    with pytest.raises(KeyboardInterrupt):
        run(LIGHT_DOC, tmp_path, log=interrupt_after_first_epoch([]))
    assert seen == [(step, 9) for step in range(3)]  # 3 epochs x 3 batches
    seen.clear()
    run(LIGHT_DOC, tmp_path)
    assert seen == [(step, 9) for step in range(3, 9)]


KILLED_RUN = """
import json, sys, time
import torch
torch.set_num_threads(1)
from optuna_spikenas.config import config_from_dict
from optuna_spikenas.final_training import train_final

doc, raw, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]

def log(line):
    if line.startswith("epoch 1/"):
        print("READY", flush=True)
        time.sleep(120)  # the test kills the process here

train_final(doc, config_from_dict(raw), out, device="cpu", log=log)
"""


def test_a_killed_process_resumes_exactly(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = [sys.executable, "-c", KILLED_RUN, json.dumps(LIGHT_DOC), json.dumps(RAW_CONFIG)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([*args, str(out)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "READY"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT]  # no temporary file left over
    assert torch.load(out / CHECKPOINT, weights_only=True)["epoch"] == 1

    assert run(LIGHT_DOC, out).resumed_from == 1
    assert_same_weights(saved_weights(reference), saved_weights(out))


# 2. Finished, other settings, fresh, damaged ------------------------------------------------


def test_a_finished_run_started_again_trains_no_more(reference: Path, tmp_path: Path) -> None:
    out = copy_of(reference, tmp_path)
    checkpoint = (out / CHECKPOINT).read_bytes()
    lines: list[str] = []
    again = run(LIGHT_DOC, out, log=lines.append)
    assert (again.resumed_from, again.epochs_done) == (3, 3)
    assert not [line for line in lines if line.startswith("epoch ")]
    assert (out / CHECKPOINT).read_bytes() == checkpoint
    assert_same_weights(saved_weights(reference), saved_weights(out))
    assert (
        result_of(out)["history"]["val_accuracy"] == result_of(reference)["history"]["val_accuracy"]
    )


@pytest.mark.parametrize(
    "change, named",
    [
        ({"epochs": 4}, "recipe.epochs"),
        ({"weight_bits": 8}, "recipe.weight_bits"),
        ({"config": dataclasses.replace(CONFIG, seed=1)}, "seed"),
        ({"doc": SNASNET_DOC}, "macro."),
    ],
    ids=["epochs", "weight-bits", "seed", "architecture"],
)
def test_a_checkpoint_of_other_settings_is_refused(
    change: dict, named: str, reference: Path, tmp_path: Path
) -> None:
    out = copy_of(reference, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    doc = change.pop("doc", LIGHT_DOC)
    with pytest.raises(TrainingError, match="delete it or use --fresh") as error:
        run(doc, out, **change)
    assert named in str(error.value) and "\n" not in str(error.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched


def test_fresh_starts_over(reference: Path, tmp_path: Path) -> None:
    out = copy_of(reference, tmp_path)
    lines: list[str] = []
    result = run(LIGHT_DOC, out, epochs=1, fresh=True, log=lines.append)  # other settings
    assert (result.resumed_from, result.epochs_done) == (None, 1)
    assert "from the start" in lines[0]
    assert result_of(out)["epochs"] == 1
    assert torch.load(out / CHECKPOINT, weights_only=True)["epoch"] == 1

    lines.clear()
    again = run(LIGHT_DOC, out, fresh=True, log=lines.append)  # the reference's settings
    assert again.resumed_from is None
    assert [line.split(":")[0] for line in lines[1:4]] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert_same_weights(saved_weights(reference), saved_weights(out))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b"this is not a checkpoint", "cannot be read"),
        (lambda b: b[: len(b) // 2], "cannot be read"),
        (lambda b: None, "is not a final-training checkpoint"),
    ],
    ids=["garbage", "truncated", "foreign"],
)
def test_a_damaged_checkpoint_gives_a_clear_error(
    damage, message: str, reference: Path, tmp_path: Path
) -> None:
    out = copy_of(reference, tmp_path)
    damaged = damage((out / CHECKPOINT).read_bytes())
    if damaged is None:
        torch.save({"model": {}}, out / CHECKPOINT)
    else:
        (out / CHECKPOINT).write_bytes(damaged)
    with pytest.raises(TrainingError, match=message) as error:
        run(LIGHT_DOC, out)
    assert str(error.value).startswith(f"checkpoint {out / CHECKPOINT} ")
    assert str(error.value).endswith("delete it or use --fresh") and "\n" not in str(error.value)


def test_bad_requests_are_training_errors(tmp_path: Path) -> None:
    no_epochs = dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, epochs=0))
    with pytest.raises(TrainingError, match="--epochs"):
        run(LIGHT_DOC, tmp_path, config=no_epochs)
    with pytest.raises(TrainingError, match="architecture document"):
        run({**LIGHT_DOC, "architecture": "9999"}, tmp_path)
    assert not list(tmp_path.iterdir())


# 3. What a run leaves behind ---------------------------------------------------------------


def test_result_json_of_a_snasnet_cell_network(reference: Path) -> None:
    result = result_of(reference)
    dataset = study_dataset(CONFIG)
    macro = get_macro("light").for_data(1, 8, 10)
    network = build_network(Architecture.parse(CELL, 2, 4), macro, 2, seed=CONFIG.seed)
    parameters = sum(p.numel() for p in network.parameters())
    assert result["parameters"] == parameters == result["memory"]["parameters"]
    assert 0 <= result["test_accuracy"] <= 1 and "test_accuracy_float" not in result
    assert len(result["history"]["val_accuracy"]) == len(result["history"]["train_loss"]) == 3
    assert result["final_val_accuracy"] == result["history"]["val_accuracy"][-1]
    assert result["spikes"]["spikes_per_image"] > 0
    assert result["spikes"]["measured_on"] == f"{len(dataset.test)} test images"
    hardware = result["hardware"]
    assert hardware["profile"] == CONFIG.hardware.profile and hardware["weight_bits"] == 32
    assert min(hardware["area_mm2"], hardware["latency_ms"], hardware["energy_uj"]) > 0
    assert result["recipe"]["optimizer"] == "adam" and result["recipe"]["loss"] == "cross-entropy"
    assert (result["device"], result["torch"]) == ("cpu", torch.__version__)
    # weights.pt is what was tested: loaded into a plain network it scores the same.
    network.load_state_dict(saved_weights(reference))
    assert evaluate(network, dataset.test, 32) == result["test_accuracy"]


def test_no_log_means_no_progress_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run(LIGHT_DOC, tmp_path, epochs=1)
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


def test_8_bit_weights_are_trained_saved_in_float_and_tested_quantized(tmp_path: Path) -> None:
    run(LIGHT_DOC, tmp_path, epochs=1, weight_bits=8)
    result, weights = result_of(tmp_path), saved_weights(tmp_path)
    assert not [name for name in weights if "parametrizations" in name]
    assert result["memory"]["weight_bits"] == result["hardware"]["weight_bits"] == 8
    assert result["recipe"]["weight_bits"] == 8
    macro = get_macro("light").for_data(1, 8, 10)
    network = build_network(Architecture.parse(CELL, 2, 4), macro, 2)
    network.load_state_dict(weights)
    test = study_dataset(CONFIG).test
    assert evaluate(network, test, 32) == result["test_accuracy_float"]
    quantize_weights(network, 8)
    assert evaluate(network, test, 32) == result["test_accuracy"]
    floats = [w for name, w in weights.items() if name.endswith(".weight") and w.ndim > 1]
    assert max(len(torch.unique(w)) for w in floats) > 2**8  # stored: the float weights
    for module in network.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            assert len(torch.unique(module.weight)) <= 2**8  # seen: the 8-bit grid


def test_an_autosnn_architecture_trains_with_the_mse_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arch = AutoSNNArchitecture.parse("SRB_k3,skip,SCB_k3,skip,skip")
    macro = dataclasses.replace(AUTOSNN_MACROS["autosnn-16"], width=4, timesteps=2)
    doc = architecture_record(arch, macro, 2)
    losses: list[str] = []
    real_loss = train_module.batch_loss

    def spy(outputs: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
        losses.append(kind)
        return real_loss(outputs, labels, kind)

    monkeypatch.setattr(train_module, "batch_loss", spy)
    run(doc, tmp_path, epochs=1)
    result = result_of(tmp_path)
    assert losses == ["mse-rates"] * 3  # [train] max_train_batches
    recipe = result["recipe"]
    assert (recipe["optimizer"], recipe["loss"]) == ("adam", "mse-rates")
    assert recipe["lr"] == recipe["min_lr"] == CONFIG.supernet.lr
    assert recipe["batch_size"] == CONFIG.supernet.batch_size
    assert 0 < result["history"]["train_loss"][0] < 1  # an MSE of rates; cross-entropy: ~2.3
    assert result["parameters"] == autosnn_parameters(arch, macro.for_data(1, 8, 10))
    assert "hardware" not in result and 0 <= result["test_accuracy"] <= 1


def test_augmentation_is_applied_and_resumed_exactly(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    augmented = dataclasses.replace(study_dataset(CONFIG), augmentation="crop-flip")
    monkeypatch.setattr(final_training, "study_dataset", lambda config: augmented)
    calls: list[int] = []
    real_augment = data.augment_batch

    def spy(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
        calls.append(len(images))
        return real_augment(images, kind, generator)

    monkeypatch.setattr(data, "augment_batch", spy)
    run(LIGHT_DOC, tmp_path / "whole")
    assert len(calls) == 3 * 3  # every training batch, nothing else
    with pytest.raises(KeyboardInterrupt):
        run(LIGHT_DOC, tmp_path / "parts", log=interrupt_after_first_epoch([]))
    assert run(LIGHT_DOC, tmp_path / "parts").resumed_from == 1
    assert_same_weights(saved_weights(tmp_path / "whole"), saved_weights(tmp_path / "parts"))
    assert result_of(tmp_path / "whole")["dataset"]["augmentation"] == "crop-flip"
    plain, crop_flip = saved_weights(reference), saved_weights(tmp_path / "whole")
    assert any(not torch.equal(plain[name], crop_flip[name]) for name in plain)  # it mattered


# 4. What an interruption says ---------------------------------------------------------------


REAL_COSINE_LR = train_module.cosine_lr


def stop_at_step(step: int, kind: type[KeyboardInterrupt] = KeyboardInterrupt):
    """A ``cosine_lr`` that stops the run (Ctrl-C, or ``kind``) at optimizer step ``step``."""

    def cosine_lr(at: int, total_steps: int, lr: float, min_lr: float) -> float:
        if at == step:
            raise kind
        return REAL_COSINE_LR(at, total_steps, lr, min_lr)

    return cosine_lr


def test_a_stop_in_the_first_epoch_says_nothing_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train_module, "cosine_lr", stop_at_step(1))  # the second batch
    with pytest.raises(KeyboardInterrupt) as stop:
        run(LIGHT_DOC, tmp_path)
    assert str(stop.value) == "no epoch finished, nothing saved"
    assert list(tmp_path.iterdir()) == []


def test_a_stop_later_says_which_epoch_is_saved(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt) as stop:
        run(LIGHT_DOC, tmp_path, log=interrupt_after_first_epoch([]))
    assert str(stop.value) == (
        f"1 of 3 epochs finished, saved in {tmp_path / CHECKPOINT}; run the same command again "
        "to resume after epoch 1"
    )
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["epoch"] == 1


def test_a_stop_before_training_keeps_an_earlier_checkpoint_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(KeyboardInterrupt):
        run(LIGHT_DOC, tmp_path, log=interrupt_after_first_epoch([]))
    earlier = (tmp_path / CHECKPOINT).read_bytes()

    def stopped_while_loading(config: Config) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(final_training, "study_dataset", stopped_while_loading)
    with pytest.raises(KeyboardInterrupt) as stop:
        run(LIGHT_DOC, tmp_path)
    assert str(stop.value) == (
        f"nothing trained yet; {tmp_path / CHECKPOINT} of an earlier run is kept as it was"
    )
    assert (tmp_path / CHECKPOINT).read_bytes() == earlier


@pytest.mark.parametrize(
    "kind, status, word", [(KeyboardInterrupt, 130, "interrupted"), (Terminated, 143, "terminated")]
)
def test_train_command_says_when_no_epoch_finished(
    kind: type[KeyboardInterrupt],
    status: int,
    word: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arch_json, config = tmp_path / "architecture.json", tmp_path / "digits.toml"
    arch_json.write_text(json.dumps(LIGHT_DOC))
    config.write_text(
        'seed = 0\n[dataset]\nname = "digits"\n[train]\nepochs = 3\nbatch_size = 32\n'
        'optimizer = "adam"\nlr = 0.03\nmax_train_batches = 3\n'
    )
    monkeypatch.setattr(train_module, "cosine_lr", stop_at_step(1, kind))
    out = tmp_path / "trained"
    argv = ["train", "--arch-json", str(arch_json), "--config", str(config), "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--quiet"]) == status
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{word}: no epoch finished, nothing saved"
    ]
    assert not (out / CHECKPOINT).exists()
    monkeypatch.setattr(train_module, "cosine_lr", stop_at_step(4, kind))  # in epoch 2
    assert main([*argv, "--device", "cpu", "--quiet"]) == status
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"{word}: 1 of 3 epochs finished, saved in {out / CHECKPOINT}; run the same command "
        "again to resume after epoch 1"
    )
