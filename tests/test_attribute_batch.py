"""AttributeBatch: a trial's attributes written together store exactly what Optuna's own calls,
one per attribute, store; on SQLite and PostgreSQL in one transaction.

The reference in every comparison is the public route written out here: ``trial.set_user_attr``
for each user attribute, ``trial.set_constraint`` for each constraint and
``constraint_list.record_constraint_list`` for the dashboard's list.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from optuna_spikenas import attribute_batch
from optuna_spikenas.attribute_batch import AttributeBatch
from optuna_spikenas.constraint_list import record_constraint_list
from optuna_spikenas.storage import open_storage

USER = {
    "architecture": "0303 0030 2002 0200",
    "num_cells": 2,
    "memory_bits": 123456789,
    "area_mm2": 0.012345,
    "feasible": True,
    "broken_budgets": "",
    "score_per_init": [1.5, -2.25, 3.0],
    "nested": {"a": [1, 2, {"b": None}], "ünïcode": "ß"},
    "nothing": None,
    "minus_inf": -math.inf,
}
CONSTRAINTS = {"valid": 0.0, "memory": 12.5, "trained": 1.0}


@pytest.fixture(params=["sqlite", "postgresql", "journal", "inmemory"])
def storage(request, tmp_path: Path) -> Iterator[optuna.storages.BaseStorage]:
    kind = request.param
    if kind == "sqlite":
        made = open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_seconds=None, create=True)
    elif kind == "postgresql":
        url = os.environ.get("SPIKENAS_POSTGRES_URL")
        if not url:
            if os.environ.get("SPIKENAS_REQUIRE_POSTGRES") == "1":
                pytest.fail("SPIKENAS_REQUIRE_POSTGRES=1 but SPIKENAS_POSTGRES_URL is not set")
            pytest.skip("no PostgreSQL server (SPIKENAS_POSTGRES_URL)")
        made = RDBStorage(url)
    elif kind == "journal":
        made = JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    else:
        made = optuna.storages.InMemoryStorage()
    names = set(optuna.get_all_study_names(made))
    yield made
    for name in set(optuna.get_all_study_names(made)) - names:
        optuna.delete_study(study_name=name, storage=made)
    if isinstance(made, RDBStorage):
        made.engine.dispose()


def new_study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name=f"spikenas-test-{uuid.uuid4().hex[:12]}")


def through_optuna(trial: optuna.Trial, user: dict[str, Any], constraints: dict[str, float]):
    for key, value in user.items():
        trial.set_user_attr(key, value)
    for name, value in constraints.items():
        trial.set_constraint(name, value)
    if constraints:
        record_constraint_list(trial)


def stored(study: optuna.Study, trial: optuna.Trial) -> tuple[dict, dict]:
    frozen = study._storage.get_trial(trial._trial_id)
    return frozen.user_attrs, frozen.system_attrs


def test_a_batch_stores_what_optunas_calls_store(storage) -> None:
    study = new_study(storage)
    reference, batched = study.ask(), study.ask()
    through_optuna(reference, USER, CONSTRAINTS)
    with AttributeBatch(batched) as attrs:
        for key, value in USER.items():
            attrs.set_user_attr(key, value)
        for name, value in CONSTRAINTS.items():
            attrs.set_constraint(name, value)
        assert stored(study, batched) == ({}, {})  # nothing is written before the block ends
    assert stored(study, batched) == stored(study, reference)
    assert batched.user_attrs == reference.user_attrs == stored(study, reference)[0]
    assert stored(study, batched)[1]["constraints"] == [1.0, 0.0, 12.5]  # trained, valid, memory
    for trial in (reference, batched):
        study.tell(trial, 1.0)
    assert study.trials[0].user_attrs == study.trials[1].user_attrs
    assert study.trials[0].constraints == study.trials[1].constraints


def test_later_batches_add_to_and_overwrite_what_is_stored(storage) -> None:
    study = new_study(storage)
    reference, batched = study.ask(), study.ask()
    for trial in (reference, batched):  # set before, through Optuna
        trial.set_user_attr("score_seconds", 9.0)
        trial.set_user_attr("architecture", "old")
        trial.set_constraint("trained", 0.0)
    through_optuna(reference, {"architecture": "new", "width": 16}, {"valid": 1.0})
    with AttributeBatch(batched) as attrs:
        attrs.set_user_attr("architecture", "new")
        attrs.set_user_attr("width", 16)
        attrs.set_constraint("valid", 1.0)
    with AttributeBatch(batched):  # an empty batch writes nothing
        pass
    through_optuna(reference, {"score_seconds": 0.5}, {})
    with AttributeBatch(batched) as attrs:
        attrs.set_user_attr("score_seconds", 0.5)
    assert stored(study, batched) == stored(study, reference)
    assert batched.user_attrs == reference.user_attrs
    assert stored(study, batched)[1]["constraints"] == [0.0, 1.0]


def test_a_constraint_already_set_is_ignored_with_a_warning_as_optuna_does(storage) -> None:
    study = new_study(storage)
    reference, batched = study.ask(), study.ask()
    for trial in (reference, batched):
        trial.set_constraint("valid", 0.0)
    with pytest.warns(UserWarning, match="already set"):
        through_optuna(reference, {}, {"valid": 5.0, "memory": 1.0})
    with pytest.warns(UserWarning, match="'valid' is already set"):
        with AttributeBatch(batched) as attrs:
            attrs.set_constraint("valid", 5.0)
            attrs.set_constraint("memory", 1.0)
    assert stored(study, batched) == stored(study, reference)
    assert stored(study, batched)[1]["constraints:valid"] == 0.0


def test_bad_values_are_refused_as_optuna_refuses_them(storage) -> None:
    study = new_study(storage)
    trial = study.ask()
    attrs = AttributeBatch(trial)
    with pytest.raises(ValueError, match="NaN"):
        attrs.set_constraint("memory", math.nan)
    with pytest.raises(TypeError, match="must be a float"):
        attrs.set_constraint("memory", "big")  # type: ignore[arg-type]
    reference = study.ask()
    optuna_refuses = error_of(lambda: reference.set_user_attr("network", object()))

    def batch() -> None:
        with AttributeBatch(trial) as attrs:
            attrs.set_user_attr("fine", 1)
            attrs.set_user_attr("network", object())

    assert error_of(batch) is optuna_refuses  # TypeError where the storage writes JSON
    if attribute_batch._bulk_writer(trial) is not None:  # one transaction: all or nothing
        assert optuna_refuses is TypeError
        assert stored(study, trial) == ({}, {})


def error_of(call) -> type[BaseException] | None:
    try:
        call()
    except Exception as err:
        return type(err)
    return None


def test_an_error_in_the_block_still_writes_what_was_set(storage) -> None:
    study = new_study(storage)
    trial = study.ask()
    with pytest.raises(RuntimeError, match="scoring failed"):
        with AttributeBatch(trial) as attrs:
            attrs.set_user_attr("architecture", "0303 0030 2002 0200")
            attrs.set_constraint("valid", 0.0)
            raise RuntimeError("scoring failed")
    user, system = stored(study, trial)
    assert user == {"architecture": "0303 0030 2002 0200"}
    assert system["constraints"] == [0.0]


def test_a_finished_trial_cannot_be_written_on_either_route(storage) -> None:
    study = new_study(storage)
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr("late", 1)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        with AttributeBatch(trial) as attrs:
            attrs.set_user_attr("late", 1)
    assert study.trials[0].user_attrs == {}


def test_sqlite_and_postgresql_take_one_transaction_per_batch(storage) -> None:
    study = new_study(storage)
    trial = study.ask()
    bulk = attribute_batch._bulk_writer(trial)
    if not isinstance(storage, RDBStorage):
        assert bulk is None  # journal, in-memory: the public calls
        return
    assert bulk is not None
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    sqlalchemy.event.listen(storage.engine, "commit", count)
    try:
        with AttributeBatch(trial) as attrs:
            for key, value in USER.items():
                attrs.set_user_attr(key, value)
            for name, value in CONSTRAINTS.items():
                attrs.set_constraint(name, value)
        assert len(commits) == 1
        reference = study.ask()
        commits.clear()
        through_optuna(reference, USER, CONSTRAINTS)
        assert len(commits) >= len(USER) + len(CONSTRAINTS) + 1  # Optuna: one per attribute
    finally:
        sqlalchemy.event.remove(storage.engine, "commit", count)
