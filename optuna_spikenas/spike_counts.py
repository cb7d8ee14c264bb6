"""What every kernel of the Hamming family needs from spike maps, counted exactly.

For ``M`` binary spike maps of ``B`` samples and ``N`` units each, ``x ∈ {0,1}^(M×B×N)``:
the Gram matrices ``x xᵀ`` (units where both samples spike), the spikes per sample
``s_i = (x xᵀ)_ii`` and ``N`` (``SpikeCounts``). One batched matmul per neuron output; the
counts are exact: sums of 0/1 products in float32 below 2**24 units (float64 above). Three
routes (``GRAM_ROUTES``) give the same integers:

* ``whole``: one float32 (float64) matmul;
* ``halves``, for an even batch: ``x xᵀ`` is symmetric, so the two diagonal blocks and one
  off-diagonal block (three quarters of the products);
* ``bfloat16``, on a CPU with bfloat16 dot products (AVX512-BF16 or AMX) and in the main
  thread only: oneDNN's bfloat16 math for the duration of the matmul (inputs rounded to
  bfloat16, where 0 and 1 are exact, products summed in float32).

Which is fastest depends on the CPU, the shape and the thread count, not only on what the CPU
supports (measured: ``bfloat16`` 1.4-1.8x faster than ``whole`` on one 2-core AMD EPYC at 2
threads, 1.3x slower on one 2-core Intel Xeon with AMX). So on a CPU the route is chosen by
timing: the first time a process meets a shape (``[M, B, N]``, dtype, thread count, routes
allowed) it runs each allowed route a few times and keeps the fastest for that shape, as
cuDNN's benchmark mode picks convolution algorithms. Every route gives the same counts, so
the choice changes the time only. On a GPU: ``halves`` for an even batch of 16 or more, else
``whole`` (not measured there).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "GRAM_ROUTES",
    "GramPart",
    "SpikeCounts",
    "allowed_routes",
    "count_spikes",
    "fastest_route",
    "spike_grams",
]

# Sums of 0/1 products are exact in float32 while they stay below 2**24.
_FLOAT32_EXACT_LIMIT = 2**24


@dataclass(frozen=True)
class SpikeCounts:
    """What every kernel of the Hamming family needs from ``M`` spike maps of ``B`` samples:
    ``gram [M, B, B]`` (``x xᵀ``: units where both samples spike), ``row_sums [M, B]`` (spikes
    per sample) and ``units [M]`` (``N`` of each map), all float64."""

    gram: torch.Tensor
    row_sums: torch.Tensor
    units: torch.Tensor

    def hamming_distances(self) -> torch.Tensor:
        """``d_H(i,j) = s_i + s_j − 2·(x xᵀ)_ij``, ``[M, B, B]``."""
        s = self.row_sums
        return s[:, :, None] + s[:, None, :] - 2.0 * self.gram


def count_spikes(spikes: torch.Tensor, binary: bool = False) -> SpikeCounts:
    """``SpikeCounts`` of ``spikes [M, B, ...]`` (``M`` maps, e.g. the T steps of one layer;
    a value ``> 0`` is a spike), with one batched matmul for all ``M`` maps.

    ``binary`` says the values are already exactly 0 and 1 (a neuron's spikes), so they are
    used as they are; otherwise ``x = (spikes > 0)`` is written into the matmul's dtype. The
    Gram matrices are computed in float32 where that is exact (fewer than 2**24 units),
    float64 otherwise; ``s_i = (x xᵀ)_ii`` since ``x`` is binary. The units are taken in
    memory order (a channels-last map is not copied): ``x xᵀ`` and ``s`` do not depend on it.
    """
    return GramPart.combine([spike_grams(spikes, binary)])


@dataclass(frozen=True)
class GramPart:
    """The Gram matrices ``gram = x xᵀ [M, B, B]`` of ``M`` maps of ``units`` units each, in the
    matmul's dtype: what a neuron call adds, turned into ``SpikeCounts`` (float64) in bulk."""

    gram: torch.Tensor
    units: int

    @staticmethod
    def combine(parts: Sequence[GramPart]) -> SpikeCounts:
        """The parts' ``SpikeCounts``, in order, with one conversion to float64."""
        gram = torch.cat([p.gram for p in parts]).to(torch.float64)  # cat promotes dtypes
        units = torch.tensor(
            [float(p.units) for p in parts for _ in range(p.gram.shape[0])],
            dtype=torch.float64,
            device=gram.device,
        )
        return SpikeCounts(gram, torch.diagonal(gram, dim1=1, dim2=2), units)


def _gram_whole(x: torch.Tensor) -> torch.Tensor:
    """``x xᵀ`` of ``x [M, B, N]`` in one batched matmul, in ``x``'s dtype."""
    return torch.bmm(x, x.transpose(1, 2))


def _gram_by_halves(x: torch.Tensor) -> torch.Tensor:
    """``x xᵀ`` of ``x [M, B, N]`` (``B`` even) from three quarters of the products: the blocks
    ``x_a x_aᵀ``, ``x_b x_bᵀ`` and ``x_a x_bᵀ`` of the two halves of the samples, the fourth
    being the transpose of the third (``x xᵀ`` is symmetric)."""
    maps, batch, n_units = x.shape
    h = batch // 2
    halves = x.reshape(maps * 2, h, n_units)
    diagonal = torch.bmm(halves, halves.transpose(1, 2)).view(maps, 2, h, h)
    cross = torch.bmm(x[:, :h], x[:, h:].transpose(1, 2))
    gram = cross.new_empty(maps, batch, batch)
    gram[:, :h, :h] = diagonal[:, 0]
    gram[:, h:, h:] = diagonal[:, 1]
    gram[:, :h, h:] = cross
    gram[:, h:, :h] = cross.transpose(1, 2)
    return gram


def spike_grams(spikes: torch.Tensor, binary: bool) -> GramPart:
    """The Gram matrices of ``spikes [M, B, ...]`` (see ``count_spikes``), before float64."""
    if spikes.dim() < 3:
        raise ValueError(f"spikes must have shape [M, B, ...], got {tuple(spikes.shape)}")
    flat = _units_in_memory_order(spikes.detach())
    n_units = flat.shape[2]
    if n_units == 0:
        raise ValueError("spikes have no units (N = 0)")
    mm_dtype = torch.float32 if n_units < _FLOAT32_EXACT_LIMIT else torch.float64
    if binary and flat.dtype == mm_dtype:
        x = flat
    else:
        x = torch.empty(flat.shape, dtype=mm_dtype, device=flat.device)
        torch.gt(flat, 0, out=x)
    return GramPart(GRAM_ROUTES[_route_for(x)](x), n_units)


_CPU_BF16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
_MAIN_THREAD = threading.main_thread().ident


def _bf16_exact_here(x: torch.Tensor) -> bool:
    """Whether ``x``'s Gram matrices can run on the CPU's bfloat16 dot products: ``x`` holds
    0.0 / 1.0 (exact in bfloat16) in float32, the products are summed in float32 (exact below
    2**24), the CPU has the instructions, and this is the main thread, since the precision is a
    process-wide setting for the duration of the matmul (Optuna's ``n_jobs`` threads, which may
    run a network's float32 matmuls meanwhile, take the float32 route)."""
    return (
        _CPU_BF16
        and x.dtype == torch.float32
        and x.device.type == "cpu"
        and threading.get_ident() == _MAIN_THREAD
    )


def _bf16_gram(x: torch.Tensor) -> torch.Tensor:
    """``x xᵀ`` of a binary float32 ``x [M, B, N]`` with oneDNN's bfloat16 math: inputs rounded
    to bfloat16 (0 and 1 stay exact), products summed in float32 (exact), float32 out."""
    matmul = torch.backends.mkldnn.matmul  # type: ignore[attr-defined]
    previous = matmul.fp32_precision
    matmul.fp32_precision = "bf16"
    try:
        return torch.bmm(x, x.transpose(1, 2))
    finally:
        matmul.fp32_precision = previous


GRAM_ROUTES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "whole": _gram_whole,
    "halves": _gram_by_halves,
    "bfloat16": _bf16_gram,
}
"""Every way of computing ``x xᵀ`` for a binary ``x [M, B, N]``; all give the same counts."""


def allowed_routes(x: torch.Tensor) -> list[str]:
    """The routes of ``GRAM_ROUTES`` that count ``x``'s Gram matrices exactly here:
    ``whole`` always, ``halves`` for an even batch, ``bfloat16`` where ``_bf16_exact_here``."""
    routes = ["whole"]
    if x.shape[1] % 2 == 0:
        routes.append("halves")
    if _bf16_exact_here(x):
        routes.append("bfloat16")
    return routes


# On a GPU, batches at least this large (and even) have their Gram matrices computed by halves.
_HALVES_FROM = 16
_TIMED_ROUNDS = 3  # after one untimed call of each route
_fastest: dict[tuple, str] = {}
"""The route timed fastest per (shape, dtype, thread count, main thread or not), in this
process (the last two decide which routes are allowed and how fast they are)."""


def _route_for(x: torch.Tensor) -> str:
    """The route for ``x``: on a CPU the fastest allowed one, timed the first time its shape is
    met (see the module's docstring); on a GPU ``halves`` for an even batch of 16 or more."""
    if x.device.type != "cpu":
        batch = x.shape[1]
        return "whole" if batch % 2 or batch < _HALVES_FROM else "halves"
    key = (x.shape, x.dtype, torch.get_num_threads(), threading.get_ident() == _MAIN_THREAD)
    route = _fastest.get(key)
    if route is None:
        routes = allowed_routes(x)
        route = _fastest[key] = routes[0] if len(routes) == 1 else fastest_route(x, routes)
    return route


def fastest_route(x: torch.Tensor, routes: Sequence[str]) -> str:
    """The route of ``routes`` that computes ``x``'s Gram matrices fastest here: each is run
    once untimed, then ``_TIMED_ROUNDS`` times in turn, and the best time of each compared."""
    best = dict.fromkeys(routes, math.inf)
    for route in routes:
        GRAM_ROUTES[route](x)
    for _ in range(_TIMED_ROUNDS):
        for route in routes:
            start = time.perf_counter()
            GRAM_ROUTES[route](x)
            best[route] = min(best[route], time.perf_counter() - start)
    return min(routes, key=best.__getitem__)


def _units_in_memory_order(spikes: torch.Tensor) -> torch.Tensor:
    """``spikes [M, B, ...]`` as ``[M, B, N]``, the trailing dims flattened in the order they
    lie in memory (a view where the layout allows, e.g. channels-last)."""
    if spikes.is_contiguous():
        return spikes.view(spikes.shape[0], spikes.shape[1], -1)
    strides = spikes.stride()
    trailing = sorted(range(2, spikes.dim()), key=lambda d: -strides[d])
    return spikes.permute(0, 1, *trailing).reshape(spikes.shape[0], spikes.shape[1], -1)
