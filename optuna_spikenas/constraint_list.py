"""A trial's constraints also as one list, the form optuna-dashboard reads.

Optuna 5's ``trial.set_constraint(name, value)`` stores each constraint as its own system
attribute ``constraints:NAME``. optuna-dashboard (0.21) knows only the older form, the system
attribute ``constraints`` holding a list of floats (what ``constraints_func`` produced before
Optuna 5), and without it draws every trial as feasible. That list is written beside the
named constraints, in :data:`ORDER`: by ``attribute_batch.AttributeBatch`` with the constraints
it sets (the objectives), or by :func:`record_constraint_list` once a trial has set them all
through ``trial.set_constraint`` (an objective of your own).

Optuna 5 still reads the list: ``FrozenTrial.constraints`` then has each value twice, under its
name and under its index ("0", "1", ...). Feasibility (every value <= 0) is unchanged, and the
total violation TPE and NSGA-II rank infeasible trials by is doubled (exactly with one positive
value, up to rounding with several), which keeps their order.
A view that hides a named constraint from a sampler hides the list too (``samplers/screen.py``),
and a retried trial inherits neither (``storage.RetryStaleTrial``): its objective sets both again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import optuna

from optuna_spikenas.budgets import CONSTRAINTS

LIST_KEY = "constraints"
"""The system attribute optuna-dashboard (and Optuna before 5) reads: the list of values."""

NAMED_PREFIX = f"{LIST_KEY}:"
"""Optuna 5's system attribute of a named constraint: ``constraints:NAME``."""

ORDER = ("trained", "valid", *CONSTRAINTS)
"""The list's order: the screen stage's ``trained`` (``samplers/screen.py``, which imports this
module), validity, then the budgets in ``budgets.CONSTRAINTS``'s order; any other name follows,
alphabetically."""


def ordered_names(names: Iterable[str]) -> list[str]:
    """``names`` in the list's fixed order (:data:`ORDER`, then the others alphabetically)."""
    return sorted(names, key=lambda n: (ORDER.index(n), "") if n in ORDER else (len(ORDER), n))


def named_constraints(system_attrs: Mapping[str, Any]) -> dict[str, float]:
    """A trial's constraints by name, from its system attributes: what ``trial.constraints``
    held before the list was written beside them (it now adds the list's "0", "1", ...)."""
    return {
        key[len(NAMED_PREFIX) :]: float(value)
        for key, value in system_attrs.items()
        if key.startswith(NAMED_PREFIX)
    }


def record_constraint_list(trial: optuna.Trial) -> list[float]:
    """Write ``trial``'s named constraints, in the fixed order, as the system attribute
    ``constraints`` (replacing any earlier list); return the list."""
    named = named_constraints(trial.storage.get_trial_system_attrs(trial._trial_id))
    values = [named[name] for name in ordered_names(named)]
    trial.storage.set_trial_system_attr(trial._trial_id, LIST_KEY, values)
    return values
