"""The one base class of every error this package reports as the user's to fix.

Each module raises its own kind (``ConfigError``, ``DatasetError``, ``StorageError``, ...), each a
:class:`SpikeNASError`; the command line prints any of them as one line and exits with status 2.
Anything else that escapes is a bug of ours ("internal error").
"""

from __future__ import annotations


class SpikeNASError(ValueError):
    """A problem with the user's input or environment, with a message that says what to do."""
