"""AutoSNN's evolutionary search through the package's super-network fitness, in seconds.

The smallest real search: AutoSNN's five block positions (skip, SCB_k3, SCB_k5, SRB_k3,
SRB_k5 each), a weight-sharing super-network of width 4 trained for one epoch at 2 timesteps
on scikit-learn's 8x8 digits (nothing is downloaded), and 3 generations of 6 candidates. Each
trial's value is AutoSNN's fitness F = accuracy x (spikes / S_ref)^-0.08 of its path through the
super-network on held-out images. At these CPU-sized settings the super-network is barely
trained, so the accuracies are near chance: a demonstration of the method, not of its accuracy.
The super-network is saved under ./checkpoints and reused by a second run. Networks this small
run fastest on one thread (OMP_NUM_THREADS=1).
"""

from __future__ import annotations

from pathlib import Path

import optuna
import optunahub

PACKAGE = "samplers/autosnn_evolution"


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
        "seed": 1,
        "dataset": {"name": "digits"},
        "space": {"macro": "autosnn-16", "widths": [4]},
        "supernet": {
            "epochs": 1,
            "timesteps": 2,
            "batch_size": 32,
            "eval_images": 64,
            "checkpoint_dir": "checkpoints",
        },
        "search": {"sampler": "evolution"},
    }
)
objective = mod.AutoSNNObjective(config)  # trains the super-network, or loads its checkpoint
sampler = mod.EvolutionarySampler(
    mod.AUTOSNN_SEARCH_SPACE,  # block1 .. block5, each one of the five blocks
    population_size=6,
    num_parents=3,
    generations=3,
    seed=0,
)
study = optuna.create_study(direction="maximize", sampler=sampler)
study.optimize(objective)  # no n_trials: the sampler stops the study after the last generation

for generation in range(sampler.generations):
    members = sampler.population(study, generation)
    best = max(t.value for t in members)
    origins = sorted({t.system_attrs["evolution:origin"] for t in members})
    print(f"generation {generation}: {len(members)} trials ({', '.join(origins)}), best {best:.4f}")
top = sampler.best_trials(study, 1)[0]
print(f"{len(study.trials)} trials; complete: {sampler.is_complete(study)}")
print(
    f"best: {top.user_attrs['architecture']} (fitness {top.value:.4f}, accuracy "
    f"{top.user_attrs['accuracy']:.3f}, {top.user_attrs['spikes_per_image']:.1f} spikes/image)"
)
