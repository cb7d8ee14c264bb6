"""The command line, ``optuna-spikenas``: ``main`` (``main.py``) parses the arguments
(``parser.py``) and runs one command (``commands.py``)."""

from optuna_spikenas.cli.main import main

__all__ = ["main"]
