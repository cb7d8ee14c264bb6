"""Opening the study that ``optuna create-study`` made, with the storage rules of Optuna's CLI.

Nothing here creates a database or a study: a wrong URL or study name is an error that says how
to create the study, never a new empty file.
"""

from __future__ import annotations

import os

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

STORAGE_CLASSES = ("RDBStorage", "JournalFileBackend", "JournalRedisBackend")


class StorageError(ValueError):
    """The storage or study cannot be opened; the message says what to do."""


def open_storage(
    url: str,
    storage_class: str | None = None,
    heartbeat_seconds: int | None = 10,
    create: bool = False,
) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL as ``optuna`` CLI accepts it: an RDB URL, a journal file
    path, or a Redis URL; ``storage_class`` names the class when the URL alone is ambiguous.

    RDB storages get a heartbeat every ``heartbeat_seconds``: a trial whose worker died (killed,
    machine lost) is marked failed after two missed beats, and its candidate is tried again.
    With ``create`` a missing SQLite file (and its folder) is made, as ``compare`` needs.
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
        if not os.path.isfile(url):
            raise StorageError(f"journal file {url} does not exist; create the study first")
        return JournalStorage(JournalFileBackend(url))
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if create and path and path != ":memory:":
            try:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            except OSError as err:
                raise StorageError(f"cannot create the folder of {path}: {err}") from None
        elif path and path != ":memory:" and not os.path.isfile(path):
            raise StorageError(
                f"database file {path} does not exist; create the study first with "
                f"`optuna create-study --storage {url} --study-name NAME --direction maximize`"
            )
    if "://" not in url:
        raise StorageError(
            f"storage {url!r} is neither a database URL (e.g. sqlite:///nas.db) nor an existing "
            "journal file"
        )
    try:
        storage = RDBStorage(
            url,
            heartbeat_interval=heartbeat_seconds or None,
            grace_period=2 * heartbeat_seconds if heartbeat_seconds else None,
        )
        if url.startswith("sqlite"):
            _fast_sqlite(storage)
        return storage
    except Exception as err:  # SQLAlchemy reports bad URLs and unreachable servers variously
        raise StorageError(f"cannot open storage {redact(url)}: {type(err).__name__}") from None


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
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if interval:
        storage.record_heartbeat(trial_id)
