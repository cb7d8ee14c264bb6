"""SpikeNAS's cell-by-cell sampler: phases, budget filtering, storage-only state, workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
from study_configs import TINY_CELL_BY_CELL

from optuna_spikenas.samplers.cellbycell import (
    PHASE_KEY,
    SLOT_KEY,
    CellByCellSampler,
    grown_network,
)
from optuna_spikenas.samplers.result_mark import RESULT_ATTR
from optuna_spikenas.space import CONV3X3, OPS, SearchSpace, suggest_architecture
from optuna_spikenas.space import distinct_cells as candidate_cells

optuna.logging.set_verbosity(optuna.logging.WARNING)
BIN = Path(sys.executable).parent


def conv_count(arch) -> int:
    return sum(cell.pruned().count_ops().get(CONV3X3, 0) for cell in arch.cells)


def synthetic_score(arch) -> float:
    """A deterministic stand-in score with a unique best per phase (the sampler does not care
    what the score is, only that it is reproducible)."""
    return float(sum((k + 1) * hash(str(c)) % 1009 for k, c in enumerate(arch.cells)))


class Recorder:
    """An objective over the sampler's space that records what it was asked to score."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.seen = []

    def __call__(self, trial: optuna.Trial) -> float:
        arch = suggest_architecture(trial, self.space)
        self.seen.append(arch)
        return synthetic_score(arch)


def test_candidates_are_the_39_functions_of_the_64_cells_over_skip_and_conv3x3():
    cells = candidate_cells(("skip", "conv3x3"))
    assert len(cells) == 39  # the 64 cells compute 39 functions (test_space enumerates them)
    assert len({c.function_key() for c in cells}) == 39
    for cell in cells:
        assert {OPS[code] for _, _, code in cell.edges()} <= {"skip", "conv3x3"}


def test_with_zero_in_the_op_set_equivalent_cells_are_one_candidate():
    cells = candidate_cells(("zero", "skip", "conv3x3"))
    valid = [c for c in _all_cells(("zero", "skip", "conv3x3")) if c.is_valid()]
    assert len(cells) == len({c.canonical() for c in valid}) == 98 < len(valid)


def _all_cells(ops):
    from optuna_spikenas.space import enumerate_cells, op_code

    return list(enumerate_cells([op_code(o) for o in ops]))


def test_phases_candidate_counts_budget_and_self_stop():
    budget_convs = 7  # the grown network may hold at most 7 conv3x3 edges in total
    checked = []

    def fits(arch):
        checked.append(arch)
        return conv_count(arch) <= budget_convs

    sampler = CellByCellSampler(ops=("skip", "conv3x3"), max_cells=4, width=4, fits_budget=fits)
    objective = Recorder(sampler.space)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective)  # no n_trials: the sampler ends the search

    # phase 2: cells 1 and 2 share a candidate (conv count doubled), 6 + 6 > 7 dropped
    phase2 = [a for a in objective.seen if a.num_cells == 2]
    expected2 = [c for c in candidate_cells(("skip", "conv3x3")) if 2 * conv_count_cell(c) <= 7]
    assert len(phase2) == len(expected2)
    assert {str(a.cells[0]) for a in phase2} == {str(c) for c in expected2}
    assert all(a.cells[0] == a.cells[1] for a in phase2)
    best2 = max(phase2, key=synthetic_score)
    phase3 = [a for a in objective.seen if a.num_cells == 3]
    assert phase3 and all(a.cells[:2] == best2.cells for a in phase3)
    left = budget_convs - conv_count(best2)
    pruned_cells = candidate_cells(("skip", "conv3x3"))
    assert len(phase3) == sum(conv_count_cell(c) <= left for c in pruned_cells)
    # every proposed architecture fits; nothing was proposed twice
    assert all(conv_count(a) <= budget_convs for a in objective.seen)
    assert len({str(a) for a in objective.seen}) == len(objective.seen)
    assert sampler.is_complete(study)
    final = sampler.result(study)
    assert final is not None
    assert final.params["num_cells"] == max(a.num_cells for a in objective.seen)
    assert len(study.trials) == len(objective.seen)  # stopped at once, no extra trial


def conv_count_cell(cell) -> int:
    return cell.pruned().count_ops().get(CONV3X3, 0)


def test_ask_tell_loop_ends_cleanly():
    sampler = CellByCellSampler(ops=("skip", "conv3x3"), max_cells=2, width=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    objective = Recorder(sampler.space)
    steps = 0
    while not sampler.is_complete(study):
        trial = study.ask()
        study.tell(trial, objective(trial))
        steps += 1
        assert steps <= 39
    assert steps == 39  # phase 1: one trial per distinct function
    # asking again after the end re-proposes the final network instead of failing
    trial = study.ask()
    arch = suggest_architecture(trial, sampler.space)
    assert str(arch) == sampler.result(study).user_attrs.get("architecture", str(arch))




def optimize_command(url: str, config: Path, *extra: str) -> list[str]:
    storage = ["--storage", url]
    if not url.startswith("sqlite"):
        storage += ["--storage-class", "JournalFileBackend"]
    return [
        str(BIN / "optuna-spikenas"),
        "optimize",
        *storage,
        "--study-name",
        "s",
        "--config",
        str(config),
        "--threads",
        "1",
        "--quiet",
        *extra,
    ]


def storage_of(url: str):
    if url.startswith("sqlite"):
        return url
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))


def make_study(tmp_path: Path, name: str) -> tuple[str, Path]:
    url = f"sqlite:///{tmp_path / name}" if name.endswith(".db") else str(tmp_path / name)
    optuna.create_study(storage=storage_of(url), study_name="s", direction="maximize")
    config = tmp_path / "cbc.toml"
    config.write_text(TINY_CELL_BY_CELL)
    return url, config


def final_of(url: str) -> tuple[str, float, list]:
    """The grown network (read from the trials: the sampler's phases depend on the config's
    budget, which a sampler built here would not have), its score, and the trials."""
    study = optuna.load_study(study_name="s", storage=storage_of(url))
    trials = study.get_trials(deepcopy=False)
    grown = grown_network(trials)
    assert grown is not None and grown.unfinished is None
    final = grown.trial
    return final.user_attrs["architecture"], final.value, trials


@pytest.fixture(scope="module")
def one_worker_result(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("one")
    url, config = make_study(tmp_path, "one.db")
    subprocess.run(optimize_command(url, config), check=True, capture_output=True)
    return final_of(url)


@pytest.mark.parametrize("storage", ["four.db", "four.log"], ids=["sqlite", "journal"])
def test_four_workers_score_no_candidate_twice_and_agree_with_one(
    tmp_path, one_worker_result, storage
):
    url, config = make_study(tmp_path, storage)
    workers = [
        subprocess.Popen(optimize_command(url, config), stderr=subprocess.PIPE) for _ in range(4)
    ]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read().decode()
    arch, score, trials = final_of(url)
    assert (arch, score) == one_worker_result[:2]
    scored = [t for t in trials if t.state.is_finished() and "duplicate_of" not in t.user_attrs]
    keys = [t.user_attrs["canonical"] for t in scored if t.user_attrs.get("feasible")]
    assert len(keys) == len(set(keys))  # no candidate scored twice
    slots = [t.system_attrs[SLOT_KEY] for t in scored if t.system_attrs[SLOT_KEY] >= 0]
    assert sorted(slots) == list(range(len(slots)))  # every slot exactly once
    assert len(slots) == len([t for t in one_worker_result[2] if t.system_attrs[SLOT_KEY] >= 0])


def test_killed_and_restarted_run_ends_with_the_uninterrupted_result(tmp_path, one_worker_result):
    url, config = make_study(tmp_path, "killed.db")
    first = subprocess.Popen(optimize_command(url, config, "--heartbeat", "1"))
    deadline = time.time() + 300
    while time.time() < deadline:
        done = [
            t
            for t in optuna.load_study(study_name="s", storage=url).trials
            if t.state == optuna.trial.TrialState.COMPLETE
        ]
        if len(done) >= 10:
            break
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    restarted = subprocess.run(
        optimize_command(url, config, "--heartbeat", "1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert restarted.returncode == 0, restarted.stderr
    arch, score, trials = final_of(url)
    assert (arch, score) == one_worker_result[:2]
    states = {t.state for t in trials}
    assert optuna.trial.TrialState.RUNNING not in states


def test_a_study_with_other_samplers_trials_is_refused(tmp_path):
    url, config = make_study(tmp_path, "mixed.db")
    study = optuna.load_study(study_name="s", storage=url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    result = subprocess.run(optimize_command(url, config), capture_output=True, text=True)
    assert result.returncode == 2
    assert "study of its own" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 2
    sampler = CellByCellSampler(max_cells=2, width=4)
    with pytest.raises(ValueError, match="study of its own"):
        optuna.load_study(study_name="s", storage=url, sampler=sampler).ask()


def test_a_study_that_minimizes_is_refused():
    """The sampler keeps each phase's highest value: a minimizing study would grow the worst."""
    for directions in (["minimize"], ["maximize", "maximize"]):
        sampler = CellByCellSampler(max_cells=2, width=4)
        study = optuna.create_study(directions=directions, sampler=sampler)
        with pytest.raises(ValueError, match='direction="maximize"'):
            study.ask()


@pytest.mark.parametrize("sampler_name", ["cellbycell", "evolution"])
def test_a_worker_killed_while_its_sampler_chooses_leaves_a_stale_trial(tmp_path, sampler_name):
    # Optuna's own heartbeat starts after the sampler's before_trial: without our beat, a
    # worker dying there leaves a RUNNING trial that never goes stale (the cell-by-cell search
    # then waits for it forever)
    from optuna_spikenas.samplers.evolution import EvolutionarySampler
    from optuna_spikenas.storage import open_storage

    url = f"sqlite:///{tmp_path / 'stale.db'}"
    optuna.create_study(storage=url, study_name="s", direction="maximize")
    storage = open_storage(url, None, heartbeat_seconds=1)
    sampler = (
        CellByCellSampler(max_cells=2, width=4)
        if sampler_name == "cellbycell"
        else EvolutionarySampler(seed=0)
    )
    study = optuna.load_study(study_name="s", storage=storage, sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats outside study.optimize, experimental API
        trial = study.ask()  # runs before_trial, then the "worker" dies: no objective, no tell
        time.sleep(3.5)  # the grace period is 2 s; SQLite's clock has 1 s steps
        optuna.storages.fail_stale_trials(study)
    state = optuna.load_study(study_name="s", storage=url).trials[trial.number].state
    assert state == optuna.trial.TrialState.FAIL


def test_a_slot_with_a_retry_still_pending_is_not_settled():
    """Two failures settle a slot only when no retry of it is waiting or running: a retry that
    completed after its phase closed would change that phase's winner."""
    from optuna_spikenas.recovery import MAX_FAILURES, attempts_settled

    def attempt(state):
        return optuna.trial.create_trial(
            state=state,
            values=[1.0]
            if state.is_finished() and state == optuna.trial.TrialState.COMPLETE
            else None,
        )

    fail, waiting, running, complete = (
        attempt(s)
        for s in (
            optuna.trial.TrialState.FAIL,
            optuna.trial.TrialState.WAITING,
            optuna.trial.TrialState.RUNNING,
            optuna.trial.TrialState.COMPLETE,
        )
    )
    failures = [fail] * MAX_FAILURES
    assert attempts_settled(failures)
    assert not attempts_settled([*failures, waiting])
    assert not attempts_settled([*failures, running])
    assert attempts_settled([*failures, running, complete])  # a result settles it at once
    assert not attempts_settled([fail])


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # stale-trial check
def test_a_trial_that_adopted_an_orphan_yields_to_its_retry_taken_up_meanwhile():
    """The stale-trial race: worker A adopts a dead trial's slot as an orphan while worker B
    takes up Optuna's WAITING retry of it. B cannot see A's claim yet, so A reads back after
    claiming, finds the running retry and claims again: the candidate is scored once."""
    import copy
    import threading

    from optuna.trial import TrialState

    from optuna_spikenas.samplers.cellbycell import PARAMS_KEY

    study, sampler, frozen = _dead_slot_and_sampler()
    retry = copy.deepcopy(frozen)  # as Optuna's retry callback makes it, taken up by B
    retry.state = TrialState.RUNNING
    retry.system_attrs = {**frozen.system_attrs, "failed_trial": frozen.number}
    storage = study._storage
    retry_id = storage.create_new_trial(study._study_id, template_trial=retry)

    def b_finishes_the_retry_a_moment_later():
        # A's first read saw the retry still WAITING: slot 0 looked orphaned.
        finish = (retry_id, TrialState.COMPLETE, [1.0])
        threading.Timer(0.3, storage.set_trial_state_values, finish).start()

    _first_read_sees_an_orphan(sampler, then=b_finishes_the_retry_a_moment_later)
    a = study.ask()
    attrs = study._storage.get_trial_system_attrs(a._trial_id)
    assert attrs[SLOT_KEY] == -1  # not slot 0: the retry scored it; A re-proposes the result
    assert attrs[PARAMS_KEY] == frozen.system_attrs[PARAMS_KEY]  # the grown network, a duplicate


def _dead_slot_and_sampler(poll: float = 0.05):
    """A study whose phase's only candidate (slot 0) died, no retry made: an orphan."""
    from optuna.trial import TrialState

    sampler = CellByCellSampler(ops=("conv3x3",), max_cells=2, width=4, poll_seconds=poll)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dead = study.ask()
    study.tell(dead, state=TrialState.FAIL)
    return study, sampler, study.trials[0]


def _adopter(study, frozen):
    """A running fresh trial that adopted slot 0 (written straight into storage)."""
    import copy

    from optuna.trial import TrialState

    from optuna_spikenas.samplers.cellbycell import PARAMS_KEY

    twin = copy.deepcopy(frozen)
    twin.state = TrialState.RUNNING
    twin.system_attrs = {SLOT_KEY: 0, PARAMS_KEY: frozen.system_attrs[PARAMS_KEY]}
    return study._storage.create_new_trial(study._study_id, template_trial=twin)


def _first_read_sees_an_orphan(sampler, then=None):
    """``_orphan_slot`` as if this trial read the storage before the other adopter's claim."""
    adopt, calls = sampler._orphan_slot, []

    def patched(*args):
        calls.append(args)
        if len(calls) > 1:
            return adopt(*args)
        if then is not None:
            then()
        return 0

    sampler._orphan_slot = patched


def test_of_two_workers_adopting_one_orphan_the_lower_numbered_keeps_it():
    """Two fresh trials that adopt the same dead slot at once (each read the storage before the
    other's claim) both read back after a poll: the higher-numbered one claims again, so the
    candidate is scored once, by the lower."""
    import threading

    from optuna.trial import TrialState

    study, sampler, frozen = _dead_slot_and_sampler()
    lower_id = _adopter(study, frozen)  # trial 1, its claim written first
    storage = study._storage

    def lower_finishes_later():
        finish = (lower_id, TrialState.COMPLETE, [1.0])
        threading.Timer(0.3, storage.set_trial_state_values, finish).start()

    _first_read_sees_an_orphan(sampler, then=lower_finishes_later)
    higher = study.ask()  # trial 2
    assert higher.number > storage.get_trial(lower_id).number
    attrs = storage.get_trial_system_attrs(higher._trial_id)
    assert attrs[SLOT_KEY] == -1  # not slot 0: the lower adopter scored it; a duplicate now


def test_an_adopter_keeps_the_orphan_when_the_other_adopter_is_numbered_higher():
    import threading

    study, sampler, frozen = _dead_slot_and_sampler(poll=0.3)
    made = []

    def higher_claims_during_the_pause():  # after this trial (number 1) exists and decides
        threading.Timer(0.05, lambda: made.append(_adopter(study, frozen))).start()

    _first_read_sees_an_orphan(sampler, then=higher_claims_during_the_pause)
    lower = study.ask()
    assert made, "the other adopter was not created during the pause"
    assert study._storage.get_trial(made[0]).number > lower.number
    assert study._storage.get_trial_system_attrs(lower._trial_id)[SLOT_KEY] == 0  # kept


# --- the search's result: marked on the trials and the study, read from the trials alone -------


def phase_winner(trials, cells: int):
    """The highest-scoring candidate with ``cells`` cells (the first among equals), computed
    here from the trials' parameters and values, not by the sampler."""
    phase = [t for t in trials if t.params["num_cells"] == cells]
    return max(phase, key=lambda t: (t.value, -t.number))


def test_each_trial_marks_the_result_so_far_and_the_study_the_grown_network():
    sampler = CellByCellSampler(ops=("skip", "conv3x3"), max_cells=3, width=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(Recorder(sampler.space))
    trials = study.get_trials(deepcopy=False)
    final = sampler.result(study)
    first, second = phase_winner(trials, 2), phase_winner(trials, 3)
    assert final.number == second.number
    marks = [t.user_attrs.get(RESULT_ATTR) for t in trials]
    phase2 = sum(t.params["num_cells"] == 2 for t in trials)
    # no result until phase 2 is scored; then phase 2's winner until phase 3 is
    assert marks == [None] * (phase2 - 1) + [first.number] * (len(trials) - phase2) + [final.number]
    assert study.user_attrs[RESULT_ATTR] == final.number
    grown = grown_network(trials)
    assert (grown.trial.number, grown.cells, grown.unfinished) == (final.number, 3, None)


def test_a_search_stopped_in_a_phase_is_read_from_its_trials_alone():
    sampler = CellByCellSampler(ops=("skip", "conv3x3"), max_cells=3, width=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(Recorder(sampler.space), n_trials=45)  # phase 2's 39, then 6 of phase 3
    trials = study.get_trials(deepcopy=False)
    grown = grown_network(trials)
    assert grown.trial.number == sampler.result(study).number == phase_winner(trials, 2).number
    assert (grown.cells, grown.unfinished) == (2, 3)
    assert RESULT_ATTR not in study.user_attrs  # not complete: no final result yet
    assert grown_network(trials[:20]) is None  # phase 2 not scored yet
    assert grown_network([t for t in trials if PHASE_KEY not in t.system_attrs]) is None


def test_workers_sharing_a_study_agree_on_the_grown_network():
    sampler = CellByCellSampler(ops=("skip", "conv3x3"), max_cells=3, width=4, poll_seconds=0.01)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(Recorder(sampler.space), n_jobs=4)
    trials = study.get_trials(deepcopy=False)
    final = sampler.result(study)
    assert final.number == phase_winner(trials, 3).number
    assert grown_network(trials).trial.number == final.number
    assert study.user_attrs[RESULT_ATTR] == final.number
    marks = {t.user_attrs[RESULT_ATTR] for t in trials if RESULT_ATTR in t.user_attrs}
    assert final.number in marks <= {phase_winner(trials, 2).number, final.number}
