"""Paths the user names, checked before anything is read or written.

Each check returns why a path cannot be used, as text for the caller's own one-line error, or
None: a folder that cannot be made or written to (under a file, read-only), a file that is not a
regular file (``/dev/zero``, ``/dev/null``, a folder).
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_TEXT_FILE_BYTES = 1 << 20
"""A config, a hardware profile or an architecture file is a few kilobytes: more than a megabyte
is the wrong file, or a device such as ``/dev/zero`` that never ends."""


def read_capped(path: str | Path, limit: int = MAX_TEXT_FILE_BYTES) -> bytes | None:
    """The file's bytes, or None when it holds more than ``limit`` (read no further than that).
    ``OSError`` as ``open`` raises it."""
    with open(path, "rb") as file:
        data = file.read(limit + 1)
    return None if len(data) > limit else data


def unwritable_folder(path: str | Path) -> str | None:
    """Why ``path`` cannot be made (or is not) a folder this process writes into, or None."""
    folder = Path(path)
    if folder.exists():
        if not folder.is_dir():
            return "exists and is not a folder"
        return None if os.access(folder, os.W_OK | os.X_OK) else "the folder is read-only"
    parent = folder.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is read-only"
    return None


def make_folder(path: str | Path) -> str | None:
    """Create ``path`` (and its parents); why it could not be, or None."""
    reason = unwritable_folder(path)
    if reason is None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            reason = f"cannot be created: {err.strerror or err}"
    return reason


def not_a_file(path: str | Path) -> str | None:
    """Why ``path`` is not a regular file to read, or None."""
    file = Path(path)
    if not file.exists():
        return "does not exist"
    if file.is_dir():
        return "is a folder, not a file"
    if not file.is_file():
        return "is not a regular file (a device, pipe or socket)"
    return None
