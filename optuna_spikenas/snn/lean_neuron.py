"""A gradient-free fast path for SpikingJelly's LIF-family neurons with a hard reset to 0.

Where no gradient is taken (scoring, evaluation) a neuron does not need what SpikingJelly keeps
for a backward pass (the charged potentials of every step, stacked copies). ``LeanForward``
runs the same arithmetic without them: ``h = charge(x, v)`` (the subclass's charge, written with
SpikingJelly's operations in SpikingJelly's order), a spike where ``h >= v_threshold`` (the
surrogate's Heaviside forward, ``h - v_threshold >= 0``), and ``v = h - h·spike``: 0 where it
fired, ``h`` elsewhere. Spikes and potentials are bit-for-bit SpikingJelly's (tested per neuron);
with gradients, or where ``_lean`` says no, SpikingJelly's own implementation runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Charge = Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]
"""``(x, v) -> h``, a new tensor: one step's charged potential."""


class LeanForward:
    """Mix in before a SpikingJelly node class whose reset is hard, to 0 (``v_reset = 0``).

    A subclass says when the lean path applies (``_lean``) and how it charges (``_charger``,
    built once per call: e.g. a learnable leak read once for all timesteps)."""

    v: torch.Tensor | float
    v_reset: float | None
    v_threshold: float

    def _lean(self, x: torch.Tensor) -> bool:
        raise NotImplementedError

    def _charger(self) -> Charge:
        raise NotImplementedError

    def _potential(self, like: torch.Tensor) -> torch.Tensor | float:
        v = self.v
        if isinstance(v, torch.Tensor) and v.shape == like.shape and v.dtype == like.dtype:
            return v
        return float(self.v_reset or 0.0)  # after a reset: the float v_reset, as SpikingJelly's

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._lean(x):
            return super().single_step_forward(x)  # type: ignore[misc, no-any-return]
        spike = torch.empty_like(x)
        self.v = self._fire_reset(self._charger()(x, self._potential(x)), spike)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if not self._lean(x_seq):
            return super().multi_step_forward(x_seq)  # type: ignore[misc, no-any-return]
        charge = self._charger()
        spikes = torch.empty_like(x_seq)  # dense, in x_seq's layout where x_seq is dense
        v = self._potential(x_seq[0])
        for t in range(x_seq.shape[0]):
            v = self._fire_reset(charge(x_seq[t], v), spikes[t])
        self.v = v
        return spikes

    def _fire_reset(self, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        """Writes the spikes (0.0 / 1.0) into ``spike``; returns the new potential (in ``h``)."""
        torch.ge(h, self.v_threshold, out=spike)
        return h.addcmul_(h, spike, value=-1.0)  # h - h·spike: 0 where it fired
