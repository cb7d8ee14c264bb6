"""Where a search that finds its own result (cell-by-cell, evolution) says which trial it is.

Optuna refuses attributes on a finished trial, and the result of these searches is known only
after the result's own trial has finished (a phase's winner once the whole phase is scored; the
fittest candidate once no later one beats it). So the samplers mark it where they still can,
from what the storage says:

* every trial of the search records, as it ends (``after_trial``, while it can still be
  written), the user attribute ``search_result``: the number of the trial that is the search's
  result with this trial counted (absent while there is none, e.g. before the first phase of
  the cell-by-cell search is scored). The trials that end the search carry its final result.
* when the sampler declares the search complete, the study gets the same user attribute, the
  final result (the same number whichever worker writes it: it is computed from storage).

``export`` does not need the marks: it computes the result from the stored trials with the same
rule (``cellbycell.grown_network``, ``evolution.fittest_trial``), so it is right with any number of
workers and for a search that stopped before its end.
"""

from __future__ import annotations

from optuna.study import Study
from optuna.trial import FrozenTrial

RESULT_ATTR = "search_result"
"""Trial and study user attribute: the number of the trial that is the search's result."""


def mark_result(
    study: Study, finishing: FrozenTrial, result: FrozenTrial | None, complete: bool
) -> None:
    """Record ``result`` (the search's result with ``finishing`` counted) on the finishing trial,
    and on the study when the search is ``complete``."""
    if result is None:
        return
    study._storage.set_trial_user_attr(finishing._trial_id, RESULT_ATTR, result.number)
    if complete:
        study._storage.set_study_user_attr(study._study_id, RESULT_ATTR, result.number)
