"""What the exported ``model.py`` says and does about its input: ``preprocess(images)``, the
input contract (``input_contract.py``) applied with PyTorch alone, and the docstring's paragraph
on input and output.

Unlike the network code, which ``model_template`` copies from the package's own source so that it
cannot drift, ``preprocess`` is written here by hand: the package's pipeline (``data.py``,
``event_datasets.py``) is NumPy code that a standalone ``model.py`` does not carry.
``tests/test_export.py`` checks that it gives the pipeline's numbers, to the last bit, in a process
that cannot import this package.
"""

from __future__ import annotations

import textwrap
from typing import Any

from optuna_spikenas.input_contract import EVENT_FRAMES

PREPROCESS_SOURCE = '''\
INPUT = DOCUMENT.get("input")  # the input contract: how the study's data was prepared
CLASSES = INPUT["classes"] if INPUT else None  # class names by label, where known


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """Raw samples (a tensor, or anything ``torch.as_tensor`` takes) as the network's input,
    computed as optuna-spikenas prepared the study's data (``INPUT``), to the last bit.

    Images (``INPUT["encoding"] == "direct"``): integers 0 .. ``INPUT["raw"]["max"]`` (uint8)
    as ``[N, C, H, W]``, ``[N, H, W, C]`` or, with one channel, ``[N, H, W]``; each pixel becomes
    ``(pixel / scale - mean[c]) / std[c]`` (``INPUT["normalise"]``); returns float32
    ``[N, C, H, W]``. Event frames: event counts ``[N, T, 2, S, S]`` binned as
    ``INPUT["frames"]`` says; each count becomes ``log1p(count)`` (PyTorch's float32 log1p,
    which differs from NumPy's, used in the search, in the last bit for a few counts)."""
    if INPUT is None:
        raise ValueError(
            "this model.py records no input contract (its architecture document predates it): "
            "export the trial again with optuna-spikenas export --config STUDY.toml"
        )
    x = torch.as_tensor(images)
    shape = list(INPUT["shape"])
    if INPUT["encoding"] == "event-frames":
        if list(x.shape[1:]) != shape:
            raise ValueError(f"event frames must be [N, *{shape}], got {list(x.shape)}")
        return torch.log1p(x.to(torch.float32))
    channels = shape[0]
    if x.dim() == 3 and channels == 1:
        x = x.unsqueeze(1)
    elif x.dim() == 4 and list(x.shape[1:]) == [*shape[1:], channels] != shape:
        x = x.permute(0, 3, 1, 2)  # channels last
    if list(x.shape[1:]) != shape:
        raise ValueError(f"images must be [N, *{shape}] or channels last, got {list(x.shape)}")
    normalise = INPUT["normalise"]
    mean = torch.tensor(normalise["mean"], dtype=torch.float64).view(-1, 1, 1)
    std = torch.tensor(normalise["std"], dtype=torch.float64).view(-1, 1, 1)
    if normalise["precision"] == "float64":
        return ((x.to(torch.float64) / normalise["scale"] - mean) / std).to(torch.float32)
    mean, std = mean.to(torch.float32), std.to(torch.float32)  # as the package's float32 pass
    return x.to(torch.float32) * (1.0 / (normalise["scale"] * std)) - mean / std
'''
"""The source of ``INPUT``, ``CLASSES`` and ``preprocess`` in ``model.py`` (after ``DOCUMENT``)."""


def input_output_paragraph(document: dict[str, Any]) -> str:
    """The docstring's paragraph on the network's input and output (its input contract)."""
    classes = (document.get("input") or {}).get("classes")
    if classes:
        names = ", ".join(str(c) for c in classes[:10]) + (", ..." if len(classes) > 10 else "")
        named = f"CLASSES names them ({names})"
    else:
        named = "CLASSES would name them, but their names are not known"
    text = (
        f"Input: {_input_text(document)} Output: class scores [batch, "
        f"{document['macro']['num_classes']}]; {named}. The network runs "
        f"{document['timesteps']} timesteps per call and averages them; call "
        "functional.reset_net(network) after each batch."
    )
    return textwrap.fill(text, width=100, break_on_hyphens=False)


def _input_text(document: dict[str, Any]) -> str:
    """The network's input in words, from the document's input contract."""
    contract, macro = document.get("input"), document["macro"]
    if not contract:
        size, channels = macro["image_size"], macro["in_channels"]
        return (
            f"images [batch, {channels}, {size}, {size}], normalised as the study's data was; "
            "this document does not record how (no input contract), so preprocess() refuses."
        )
    shape = ", ".join(str(n) for n in contract["shape"])
    if contract["encoding"] == EVENT_FRAMES:
        return (
            f"event-count frames [batch, {shape}] of {contract['dataset']} (INPUT['frames'] "
            "says how events are binned); preprocess() takes log1p of the counts."
        )
    normalise = contract["normalise"]
    return (
        f"raw {contract['dataset']} images, integers 0-{contract['raw']['max']} [batch, "
        f"{shape}] (or channels last); preprocess() normalises them per channel "
        f"({normalise['statistics']}) into float32 [batch, {shape}]."
    )
