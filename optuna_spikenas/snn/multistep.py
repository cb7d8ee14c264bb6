"""Multi-step execution: every layer runs over all T timesteps at once.

A network whose state only flows forward in time inside its neurons (no backward edge between
nodes of a cell) can run layer by layer instead of step by step: a ``[T, B, ...]`` sequence goes
through a conv as ``T·B`` images, through a SpikingJelly neuron in its multi-step mode (its
membrane loop over T inside one call), and on to the next layer. The arithmetic is that of the
per-step network; what changes is the number of Python calls (``T`` times fewer) and the size of
each conv (``T`` times more images). Nothing here changes a module's parameters or names, so
weights, initialisations and checkpoints are shared with the per-step form.

``run_steps(module, x_seq)`` is the one entry point. It walks the modules of a network by kind:

* ``nn.Sequential``: its children in order;
* a module with a ``forward_steps(x_seq)`` method (a cell, a block): that method;
* a SpikingJelly neuron or other step module (``base.StepModule``, e.g. ``layer.Dropout``, one
  mask per sample for all steps): called in multi-step mode (``set_multi_step`` sets it);
* ``nn.BatchNorm2d`` in training mode: once per step, so that each step is normalised by its
  own batch statistics and the running statistics are updated T times in order, exactly as the
  per-step network does (pooling the statistics over T·B images would change the outputs);
  in eval mode it is an affine map, applied to all ``T·B`` images at once;
* anything else (conv, pooling, flatten, linear, identity) is stateless per image: applied to
  the ``T·B`` images at once.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)  # harmless on the CPU build
from spikingjelly.activation_based import base  # noqa: E402

__all__ = ["STEP_MODES", "check_step_mode", "run_steps", "set_multi_step", "per_image"]

STEP_MODES = ("auto", "single", "multi")
"""A network's ``step_mode``: ``"single"`` one timestep at a time through the whole network,
``"multi"`` each layer over all timesteps at once, ``"auto"`` whichever the network measured
faster for the device and the pass."""


def check_step_mode(step_mode: str) -> str:
    """``step_mode`` if it is one of ``STEP_MODES``; otherwise a ValueError."""
    if step_mode not in STEP_MODES:
        raise ValueError(f"step_mode must be one of {list(STEP_MODES)}, got {step_mode!r}")
    return step_mode


def set_multi_step(module: nn.Module, multi_step: bool) -> None:
    """Put every SpikingJelly step module inside ``module`` (neurons, dropout) in multi-step
    (``"m"``) or single-step (``"s"``) mode."""
    mode = "m" if multi_step else "s"
    for sub in module.modules():
        if isinstance(sub, base.StepModule):
            sub.step_mode = mode


def per_image(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """``module`` applied to the ``T·B`` images of ``x_seq [T, B, ...]`` as one batch."""
    out = module(x_seq.flatten(0, 1))
    return out.unflatten(0, x_seq.shape[:2])


def run_steps(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """``module`` over the sequence ``x_seq [T, B, ...]``: the per-step outputs, stacked."""
    if isinstance(module, nn.Sequential):
        for child in module:
            x_seq = run_steps(child, x_seq)
        return x_seq
    forward_steps = getattr(module, "forward_steps", None)
    if callable(forward_steps):
        return forward_steps(x_seq)  # type: ignore[no-any-return]
    if isinstance(module, base.StepModule):
        if module.step_mode != "m":
            raise RuntimeError(
                f"{type(module).__name__} is in single-step mode inside a multi-step pass; "
                "call set_multi_step(network, True) first"
            )
        return module(x_seq)  # type: ignore[no-any-return]
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and (
        module.training or not module.track_running_stats  # normalised by batch statistics
    ):
        return torch.stack([module(x) for x in x_seq])
    return per_image(module, x_seq)
