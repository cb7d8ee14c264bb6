"""The SNASNet cell search space: operations, cells, architectures and their Optuna parameters.

A cell has 4 nodes (0 = cell input, 3 = cell output) and one edge per node pair (i, j), i < j.
Each edge carries one of five operations; with temporal ("backward") cells each pair also picks a
direction: forward i -> j within a timestep, or backward j -> i, whose output at step t is added
to node i's input at step t + 1.

The text form used everywhere is SNASNet's 4x4 op matrix written as four groups of four digits:
entry [i][j] above the diagonal is the forward edge i -> j, entry [j][i] below it the backward
edge j -> i. ``0302 0030 3003 0000`` is SNASNet's released CIFAR100 cell. Cells of a network are
joined by `` / ``.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import optuna

from optuna_spikenas.errors import SpikeNASError

OPS: tuple[str, ...] = ("zero", "skip", "conv1x1", "conv3x3", "avgpool3x3")
"""Operation names, indexed by their SNASNet code (0..4)."""

ZERO, SKIP, CONV1X1, CONV3X3, AVGPOOL3X3 = range(5)
CONV_OPS = frozenset({CONV1X1, CONV3X3})

NUM_NODES = 4
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
"""Node pairs (i, j), i < j, in SNASNet's order; each pair is one Optuna parameter."""

FORWARD, BACKWARD = "forward", "backward"


class SpaceError(SpikeNASError):
    """An architecture or a space setting that cannot be used; the message says why."""


def op_code(name_or_code: str | int) -> int:
    """The code of an operation given by name (``conv3x3``) or code (``3``)."""
    if isinstance(name_or_code, int) and 0 <= name_or_code < len(OPS):
        return name_or_code
    if isinstance(name_or_code, str):
        if name_or_code in OPS:
            return OPS.index(name_or_code)
        if name_or_code.isdigit() and int(name_or_code) < len(OPS):
            return int(name_or_code)
    raise SpaceError(f"unknown operation {name_or_code!r}; known: {', '.join(OPS)} (or 0-4)")


@dataclass(frozen=True)
class Cell:
    """One cell: ``matrix[i][j]`` is the op code of edge i -> j (i < j forward, i > j backward)."""

    matrix: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if len(self.matrix) != NUM_NODES or any(len(row) != NUM_NODES for row in self.matrix):
            raise SpaceError("a cell is a 4x4 op matrix")
        for i, row in enumerate(self.matrix):
            for j, code in enumerate(row):
                op_code(code)
                if i == j and code != ZERO:
                    raise SpaceError(f"diagonal entry {i}{i} must be 0 (no self-edge)")
                if i > j and code != ZERO and self.matrix[j][i] != ZERO:
                    raise SpaceError(
                        f"node pair {j}{i} has both a forward and a backward edge; "
                        "each pair has one direction"
                    )

    @classmethod
    def from_edges(cls, forward: dict[tuple[int, int], int], backward=None) -> Cell:
        """A cell from ``{(i, j): code}`` forward edges and optional ``{(i, j): code}`` backward
        edges, where a backward entry for pair (i, j) means the edge j -> i."""
        rows = [[ZERO] * NUM_NODES for _ in range(NUM_NODES)]
        for (i, j), code in forward.items():
            rows[i][j] = op_code(code)
        for (i, j), code in (backward or {}).items():
            rows[j][i] = op_code(code)
        return cls(tuple(tuple(r) for r in rows))

    @classmethod
    def parse(cls, text: str) -> Cell:
        """Parse SNASNet's op-matrix text, e.g. ``0302 0030 3003 0000``."""
        groups = text.split()
        if len(groups) != NUM_NODES or any(len(g) != NUM_NODES or not g.isdigit() for g in groups):
            raise SpaceError(
                f"malformed cell {text!r}: expected four groups of four digits 0-4, "
                "e.g. '0302 0030 3003 0000'"
            )
        return cls(tuple(tuple(op_code(int(ch)) for ch in g) for g in groups))

    def __str__(self) -> str:
        return " ".join("".join(str(c) for c in row) for row in self.matrix)

    @property
    def has_backward_edges(self) -> bool:
        return any(self.matrix[j][i] != ZERO for i, j in EDGES)

    def edges(self) -> Iterator[tuple[int, int, int]]:
        """Every non-zero edge as (source node, target node, op code); backward edges have
        source > target."""
        for i in range(NUM_NODES):
            for j in range(NUM_NODES):
                if self.matrix[i][j] != ZERO:
                    yield i, j, self.matrix[i][j]

    def count_ops(self) -> dict[int, int]:
        """How many edges carry each non-zero op."""
        counts: dict[int, int] = {}
        for _, _, code in self.edges():
            counts[code] = counts.get(code, 0) + 1
        return counts

    # --- validity and canonical form -------------------------------------------------------

    def _reachable(self, start: int, forward: bool) -> set[int]:
        """Nodes reachable from ``start`` along edges (``forward``) or against them."""
        seen = {start}
        changed = True
        while changed:
            changed = False
            for src, dst, _ in self.edges():
                a, b = (src, dst) if forward else (dst, src)
                if a in seen and b not in seen:
                    seen.add(b)
                    changed = True
        return seen

    def _live_nodes(self) -> set[int]:
        """Nodes that carry a value computed from the cell input (forward or via a backward
        edge from a live node at the previous timestep)."""
        return self._reachable(0, forward=True)

    def _useful_nodes(self) -> set[int]:
        """Nodes from which the cell output can be reached."""
        return self._reachable(NUM_NODES - 1, forward=False)

    def is_valid(self) -> bool:
        """SNASNet's validity: the output node is reachable from the input."""
        return NUM_NODES - 1 in self._live_nodes()

    def pruned(self) -> Cell:
        """The same function with dead edges removed: an edge is kept only when its source
        carries a value from the input and its target can reach the output."""
        live, useful = self._live_nodes(), self._useful_nodes()
        rows = [[ZERO] * NUM_NODES for _ in range(NUM_NODES)]
        for src, dst, code in self.edges():
            if src in live and dst in useful:
                rows[src][dst] = code
        return Cell(tuple(tuple(r) for r in rows))

    def function_key(self) -> str:
        """A text equal for two cells exactly when they compute the same function up to a
        relabelling of their weights (a one-to-one map between their convs of each kind).

        Forward cells: node values are sums, so a node's value is a multiset of terms and nested
        sums flatten. The input is the term ``x``; a skip adds its source's terms; an average
        pool is linear and has no weights, so it adds ``avgpool3x3(t)`` for each term ``t`` of
        its source; a conv is an instance with weights (and a LIF neuron) of its own, applied to
        its source's whole sum, and adds one term: itself. So ``2*a`` (one conv whose output
        reaches the output twice) differs from ``a+b`` (two convs on the same input). The key
        names the convs ``a, b, ...`` in a canonical order (the least text over the orders of
        convs that look alike) and reads e.g. ``a=conv3x3(x); b=conv3x3(a); out=2*a+b+x``.
        Cells with backward edges (their values depend on the previous step) keep the
        structural form: dead edges pruned and nodes 1 and 2 merged when interchangeable.
        """
        cell = self.pruned()
        if cell.has_backward_edges:
            return f"temporal {cell._merged_labels()}"
        convs: list[tuple[int, Counter[tuple[int, int]]]] = []  # (op, input terms)
        values: list[Counter[tuple[int, int]]] = [Counter({(-1, 0): 1})]  # (conv or -1 = x, pools)
        for j in range(1, NUM_NODES):
            value: Counter[tuple[int, int]] = Counter()
            for i in range(j):
                code, source = cell.matrix[i][j], values[i]
                if code == SKIP:
                    value.update(source)
                elif code == AVGPOOL3X3:
                    value.update({(ref, pools + 1): n for (ref, pools), n in source.items()})
                elif code in CONV_OPS:
                    convs.append((code, source))
                    value[(len(convs) - 1, 0)] += 1
            values.append(value)
        return _canonical_text(convs, values[NUM_NODES - 1])

    def _merged_labels(self) -> Cell:
        """The smaller labelling when nodes 1 and 2 are interchangeable (not connected)."""
        m = self.matrix
        if m[1][2] != ZERO or m[2][1] != ZERO:
            return self
        swap = (0, 2, 1, 3)
        swapped = Cell(
            tuple(tuple(m[swap[i]][swap[j]] for j in range(NUM_NODES)) for i in range(NUM_NODES))
        )
        return min(self, swapped, key=str)

    def canonical(self) -> Cell:
        """One representative of every set of cells that compute the same function (the same
        ``function_key``): for forward cells the smallest cell text over the full op set that
        computes it; for temporal (and invalid) cells the pruned cell with nodes 1 and 2 merged."""
        cell = self.pruned()
        if cell.has_backward_edges or not cell.is_valid():
            return cell._merged_labels()
        return _forward_representatives()[cell.function_key()]


def _canonical_text(
    convs: list[tuple[int, Counter[tuple[int, int]]]], output: Counter[tuple[int, int]]
) -> str:
    """The least text of a forward cell's conv instances and output over the ways of naming
    its convs; only convs that look alike (same op, same input up to naming) are permuted."""

    @functools.cache
    def looks(k: int) -> str:  # a conv's text with the convs it reads unnamed
        code, terms = convs[k]
        inputs = sorted(
            f"{n}{'x' if ref < 0 else looks(ref)}{pools}" for (ref, pools), n in terms.items()
        )
        return f"{OPS[code]}({','.join(inputs)})"

    groups: dict[str, list[int]] = {}
    for k in sorted(range(len(convs)), key=looks):
        groups.setdefault(looks(k), []).append(k)
    best: str | None = None
    for orders in itertools.product(*(itertools.permutations(g) for g in groups.values())):
        name = {k: "abcdefgh"[i] for i, k in enumerate(itertools.chain(*orders))}

        def term(ref: int, pools: int, n: int, name: dict[int, str] = name) -> str:
            text = "x" if ref < 0 else name[ref]
            for _ in range(pools):
                text = f"{OPS[AVGPOOL3X3]}({text})"
            return text if n == 1 else f"{n}*{text}"

        def total(terms: Counter[tuple[int, int]]) -> str:
            return "+".join(sorted(term(ref, pools, n) for (ref, pools), n in terms.items()))

        lines = sorted(
            f"{name[k]}={OPS[code]}({total(terms)})" for k, (code, terms) in enumerate(convs)
        )
        text = "; ".join([*lines, f"out={total(output)}"])
        best = text if best is None or text < best else best
    assert best is not None
    return best


@functools.cache
def _forward_representatives() -> dict[str, Cell]:
    """Each forward function's smallest cell (by text) over the full op set."""
    return _first_per_function(tuple(range(len(OPS))))


def _first_per_function(codes: Sequence[int]) -> dict[str, Cell]:
    """The first valid forward cell over ``codes`` (in increasing text order) of each function."""
    found: dict[str, Cell] = {}
    for cell in enumerate_cells(codes):
        if cell.is_valid():
            found.setdefault(cell.function_key(), cell)
    return found


@dataclass(frozen=True)
class Architecture:
    """A network's searched part: one cell per network cell, and the first cell's width."""

    cells: tuple[Cell, ...]
    width: int

    def __post_init__(self) -> None:
        if not self.cells:
            raise SpaceError("an architecture has at least one cell")
        if self.width < 1:
            raise SpaceError(f"width must be a positive number of channels, got {self.width}")

    @classmethod
    def parse(cls, text: str, num_cells: int, width: int) -> Architecture:
        """Parse cells joined by `` / ``; a single cell is shared by all ``num_cells`` cells."""
        parts = [p.strip() for p in text.split("/")]
        cells = tuple(Cell.parse(p) for p in parts)
        if len(cells) == 1:
            cells = cells * num_cells
        if len(cells) != num_cells:
            raise SpaceError(
                f"architecture has {len(cells)} cells but the macro has {num_cells}; give one "
                "cell (shared) or one per network cell, joined by ' / '"
            )
        return cls(cells, width)

    def __str__(self) -> str:
        return " / ".join(str(c) for c in self.cells)

    @property
    def num_cells(self) -> int:
        return len(self.cells)

    def is_valid(self) -> bool:
        return all(cell.is_valid() for cell in self.cells)

    def canonical(self) -> Architecture:
        return Architecture(tuple(c.canonical() for c in self.cells), self.width)

    def canonical_key(self) -> str:
        """A string equal for two architectures exactly when they compute the same function."""
        return f"{self.canonical()} @ {self.width}"


def enumerate_cells(ops: Sequence[int] = tuple(range(len(OPS))), backward: bool = False):
    """Every cell over ``ops``: 5^6 = 15,625 forward cells for the full op set; with backward
    edges each pair also picks a direction."""
    directions = (FORWARD, BACKWARD) if backward else (FORWARD,)
    for codes in itertools.product(ops, repeat=len(EDGES)):
        for dirs in itertools.product(directions, repeat=len(EDGES)):
            if backward and any(
                d == BACKWARD and c == ZERO for d, c in zip(dirs, codes, strict=True)
            ):
                continue  # a zero edge has no direction: count it once, as forward
            fwd = {e: c for e, c, d in zip(EDGES, codes, dirs, strict=True) if d == FORWARD}
            bwd = {e: c for e, c, d in zip(EDGES, codes, dirs, strict=True) if d == BACKWARD}
            yield Cell.from_edges(fwd, bwd)


def distinct_cells(ops: Sequence[str | int]) -> list[Cell]:
    """The valid forward cells over ``ops``, one per distinct function (``Cell.function_key``),
    each the smallest cell text over ``ops`` that computes it, in text order (39 over
    {skip, conv3x3}, whose 64 cells compute many functions more than once)."""
    codes = sorted({op_code(op) for op in ops})
    return sorted(_first_per_function(codes).values(), key=str)


# --- Optuna parameters ---------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSpace:
    """Which part of the SNASNet space a study searches.

    Every edge is always an Optuna categorical over the full op set (``OPS``), so TPE, NSGA-II
    and random search the same space; samplers of this package may propose a subset.
    ``shared_cell`` gives every network cell the parameters of cell 1 (SNASNet).
    """

    num_cells: tuple[int, ...] = (2,)
    widths: tuple[int, ...] = (16,)
    shared_cell: bool = True
    backward: bool = False
    require_direct_edge: bool = False

    def __post_init__(self) -> None:
        if not self.num_cells or min(self.num_cells) < 1:
            raise SpaceError("num_cells must list at least one positive number")
        if not self.widths or min(self.widths) < 1:
            raise SpaceError("widths must list at least one positive number of channels")

    @property
    def max_cells(self) -> int:
        return max(self.num_cells)


def edge_param(cell: int, edge: tuple[int, int]) -> str:
    """Optuna name of an edge's op parameter, e.g. ``cell1_edge02`` (cells count from 1)."""
    return f"cell{cell}_edge{edge[0]}{edge[1]}"


def direction_param(cell: int, edge: tuple[int, int]) -> str:
    """Optuna name of an edge's direction parameter, e.g. ``cell1_dir02``."""
    return f"cell{cell}_dir{edge[0]}{edge[1]}"


def suggest_cell(trial: optuna.Trial, index: int, backward: bool) -> Cell:
    forward: dict[tuple[int, int], int] = {}
    backward_edges: dict[tuple[int, int], int] = {}
    for edge in EDGES:
        code = OPS.index(trial.suggest_categorical(edge_param(index, edge), OPS))
        direction = FORWARD
        if backward:
            direction = trial.suggest_categorical(direction_param(index, edge), (FORWARD, BACKWARD))
        (backward_edges if direction == BACKWARD else forward)[edge] = code
    return Cell.from_edges(forward, backward_edges)


def suggest_architecture(trial: optuna.Trial, space: SearchSpace) -> Architecture:
    """Ask ``trial`` for an architecture; parameter names are fixed so all samplers agree."""
    num_cells = space.num_cells[0]
    if len(space.num_cells) > 1:
        num_cells = trial.suggest_categorical("num_cells", space.num_cells)
    width = space.widths[0]
    if len(space.widths) > 1:
        width = trial.suggest_categorical("width", space.widths)
    if space.shared_cell:
        cells = (suggest_cell(trial, 1, space.backward),) * num_cells
    else:
        cells = tuple(suggest_cell(trial, k, space.backward) for k in range(1, num_cells + 1))
    return Architecture(cells, width)


def architecture_params(arch: Architecture, space: SearchSpace) -> dict[str, object]:
    """The Optuna parameter values that ``suggest_architecture`` turns into ``arch``
    (for ``study.enqueue_trial`` and for samplers that propose whole architectures)."""
    params: dict[str, object] = {}
    if len(space.num_cells) > 1:
        params["num_cells"] = arch.num_cells
    if len(space.widths) > 1:
        params["width"] = arch.width
    cells = arch.cells[:1] if space.shared_cell else arch.cells
    for index, cell in enumerate(cells, start=1):
        for i, j in EDGES:
            is_backward = cell.matrix[j][i] != ZERO
            params[edge_param(index, (i, j))] = OPS[cell.matrix[j][i] or cell.matrix[i][j]]
            if space.backward:
                params[direction_param(index, (i, j))] = BACKWARD if is_backward else FORWARD
    return params


def invalid_reason(arch: Architecture, space: SearchSpace) -> str | None:
    """Why ``arch`` is not a usable member of ``space``, or None when it is."""
    if arch.num_cells not in space.num_cells:
        return f"{arch.num_cells} cells, the space allows {space.num_cells}"
    if arch.width not in space.widths:
        return f"width {arch.width}, the space allows {space.widths}"
    for k, cell in enumerate(arch.cells, start=1):
        if cell.has_backward_edges and not space.backward:
            return f"cell {k} has backward edges and the space is forward-only"
        if not cell.is_valid():
            return f"cell {k} has no path from its input to its output"
        if space.require_direct_edge and cell.matrix[0][3] == ZERO:
            return f"cell {k} has no direct input-to-output edge (SNASNet's rule)"
    return None
