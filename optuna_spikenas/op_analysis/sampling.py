"""Operation analysis, step 1: distinct valid architectures of an op set, sampled uniformly
(see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from optuna_spikenas.space import (
    BACKWARD,
    EDGES,
    FORWARD,
    OPS,
    ZERO,
    Architecture,
    Cell,
    SearchSpace,
    invalid_reason,
    op_code,
)

ZERO_NAME = OPS[ZERO]
ENUMERATE_LIMIT = 5000
"""Largest number of raw cells per op set that is enumerated to count its architectures."""

# --- sampling ------------------------------------------------------------------------------


def _codes(ops: Iterable[int | str]) -> tuple[int, ...]:
    codes = tuple(sorted({op_code(o) for o in ops}))
    if not codes:
        raise ValueError("an op set has at least one operation")
    return codes


def _edge_choices(codes: tuple[int, ...], backward: bool) -> tuple[tuple[int, str], ...]:
    """What one edge may carry: ``zero`` (no direction) or a non-zero op with a direction."""
    directions = (FORWARD, BACKWARD) if backward else (FORWARD,)
    choices: list[tuple[int, str]] = [(ZERO, FORWARD)] if ZERO in codes else []
    choices += [(c, d) for c in codes if c != ZERO for d in directions]
    return tuple(choices)


def _cell_ok(cell: Cell, space: SearchSpace) -> bool:
    """The cell-level rules of ``invalid_reason`` (validity, direction, direct edge)."""
    arch = Architecture((cell,) * space.num_cells[0], space.widths[0])
    return invalid_reason(arch, space) is None


@lru_cache(maxsize=64)
def _distinct_cells(codes: tuple[int, ...], space: SearchSpace) -> int | None:
    """Distinct valid canonical cells over ``codes``, or None when there are too many raw
    cells to enumerate (more than ``ENUMERATE_LIMIT``; such sets have plenty)."""
    choices = _edge_choices(codes, space.backward)
    if len(choices) ** len(EDGES) > ENUMERATE_LIMIT:
        return None
    seen: set[Cell] = set()
    for picks in np.ndindex(*(len(choices),) * len(EDGES)):
        cell = _cell_from_choices([choices[p] for p in picks])
        if _cell_ok(cell, space):
            seen.add(cell.canonical())
    return len(seen)


def count_architectures(ops: Iterable[int | str], space: SearchSpace) -> int | None:
    """How many distinct (canonical) valid architectures the op set has in ``space``, or None
    when it is too large to count (then far more than any sample): ``D`` distinct cells give
    ``sum over num_cells c of (D if shared else D**c) x len(widths)`` architectures."""
    distinct = _distinct_cells(_codes(ops), space)
    if distinct is None:
        return None
    per_width = sum(distinct if space.shared_cell else distinct**c for c in space.num_cells)
    return per_width * len(space.widths)


def _cell_from_choices(picks: Sequence[tuple[int, str]]) -> Cell:
    forward = {e: c for e, (c, d) in zip(EDGES, picks, strict=True) if d == FORWARD}
    backward = {e: c for e, (c, d) in zip(EDGES, picks, strict=True) if d == BACKWARD}
    return Cell.from_edges(forward, backward)


def sample_architectures(
    ops: Iterable[int | str],
    n: int,
    rng: np.random.Generator,
    space: SearchSpace,
    *,
    max_draws: int | None = None,
) -> list[Architecture]:
    """Up to ``n`` distinct valid architectures of ``space`` whose edges use only ``ops``.

    A draw takes num_cells and width uniformly from the space's lists and every edge of every
    cell (one cell when the cell is shared) uniformly from the op set's edge choices; invalid
    draws and repeats of a canonical form are rejected. Fewer than ``n`` come back only when the
    op set has fewer distinct architectures (all are returned) or after ``max_draws`` draws
    (default ``1000 n + 10000``).
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    codes = _codes(ops)
    choices = _edge_choices(codes, space.backward)
    available = count_architectures(codes, space)
    wanted = n if available is None else min(n, available)
    limit = max_draws if max_draws is not None else 1000 * n + 10000
    found: dict[str, Architecture] = {}
    draws = 0
    while len(found) < wanted and draws < limit:
        draws += 1
        num_cells = space.num_cells[int(rng.integers(len(space.num_cells)))]
        width = space.widths[int(rng.integers(len(space.widths)))]
        distinct_cells = 1 if space.shared_cell else num_cells
        cells = tuple(
            _cell_from_choices([choices[p] for p in rng.integers(len(choices), size=len(EDGES))])
            for _ in range(distinct_cells)
        )
        arch = Architecture(cells * num_cells if space.shared_cell else cells, width)
        if invalid_reason(arch, space) is None:
            found.setdefault(arch.canonical_key(), arch)
    return list(found.values())
