"""The samplers a study can name, and what the command line needs to know of each, without
building any (no Optuna import). ``samplers/__init__.py`` builds them by the same names; a new
sampler is an entry here and a branch in ``make_sampler`` (``tests/test_structure.py`` checks
that the two agree)."""

from __future__ import annotations

from dataclasses import dataclass

TPE_STARTUP_TRIALS = 10
"""TPE's random start-up trials (``make_sampler``): on no more trials than these it is random
search."""

NSGA2_POPULATION = 20
"""NSGA-II's population (``make_sampler``'s default): its first generation is random draws."""


def nsga2_settings(population_size: int = NSGA2_POPULATION) -> str:
    """NSGA-II's settings in words, with the population it runs with."""
    return (
        f"NSGAIISampler(population_size={population_size}, crossover_prob=0.9, mutation 1/params)"
    )


@dataclass(frozen=True)
class SamplerInfo:
    """What is known of a sampler before it is built."""

    settings: str  # the settings ``make_sampler`` gives it, in words (for reports)
    stops_by_itself: bool = False  # it ends the search (no n_trials or timeout needed)
    grows_cells: bool = False  # SpikeNAS's phases: a status line per phase, the grown network


SAMPLER_CATALOG: dict[str, SamplerInfo] = {
    "random": SamplerInfo("RandomSampler, uniform over the full op set"),
    "tpe": SamplerInfo(
        f"TPESampler(n_startup_trials={TPE_STARTUP_TRIALS}, multivariate=False, "
        "constant_liar=False)"
    ),
    "nsga2": SamplerInfo(nsga2_settings()),
    "cellbycell": SamplerInfo(
        "CellByCellSampler (SpikeNAS): pruned ops, one cell at a time under the budget",
        stops_by_itself=True,
        grows_cells=True,
    ),
    "evolution": SamplerInfo(
        "EvolutionarySampler (AutoSNN): population 20, 10 parents, 10 children by crossover "
        "+ mutation, 20 generations"
    ),
}

SAMPLERS: tuple[str, ...] = tuple(SAMPLER_CATALOG)

SCREEN_BASES: tuple[str, ...] = ("random", "tpe", "nsga2")
"""The samplers that can propose the candidates of ``[search] screen`` (``samplers/screen.py``
wraps them; ``random`` is then seeded per trial number, so any number of workers screens the
same candidates)."""
