"""Fingerprinted checkpoints: a payload saved atomically with what it depends on, and read back
only when that still matches. The super-network (``supernet.py``) and final training
(``final_training.py``) keep theirs this way; each says what its fingerprint holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optuna_spikenas.atomic_file import write_atomically


def tensors_sha256(tensors: Iterable[torch.Tensor]) -> str:
    """sha256 of the tensors' values, with their dtypes and shapes (data a checkpoint was
    trained on: a changed split or another dataset gives another digest)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` (tensors and plain data) at ``path``, wholly or not at all."""
    write_atomically(path, lambda f: torch.save(payload, f))


def load_checkpoint(
    path: Path, keys: set[str], refuse: Callable[[str], Exception], what: str
) -> dict[str, Any]:
    """The payload at ``path`` when it is a dict with exactly ``keys``; otherwise
    ``refuse(reason)`` is raised. Loaded with ``weights_only``: nothing but tensors and plain
    data is unpickled."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, garbage, a pickle that is not plain data, ...
        raise refuse(f"cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or set(payload) != keys:
        raise refuse(f"is not a {what} checkpoint")
    return payload
