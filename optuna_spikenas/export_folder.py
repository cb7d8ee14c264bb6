"""The folder ``export`` writes into: it never overwrites a file it did not write.

Every export records, in ``.optuna-spikenas-export.json`` inside the folder, the sha256 of each
file it wrote. A later export may replace a file only when the record says an export wrote it
and the file is unchanged since; any other file in the way (a user's own ``model.py``, an
exported file edited by hand) stops the export before anything is written, unless ``force``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.paths import unwritable_folder

RECORD = ".optuna-spikenas-export.json"


class ExportFolderError(SpikeNASError):
    """A folder the export must not write into as asked; the message (one line) says why."""


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _written_before(folder: Path) -> dict[str, str]:
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def check_export_folder(
    out_dir: str | Path, names: Iterable[str], force: bool = False, kept: Iterable[str] = ()
) -> Path:
    """The folder, checked before anything is written: a non-empty path that is not a file, in
    which none of ``names`` is a file an export did not write (or that changed since), unless
    ``force``. ``kept`` names files the export will leave as they are (e.g. weights given from
    the folder itself)."""
    if not str(out_dir).strip():
        raise ExportFolderError("--out is empty: name the folder to export into")
    folder = Path(out_dir)
    problem = unwritable_folder(folder)
    if problem:
        raise ExportFolderError(f"--out {folder}: {problem}")
    if force or not folder.is_dir():
        return folder
    earlier = _written_before(folder)
    for name in names:
        path = folder / name
        if name in kept or not path.exists():
            continue
        if not path.is_file() or earlier.get(name) != _sha256(path):
            raise ExportFolderError(
                f"{path} exists and was not written by an earlier export (or was changed "
                "since): move it away, choose another --out, or give --force to overwrite it"
            )
    return folder


def record_export(folder: Path, written: Iterable[Path]) -> None:
    """Add the files just written to the folder's record of what exports wrote."""
    record = _written_before(folder)
    for path in written:
        record[path.name] = _sha256(path)
    (folder / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
