"""Many workers on one PostgreSQL study, and a worker killed mid-trial, through the real CLI.

The study is made by ``optuna create-study`` and searched by ``optuna-spikenas optimize``
processes, as on a cluster. These tests need a PostgreSQL server::

    export SPIKENAS_POSTGRES_URL="$(bash scripts/postgres.sh)"

Without ``SPIKENAS_POSTGRES_URL`` they are skipped, unless ``SPIKENAS_REQUIRE_POSTGRES=1`` (CI)
makes that a failure. The tests of the retry callback at the end use SQLite and always run.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.constraint_list import record_constraint_list
from optuna_spikenas.storage import (
    CLAIM_KEYS,
    DEFAULT_RETRIES,
    RetryStaleTrial,
    has_candidate,
    open_storage,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
BIN = Path(sys.executable).parent
WORKER_TIMEOUT = 300  # seconds for any one `optimize` process (a run takes 10-40 s)
WORKER_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# 13 candidate cells over {zero, conv1x1}; the 3500-parameter budget keeps all 13 for cells 1-2
# and 8 of 13 for cell 3: 21 slots in two phases, so workers wait for each other between them.
CELL_BY_CELL = """
seed = 2
[dataset]
name = "digits"
[space]
macro = "light"
num_cells = [2, 3]
widths = [4]
shared_cell = false
[score]
batch_size = 16
repeats = 1
timesteps = 2
[budget]
max_parameters = 3500
[search]
sampler = "cellbycell"
ops = ["zero", "conv1x1"]
"""

# AutoSNN's evolution through a tiny super-network; each worker runs 6 trials (--n-trials).
AUTOSNN = """
seed = 3
[dataset]
name = "digits"
[space]
macro = "autosnn-16"
widths = [4]
[supernet]
epochs = 1
timesteps = 2
eval_images = 64
checkpoint_dir = "{checkpoint_dir}"
[search]
sampler = "evolution"
"""


# --- the server, studies and workers ------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """The test server's URL; studies made through it are deleted at the end."""
    url = os.environ.get("SPIKENAS_POSTGRES_URL")
    if not url:
        message = 'no PostgreSQL server: export SPIKENAS_POSTGRES_URL="$(bash scripts/postgres.sh)"'
        if os.environ.get("SPIKENAS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"SPIKENAS_REQUIRE_POSTGRES=1 but {message}")
        pytest.skip(message)
    try:
        storage = RDBStorage(url)
    except Exception as err:  # a missing driver, a server that is down, a wrong password
        pytest.fail(f"cannot open SPIKENAS_POSTGRES_URL: {type(err).__name__}: {err}")
    before = set(optuna.get_all_study_names(storage))
    yield url
    for name in set(optuna.get_all_study_names(storage)) - before:
        if name.startswith("spikenas-test-"):
            optuna.delete_study(study_name=name, storage=storage)
    storage.engine.dispose()


def create_study(url: str) -> str:
    """A new study made by Optuna's own CLI, with a name no other run uses."""
    name = f"spikenas-test-{uuid.uuid4().hex[:12]}"
    argv = [
        str(BIN / "optuna"),
        "create-study",
        "--storage",
        url,
        "--study-name",
        name,
        "--direction",
        "maximize",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"optuna create-study failed:\n{result.stderr}"
    return name


class Worker:
    """One `optuna-spikenas optimize` process; its output goes to files, not pipes."""

    def __init__(self, url: str, study: str, config: Path, log: Path, *extra: str) -> None:
        self.log = log
        argv = [
            str(BIN / "optuna-spikenas"),
            "optimize",
            "--storage",
            url,
            "--study-name",
            study,
            "--config",
            str(config),
            "--threads",
            "1",
            "--quiet",
            "--no-artifacts",
            *extra,
        ]
        with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, env=WORKER_ENV)
        self.pid = self.process.pid

    def stderr(self, lines: int = 25) -> str:
        text = self.log.with_suffix(".err").read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:]) or "(no stderr)"

    def stdout(self) -> str:
        return self.log.with_suffix(".out").read_text(errors="replace")


def start_workers(
    url: str, study: str, config: Path, count: int, tag: str, *extra: str
) -> list[Worker]:
    return [Worker(url, study, config, config.parent / f"{tag}-{i}", *extra) for i in range(count)]


def wait_for(workers: Sequence[Worker], timeout: float = WORKER_TIMEOUT) -> None:
    """Wait for every worker to exit 0; else kill the rest and fail with their stderr."""
    deadline = time.monotonic() + timeout
    problems = []
    for i, worker in enumerate(workers):
        try:
            code = worker.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            problems.append((i, code))
    if problems:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
        report = "\n".join(
            f"--- worker {i} ({'timed out' if code is None else f'exit {code}'}), stderr:\n"
            f"{workers[i].stderr()}"
            for i, code in problems
        )
        pytest.fail(f"{len(problems)} of {len(workers)} workers failed:\n{report}")


def load_trials(url: str, study: str) -> list[FrozenTrial]:
    storage = RDBStorage(url)
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()


# --- what every multi-worker run must satisfy ---------------------------------------------------


def check_accounted(trials: Sequence[FrozenTrial]) -> None:
    """Every trial finished: COMPLETE (or PRUNED), or FAIL and retried; none left running."""
    states = Counter(t.state.name for t in trials)
    left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert not left, f"trials left running or waiting: {left} ({dict(states)})"
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    unretried = [t.number for t in trials if t.state == TrialState.FAIL and t.number not in retried]
    assert not unretried, f"failed trials that were not retried: {unretried} ({dict(states)})"


def scored_twice(trials: Sequence[FrozenTrial]) -> dict[str, list[int]]:
    """Canonical architectures scored by more than one trial (a reuse has ``duplicate_of``)."""
    scored: dict[str, list[int]] = {}
    for t in trials:
        if (
            t.state == TrialState.COMPLETE
            and t.user_attrs.get("feasible")
            and "duplicate_of" not in t.user_attrs
            and math.isfinite(t.values[0])
        ):
            scored.setdefault(t.user_attrs["canonical"], []).append(t.number)
    return {key: numbers for key, numbers in scored.items() if len(numbers) > 1}


# --- the cell-by-cell search --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cell_by_cell(tmp_path_factory, one_thread) -> tuple[Path, object]:
    """The config file, and the sampler that reads a study's result (with the real budget)."""
    from optuna_spikenas.config import load_config
    from optuna_spikenas.objective import SpikeNASObjective
    from optuna_spikenas.samplers import make_sampler

    config = tmp_path_factory.mktemp("cellbycell") / "cellbycell.toml"
    config.write_text(CELL_BY_CELL)
    objective = SpikeNASObjective(load_config(config))
    return config, make_sampler(
        "cellbycell",
        2,
        space=objective.space,
        ops=objective.config.search.ops,
        fits_budget=objective.fits_budget,
    )


def grown(sampler, url: str, study: str) -> tuple[str, float, str]:
    """The grown network's architecture, score and canonical form."""
    storage = RDBStorage(url)
    try:
        final = sampler.result(optuna.load_study(study_name=study, storage=storage))
    finally:
        storage.engine.dispose()
    assert final is not None, "the search has no result"
    return final.user_attrs["architecture"], final.value, final.user_attrs["canonical"]


@pytest.fixture(scope="module")
def one_worker(postgres_url, cell_by_cell) -> tuple[str, float, str]:
    """The undisturbed, single-worker search on its own study."""
    config, sampler = cell_by_cell
    study = create_study(postgres_url)
    wait_for(start_workers(postgres_url, study, config, 1, "one"))
    trials = load_trials(postgres_url, study)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert not scored_twice(trials)
    assert sampler.is_complete(optuna.load_study(study_name=study, storage=postgres_url))
    return grown(sampler, postgres_url, study)


def test_four_cell_by_cell_workers_share_the_search_and_agree_with_one(
    postgres_url, cell_by_cell, one_worker
):
    config, sampler = cell_by_cell
    study = create_study(postgres_url)
    workers = start_workers(postgres_url, study, config, 4, "four")
    wait_for(workers)
    trials = load_trials(postgres_url, study)
    check_accounted(trials)
    assert not scored_twice(trials), f"candidates scored twice: {scored_twice(trials)}"
    slots = sorted(t.system_attrs["cellbycell:slot"] for t in trials if t.state.is_finished())
    real = [s for s in slots if s >= 0]  # -1: the final network re-proposed, a free duplicate
    assert real == list(range(21)), f"slots: {slots}"  # 13 + 8 candidates, each once
    assert grown(sampler, postgres_url, study) == one_worker
    arch = one_worker[0]
    for worker in workers:  # each worker ends by itself and prints the same result
        out = worker.stdout()
        assert "cell-by-cell search complete" in out and arch in out, out


# --- AutoSNN's evolution ------------------------------------------------------------------------


def test_four_evolution_workers_never_evaluate_an_architecture_twice(
    postgres_url, tmp_path, one_thread
):
    # Which generation-1 children are bred depends on which generation-0 trials are complete
    # when a worker claims, so 4 workers need not match 1 worker; what is guaranteed: every
    # place of a generation filled once, no candidate proposed or evaluated twice, every trial
    # accounted for.
    from optuna_spikenas.autosnn_objective import AutoSNNObjective
    from optuna_spikenas.config import load_config

    config = tmp_path / "autosnn.toml"
    config.write_text(AUTOSNN.format(checkpoint_dir=tmp_path / "checkpoints"))
    AutoSNNObjective(load_config(config))  # trains the super-network once, for every worker
    assert len(list((tmp_path / "checkpoints").glob("supernet-*.pt"))) == 1
    study = create_study(postgres_url)
    wait_for(start_workers(postgres_url, study, config, 4, "evo", "--n-trials", "6"))
    trials = load_trials(postgres_url, study)
    assert len(trials) == 24  # 4 x 6: the search (20 generations of 20) does not end before
    check_accounted(trials)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    genomes = [tuple(t.params[f"block{i}"] for i in range(1, 6)) for t in trials]
    assert len(set(genomes)) == len(genomes), "a candidate was proposed twice"
    assert not scored_twice(trials), f"architectures evaluated twice: {scored_twice(trials)}"
    generations = Counter(t.system_attrs["evolution:generation"] for t in trials)
    assert generations == {0: 20, 1: 4}
    first = {t.number for t in trials if t.system_attrs["evolution:generation"] == 0}
    for t in trials:
        if t.system_attrs["evolution:generation"] == 1:  # bred from generation 0 only
            assert set(t.system_attrs["evolution:parents"]) <= first


# --- a worker killed in the middle of a trial ---------------------------------------------------


def kill_while_scoring(worker: Worker, url: str, study: str, after: int) -> int:
    """SIGKILL ``worker`` (the study's only one) while a trial's score is being computed, once
    ``after`` trials are complete; return that trial's number.

    The worker is frozen with SIGSTOP while the storage is read, so what is read is its state
    when the kill comes: a RUNNING trial whose budget check passed (``feasible``) and whose
    ``score_seconds`` (written right after scoring) is not yet there. Otherwise it goes on.
    """
    storage = RDBStorage(url)
    study_id = storage.get_study_id_from_name(study)
    deadline = time.monotonic() + WORKER_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                pytest.fail(f"the worker ended before it could be killed:\n{worker.stderr()}")
            os.kill(worker.pid, signal.SIGSTOP)
            try:
                trials = storage.get_all_trials(study_id, deepcopy=False)
                done = sum(t.state == TrialState.COMPLETE for t in trials)
                scoring = [
                    t.number
                    for t in trials
                    if t.state == TrialState.RUNNING
                    and t.user_attrs.get("feasible") is True
                    and "score_seconds" not in t.user_attrs
                    and "duplicate_of" not in t.user_attrs
                ]
                if done >= after and len(scoring) == 1:
                    os.kill(worker.pid, signal.SIGKILL)
                    worker.process.wait(timeout=30)
                    return scoring[0]
            finally:
                if worker.process.poll() is None:
                    os.kill(worker.pid, signal.SIGCONT)
            time.sleep(0.02)
        pytest.fail(f"no trial was caught while scoring:\n{worker.stderr()}")
    finally:
        storage.engine.dispose()


def test_a_worker_killed_while_scoring_is_retried_and_the_search_ends_as_undisturbed(
    postgres_url, cell_by_cell, one_worker
):
    config, sampler = cell_by_cell
    study = create_study(postgres_url)
    (first,) = start_workers(postgres_url, study, config, 1, "killed", "--heartbeat", "1")
    dead = kill_while_scoring(first, postgres_url, study, after=4)
    killed_at = datetime.now()
    assert load_trials(postgres_url, study)[dead].state == TrialState.RUNNING  # until stale
    # two other workers take over: the first to start a trial fails the stale one (2 missed
    # beats of 1 s) and its retry, waiting first in line, is the next trial run
    wait_for(start_workers(postgres_url, study, config, 2, "after", "--heartbeat", "1"))
    trials = load_trials(postgres_url, study)
    killed = trials[dead]
    assert killed.state == TrialState.FAIL
    assert killed.datetime_complete - killed_at >= timedelta(seconds=1)  # not before the grace
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead]
    assert len(retries) == 1, f"retries of trial {dead}: {[t.number for t in retries]}"
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.system_attrs["retry_history"] == [dead]
    assert retry.params == killed.params  # the same candidate, in the same slot
    assert retry.system_attrs["cellbycell:slot"] == killed.system_attrs["cellbycell:slot"]
    assert retry.user_attrs["canonical"] == killed.user_attrs["canonical"]
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [dead]
    check_accounted(trials)
    assert not scored_twice(trials), f"candidates scored twice: {scored_twice(trials)}"
    assert grown(sampler, postgres_url, study) == one_worker


# --- the retry callback (SQLite: always run) ----------------------------------------------------


def test_claim_keys_are_the_ones_the_samplers_record():
    from optuna_spikenas.samplers import cellbycell, evolution

    assert set(CLAIM_KEYS) == {cellbycell.PARAMS_KEY, evolution.PARAMS_KEY}


def test_rdb_storages_retry_a_dead_workers_trial_once_by_default(tmp_path):
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    optuna.create_study(storage=url, study_name="s", direction="maximize")
    callback = open_storage(url, None).get_heartbeat_stale_trial_callback()
    assert isinstance(callback, RetryStaleTrial) and callback._max_retry == DEFAULT_RETRIES == 1
    assert open_storage(url, None, retries=0).get_heartbeat_stale_trial_callback() is None
    assert (
        open_storage(url, None, heartbeat_seconds=None).get_heartbeat_stale_trial_callback() is None
    )


def test_a_stale_trial_is_retried_with_its_candidate_and_one_without_is_not(tmp_path):
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    optuna.create_study(storage=url, study_name="s", direction="maximize")
    storage = open_storage(url, None, heartbeat_seconds=1)
    study = optuna.load_study(study_name="s", storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats outside study.optimize, experimental API
        scoring = study.ask()  # its worker dies while scoring: it has its candidate
        scoring.suggest_categorical("cell1_edge01", ["skip", "conv3x3"])
        scoring.set_constraint("valid", 0.0)
        record_constraint_list(scoring)  # and the dashboard's list: neither is inherited
        scoring.set_user_attr("canonical", "0100 0000 0000 0000 @ 4")
        choosing = study.ask()  # its worker dies while its sampler chooses: no candidate
        for trial in (scoring, choosing):
            storage.record_heartbeat(trial._trial_id)
        time.sleep(3.5)  # the grace period is 2 s; SQLite's clock has 1 s steps
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING]
    assert has_candidate(trials[0]) and not has_candidate(trials[1])
    retry = trials[2]
    assert retry.system_attrs["failed_trial"] == 0 and retry.system_attrs["retry_history"] == [0]
    assert retry.params == trials[0].params
    assert retry.user_attrs["canonical"] == "0100 0000 0000 0000 @ 4"
    assert not [key for key in retry.system_attrs if key.startswith("constraints")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats outside study.optimize
        # the objective sets the constraint again: Optuna must not ignore it as already set
        warnings.filterwarnings("error", message="The constraint value is ignored")
        again = study.ask()
        assert again.number == 2  # the retry runs next, with its candidate
        assert (
            again.suggest_categorical("cell1_edge01", ["skip", "conv3x3"])
            == retry.params["cell1_edge01"]
        )
        again.set_constraint("valid", 0.0)
    # a retry that dies too is not retried again (max_retry = 1)
    storage.get_heartbeat_stale_trial_callback()(study, study.get_trials(deepcopy=True)[2])
    assert len(study.get_trials(deepcopy=False)) == 3


def test_a_claim_of_our_samplers_counts_as_a_candidate():
    def trial(params: dict, system_attrs: dict) -> FrozenTrial:
        return optuna.trial.create_trial(
            state=TrialState.FAIL,
            params=params,
            distributions={k: optuna.distributions.CategoricalDistribution(["a"]) for k in params},
            system_attrs=system_attrs,
        )

    assert has_candidate(trial({}, {"cellbycell:params": {"cell1_edge01": "skip"}}))
    assert has_candidate(trial({}, {"evolution:params": {"block1": "skip"}}))
    assert has_candidate(trial({"x": "a"}, {}))
    assert not has_candidate(trial({}, {"cellbycell:slot": 3}))  # died before its params
    assert not has_candidate(trial({}, {"evolution:params": None}))  # a withdrawn claim
