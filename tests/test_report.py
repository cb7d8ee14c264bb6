"""The comparison report: runs read from studies, curves, Pareto fronts, HTML, JSON and PNGs."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from datetime import datetime, timedelta

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas import browser
from optuna_spikenas.comparison_runs import Run, TrialPoint, load_run
from optuna_spikenas.report import summarize, write_report
from optuna_spikenas.report_figures import comparison_figures, pareto_front
from optuna_spikenas.search_extent import SearchExtent

optuna.logging.set_verbosity(optuna.logging.WARNING)
T0 = datetime(2025, 1, 1, 12, 0, 0)
INF = float("inf")
FIGURES = ("best_by_trial", "best_by_time", "feasible_fraction", "pareto")
TITLES = (
    "Best feasible SAHD score by trial",
    "Best feasible SAHD score by wall time",
    "Feasible fraction of finished trials",
    "Pareto fronts: SAHD score",
)


def frozen(
    value: float | None,
    seconds: float,
    *,
    state: TrialState = TrialState.COMPLETE,
    start: float | None = None,
    **attrs: object,
) -> FrozenTrial:
    """A trial that started ``start`` s (default: 1 s before its end) after T0, ended at
    ``seconds``; ``attrs`` become its user attributes."""
    begin = T0 + timedelta(seconds=seconds - 1 if start is None else start)
    finished = state != TrialState.RUNNING
    return FrozenTrial(
        number=0,
        state=state,
        value=None,
        values=None if value is None else [value],
        datetime_start=begin,
        datetime_complete=T0 + timedelta(seconds=seconds) if finished else None,
        params={},
        distributions={},
        user_attrs=dict(attrs),
        system_attrs={},
        intermediate_values={},
        trial_id=0,
    )


def ok(value: float, seconds: float, arch: str, **attrs: object) -> FrozenTrial:
    """A feasible trial of 1 MB (8e6 bits) unless ``memory_bits`` says otherwise."""
    attrs.setdefault("memory_bits", 8e6)
    return frozen(value, seconds, feasible=True, architecture=arch, **attrs)


def bad(seconds: float, start: float | None = None) -> FrozenTrial:
    attrs = {"feasible": False, "architecture": "over budget", "memory_bits": 9e9}
    return frozen(-INF, seconds, start=start, **attrs)


def study_of(trials: list[FrozenTrial], name: str | None = None) -> optuna.Study:
    study = optuna.create_study(directions=["maximize"], study_name=name)
    for trial in trials:
        study.add_trial(trial)
    return study


def test_load_run_reads_every_field():
    study = study_of(
        [
            ok(1.0, 10, "A", start=0, energy_uj=2.0, synops_energy_uj=9.0, val_accuracy=0.9),
            bad(20),
            frozen(None, 25, state=TrialState.FAIL),
            ok(3.0, 30, "B", memory_bits=4e6, synops_energy_uj=5.0, accuracy=0.7),
            ok(3.0, 31, "B", duplicate_of=3),
            frozen(-INF, 32, feasible=True),  # "feasible" but unscored: not feasible
            frozen(2.0, 33),  # no "feasible" attribute: not feasible
            frozen(None, 34, state=TrialState.PRUNED),
            frozen(None, 35, state=TrialState.RUNNING),  # ignored
        ],
        name="cellbycell-seed-7",
    )
    run = load_run(study, "cellbycell", 7)
    assert (run.sampler, run.seed, run.study_name) == ("cellbycell", 7, "cellbycell-seed-7")
    assert [t.number for t in run.trials] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert [t.seconds for t in run.trials] == [10, 20, 25, 30, 31, 32, 33, 34]
    assert [t.feasible for t in run.trials] == [True, False, False, True, True, False, False, False]
    assert [t.value for t in run.trials] == [1.0, None, None, 3.0, 3.0, None, None, None]
    first, _, failed, second, duplicate = run.trials[:5]
    assert first.memory_megabytes == 1.0 and second.memory_megabytes == 0.5
    assert failed.memory_megabytes is None and failed.architecture is None
    assert (first.energy_uj, second.energy_uj, duplicate.energy_uj) == (2.0, 5.0, None)
    assert (first.accuracy, second.accuracy, failed.accuracy) == (0.9, 0.7, None)
    assert (first.architecture, second.architecture) == ("A", "B")
    assert [t.duplicate for t in run.trials[:5]] == [False, False, False, False, True]
    assert run.feasible_fraction == 3 / 8
    assert run.best_value == 3.0 and run.seconds_to_best == 30 and run.seconds == 34
    assert run.distinct_architectures == 2
    assert run.best_so_far() == [1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    assert run.best_at(29.9) == 1.0 and run.best_at(9.0) is None


def plain_best_so_far(values: list[float | None]) -> list[float | None]:
    curve = []
    for i in range(len(values)):
        seen = [v for v in values[: i + 1] if v is not None]
        curve.append(max(seen) if seen else None)
    return curve


def random_run(rng: random.Random, sampler: str, seed: int, n: int, p_feasible: float) -> Run:
    points = []
    for i in range(n):
        feasible = rng.random() < p_feasible
        points.append(
            TrialPoint(
                number=i,
                seconds=float(i + rng.random()),
                value=rng.uniform(0, 10) if feasible else None,
                feasible=feasible,
                memory_megabytes=rng.uniform(0.1, 2.0),
                energy_uj=None,
                accuracy=None,
                architecture=f"arch-{rng.randrange(n)}",
                duplicate=False,
            )
        )
    return Run(sampler, seed, f"{sampler}-{seed}", tuple(points))


def test_best_so_far_matches_a_plain_recomputation():
    rng = random.Random(3)
    for n in (0, 1, 5, 40):
        run = random_run(rng, "tpe", 0, n, 0.4)
        values = [t.value for t in run.trials]
        assert run.best_so_far() == plain_best_so_far(values)
        assert run.best_value == max((v for v in values if v is not None), default=None)


def dominated(p: tuple[float, float], q: tuple[float, float]) -> bool:
    """q dominates p: at least as good in both (max first, min second), better in one."""
    return q[0] >= p[0] and q[1] <= p[1] and (q[0] > p[0] or q[1] < p[1])


@pytest.mark.parametrize("n", [0, 1, 2, 7, 60, 300])
def test_pareto_front_matches_brute_force(n):
    rng = random.Random(n)
    # small integer ranges make ties in both coordinates and exact duplicates likely
    points = [(float(rng.randint(0, 9)), float(rng.randint(0, 9))) for _ in range(n)]
    expected = [i for i, p in enumerate(points) if not any(dominated(p, q) for q in points)]
    assert pareto_front(points) == expected
    continuous = [(rng.random(), rng.random()) for _ in range(n)]
    expected = [i for i, p in enumerate(continuous) if not any(dominated(p, q) for q in continuous)]
    assert pareto_front(continuous) == expected


def comparison_runs() -> list[Run]:
    """cellbycell: 3 seeds with energies; tpe: 2 seeds of different lengths, no energies;
    random: 1 seed, nothing feasible."""
    runs = []
    for seed, shift in enumerate((0.0, 0.5, -0.25)):
        trials = [bad(5, start=0), ok(1.0 + shift, 10, f"c{seed}a", energy_uj=4.0), bad(12)]
        trials += [ok(2.0 + shift, 20, f"c{seed}b", memory_bits=4e6, energy_uj=3.0)]
        trials += [ok(2.0 + shift, 21, f"c{seed}b", memory_bits=4e6, duplicate_of=3)]
        trials += [ok(1.5, 30, f"c{seed}c", memory_bits=16e6, energy_uj=1.0)]
        runs.append(load_run(study_of(trials, f"cellbycell-{seed}"), "cellbycell", seed))
    for seed, count in ((0, 6), (1, 3)):
        trials = [bad(2), bad(4)] + [ok(0.5 * k, 4 + 4 * k, f"t{seed}{k}") for k in range(count)]
        trials.insert(3, frozen(None, 5, state=TrialState.FAIL))
        runs.append(load_run(study_of(trials, f"tpe-{seed}"), "tpe", seed))
    runs.append(load_run(study_of([bad(3), bad(6)], "random-0"), "random", 0))
    return runs


SETTINGS = {"cellbycell": "cells=3, ours", "tpe": "TPESampler(multivariate)", "random": "seeded"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    runs = comparison_runs()
    out = tmp_path_factory.mktemp("report")
    files = write_report(
        runs,
        out,
        title="Budget comparison <MNIST>",
        value_name="SAHD score",
        sampler_settings=SETTINGS,
        notes=["equal budgets of trials", "CPU"],
        png=True,
    )
    return runs, files


def test_json_numbers_match_independent_statistics(report):
    runs, files = report
    data = json.loads(files.json.read_text())
    rows = {row["sampler"]: row for row in data["samplers"]}
    assert [row["sampler"] for row in data["samplers"]] == ["cellbycell", "tpe", "random"]
    ours = rows["cellbycell"]
    assert ours["best_values"] == [2.0, 2.5, 1.75]
    assert ours["best_mean"] == pytest.approx(statistics.mean([2.0, 2.5, 1.75]))
    assert ours["best_std"] == pytest.approx(statistics.stdev([2.0, 2.5, 1.75]))
    assert ours["feasible_fraction_mean"] == pytest.approx(4 / 6)
    assert ours["trials_per_seed_mean"] == 6
    assert ours["seconds_per_run_mean"] == 30
    assert ours["seconds_to_best_mean"] == 20
    assert ours["architectures_mean"] == 3  # the duplicate is not counted
    tpe = rows["tpe"]
    assert tpe["best_values"] == [2.5, 1.0]
    assert tpe["best_std"] == pytest.approx(statistics.stdev([2.5, 1.0]))
    assert tpe["feasible_fraction_mean"] == pytest.approx(statistics.mean([6 / 9, 3 / 6]))
    assert tpe["trials_per_seed_mean"] == 7.5
    none = rows["random"]
    assert none["best_values"] == [None] and none["best_mean"] is None
    assert none["seeds_without_feasible"] == 1 and none["feasible_fraction_mean"] == 0
    assert none["seconds_to_best_mean"] is None
    # cellbycell's mean best is the highest, but tpe's lies within tpe's std of it: a tie
    assert ours["best_mean"] - tpe["best_mean"] <= statistics.stdev([2.5, 1.0])
    assert data["highest_mean_best"] is None
    assert data["tied_for_highest"] == ["cellbycell", "tpe"]
    assert [row["highest_mean_best"] for row in data["samplers"]] == [False, False, False]
    assert [row["tied_for_highest"] for row in data["samplers"]] == [True, True, False]
    assert data["findings"][0].startswith("Tie for the highest mean best: cellbycell and tpe,")
    assert data["sampler_settings"] == SETTINGS
    assert data["notes"] == ["equal budgets of trials", "CPU"]
    assert data["figures"] == list(FIGURES)
    by_study = {r["study_name"]: r for r in data["runs"]}
    for run in runs:
        assert by_study[run.study_name]["best_so_far"] == plain_best_so_far(
            [t.value for t in run.trials]
        )
    assert by_study["random-0"]["best_so_far"] == [None, None]


def test_json_has_no_nan_or_infinity(report):
    text = report[1].json.read_text()
    for bad_token in ("NaN", "Infinity"):
        assert bad_token not in text

    def refuse(token: str) -> float:
        raise AssertionError(f"{token} in the JSON")

    json.loads(text, parse_constant=refuse)


def test_html_is_self_contained_with_every_figure(report):
    page = report[1].html.read_text()
    assert page.count("* plotly.js v") == 1  # the library's banner: inlined exactly once
    assert page.count("Plotly.newPlot(") == len(FIGURES)
    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing loaded from elsewhere
    for title in TITLES:
        assert title in page
    assert "vs energy" in page  # cellbycell has energies: a second Pareto panel
    assert "Budget comparison &lt;MNIST&gt;" in page  # escaped title
    for text in ("equal budgets of trials", "TPESampler(multivariate)", "tie for highest"):
        assert text in page
    assert "★" not in page  # a tie stars nobody


def test_pngs_are_written(report):
    if browser.find_chromium() is None:
        pytest.skip("no Chromium on this machine")
    pngs = report[1].pngs
    assert [p.stem for p in pngs] == list(FIGURES)
    for path in pngs:
        assert path.parent == report[1].html.parent
        data = path.read_bytes()
        assert len(data) > 10_000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_single_seed_without_energy_or_chromium(tmp_path, monkeypatch):
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    study = study_of([ok(1.0, 1, "a"), bad(2), ok(2.0, 3, "b", memory_bits=2e7)], "solo")
    files = write_report(
        [load_run(study, "evolution", 0)],
        tmp_path,
        title="AutoSNN",
        value_name="fitness",
        sampler_settings={},
    )
    assert files.pngs == ()
    assert not list(tmp_path.glob("*.png"))
    (row,) = json.loads(files.json.read_text())["samplers"]
    assert row["best_values"] == [2.0] and row["best_mean"] == 2.0 and row["best_std"] == 0.0
    assert row["settings"] == "" and row["highest_mean_best"] and not row["tied_for_highest"]
    assert "vs energy" not in files.html.read_text()


def test_instant_trials_and_no_feasible_run_do_not_crash(tmp_path):
    # add_trial's create_trial stamps "now": every trial takes ~0 s
    study = study_of([optuna.trial.create_trial(value=-INF, user_attrs={"feasible": False})])
    run = load_run(study, "random", 1)
    assert run.seconds == pytest.approx(0, abs=1) and run.best_value is None
    files = write_report([run], tmp_path, title="t", value_name="v", sampler_settings={}, png=False)
    assert json.loads(files.json.read_text())["highest_mean_best"] is None


def test_no_runs_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="at least one run"):
        write_report([], tmp_path, title="t", value_name="v", sampler_settings={})


def test_summarize_std_of_one_seed_is_zero():
    run = random_run(random.Random(1), "tpe", 0, 10, 1.0)
    (row,) = summarize([run], {"tpe": "x"})
    assert row["best_std"] == 0.0 and row["best_mean"] == run.best_value
    assert math.isclose(row["feasible_fraction_mean"], 1.0)


def best_runs(bests: dict[str, list[float]], extents: dict[str, SearchExtent] | None = None):
    """Per sampler, one run per seed whose trials reach the given best values (three trials
    each: a worse one, the best, a worse one after it)."""
    runs = []
    for sampler, values in bests.items():
        for seed, best in enumerate(values):
            trials = [ok(best - 1.0, 1, "a"), ok(best, 2, "b"), ok(best - 0.5, 3, "c")]
            run = load_run(study_of(trials, f"{sampler}-{seed}"), sampler, seed)
            runs.append(Run(run.sampler, run.seed, run.study_name, run.trials,
                            (extents or {}).get(f"{sampler}-{seed}")))  # fmt: skip
    return runs


def expected_tie(first: list[float], second: list[float]) -> bool:
    """Independently: equal means, or their gap within the larger standard deviation."""
    gap = abs(statistics.mean(first) - statistics.mean(second))
    return gap == 0 or gap <= max(statistics.stdev(first), statistics.stdev(second))


@pytest.mark.parametrize(
    "bests",
    [
        {"tpe": [10.0, 12.0], "nsga2": [12.0, 10.0], "random": [5.0, 5.5]},  # equal means
        {"tpe": [10.0, 12.0], "nsga2": [10.0, 10.2], "random": [5.0, 5.5]},  # within std
        {"tpe": [11.0, 11.2], "nsga2": [10.0, 10.2], "random": [5.0, 5.5]},  # a clear gap
        {"tpe": [3.0, 3.0], "nsga2": [3.0, 3.0], "random": [3.0, 3.0]},  # all the same
    ],
)
def test_a_tie_is_reported_as_a_tie(tmp_path, bests):
    files = write_report(best_runs(bests), tmp_path, title="t", value_name="v",
                         sampler_settings={}, png=False)  # fmt: skip
    data = json.loads(files.json.read_text())
    means = {s: statistics.mean(v) for s, v in bests.items()}
    leader = max(means, key=means.__getitem__)
    tied = [s for s in bests if expected_tie(bests[leader], bests[s])]
    page = files.html.read_text()
    if len(tied) > 1:
        assert data["highest_mean_best"] is None and data["tied_for_highest"] == tied
        names = f"{', '.join(tied[:-1])} and {tied[-1]}"  # "tpe and nsga2", "tpe, nsga2 and random"
        assert data["findings"][0] == (
            f"Tie for the highest mean best: {names}, with {data['tie_rule']}."
        )
        assert "★" not in page and "class=winner" not in page
        assert page.count("= tie for highest mean best") == len(tied)
    else:
        assert data["highest_mean_best"] == leader and data["tied_for_highest"] == []
        assert data["findings"][0].startswith(f"Highest mean best: {leader}. A tie would be")
        assert page.count("★ highest mean best") == 1 and "tie for highest" not in page


def test_samplers_with_the_same_curves_are_named(tmp_path):
    bests = {"tpe": [4.0, 6.0], "nsga2": [4.0, 5.0], "random": [4.0, 5.0]}
    files = write_report(best_runs(bests), tmp_path, title="t", value_name="v",
                         sampler_settings={}, png=False)  # fmt: skip
    found = json.loads(files.json.read_text())["findings"]
    assert any(f.startswith("nsga2 and random found the same best value") for f in found)
    assert not any(f.startswith("tpe and") for f in found)


def test_a_search_cut_short_is_marked_in_the_report_and_the_legends(tmp_path):
    cut = SearchExtent(True, "phase 2: 16 of 22 candidates scored")
    whole = SearchExtent(False, "1 phase, every candidate scored")
    extents = {"cellbycell-0": cut, "cellbycell-1": whole,
               "nsga2-0": SearchExtent(True, "1 generation: random draws only"),
               "nsga2-1": SearchExtent(True, "1 generation: random draws only"),
               "random-0": SearchExtent(False, "random search")}  # fmt: skip
    bests = {"cellbycell": [4.0, 4.0], "nsga2": [6.0, 7.0], "random": [5.0]}
    runs = best_runs(bests, extents)
    files = write_report(runs, tmp_path, title="t", value_name="v", sampler_settings={}, png=False)
    data = json.loads(files.json.read_text())
    rows = {row["sampler"]: row for row in data["samplers"]}
    assert rows["cellbycell"]["cut_short_seeds"] == [0]
    assert rows["nsga2"]["cut_short_seeds"] == [0, 1] and rows["random"]["cut_short_seeds"] == []
    assert rows["cellbycell"]["search"] == [cut.detail, whole.detail]
    assert [r["cut_short"] for r in data["runs"]] == [True, False, True, True, False]
    assert f"Cut short by the budget: cellbycell (seed 0: {cut.detail})." in " ".join(
        data["findings"]
    )
    assert "Cut short by the budget: nsga2 (seed 0: 1 generation" in " ".join(data["findings"])
    page = files.html.read_text()
    assert "cellbycell [cut short]" in page and "nsga2 [cut short]" in page
    assert "random [cut short]" not in page
    assert "1 generation: random draws only (every seed)" in page  # the search column
    assert "only equal values tie" not in data["findings"][0]  # two seeds: a spread is known
    figures = comparison_figures(runs, "v")
    for key in ("best_by_trial", "best_by_time", "pareto"):
        names = [t.name for t in figures[key].data if t.showlegend is not False]
        assert any(n.startswith("cellbycell [cut short on 1 of 2 seeds]") for n in names), key
        assert any(n.startswith("nsga2 [cut short]") for n in names), key
        assert any(n.startswith("random ") and "cut short" not in n for n in names), key
    assert list(figures["feasible_fraction"].data[0].x) == [
        "cellbycell [cut short on 1 of 2 seeds]",
        "nsga2 [cut short]",
        "random",
    ]


def test_every_sampler_line_stays_visible_and_distinct():
    # nsga2 and random coincide on every seed: one line lies exactly on the other
    bests = {"cellbycell": [4.0, 4.0], "tpe": [6.0, 7.0], "nsga2": [5.0, 5.5],
             "random": [5.0, 5.5]}  # fmt: skip
    figures = comparison_figures(best_runs(bests), "v")
    for key in ("best_by_trial", "best_by_time"):
        traces = list(figures[key].data)
        lines = [t for t in traces if t.fill != "toself"]
        bands = [t for t in traces if t.fill == "toself"]
        assert [t.legendgroup for t in lines] == list(bests)  # one line per sampler
        assert len(bands) == len(bests)
        assert traces.index(lines[0]) > max(traces.index(b) for b in bands)  # bands under lines
        assert all(t.mode == "lines+markers" for t in lines)
        for attribute in (lambda t: t.line.dash, lambda t: t.marker.symbol,
                          lambda t: t.line.color):  # fmt: skip
            assert len({attribute(t) for t in lines}) == len(bests), key
        nsga2, random_ = lines[2], lines[3]
        assert list(nsga2.y) == list(random_.y)  # the same curve ...
        assert nsga2.line.width > random_.line.width  # ... the one beneath shows around it
        assert nsga2.marker.size > random_.marker.size
    fronts = [t for t in figures["pareto"].data if t.mode == "lines+markers"]
    assert len({(t.line.dash, t.marker.symbol) for t in fronts}) == len(bests)


def test_the_mean_curve_starts_when_every_seed_with_a_feasible_trial_has_one():
    """Best-so-far curves only rise; a mean over the seeds present at each point would fall when
    a seed joins late with a low value (it did in the time figure). A seed that never finds a
    feasible trial is left out; min..max follow the same points."""
    from optuna_spikenas.report_figures import _stats

    early = [-51.0, -51.0, -50.0, -50.0]
    late = [None, -58.0, -55.0, -49.0]
    never = [None, None, None, None]
    mean, low, high = _stats([early, late, never])
    assert mean == [None, -54.5, -52.5, -49.5]
    assert low == [None, -58.0, -55.0, -50.0] and high == [None, -51.0, -50.0, -49.0]
    assert all(a <= b for a, b in zip(mean[1:], mean[2:], strict=False))
    assert _stats([never, never]) == ([None] * 4, [None] * 4, [None] * 4)
