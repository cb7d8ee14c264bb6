"""SpikeNAS's cell-by-cell search with the package's training-free objective, in seconds.

The smallest real search: SNASNet cells over the pruned op set {skip, conv3x3}, scored with
SAHD on untrained spiking networks (no training), on the 8x8 digits bundled with scikit-learn
(nothing is downloaded). The network grows from 2 to at most 3 cells of width 4 under a
5,000-parameter memory budget; the study stops by itself when it is grown. Networks this small
run fastest on one thread (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

from pathlib import Path

import optuna
import optunahub

PACKAGE = "samplers/spikenas_cell_by_cell"


def load_package():
    """This folder when the example runs inside a registry checkout, else OptunaHub's copy."""
    registry_root = Path(__file__).resolve().parent.parent.parent
    if (registry_root / PACKAGE / "__init__.py").is_file():
        return optunahub.load_local_module(package=PACKAGE, registry_root=str(registry_root))
    return optunahub.load_module(package=PACKAGE)


mod = load_package()
optuna.logging.set_verbosity(optuna.logging.WARNING)

config = mod.config_from_dict(
    {
        "seed": 2,
        "dataset": {"name": "digits"},
        "space": {"macro": "light", "num_cells": [2, 3], "widths": [4], "shared_cell": False},
        "score": {"kind": "sahd", "batch_size": 16, "repeats": 1, "timesteps": 2},
        "budget": {"max_parameters": 5000},
        "search": {"sampler": "cellbycell", "ops": ["skip", "conv3x3"]},
    }
)
objective = mod.SpikeNASObjective(config)
space = objective.space
sampler = mod.CellByCellSampler(
    ops=config.search.ops,
    max_cells=space.max_cells,
    width=space.widths[0],
    fits_budget=objective.fits_budget,  # analytic: over-budget candidates are never proposed
)
assert not sampler.mismatches(space, config.search.ops)

study = optuna.create_study(direction="maximize", sampler=sampler)
study.optimize(objective)  # no n_trials: the sampler stops the study when the network is grown

state = sampler.state(study)
for phase, winner in zip(state.phases, state.winners, strict=True):
    kept = phase.candidates[winner - phase.start]
    print(f"phase {phase.k}: {len(phase.candidates)} candidates fit the budget, kept {kept}")
final = sampler.result(study)
print(f"{len(study.trials)} trials; complete: {sampler.is_complete(study)}")
print(
    f"grown network: {final.user_attrs['architecture']} "
    f"({final.user_attrs['parameters']} parameters, SAHD score {final.value:.3f})"
)
