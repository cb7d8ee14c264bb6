"""A trial's attributes written together: one storage transaction instead of one per attribute.

The objective records about two dozen user attributes and constraints per trial (the
architecture, each budget's cost and excess, the spikes, ...). Through Optuna's ``Trial``
each is its own storage call; on an RDB storage that is a transaction each, which reads the
trial's row and writes one attribute row, and
``set_constraint`` first reads all the trial's system attributes. An :class:`AttributeBatch`
takes the same calls (``set_user_attr``, ``set_constraint``), keeps them, and writes them when
its block ends:

* on Optuna's ``RDBStorage`` over SQLite (3.24 or later) or PostgreSQL, in one transaction:
  the trial's row read once (a finished trial raises ``UpdateFinishedTrialError``, as Optuna
  does), its stored constraints read when the batch sets one, and every attribute upserted in
  one statement per table, through Optuna's own table models. These are Optuna internals
  (``optuna.storages._rdb``); where they are missing, or on any other storage (journal file,
  in-memory, MySQL), the batch falls back to the public calls, one per attribute, as before;
* the constraints as ``Trial.set_constraint`` stores them (``constraints:NAME``: a float, NaN
  refused, one already set is ignored with a warning) and, beside them, the list
  optuna-dashboard reads (``constraint_list.py``), which the public route writes after one
  read of the trial's system attributes.

What is stored, and what ``trial.user_attrs`` then returns, is the same on every route
(``tests/test_attribute_batch.py``). The values are kept until the block ends, also when it
raises: a batch writes what it was given before the error. What it saves per trial:
``benchmarks/trial_overhead.py``.
"""

from __future__ import annotations

import json
import math
import sqlite3
import warnings
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import optuna

from optuna_spikenas.constraint_list import (
    LIST_KEY,
    NAMED_PREFIX,
    named_constraints,
    ordered_names,
)

__all__ = ["AttributeBatch"]

SystemAttrsOf = Callable[[dict[str, float]], dict[str, Any]]
"""The system attributes to write, given the trial's named constraints already stored."""

BulkWrite = Callable[[int, Mapping[str, Any], SystemAttrsOf | None], dict[str, Any]]
"""``(trial_id, user_attrs, system_attrs_of)``: writes the user attributes and
``system_attrs_of(stored named constraints)`` (none when it is None) in one transaction;
returns the system attributes written."""


class AttributeBatch:
    """``with AttributeBatch(trial) as attrs:`` takes ``attrs.set_user_attr(key, value)`` and
    ``attrs.set_constraint(name, value)`` as ``trial`` would, and writes them all when the block
    ends (see the module's docstring). ``attrs.user_attrs`` is what the block set so far."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.user_attrs: dict[str, Any] = {}
        self._constraints: dict[str, float] = {}

    def set_user_attr(self, key: str, value: Any) -> None:
        """As ``Trial.set_user_attr``; the value must be JSON serializable."""
        self.user_attrs[key] = value

    def set_constraint(self, name: str, value: float) -> None:
        """As ``Trial.set_constraint`` (feasible when <= 0); also listed for optuna-dashboard."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"the constraint {name!r} must be a float, got {type(value).__name__}"
            ) from None
        if math.isnan(number):
            raise ValueError(f"the constraint {name!r} is NaN")
        self._constraints[name] = number

    def __enter__(self) -> AttributeBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.write()

    def write(self) -> None:
        """Write what was set since the last write (nothing when nothing was)."""
        user, constraints = dict(self.user_attrs), dict(self._constraints)
        self.user_attrs.clear()
        self._constraints.clear()
        if not user and not constraints:
            return
        trial = self.trial

        def system_attrs_of(stored: dict[str, float]) -> dict[str, Any]:
            return _constraint_attrs(stored, constraints, trial.number)

        of_stored = system_attrs_of if constraints else None
        bulk = _bulk_writer(trial)
        if bulk is None:
            self._write_one_by_one(user, of_stored)
            return
        system = bulk(trial._trial_id, user, of_stored)  # all or nothing (e.g. not JSON)
        cached = trial._cached_frozen_trial
        cached.user_attrs.update(user)
        for key, value in system.items():
            cached.system_attrs[key] = value

    def _write_one_by_one(
        self, user: Mapping[str, Any], system_attrs_of: SystemAttrsOf | None
    ) -> None:
        """Optuna's public calls, one per attribute."""
        trial = self.trial
        for key, value in user.items():
            trial.set_user_attr(key, value)
        if system_attrs_of is None:
            return
        system = system_attrs_of(
            named_constraints(trial.storage.get_trial_system_attrs(trial._trial_id))
        )
        for key, value in system.items():
            trial.storage.set_trial_system_attr(trial._trial_id, key, value)
            if key.startswith(NAMED_PREFIX):  # as Trial.set_constraint keeps it
                trial._cached_frozen_trial.system_attrs[key] = value


def _constraint_attrs(
    stored: dict[str, float], new: Mapping[str, float], trial_number: int
) -> dict[str, Any]:
    """The system attributes of the ``new`` constraints given the ``stored`` ones: each new
    one as ``constraints:NAME`` (one already stored is ignored with a warning, as Optuna does)
    and the whole list in ``constraint_list.ORDER``."""
    named = dict(stored)
    system: dict[str, Any] = {}
    for name, value in new.items():
        if name in named:
            warnings.warn(
                f"the constraint {name!r} is already set for trial {trial_number}; "
                "the new value is ignored",
                stacklevel=4,
            )
            continue
        named[name] = value
        system[f"{NAMED_PREFIX}{name}"] = value
    system[LIST_KEY] = [named[name] for name in ordered_names(named)]
    return system


def _bulk_writer(trial: optuna.Trial) -> BulkWrite | None:
    """The one-transaction write for ``trial``'s storage, or None where there is none."""
    if not isinstance(trial, optuna.Trial) or not hasattr(trial, "_cached_frozen_trial"):
        return None
    storage = trial.storage
    backend = getattr(storage, "_backend", storage)  # Optuna's _CachedStorage wraps an RDB
    if not isinstance(backend, optuna.storages.RDBStorage):
        return None
    try:
        return _rdb_bulk_writer(backend)
    except (ImportError, AttributeError):  # Optuna's internals moved: the public route
        return None


def _rdb_bulk_writer(storage: optuna.storages.RDBStorage) -> BulkWrite | None:
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    dialect = storage.engine.name
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:
        return None
    find_trial = models.TrialModel.find_or_raise_by_id
    new_session = storage.scoped_session

    def upsert(
        session: Any,
        table: type[models.TrialUserAttributeModel | models.TrialSystemAttributeModel],
        trial_id: int,
        attrs: Mapping[str, Any],
    ) -> None:
        if not attrs:
            return
        statement = insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.trial_id, table.key],
            set_={"value_json": statement.excluded.value_json},
        )
        rows = [
            {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
            for key, value in attrs.items()
        ]
        session.execute(statement, rows)

    def write(
        trial_id: int, user: Mapping[str, Any], system_attrs_of: SystemAttrsOf | None
    ) -> dict[str, Any]:
        system: dict[str, Any] = {}
        with _create_scoped_session(new_session) as session:
            row = find_trial(trial_id, session)
            storage.check_trial_is_updatable(trial_id, row.state)
            table = models.TrialSystemAttributeModel
            if system_attrs_of is not None:
                stored = session.query(table.key, table.value_json).filter(
                    table.trial_id == trial_id,
                    table.key.startswith(NAMED_PREFIX, autoescape=True),
                )
                system = system_attrs_of(
                    {key[len(NAMED_PREFIX) :]: float(json.loads(v)) for key, v in stored}
                )
            upsert(session, models.TrialUserAttributeModel, trial_id, user)
            upsert(session, table, trial_id, system)
        return system

    return write
