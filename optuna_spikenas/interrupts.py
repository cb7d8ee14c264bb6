"""Ctrl-C and SIGTERM: how a command stops, in one line, with nothing left RUNNING.

``kill``, systemd and SLURM's time limit send SIGTERM; a user presses Ctrl-C (SIGINT). Both stop a
command the same way: the ``optimize`` loop fails the trial it stopped and ends (:class:`CtrlC`),
``train`` and ``compare`` keep what they finished, and each says so in one line; the exit status
is 130 after Ctrl-C and 143 after SIGTERM, as shells report them. Work that knows best what it
kept (final training, the super-network's training) re-raises the same kind of stop with that
in its message, e.g. ``KeyboardInterrupt("no epoch finished, nothing saved")``, and the line
says it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import optuna

from optuna_spikenas.study_binding import StudySettingsError


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, systemd, SLURM's time limit), handled as Ctrl-C is; exit status 143."""


RECEIVED: list[int] = []
"""Signals received while the command runs. Python drops an exception raised by a signal handler
that interrupts a garbage-collection callback; the record keeps such a signal from being lost."""


def stop_exception(signum: int) -> KeyboardInterrupt:
    """What a signal raises: :class:`Terminated` for SIGTERM, KeyboardInterrupt for Ctrl-C."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


_DEFERRING = [0]  # depth of deferred_signals() blocks the main thread is in
_DEFERRED: list[int] = []


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the block runs, then deliver them: for code that must
    not stop half-way, such as appending to a journal file between taking its lock file and
    releasing it (a lock left behind makes every later worker wait 30 s, then break it)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    _DEFERRING[0] += 1
    try:
        yield
    finally:
        _DEFERRING[0] -= 1
        if not _DEFERRING[0] and _DEFERRED:
            signum = _DEFERRED.pop()
            _DEFERRED.clear()
            signal.raise_signal(signum)  # to whichever handler is installed now


def deferring(signum: int) -> bool:
    """True (and the signal kept for later) inside :func:`deferred_signals`."""
    if _DEFERRING[0]:
        _DEFERRED.append(signum)
        return True
    return False


def stop_optimize(study: optuna.Study) -> None:
    """End the ``study.optimize`` loop after the current trial (Optuna's ``Study.stop``); a
    no-op outside the loop (``ask``/``tell`` users), where Optuna refuses to stop."""
    with contextlib.suppress(RuntimeError):
        study.stop()


def on_signal(signum: int, frame: Any) -> None:
    RECEIVED.append(signum)
    if not deferring(signum):
        raise stop_exception(signum)


def drop_interrupts(hook: Any) -> Any:
    """An ``sys.unraisablehook`` that keeps quiet about a signal's exception that Python had to
    drop (it is in :data:`RECEIVED` and stops the run at the next check)."""

    def unraisable(info: Any) -> None:
        if not isinstance(info.exc_value, KeyboardInterrupt):
            hook(info)

    return unraisable


def report_stop(err: KeyboardInterrupt, what: str = "", prefix: str = "") -> int:
    """Say in one line that the command was stopped and what is kept: what the interrupted work
    said (the stop's message), then ``what``; the exit status."""
    terminated = isinstance(err, Terminated)
    kept = "; ".join(part for part in (str(err), what) if part)
    word = "terminated" if terminated else "interrupted"
    print(f"{prefix}{word}: {kept}" if kept else f"{prefix}{word}", file=sys.stderr)
    return 143 if terminated else 130


class CtrlC(logging.Filter):
    """The objective of ``optimize``, so that Ctrl-C (or SIGTERM) never leaves a trial RUNNING:
    a trial whose objective runs is stopped (Optuna marks it failed), and a signal that comes
    while Optuna creates or records a trial waits for the next objective to start, or for the
    loop to end (a second one does not wait; a trial it leaves RUNNING goes stale with the
    heartbeat, or is failed by ``optuna-spikenas recover`` on a journal).
    As a log filter it drops Optuna's report of the stopped trial (a traceback): the command
    says it was interrupted in one line. So it does for a trial refused because another worker
    bound the study to other settings first (``StudySettingsError``): the command says so."""

    def __init__(self, objective: Any, study: optuna.Study) -> None:
        super().__init__()
        self.objective, self.study = objective, study
        self.running = self.pending = self.interrupted = self.reported = False
        self.signum = signal.SIGINT
        self.log = logging.getLogger("optuna.study._optimize")
        self.previous: dict[int, Any] = {}

    def __call__(self, trial: optuna.Trial) -> Any:
        if self.pending:
            raise self.stop()
        self.running = True
        try:
            return self.objective(trial)
        except Exception:
            if self.interrupted:  # what went wrong after the signal (e.g. uploading artifacts)
                raise self.stop() from None
            raise
        finally:
            self.running = False

    def stop(self) -> KeyboardInterrupt:
        return stop_exception(self.signum)

    def on_signal(self, signum: int, frame: Any) -> None:
        """Stop the running objective at once; otherwise stop at the next objective's start or
        the loop's end. Recorded first, so that a raise Python drops (see :data:`RECEIVED`)
        still ends the loop after this trial."""
        if deferring(signum):
            return
        self.signum = signal.Signals(signum)
        waiting = self.pending
        self.pending = True
        stop_optimize(self.study)
        if self.running or waiting:  # a second signal does not wait (e.g. for a sampler)
            self.interrupted = True
            raise self.stop()

    def __enter__(self) -> CtrlC:
        self.log.addFilter(self)
        if RECEIVED:  # a signal whose exception was dropped before the loop
            self.signum, self.pending = signal.Signals(RECEIVED[-1]), True
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self.on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        self.log.removeFilter(self)
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(
            record.exc_info[1], KeyboardInterrupt | StudySettingsError
        ):
            self.reported = True  # "Trial N failed ... KeyboardInterrupt()" and its traceback
            return False
        if self.reported and "failed with value" in record.getMessage():
            self.reported = False  # "Trial N failed with value None."
            return False
        return True


@contextlib.contextmanager
def signals_handled(thread_failure: Callable[[Any], None]) -> Iterator[None]:
    """While a command runs: SIGINT and SIGTERM raise (:func:`on_signal`), a signal's exception
    that Python had to drop stays quiet, and a background thread's failure goes to
    ``thread_failure`` instead of a traceback."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        RECEIVED.clear()
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    hook, sys.unraisablehook = sys.unraisablehook, drop_interrupts(sys.unraisablehook)
    thread_hook, threading.excepthook = threading.excepthook, thread_failure
    try:
        yield
    finally:
        sys.unraisablehook, threading.excepthook = hook, thread_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)
