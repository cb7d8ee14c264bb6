"""``optuna-spikenas compare``: our sampler against Optuna's TPE, NSGA-II and random.

Every sampler runs once per seed on the same objective (one dataset split, one set of scoring
batches, the same candidate weights) with the same budget in trials or seconds; each run is a
study of its own, named ``PREFIX-SAMPLER-seedN``, in one storage. A rerun reuses the runs that
finished with the same budget and value-defining settings (``study_binding``) and restarts the
others from scratch (an interrupted run's wall time cannot be continued fairly). The studies
become one HTML report (:mod:`report`), which says how far each run's search got
(:mod:`search_extent`): a sampler the budget cut short is marked, not silently compared.

NSGA-II's population is 20, or a third of a smaller trial budget (at least 2), so that it runs
at least :data:`NSGA2_MIN_GENERATIONS` generations and breeds instead of drawing at random.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from optuna_spikenas.comparison_runs import load_run
from optuna_spikenas.config import Config, validate_compare
from optuna_spikenas.dashboard import (
    TrialArtifacts,
    open_artifact_store,
    save_study_figures,
    save_study_note,
)
from optuna_spikenas.report import ReportFiles, write_report
from optuna_spikenas.sampler_catalog import NSGA2_POPULATION, TPE_STARTUP_TRIALS, nsga2_settings
from optuna_spikenas.samplers import make_sampler, sampler_settings
from optuna_spikenas.search_extent import search_extent
from optuna_spikenas.storage import open_storage
from optuna_spikenas.study_binding import (
    FINGERPRINT_ATTR,
    bind_study,
    config_fingerprint,
)

DONE_ATTR = "compare_budget"
"""Study user attribute written when a run finished: the budget it ran with."""

NSGA2_MIN_GENERATIONS = 3
"""Generations NSGA-II's population is sized to run in a trial budget (the first is random)."""


def nsga2_population(n_trials: int | None) -> int:
    """NSGA-II's population for a budget of ``n_trials``: 20, or the largest that runs
    :data:`NSGA2_MIN_GENERATIONS` generations in a smaller budget (Optuna's minimum is 2);
    20 for a budget in seconds only (the report says how many generations ran)."""
    if n_trials is None:
        return NSGA2_POPULATION
    return max(2, min(NSGA2_POPULATION, n_trials // NSGA2_MIN_GENERATIONS))


@dataclass(frozen=True)
class ComparisonPlan:
    samplers: tuple[str, ...]
    seeds: tuple[int, ...]
    n_trials: int | None
    timeout: float | None
    study_prefix: str
    nsga2_population: int = NSGA2_POPULATION

    @classmethod
    def from_config(cls, config: Config, quick: bool = False) -> ComparisonPlan:
        validate_compare(config, quick)
        compare = config.compare
        n_trials = compare.n_trials or config.search.n_trials
        if quick:
            n_trials = min(n_trials or compare.quick_n_trials, compare.quick_n_trials)
        return cls(
            samplers=compare.samplers,
            seeds=compare.quick_seeds if quick else compare.seeds,
            n_trials=n_trials,
            timeout=compare.timeout,
            study_prefix=compare.study_prefix + ("-quick" if quick else ""),
            nsga2_population=nsga2_population(n_trials),
        )

    def runs(self) -> list[tuple[str, int]]:
        return [(sampler, seed) for sampler in self.samplers for seed in self.seeds]

    def study_name(self, sampler: str, seed: int) -> str:
        return f"{self.study_prefix}-{sampler}-seed{seed}"

    @property
    def budget(self) -> str:
        parts = [f"{self.n_trials} trials"] if self.n_trials else []
        parts += [f"{self.timeout:g} s"] if self.timeout else []
        return " or ".join(parts)

    def run_budget(self, sampler: str) -> str:
        """What a finished run of ``sampler`` is marked with: the budget, and NSGA-II's
        population when it is not the usual 20 (a run with another population is not reused)."""
        if sampler == "nsga2" and self.nsga2_population != NSGA2_POPULATION:
            return f"{self.budget}, population {self.nsga2_population}"
        return self.budget

    def settings(self, sampler: str) -> str:
        """``sampler``'s settings in words, as this plan runs it."""
        if sampler == "nsga2":
            return nsga2_settings(self.nsga2_population)
        return sampler_settings(sampler)


def value_name(config: Config) -> str:
    if config.is_autosnn:
        return "fitness" if config.fitness.objectives == "fitness" else "held-out accuracy"
    if config.train.directions == ("maximize",) and config.train.epochs:
        return "validation accuracy"
    return f"{config.score.kind.upper()} score"


def prepare_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    config: Config,
    budget: str,
    log: Callable[[str], None],
) -> tuple[optuna.Study, bool]:
    """The run's study and whether it already finished with ``budget`` (``run_budget``) and
    the same value-defining settings (``study_binding``); an unfinished, differently budgeted
    or differently set one is deleted and made again, and ``log`` says which."""
    directions = list(config.directions)
    mine = config_fingerprint(config)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        study = None
    if study is not None:
        found = [d.name.lower() for d in study.directions]
        if study.user_attrs.get(FINGERPRINT_ATTR) != mine or found != directions:
            log(f"{name}: made with other value-defining settings, started again")
        elif study.user_attrs.get(DONE_ATTR) != budget:
            log(f"{name}: unfinished or made with another budget, started again")
        else:
            log(f"{name}: finished earlier ({len(study.trials)} trials, budget {budget}), reused")
            return study, True
        optuna.delete_study(study_name=name, storage=storage)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=directions,  # type: ignore[arg-type]  # "maximize"/"minimize" strings
    )
    bind_study(study, config)
    return study, False


def run_comparison(
    config: Config,
    storage_url: str,
    out_dir: str | Path,
    quick: bool = False,
    artifact_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    progress_bar: bool = True,
    png: bool = True,
) -> ReportFiles:
    """Run every (sampler, seed) of the plan that has not finished yet, then write the report."""
    from optuna_spikenas.objective_factory import make_objective  # torch import: after validation

    plan = ComparisonPlan.from_config(config, quick)
    say = log or (lambda _message: None)
    storage = open_storage(storage_url, create=True)
    objective = make_objective(config, log=log)
    store = open_artifact_store(artifact_dir) if artifact_dir is not None else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = []
    for index, (sampler_name, seed) in enumerate(plan.runs(), start=1):
        name = plan.study_name(sampler_name, seed)
        budget = plan.run_budget(sampler_name)
        study, done = prepare_study(storage, name, config, budget, say)
        sampler = make_sampler(
            sampler_name,
            seed,
            space=None if config.is_autosnn else objective.space,
            ops=config.search.ops,
            fits_budget=objective.fits_budget,
            population_size=plan.nsga2_population,
        )
        if not done:
            say(f"[{index}/{len(plan.runs())}] {sampler_name}, seed {seed}: {budget}")
            study.sampler = sampler
            study.set_user_attr("compare_sampler", sampler_name)
            study.set_user_attr("compare_seed", seed)
            study.optimize(
                objective if store is None else TrialArtifacts(objective, store),
                n_trials=plan.n_trials,
                timeout=plan.timeout,
                show_progress_bar=progress_bar,
            )
            save_study_figures(study)
            save_study_note(study)
            study.set_user_attr(DONE_ATTR, budget)
        extent = search_extent(sampler, study)
        if extent.cut_short:
            say(f"{name}: cut short by the budget ({extent.detail})")
        runs.append(load_run(study, sampler_name, seed, extent))
    return write_report(
        runs,
        out_dir,
        title=f"{', '.join(plan.samplers)} on {config.space.macro} / {config.dataset.name}",
        value_name=value_name(config),
        sampler_settings={name: plan.settings(name) for name in plan.samplers},
        notes=report_notes(config, plan, storage_url),
        png=png,
    )


def report_notes(config: Config, plan: ComparisonPlan, storage_url: str) -> list[str]:
    notes = [
        f"Budget per run: {plan.budget}; seeds {list(plan.seeds)}; every run is a study in "
        f"{storage_url} named {plan.study_name('SAMPLER', 0).replace('seed0', 'seedN')}.",
        f"Objective: {value_name(config)} (maximized) of {config.space.macro} networks with "
        f"{list(config.space.num_cells)} cells at width {list(config.space.widths) or 'default'} "
        f"on {config.dataset.name}, study seed {config.seed}; weight memory budget: "
        f"{_memory_budget(config)}.",
        f"Machine: {_cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Optuna {optuna.__version__}.",
    ]
    if "cellbycell" in plan.samplers:
        notes.append(
            "cellbycell proposes its candidates in a fixed order (the seed does not change it) "
            "and stops by itself when its last phase is scored, possibly before the budget."
        )
    if "tpe" in plan.samplers:
        notes.append(
            f"TPE's first {TPE_STARTUP_TRIALS} trials are random draws: with the same seed they "
            "equal the random sampler's first trials."
        )
    if "nsga2" in plan.samplers:
        sized = "as `optimize` runs it"
        if plan.n_trials is not None and plan.nsga2_population < NSGA2_POPULATION:
            generations = math.ceil(plan.n_trials / plan.nsga2_population)
            sized = f"sized so that {plan.n_trials} trials run {generations} generations"
        notes.append(
            f"NSGA-II's population is {plan.nsga2_population} ({sized}); its first generation "
            "is random draws, equal to the random sampler's first trials with the same seed."
        )
    return notes


def _memory_budget(config: Config) -> str:
    bits = config.budget.memory_bits
    return "none" if bits is None else f"{bits / 8e6:.3f} MB at {config.budget.weight_bits} bits"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
