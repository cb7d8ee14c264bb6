"""`optuna-spikenas compare`: every sampler per seed on one objective, one study each, a report."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pytest

from optuna_spikenas.cli import main
from optuna_spikenas.compare import DONE_ATTR, ComparisonPlan, nsga2_population
from optuna_spikenas.config import ConfigError, config_from_dict, load_config
from optuna_spikenas.sampler_catalog import TPE_STARTUP_TRIALS
from optuna_spikenas.samplers import make_sampler
from optuna_spikenas.search_extent import NSGA2_GENERATION_KEY, search_extent
from optuna_spikenas.space import CONV3X3, SearchSpace, suggest_architecture

ROOT = Path(__file__).resolve().parents[1]

COMPARE_TOML = """
seed = 1
[dataset]
name = "digits"
[space]
macro = "light"
num_cells = [2]
widths = [4]
shared_cell = false
[score]
batch_size = 16
repeats = 1
timesteps = 2
[budget]
max_parameters = 2000
[compare]
samplers = ["cellbycell", "tpe", "random"]
seeds = [0, 1]
n_trials = 5
quick_seeds = [3]
quick_n_trials = 3
"""


def studies_of(storage: str) -> dict[str, optuna.Study]:
    names = optuna.get_all_study_names(storage)
    return {name: optuna.load_study(study_name=name, storage=storage) for name in names}


@pytest.fixture
def compared(tmp_path, one_thread, capsys):
    config = tmp_path / "compare.toml"
    config.write_text(COMPARE_TOML)
    out = tmp_path / "report"
    argv = ["compare", "--config", str(config), "--out", str(out), "--quiet", "--threads", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    return [*argv, "--no-png"], out, f"sqlite:///{out / 'compare.db'}", printed


def test_one_study_per_sampler_and_seed_with_the_budget(compared):
    _, out, storage, printed = compared
    studies = studies_of(storage)
    expected = {f"compare-{s}-seed{n}" for s in ("cellbycell", "tpe", "random") for n in (0, 1)}
    assert set(studies) == expected
    for name, study in studies.items():
        trials = study.get_trials()
        assert study.user_attrs[DONE_ATTR] == "5 trials"
        if "cellbycell" in name:  # stops by itself when its only phase is scored
            assert 1 <= len(trials) <= 5
        else:
            assert len(trials) == 5
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # the same seed gives the random sampler the same candidates; another seed others
    arch = {n: [t.user_attrs["architecture"] for t in s.get_trials()] for n, s in studies.items()}
    assert arch["compare-random-seed0"] != arch["compare-random-seed1"]
    report = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    assert "compare-tpe-seed1" in json.dumps(report) and "Best feasible" in html
    assert f"report: {out / 'report.html'}" in printed
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert all(f"figure: {out / name}" in printed for name in pngs)


def test_a_rerun_reuses_finished_runs_and_restarts_unfinished_ones(compared):
    argv, out, storage, _ = compared
    before = {n: [t.datetime_start for t in s.get_trials()] for n, s in studies_of(storage).items()}
    broken = optuna.load_study(study_name="compare-tpe-seed0", storage=storage)
    broken.set_user_attr(DONE_ATTR, "an interrupted run")  # as if it had not finished
    assert main(argv) == 0
    after = {n: [t.datetime_start for t in s.get_trials()] for n, s in studies_of(storage).items()}
    for name in before:
        if name == "compare-tpe-seed0":
            assert after[name] != before[name] and len(after[name]) == 5  # run again, whole
        else:
            assert after[name] == before[name]  # reused: not one trial more


def test_quick_mode_runs_fewer_seeds_and_trials(tmp_path, one_thread):
    config = tmp_path / "compare.toml"
    config.write_text(COMPARE_TOML.replace('"tpe", "random"', '"tpe", "nsga2", "random"'))
    out = tmp_path / "quick"
    assert main(["compare", "--config", str(config), "--quick", "--out", str(out), "--quiet",
                 "--no-artifacts", "--no-png"]) == 0
    studies = studies_of(f"sqlite:///{out / 'compare.db'}")
    samplers = ("cellbycell", "tpe", "nsga2", "random")
    assert set(studies) == {f"compare-quick-{s}-seed3" for s in samplers}
    assert all(len(s.get_trials()) <= 3 for s in studies.values())
    assert not (out / "compare-artifacts").exists() and not list(out.glob("*.png"))
    # 3 trials: NSGA-II's population is 2 (two generations run), TPE never leaves its start-up
    nsga2 = studies["compare-quick-nsga2-seed3"]
    assert {t.system_attrs[NSGA2_GENERATION_KEY] for t in nsga2.get_trials()} == {0, 1}
    assert nsga2.user_attrs[DONE_ATTR] == "3 trials, population 2"
    report = json.loads((out / "report.json").read_text())
    assert "population_size=2," in report["sampler_settings"]["nsga2"]
    assert any(
        "NSGA-II's population is 2 (sized so that 3 trials run 2 generations)" in note
        for note in report["notes"]
    )
    runs = {r["sampler"]: r for r in report["runs"]}
    assert runs["tpe"]["cut_short"] and runs["tpe"]["search"] == (
        f"3 of its {TPE_STARTUP_TRIALS} random start-up trials only"
    )
    assert not runs["nsga2"]["cut_short"] and not runs["random"]["cut_short"]
    # cellbycell's one phase has more in-budget candidates than 3 trials score
    scored = re.fullmatch(r"phase 2: 3 of (\d+) candidates scored", runs["cellbycell"]["search"])
    assert scored and int(scored[1]) > 3 and runs["cellbycell"]["cut_short"]
    found = report["findings"]
    assert any(f.startswith("Cut short by the budget: tpe (seed 3: ") for f in found)
    assert any(f.startswith("Cut short by the budget: cellbycell (seed 3: ") for f in found)
    assert "only equal values tie" in found[0]  # one seed: no spread over seeds is known


@pytest.mark.parametrize(
    "n_trials, population",
    [(None, 20), (100, 20), (60, 20), (59, 19), (24, 8), (16, 5), (6, 2), (5, 2), (1, 2)],
)
def test_nsga2_population_lets_three_generations_run_in_a_small_budget(n_trials, population):
    assert nsga2_population(n_trials) == population
    if n_trials is not None and n_trials >= 6:
        assert n_trials // population >= 3


def toy_score(trial: optuna.Trial) -> float:
    """No network: the number of conv3x3 edges of a 2-cell architecture."""
    arch = suggest_architecture(trial, SearchSpace(num_cells=(2,), shared_cell=False))
    return float(sum(cell.pruned().count_ops().get(CONV3X3, 0) for cell in arch.cells))


def test_the_shipped_quick_plan_lets_every_optuna_sampler_be_itself():
    config = load_config(ROOT / "studies" / "compare_baselines.toml")
    quick = ComparisonPlan.from_config(config, quick=True)
    assert quick.n_trials is not None and quick.n_trials > TPE_STARTUP_TRIALS
    assert quick.n_trials // quick.nsga2_population >= 3
    assert ComparisonPlan.from_config(config).nsga2_population == 20  # the full run: as before
    studies = {}
    for name in ("nsga2", "tpe"):
        sampler = make_sampler(name, 0, population_size=quick.nsga2_population)
        studies[name] = optuna.create_study(direction="maximize", sampler=sampler)
        studies[name].optimize(toy_score, n_trials=quick.n_trials)
        extent = search_extent(sampler, studies[name])
        assert not extent.cut_short, extent.detail
    generations = {t.system_attrs[NSGA2_GENERATION_KEY] for t in studies["nsga2"].trials}
    assert len(generations) == math.ceil(quick.n_trials / quick.nsga2_population) >= 3


def plan(**compare):
    raw = {"dataset": {"name": "digits"}, "space": {"num_cells": [2], "shared_cell": False},
           "compare": compare}
    return ComparisonPlan.from_config(config_from_dict(raw))


@pytest.mark.parametrize(
    "compare, message",
    [
        ({"samplers": ["tpe", "tpe"], "n_trials": 5}, "lists a sampler twice"),
        ({"samplers": ["tpe", "annealing"], "n_trials": 5}, "must be one of"),
        ({"samplers": ["tpe"]}, "needs a budget"),
        ({"samplers": ["tpe"], "n_trials": 5, "seeds": [1, 1]}, "distinct"),
        ({"samplers": ["tpe"], "n_trials": 5, "study_prefix": "a b"}, "plain name"),
        ({"samplers": ["tpe"], "timeout": -1.0}, "timeout must be positive"),
    ],
)
def test_bad_comparison_settings_are_refused_before_any_work(compare, message):
    with pytest.raises(ConfigError, match=message):
        plan(**compare)


def test_a_sampler_that_cannot_run_the_config_is_named():
    raw = {"dataset": {"name": "digits"}, "space": {"num_cells": [2], "shared_cell": True},
           "compare": {"samplers": ["cellbycell", "tpe"], "n_trials": 5}}
    with pytest.raises(ConfigError, match="sampler 'cellbycell' cannot run this config"):
        ComparisonPlan.from_config(config_from_dict(raw))


def test_the_command_line_reports_bad_settings_in_one_line(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(COMPARE_TOML.replace('"tpe", "random"', '"tpe", "tpe"'))
    assert main(["compare", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lists a sampler twice" in err
    assert not (tmp_path / "o").exists()  # nothing written before the settings are checked


def test_a_wall_time_budget_gives_every_run_the_same_seconds(tmp_path, one_thread):
    config = tmp_path / "timed.toml"
    config.write_text(
        COMPARE_TOML.replace('"cellbycell", "tpe", "random"', '"tpe", "random"')
        .replace("seeds = [0, 1]", "seeds = [0]")
        .replace("n_trials = 5\n", "timeout = 2.0\n", 1)
    )
    out = tmp_path / "timed"
    assert main(["compare", "--config", str(config), "--out", str(out), "--quiet",
                 "--no-png", "--no-artifacts"]) == 0
    for study in studies_of(f"sqlite:///{out / 'compare.db'}").values():
        assert study.user_attrs[DONE_ATTR] == "2 s"
        trials = study.get_trials()
        assert len(trials) >= 1
        first = min(t.datetime_start for t in trials)
        # Optuna checks the timeout between trials: none starts after it (a trial created just
        # after a check at 1.99 s starts a little past 2 s on a slow machine: flaked once)
        assert all((t.datetime_start - first).total_seconds() < 2.5 for t in trials)
