"""Per-trial overhead: the samplers read a trial's claim from storage once per trial, not once per
parameter; the duplicate lookup and the study binding do not walk the study on every trial, and
still see what other processes write to the same storage."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from typing import Any

import optuna
import pytest
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState, create_trial

from optuna_spikenas.samplers.cellbycell import PARAMS_KEY, CellByCellSampler
from optuna_spikenas.samplers.evolution import EvolutionarySampler
from optuna_spikenas.space import SearchSpace, suggest_architecture
from optuna_spikenas.study_binding import FINGERPRINT_ATTR, bound_fingerprint
from optuna_spikenas.study_setup import find_scored_duplicate

optuna.logging.set_verbosity(optuna.logging.WARNING)


class CountingStorage(InMemoryStorage):
    """An in-memory storage that counts the reads a per-trial cache should save."""

    def __init__(self) -> None:
        super().__init__()
        self.system_attr_reads: Counter[int] = Counter()  # per trial id
        self.trial_list_reads = 0

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        self.system_attr_reads[trial_id] += 1
        return super().get_trial_system_attrs(trial_id)

    def get_all_trials(self, *args: Any, **kwargs: Any) -> list[optuna.trial.FrozenTrial]:
        self.trial_list_reads += 1
        return super().get_all_trials(*args, **kwargs)


def score_architecture(space: SearchSpace):
    def objective(trial: optuna.Trial) -> float:
        arch = suggest_architecture(trial, space)
        return float(sum(hash(str(cell)) % 101 for cell in arch.cells))

    return objective


@pytest.mark.parametrize("kind", ["cellbycell", "evolution"])
def test_samplers_read_a_trials_claim_once_per_trial_not_once_per_parameter(kind):
    if kind == "cellbycell":
        sampler: optuna.samplers.BaseSampler = CellByCellSampler(
            ops=("skip", "conv3x3"), max_cells=3, width=4
        )
        space = sampler.space
    else:
        space = SearchSpace(num_cells=(2, 3), widths=(4,), shared_cell=False)
        sampler = EvolutionarySampler.for_cell_space(
            space, population_size=4, num_parents=2, generations=3, seed=0
        )
    storage = CountingStorage()
    study = optuna.create_study(storage=storage, direction="maximize", sampler=sampler)
    study.optimize(score_architecture(space), n_trials=12)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert min(len(t.params) for t in trials) >= 13  # many parameters per trial
    per_trial = [storage.system_attr_reads[t._trial_id] for t in trials]
    assert max(per_trial) <= 1, per_trial
    assert storage.trial_list_reads <= 6 * len(trials)  # a few reads per trial, not per param


def test_a_restarted_worker_reads_a_claim_from_storage_once():
    """A sampler that did not make the claim (another process, a restart) reads it once."""
    space_of = dict(ops=("skip", "conv3x3"), max_cells=2, width=4)
    storage = CountingStorage()
    study = optuna.create_study(
        storage=storage, direction="maximize", sampler=CellByCellSampler(**space_of)
    )
    trial = study.ask()
    claim = storage.get_trial_system_attrs(trial._trial_id)[PARAMS_KEY]
    storage.system_attr_reads.clear()
    other = CellByCellSampler(**space_of)
    frozen = storage.get_trial(trial._trial_id)
    distribution = optuna.distributions.CategoricalDistribution(("skip", "conv3x3"))
    values = {name: other.sample_independent(study, frozen, name, distribution) for name in claim}
    assert values == claim
    assert storage.system_attr_reads[trial._trial_id] == 1


def scored(canonical: str, fingerprint: str, value: float = 1.0) -> optuna.trial.FrozenTrial:
    attrs = {"canonical": canonical, "feasible": True, FINGERPRINT_ATTR: fingerprint}
    return create_trial(value=value, user_attrs=attrs)


def add_trial_in_another_process(url: str, canonical: str, fingerprint: str) -> None:
    code = textwrap.dedent(
        f"""
        import optuna
        from optuna.trial import create_trial
        study = optuna.load_study(study_name="s", storage={url!r})
        attrs = {{"canonical": {canonical!r}, "feasible": True,
                  "config_fingerprint": {fingerprint!r}}}
        study.add_trial(create_trial(value=7.0, user_attrs=attrs))
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_duplicate_lookup_finds_a_trial_another_process_completed(tmp_path):
    url = f"sqlite:///{tmp_path / 'dup.db'}"
    study = optuna.create_study(storage=url, study_name="s", direction="maximize")
    running = study.ask()  # this worker's trial, as when the objective looks duplicates up
    study.add_trial(scored("A", "F"))
    assert find_scored_duplicate(study, "B", "F") is None  # indexes what it has seen
    add_trial_in_another_process(url, "B", "F")
    add_trial_in_another_process(url, "C", "G")
    found = find_scored_duplicate(study, "B", "F")
    assert found is not None and found.value == 7.0 and found.number == 2
    assert find_scored_duplicate(study, "C", "F") is None  # other settings: not a duplicate
    assert find_scored_duplicate(study, "A", "F").number == 1
    # a lower-numbered duplicate that completes later wins, as a walk in number order would
    running.set_user_attr("canonical", "B")
    running.set_user_attr("feasible", True)
    running.set_user_attr(FINGERPRINT_ATTR, "F")
    study.tell(running, 3.0)
    assert find_scored_duplicate(study, "B", "F").number == 0
    # a second study object on its own storage (as another worker has) finds the same trials
    other = optuna.load_study(study_name="s", storage=url)
    assert find_scored_duplicate(other, "B", "F").number == 0


def test_duplicate_lookup_ignores_unscored_failed_and_foreign_trials():
    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=scored("A", "F").user_attrs))
    infeasible = {"canonical": "A", "feasible": False, FINGERPRINT_ATTR: "F"}
    study.add_trial(create_trial(value=1.0, user_attrs=infeasible))
    study.add_trial(create_trial(value=1.0, user_attrs={"canonical": ["A"], "feasible": True}))
    assert find_scored_duplicate(study, "A", "F") is None
    study.add_trial(scored("A", "F"))
    assert find_scored_duplicate(study, "A", "F").number == 3


def test_a_settled_binding_is_not_read_again_and_an_open_one_is():
    storage = CountingStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    first = study.ask()  # running, not marked yet: the binding may still change
    second = study.ask()
    second.set_user_attr(FINGERPRINT_ATTR, "G")
    assert bound_fingerprint(study) == "G"
    first.set_user_attr(FINGERPRINT_ATTR, "F")  # marks itself late: it takes the study
    assert bound_fingerprint(study) == "F"
    reads = storage.trial_list_reads
    for _ in range(5):
        assert bound_fingerprint(study) == "F"  # trial 0 holds it: it cannot change
    assert storage.trial_list_reads == reads
