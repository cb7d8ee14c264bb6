"""``scripts/gpu_check.sh`` and ``benchmarks/gpu_check.py`` without a GPU: the wrapper says so and
exits 0 having installed nothing, and the Python part's whole code path runs on the CPU at tiny
sizes (``--device cpu --quick``), where CPU against CPU scores must agree exactly."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402

NO_GPU = "no CUDA GPU here: gpu_check needs one; nothing was run"


def path_without_nvidia_smi() -> str:
    """PATH less any folder holding ``nvidia-smi``: the script sees no GPU on any machine."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(f for f in folders if f and not (Path(f) / "nvidia-smi").exists())


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_without_nvidia_smi_the_script_says_so_and_installs_nothing(tmp_path):
    venv_before = sorted(p.name for p in (ROOT / ".venv").glob("*"))
    env = {**os.environ, "PATH": path_without_nvidia_smi()}
    result = run_script(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == NO_GPU
    assert "install" not in result.stderr
    assert sorted(p.name for p in (ROOT / ".venv").glob("*")) == venv_before


def test_with_nvidia_smi_but_no_gpu_for_torch_the_python_part_says_so(tmp_path):
    """An ``nvidia-smi`` that answers (a stand-in) but a torch that sees no GPU: the script goes
    on to the Python part (told to install nothing), which prints the same line and exits 0."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'GPU 0: stand-in (UUID: GPU-0)'\n")
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake.parent}{os.pathsep}{path_without_nvidia_smi()}",
        "GPU_CHECK_PYTHON": sys.executable,
        "CUDA_VISIBLE_DEVICES": "",  # no GPU for torch, even on a machine that has one
    }
    result = run_script(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == NO_GPU
    assert "sees no CUDA device" in result.stderr


def test_relative_difference():
    assert gpu_check.relative_difference(-16.0, -16.0) == 0.0
    assert gpu_check.relative_difference(-math.inf, -math.inf) == 0.0
    assert gpu_check.relative_difference(-10.0, -10.01) == pytest.approx(0.01 / 10.01)
    assert gpu_check.relative_difference(-10.0, -math.inf) == math.inf


def test_the_quickstart_copy_changes_only_the_device_and_inits():
    original = gpu_check.QUICKSTART.read_text().splitlines()
    changed = gpu_check.quickstart_text(gpu_check.torch.device("cuda"), 2).splitlines()
    diff = [(a, b) for a, b in zip(original, changed, strict=True) if a != b]
    assert [b.split("#")[0].strip() for _, b in diff] == ["inits = 2", 'device = "cuda"']


def test_cpu_quick_run_prints_the_table_data_and_cpu_scores_agree_exactly():
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_check.py"),
            "--device",
            "cpu",
            "--quick",
            "--json",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["quick"] is True
    assert report["machine"]["device"] == "cpu"
    assert report["machine"]["torch"]

    agreement = report["agreement"]
    assert len(agreement["archs"]) == len(agreement["cpu_scores"]) == 3
    assert agreement["device"]["scores"] == agreement["cpu_scores"]  # CPU vs CPU: exact
    assert agreement["device"]["max_relative_difference"] == 0.0
    assert agreement["device"]["kendall_tau"] == pytest.approx(1.0)
    assert agreement["agree"] is True and agreement["strict_float32"] is None
    assert all(math.isfinite(s) for s in agreement["cpu_scores"])

    quick = report["quickstart"]
    assert quick["trials"] == 3 and quick["inits"] == 2
    assert quick["wall_seconds"] > 0 and quick["best_architecture"]

    snn = report["snasnet"]
    for key in (
        "candidates_per_second",
        "score_seconds_single",
        "score_seconds_multi",
        "score_speedup",
        "train_images_per_second_single",
        "train_images_per_second_multi",
        "train_speedup",
    ):
        assert snn[key] > 0, key
    # The same network and batch per-step and multi-step: the same score (float tolerance).
    assert snn["mode_max_relative_difference"] < 1e-6

    measurements = [row[0] for row in report["table"]]
    assert measurements[:2] == ["device", "torch / CUDA / cuDNN"]
    assert any(m.startswith("CPU vs CPU SAHD scores") for m in measurements)
    assert not any("FAILED" in m for m in measurements)
    units = {row[2] for row in report["table"]}
    assert {"s", "candidates/s", "images/s", "x"} <= units
    lines = report["markdown"].splitlines()
    assert lines[0] == "| measurement | value | unit |"
    assert len(lines) == len(report["table"]) + 2
