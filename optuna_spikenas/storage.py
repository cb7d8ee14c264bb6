"""Opening the study that ``optuna create-study`` made, with the storage rules of Optuna's CLI.

Nothing here creates a database or a study: a wrong URL or study name is an error that says how
to create the study, never a new empty file.

On RDB storages (SQLite, PostgreSQL, MySQL) every trial has a heartbeat, and a trial whose
worker died (killed, machine lost) is marked failed when its beats stop and then retried once
with the same candidate by Optuna's retry callback (:class:`RetryStaleTrial`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend
from optuna.trial import FrozenTrial, TrialState

from optuna_spikenas.constraint_list import LIST_KEY, NAMED_PREFIX
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.interrupts import deferred_signals
from optuna_spikenas.recovery import WORKER_KEY, this_worker

STORAGE_CLASSES = ("RDBStorage", "JournalFileBackend", "JournalRedisBackend")
DEFAULT_RETRIES = 1
"""How often a trial whose worker died is re-run: once, so that a candidate that kills its worker
(out of memory, say) costs two workers at most, like the cell-by-cell sampler's two failures
after which it gives a candidate up."""
CLAIM_KEYS = ("cellbycell:params", "evolution:params")
"""System attributes in which our samplers record a trial's candidate before its objective runs
(``PARAMS_KEY`` of ``samplers/cellbycell.py`` and ``samplers/evolution.py``)."""


class StorageError(SpikeNASError):
    """The storage or study cannot be opened; the message says what to do."""


def open_storage(
    url: str,
    storage_class: str | None = None,
    heartbeat_seconds: int | None = 10,
    create: bool = False,
    retries: int = DEFAULT_RETRIES,
    writes: bool = True,
) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL as ``optuna`` CLI accepts it: an RDB URL, a journal file
    path, or a Redis URL; ``storage_class`` names the class when the URL alone is ambiguous.

    RDB storages get a heartbeat every ``heartbeat_seconds``: a trial whose worker died (killed,
    machine lost) is marked failed after two missed beats by the next worker that looks, and
    re-run with the same candidate up to ``retries`` times (0: never; the cell-by-cell sampler
    then still hands the candidate to another trial). With ``create`` a missing SQLite file
    (and its folder) is made, as ``compare`` needs. ``writes=False`` (dashboard, export) accepts
    a read-only database.

    Nothing is written to a file that is not already an Optuna storage (:func:`check_sqlite_file`,
    :func:`open_journal`): another application's SQLite database, an empty file or a damaged
    journal is refused in one line, byte-for-byte unchanged.
    """
    if storage_class is not None and storage_class not in STORAGE_CLASSES:
        raise StorageError(
            f"unknown storage class {storage_class!r}; known: {', '.join(STORAGE_CLASSES)}"
        )
    if storage_class == "JournalRedisBackend" or (
        storage_class is None and url.startswith("redis")
    ):
        return JournalStorage(JournalRedisBackend(url))
    if storage_class == "JournalFileBackend" or (
        storage_class is None and os.path.isfile(url) and not url.startswith("sqlite")
    ):
        return open_journal(url, writes)
    if url.startswith("sqlite:///"):
        check_sqlite_file(url, create, writes)
    if "://" not in url:
        raise StorageError(
            f"storage {url!r} is neither a database URL (e.g. sqlite:///nas.db) nor an existing "
            "journal file"
        )
    if retries < 0:
        raise StorageError(f"retries must not be negative, got {retries}")
    try:
        with warnings.catch_warnings():  # heartbeats and retries are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(
                sqlite_uri(url) if url.startswith("sqlite:///") else url,
                engine_kwargs=(
                    {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
                    if url.startswith("sqlite")
                    else None
                ),
                heartbeat_interval=heartbeat_seconds or None,
                grace_period=2 * heartbeat_seconds if heartbeat_seconds else None,
                heartbeat_stale_trial_callback=(
                    RetryStaleTrial(max_retry=retries) if heartbeat_seconds and retries else None
                ),
            )
        if url.startswith("sqlite") and writes:
            _fast_sqlite(storage)
        return storage
    except ImportError as err:  # no driver for the URL's database
        hint = ""
        if url.startswith("postgresql") and not url.startswith("postgresql://"):
            hint = "; postgresql:// URLs use psycopg 3, which this package installs"
        raise StorageError(
            f"cannot open storage {redact(url)}: its database driver is not installed "
            f"({err.__cause__ or err}){hint}"
        ) from None
    except Exception as err:  # SQLAlchemy reports bad URLs and unreachable servers variously
        raise StorageError(f"cannot open storage {redact(url)}: {type(err).__name__}") from None


SQLITE_HEADER = b"SQLite format 3\x00"
OPTUNA_TABLES = ("studies", "trials", "version_info")
"""Tables every Optuna RDB storage has; a database with tables but not these is not Optuna's."""


def _busy_seconds(default: float = 60.0) -> float:
    try:
        seconds = float(os.environ.get("SPIKENAS_SQLITE_BUSY_SECONDS", default))
    except ValueError:
        return default
    return seconds if 0 < seconds < 86400 else default


SQLITE_BUSY_SECONDS = _busy_seconds()
"""How long a write waits for a database another process has locked (SQLite retries with growing
pauses) before the command stops with one line; ``SPIKENAS_SQLITE_BUSY_SECONDS`` sets it (for
tests; a value that is not a number of seconds up to a day is ignored)."""


def check_sqlite_file(url: str, create: bool, writes: bool) -> None:
    """Refuse, before SQLAlchemy touches it, an SQLite URL whose file is missing (unless
    ``create``), empty, not SQLite, another application's database, or read-only when the
    command ``writes``. Reads the file's header and table names only (opened read-only)."""
    path, read_only = _sqlite_file(url)
    if not path:
        raise StorageError(f"{url} names no database file; give one, e.g. sqlite:///nas.db")
    if path == ":memory:":
        return
    if writes and read_only:
        raise StorageError(
            f"{url} opens the database read-only, but this command records trials in it; "
            "drop ?mode=ro"
        )
    if os.path.isdir(path):
        raise StorageError(f"database file {path} is a directory")
    if not os.path.exists(path):
        if not create:
            raise StorageError(
                f"database file {path} does not exist; create the study first with "
                f"`optuna create-study --storage {url} --study-name NAME --direction maximize`"
            )
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as err:
            raise StorageError(f"cannot create the folder of {path}: {err}") from None
        return
    try:
        with open(path, "rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except OSError as err:
        raise StorageError(f"database file {path} cannot be read: {err.strerror}") from None
    if not header and not create:
        raise StorageError(
            f"database file {path} is empty, not an Optuna database; nothing was written to it "
            f"(`optuna create-study --storage {url} ...` makes the study)"
        )
    if header and header != SQLITE_HEADER:
        raise StorageError(f"{path} is not an SQLite database; nothing was written to it")
    tables = sqlite_tables(path) if header else []
    missing = [name for name in OPTUNA_TABLES if name not in tables]
    if tables and missing or (not tables and not create):
        found = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise StorageError(
            f"{path} is not an Optuna database (its tables: {found or 'none'}); nothing was "
            "written to it"
        )
    if writes and not os.access(path, os.W_OK):
        raise StorageError(f"database file {path} is read-only; this command records trials in it")
    folder = os.path.dirname(os.path.abspath(path))
    if writes and not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(
            f"the folder {folder} is read-only; SQLite writes its journal beside {path}"
        )


def _sqlite_file(url: str) -> tuple[str, bool]:
    """The file path of a ``sqlite:///PATH?QUERY`` URL, and whether it asks for ``mode=ro``."""
    path, _, query = url[len("sqlite:///") :].partition("?")
    return path, "mode=ro" in query.split("&")


def sqlite_uri(url: str) -> str:
    """``sqlite:///nas.db?mode=ro`` as the URI form SQLite honours (``?mode=ro`` alone is
    ignored by SQLAlchemy's driver, which then opens the file read-write)."""
    path, read_only = _sqlite_file(url)
    if not read_only or path.startswith("file:"):
        return url
    return f"{url}&uri=true".replace("sqlite:///", "sqlite:///file:", 1)


def sqlite_tables(path: str) -> list[str]:
    """The table names of an SQLite file, read through a read-only connection."""
    import sqlite3
    from urllib.parse import quote

    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        ) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            return [name for (name,) in rows]
    except sqlite3.DatabaseError as err:
        raise StorageError(f"{path} is not a readable SQLite database ({err})") from None


def open_journal(path: str, writes: bool) -> JournalStorage:
    """A journal-file storage, replayed once to check that the file is an Optuna journal."""
    if not os.path.isfile(path):
        raise StorageError(f"journal file {path} does not exist; create the study first")
    with open(path, "rb") as file:
        first = file.readline(1 << 20)
    if first.startswith(SQLITE_HEADER):
        raise StorageError(
            f"{path} is an SQLite database, not a journal file; use --storage sqlite:///{path}"
        )
    if first and not is_journal_record(first):
        raise StorageError(
            f"{path} is not an Optuna journal file (its first line is no journal record); "
            "nothing was written to it"
        )
    if writes and not os.access(path, os.W_OK):
        raise StorageError(f"journal file {path} is read-only; this command records trials in it")
    if writes and not _ends_with_newline(path):
        raise StorageError(
            f"journal file {path} ends in a cut-off record (a worker stopped while writing it): "
            "Optuna would join the next record to it and damage the file; back it up and remove "
            f"the incomplete last line (`sed -i '$d' {path}`), then run again"
        )
    storage = WorkerRecordingJournalStorage(SignalSafeJournalFileBackend(path))
    try:
        storage.get_all_studies()
    except Exception as err:  # garbage, binary, a damaged record
        raise StorageError(
            f"{path} is not an Optuna journal file, or it is damaged ({type(err).__name__}); "
            "nothing was written to it"
        ) from None
    return storage


class WorkerRecordingJournalStorage(JournalStorage):
    """A journal storage whose every new RUNNING trial carries its worker (``recovery.py``):
    journals have no heartbeat, and ``optuna-spikenas recover`` tells a dead worker's RUNNING
    trial by this record. It is part of the trial's creation record, one append, so no kill can
    fall between the trial and its worker."""

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None:
            template_trial = FrozenTrial(
                number=-1,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=datetime.now(tz=UTC),
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=-1,
            )
        if template_trial.state == TrialState.RUNNING:
            template_trial = copy.copy(template_trial)
            template_trial.system_attrs = {**template_trial.system_attrs, WORKER_KEY: this_worker()}
        return super().create_new_trial(study_id, template_trial)


class SignalSafeJournalFileBackend(JournalFileBackend):
    """Optuna's journal file, appended to with Ctrl-C and SIGTERM held back until the append and
    its lock file are done: stopped in between, a worker leaves the lock file behind."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with deferred_signals():
            super().append_logs(logs)


def _ends_with_newline(path: str) -> bool:
    """True for an empty file or one whose last byte ends a line."""
    with open(path, "rb") as file:
        if file.seek(0, os.SEEK_END) == 0:
            return True
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def is_journal_record(line: bytes) -> bool:
    """True for a line of Optuna's journal: a JSON object with an ``op_code``. (Optuna skips a
    last line that does not parse, as a write cut short, so a one-line garbage file would pass
    its own replay.)"""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "op_code" in record


class RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose worker died (``RetryHeartbeatStaleTrialCallback``, called
    ``RetryFailedTrialCallback`` before Optuna 4.9), for trials that had their candidate.

    The retry is a new WAITING trial, run by the next worker that asks for a trial, with the dead
    trial's parameters, user attributes and system attributes, plus ``failed_trial`` (the first
    trial of the series: ``RetryHeartbeatStaleTrialCallback.retried_trial_number``) and
    ``retry_history``. Our samplers see ``failed_trial`` and keep the candidate they recorded
    (``before_trial``); the objective reuses the score when another worker has meanwhile
    completed the same candidate, so nothing is scored twice needlessly.

    Two differences from Optuna's callback:

    - A trial that died before it had a candidate (no parameter suggested and no claim of our
      samplers: it died while its sampler was choosing) is not retried. Its retry would have
      nothing to re-run, and the cell-by-cell sampler would take it for the retry of a candidate
      and score a random one in its place; the search goes on without it as without a retry.
    - Its constraints (system attributes ``constraints:NAME`` and their list ``constraints``,
      ``constraint_list.py``) are not copied: the objective sets them again, and Optuna ignores
      (with a warning) a constraint that is already set.
    """

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not has_candidate(trial):
            return
        trial = copy.copy(trial)
        trial.system_attrs = {
            key: value
            for key, value in trial.system_attrs.items()
            if key != LIST_KEY and not key.startswith(NAMED_PREFIX)
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__call__(study, trial)


def has_candidate(trial: FrozenTrial) -> bool:
    """True when ``trial`` had its candidate: a suggested parameter, or our samplers' claim."""
    return bool(trial.params) or any(trial.system_attrs.get(key) for key in CLAIM_KEYS)


def _fast_sqlite(storage: RDBStorage) -> None:
    """Write-ahead logging for SQLite: each trial writes a few dozen small commits, which in
    SQLite's default mode each wait for the disk; WAL mode (kept in the file) with
    ``synchronous=NORMAL`` does not, and readers such as optuna-dashboard no longer block
    writers. Safe for several processes on one host."""
    import sqlalchemy

    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # reconnect, so that every connection gets the pragma
    with storage.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")


def redact(url: str) -> str:
    """The URL with any password replaced, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def load_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    url: str,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """Load an existing study, or say how to create it."""
    try:
        return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        known = f" (studies there: {', '.join(names)})" if names else " (it has no studies)"
        raise StorageError(
            f"study {study_name!r} does not exist in {redact(url)}{known}; create it with "
            f"`optuna create-study --storage {redact(url)} --study-name {study_name} "
            "--direction maximize`"
        ) from None


def beat_while_sampling(study: optuna.Study, trial_id: int) -> None:
    """Record a heartbeat for a trial its sampler is still choosing for.

    Optuna starts a trial's heartbeat only when the objective runs, after the sampler's
    ``before_trial``; a worker killed while its sampler waits (the cell-by-cell sampler waits for
    other workers' phases) would leave a RUNNING trial with no heartbeat, which Optuna never
    declares stale. Our samplers call this when they start choosing and on every wait, so such a
    trial goes stale like any other. A no-op on storages without a heartbeat.
    """
    storage = study._storage
    if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval():
        storage.record_heartbeat(trial_id)
