"""Which process runs a trial, and failing the RUNNING trials whose process is gone.

RDB storages have a heartbeat: a dead worker's trial goes stale and is failed (and retried) by
the next worker (``storage.py``). Journal storages have none, so a worker killed by SIGKILL, a
machine lost or a power cut would leave its trial RUNNING forever, and the cell-by-cell sampler
would wait for it. Every trial therefore records its worker (host, process id and the process's
start time, so that a reused pid is not taken for the same process) as soon as it exists: the
journal storage writes it with the new trial (``storage.WorkerRecordingJournalStorage``), our
samplers in ``before_trial`` and the objectives when they start (a retry taken up by another
worker, or a trial made outside this package). ``optuna-spikenas recover`` fails the RUNNING
trials whose worker ran on this host and is gone; trials of other hosts, or with no record, only
with ``--all`` (when no worker of the study runs anywhere).

The samplers that coordinate workers through storage (cell-by-cell, screen-then-train) share the
rest of that bookkeeping from here: when a candidate's attempts settle it (``attempts_settled``,
``MAX_FAILURES``) and letting the heartbeat fail stale trials while they wait.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

WORKER_KEY = "spikenas:worker"
"""System attribute of a trial: ``host:pid:start`` of the process that runs it."""

MAX_FAILURES = 2
"""A candidate (a cell-by-cell slot, a screen-then-train rank) whose trials failed this often is
given up: a broken candidate must not loop."""


def attempts_settled(tried: Sequence[FrozenTrial]) -> bool:
    """Whether the trials ``tried`` for one candidate settle it: one has a result (COMPLETE or
    PRUNED), or it failed ``MAX_FAILURES`` times and no attempt (e.g. a retry queued by the
    heartbeat callback) is still waiting or running: one that completed later would otherwise
    change a decision already taken."""
    if any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in tried):
        return True
    if any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in tried):
        return False
    return sum(t.state == TrialState.FAIL for t in tried) >= MAX_FAILURES


def fail_stale_trials(study: optuna.Study) -> None:
    """Let the storage's heartbeat mark trials of dead workers as failed (RDB storages with a
    heartbeat only; elsewhere a dead worker's trial is failed by ``recover``), quietly: a
    sampler waiting on other workers calls it on every look at the storage."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    except (ValueError, RuntimeError):
        pass


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), '' where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def this_worker() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start(pid)}"


def mark_worker(study: optuna.Study, trial_id: int, recorded: object = None) -> None:
    """Record that this process runs the trial, unless ``recorded`` (the trial's record as the
    caller read it) already says so. A retry carries its dead worker's record: replaced."""
    me = this_worker()
    if recorded != me:
        study._storage.set_trial_system_attr(trial_id, WORKER_KEY, me)


def worker_gone(worker: str) -> bool | None:
    """True when ``worker`` ran on this host and no longer runs; None when it cannot be told
    from here (another host, or no record)."""
    host, _, rest = worker.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    now = process_start(int(pid_text))
    if now:
        return bool(start) and now != start  # the pid now belongs to another process
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@dataclass
class Recovery:
    failed: list[int] = field(default_factory=list)
    kept: list[tuple[int, str]] = field(default_factory=list)  # (trial, why it stays RUNNING)


def recover(study: optuna.Study, everything: bool = False) -> Recovery:
    """Fail the RUNNING trials whose worker is gone (all RUNNING trials with ``everything``)."""
    result = Recovery()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.system_attrs.get(WORKER_KEY)
        gone = worker_gone(worker) if isinstance(worker, str) else None
        if gone or everything:
            _fail(study, trial, worker)
            result.failed.append(trial.number)
        elif gone is None:
            where = f"its worker {worker} is on another host" if worker else "no worker record"
            result.kept.append((trial.number, where))
        else:
            result.kept.append((trial.number, f"its worker {worker} is running"))
    return result


def _fail(study: optuna.Study, trial: FrozenTrial, worker: object) -> None:
    storage = study._storage
    reason = f"recovered: worker {worker} gone" if worker else "recovered: no worker record"
    storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
    storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
