"""A gradient-free fast path for SpikingJelly's LIF-family neurons with a hard reset to 0.

Where no gradient is taken (scoring, evaluation) a neuron does not need what SpikingJelly keeps
for a backward pass (the charged potentials of every step, stacked copies). ``LeanForward``
runs the same arithmetic without them: ``h = charge(x, v)`` (the subclass's charge, written with
SpikingJelly's operations in SpikingJelly's order), a spike where ``h >= v_threshold`` (the
surrogate's Heaviside forward, ``h - v_threshold >= 0``), and ``v = h - h·spike``: 0 where it
fired, ``h`` elsewhere. Spikes and potentials are bit-for-bit SpikingJelly's (tested per neuron);
with gradients, or where ``_lean`` says no, SpikingJelly's own implementation runs unchanged.

Twins: neurons of one kind and settings that are always given the same tensor (in a SNASNet
cell, the neurons of every conv op fed by one node) hold the same potential at every step, so
on the lean path only the first of them to be called in a step computes: the others
(``share_input``) find its step, given the very tensor it was given from the very potential they
hold, and return its spikes (the same tensor object) and take its potential. Each twin is still
called, so hooks (the score's recorder, the activity counter) see every neuron's output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Charge = Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]
"""``(x, v) -> h``, a new tensor: one step's charged potential."""


@dataclass(frozen=True)
class _LeanStep:
    """One lean call: the input, the potential before and after, the spikes it emitted."""

    x: torch.Tensor
    v_before: torch.Tensor | float
    v_after: torch.Tensor
    spikes: torch.Tensor


class _Twins:
    """What twin neurons share: the last lean call any of them computed."""

    def __init__(self) -> None:
        self.last: _LeanStep | None = None


def _same_potential(a: torch.Tensor | float, b: torch.Tensor | float) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return a is b  # tensors are shared, never written in place, so identity is equality
    return a == b


class LeanForward:
    """Mix in before a SpikingJelly node class whose reset is hard, to 0 (``v_reset = 0``).

    A subclass says when the lean path applies (``_lean``) and how it charges (``_charger``,
    built once per call: e.g. a learnable leak read once for all timesteps)."""

    v: torch.Tensor | float
    v_reset: float | None
    v_threshold: float
    _twins: _Twins | None = None

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
        v = self._potential(x)
        shared = self._twin_step(x, v)
        if shared is not None:
            return shared
        spike = torch.empty_like(x)
        self.v = self._fire_reset(self._charger()(x, v), spike)
        self._record(x, v, spike)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if not self._lean(x_seq):
            return super().multi_step_forward(x_seq)  # type: ignore[misc, no-any-return]
        v_before = v = self._potential(x_seq[0])
        shared = self._twin_step(x_seq, v_before)
        if shared is not None:
            return shared
        charge = self._charger()
        spikes = torch.empty_like(x_seq)  # dense, in x_seq's layout where x_seq is dense
        for t in range(x_seq.shape[0]):
            v = self._fire_reset(charge(x_seq[t], v), spikes[t])
        self.v = v
        self._record(x_seq, v_before, spikes)
        return spikes

    def _fire_reset(self, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        """Writes the spikes (0.0 / 1.0) into ``spike``; returns the new potential (in ``h``)."""
        torch.ge(h, self.v_threshold, out=spike)
        return h.addcmul_(h, spike, value=-1.0)  # h - h·spike: 0 where it fired

    def _twin_step(self, x: torch.Tensor, v: torch.Tensor | float) -> torch.Tensor | None:
        """A twin's spikes for input ``x`` from potential ``v``, taking its potential; or None."""
        last = None if self._twins is None else self._twins.last
        if last is None or last.x is not x or not _same_potential(last.v_before, v):
            return None
        self.v = last.v_after
        return last.spikes

    def _record(self, x: torch.Tensor, v_before: torch.Tensor | float, spikes: torch.Tensor):
        if self._twins is not None:
            assert isinstance(self.v, torch.Tensor)
            self._twins.last = _LeanStep(x, v_before, self.v, spikes)

    def reset(self) -> None:
        if self._twins is not None:
            self._twins.last = None  # nothing held between passes
        super().reset()  # type: ignore[misc]


def share_input(neurons: Sequence[LeanForward]) -> None:
    """Make ``neurons`` twins. The caller promises they compute alike (one kind, the same
    charge and threshold); a twin takes another's step only when given the very tensor that one
    was given, from the very potential it holds (see the module's docstring)."""
    if len(neurons) < 2:
        return
    kinds = {type(n) for n in neurons}
    if len(kinds) != 1:
        names = sorted(k.__name__ for k in kinds)
        raise ValueError(f"twin neurons must be of one kind, got {names}")
    twins = _Twins()
    for n in neurons:
        n._twins = twins
