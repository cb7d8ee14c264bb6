"""``optuna-spikenas``: run a study made by ``optuna create-study``, and describe architectures.

Every expected failure (bad config, architecture, storage, study, dataset) ends with one line on
stderr and exit status 2; nothing is written to the study before the inputs are validated.
Ctrl-C ends with 130, SIGTERM with 143 (``interrupts.py``), a storage that fails mid-run with 1.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import optuna

from optuna_spikenas.cli.parser import build_parser, check_positive
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.interrupts import report_stop, signals_handled
from optuna_spikenas.storage import (
    SQLITE_BUSY_SECONDS,
)


def main(argv: list[str] | None = None) -> int:
    # Heartbeats are "experimental" in Optuna; they are on by design here, so don't warn.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with signals_handled(one_line_thread_errors):
            check_positive(args)
            return args.func(args)
    except KeyboardInterrupt as err:  # before a command's own handler (e.g. loading data, or
        # training a super-network, whose stop says what it kept)
        return report_stop(err, prefix="optuna-spikenas: ")
    except BrokenPipeError:  # e.g. `... | head`: the reader has gone, not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except SpikeNASError as err:  # every error of the user's input or environment
        if args.traceback:
            raise
        print(f"optuna-spikenas: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    except optuna.exceptions.StorageInternalError as err:  # the database failed mid-run
        if args.traceback:
            raise
        print(f"optuna-spikenas: error: {storage_failure(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # an unexpected failure: one line, the traceback on request
        if args.traceback or os.environ.get("OPTUNA_SPIKENAS_TRACEBACK"):
            raise
        print(
            f"optuna-spikenas: internal error: {type(err).__name__}: {one_line(str(err))} "
            "(rerun with --traceback for details)",
            file=sys.stderr,
        )
        return 1


def one_line(message: str, limit: int = 1000) -> str:
    """A message as the one line a command ends with: no line breaks, at most ``limit``
    characters (the rest is cut, and said to be)."""
    text = " ".join(message.split())
    return text if len(text) <= limit else f"{text[:limit]}... (cut; --traceback shows all)"


def one_line_thread_errors(info: Any) -> None:
    """A background thread's failure in one line instead of a traceback. A storage failure
    (Optuna's heartbeat on a database locked too long) is left to the main thread, which meets
    the same lock and says so, or outlives it: each trial has a heartbeat thread of its own."""
    err = info.exc_value
    if not isinstance(err, optuna.exceptions.StorageInternalError):
        text = f"{type(err).__name__}: {one_line(str(err))}"
        print(f"optuna-spikenas: warning: a background thread stopped: {text}", file=sys.stderr)


def storage_failure(err: BaseException) -> str:
    """One line for a storage that failed while the command ran."""
    cause = str(err.__cause__ or err).splitlines()[0]
    if "database is locked" in cause:
        return (
            f"the database stayed locked by another process for over {SQLITE_BUSY_SECONDS:g} s "
            "(SQLite retried all along); completed trials are saved, and the trial that could "
            "not be written is failed by the next worker once its heartbeat stops"
        )
    return f"the storage failed: {cause}; completed trials are saved"
