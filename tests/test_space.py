"""Tests for the SNASNet cell search space (optuna_spikenas.space)."""

from __future__ import annotations

import logging
import random

import optuna
import pytest
import torch

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from optuna_spikenas.macros import get_macro  # noqa: E402
from optuna_spikenas.snn.cell import SpikingCell  # noqa: E402
from optuna_spikenas.snn.network import build_network  # noqa: E402
from optuna_spikenas.space import (  # noqa: E402
    BACKWARD,
    CONV3X3,
    EDGES,
    FORWARD,
    NUM_NODES,
    OPS,
    SKIP,
    ZERO,
    Architecture,
    Cell,
    SearchSpace,
    SpaceError,
    architecture_params,
    enumerate_cells,
    invalid_reason,
    op_code,
    suggest_architecture,
)

CIFAR10_CELL = "0303 0030 2002 0200"
CIFAR100_CELL = "0302 0030 3003 0000"
SWAP_12 = (0, 2, 1, 3)

optuna.logging.set_verbosity(optuna.logging.WARNING)


pytestmark = pytest.mark.usefixtures("one_thread")


def random_cell(rng: random.Random, backward: bool = False, p_zero: float = 0.3) -> Cell:
    forward: dict[tuple[int, int], int] = {}
    back: dict[tuple[int, int], int] = {}
    for edge in EDGES:
        code = ZERO if rng.random() < p_zero else rng.randrange(1, len(OPS))
        (back if backward and rng.random() < 0.5 else forward)[edge] = code
    return Cell.from_edges(forward, back)


def swapped(cell: Cell, perm: tuple[int, ...] = SWAP_12) -> Cell:
    """Relabel the nodes: the new matrix[i][j] is the old matrix[perm[i]][perm[j]]."""
    m = cell.matrix
    return Cell(
        tuple(tuple(m[perm[i]][perm[j]] for j in range(NUM_NODES)) for i in range(NUM_NODES))
    )


def reachable(cell: Cell, start: int, reverse: bool = False) -> set[int]:
    """Independent reachability over all non-zero entries of the op matrix."""
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        for other in range(NUM_NODES):
            code = cell.matrix[other][node] if reverse else cell.matrix[node][other]
            if code != ZERO and other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


# --- ops and enumeration -------------------------------------------------------------------


def test_op_codes() -> None:
    assert OPS == ("zero", "skip", "conv1x1", "conv3x3", "avgpool3x3")
    assert EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    for code, name in enumerate(OPS):
        assert op_code(name) == code
        assert op_code(code) == code
        assert op_code(str(code)) == code
    for bad in (5, -1, "5", "conv5x5", ""):
        with pytest.raises(SpaceError, match="unknown operation"):
            op_code(bad)


def test_enumerate_all_forward_cells() -> None:
    cells = list(enumerate_cells())
    assert len(cells) == 5**6 == 15_625
    assert len(set(cells)) == len(cells)
    assert not any(c.has_backward_edges for c in cells)
    # every entry below the diagonal is zero, every forward pattern appears
    patterns = {tuple(c.matrix[i][j] for i, j in EDGES) for c in cells}
    assert len(patterns) == 15_625


def test_enumerate_op_subset() -> None:
    cells = set(enumerate_cells(ops=(SKIP, CONV3X3)))
    assert len(cells) == 2**6 == 64
    for cell in cells:
        assert all(cell.matrix[i][j] in (SKIP, CONV3X3) for i, j in EDGES)
        assert cell.is_valid()  # every edge non-zero: 0 -> 3 is present


@pytest.mark.parametrize(("ops", "expected"), [((SKIP, CONV3X3), 4**6), ((ZERO, SKIP), 3**6)])
def test_enumerate_with_backward_edges(ops: tuple[int, ...], expected: int) -> None:
    cells = list(enumerate_cells(ops=ops, backward=True))
    # per pair: each non-zero op in one of two directions, zero once
    assert len(cells) == len(set(cells)) == expected
    assert any(c.has_backward_edges for c in cells)


# --- text form -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [CIFAR10_CELL, CIFAR100_CELL])
def test_released_cells(text: str) -> None:
    cell = Cell.parse(text)
    assert str(cell) == text
    assert cell.is_valid()
    assert cell.has_backward_edges
    assert cell.pruned() == cell  # every edge of the released cells is used


def test_released_cell_edges() -> None:
    cell = Cell.parse(CIFAR100_CELL)
    assert sorted(cell.edges()) == [(0, 1, 3), (0, 3, 2), (1, 2, 3), (2, 0, 3), (2, 3, 3)]
    assert cell.count_ops() == {CONV3X3: 4, 2: 1}
    cell10 = Cell.parse(CIFAR10_CELL)
    assert sorted(cell10.edges()) == [
        (0, 1, 3),
        (0, 3, 3),
        (1, 2, 3),
        (2, 0, 2),
        (2, 3, 2),
        (3, 1, 2),
    ]


def test_parse_str_round_trip_random() -> None:
    rng = random.Random(0)
    for _ in range(300):
        cell = random_cell(rng, backward=rng.random() < 0.5)
        assert Cell.parse(str(cell)) == cell
        assert Cell.parse("  " + str(cell).replace(" ", "\t") + "\n") == cell


def test_from_edges_backward_goes_below_diagonal() -> None:
    cell = Cell.from_edges({(0, 3): "skip"}, {(1, 3): "conv1x1"})
    assert str(cell) == "0001 0000 0000 0200"
    assert list(cell.edges()) == [(0, 3, SKIP), (3, 1, 2)]


def test_architecture_text_round_trip() -> None:
    text = f"{CIFAR10_CELL} / {CIFAR100_CELL} / 0001 0000 0000 0000"
    arch = Architecture.parse(text, num_cells=3, width=8)
    assert arch.num_cells == 3
    assert arch.cells[1] == Cell.parse(CIFAR100_CELL)
    assert str(arch) == text
    assert Architecture.parse(str(arch), 3, 8) == arch
    # a single cell is shared by all cells
    shared = Architecture.parse(CIFAR100_CELL, num_cells=4, width=16)
    assert shared.cells == (Cell.parse(CIFAR100_CELL),) * 4
    assert str(shared) == " / ".join([CIFAR100_CELL] * 4)
    assert Architecture.parse(str(shared), 4, 16) == shared


def test_architecture_wrong_cell_count() -> None:
    with pytest.raises(SpaceError, match="2 cells but the macro has 3"):
        Architecture.parse(f"{CIFAR10_CELL} / {CIFAR100_CELL}", num_cells=3, width=8)
    with pytest.raises(SpaceError, match="width"):
        Architecture((Cell.parse(CIFAR10_CELL),), 0)
    with pytest.raises(SpaceError, match="at least one cell"):
        Architecture((), 8)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0303 0030 2002",
        "0303 0030 2002 0200 0000",
        "030 0030 2002 0200",
        "03030 030 2002 0200",
        "03a3 0030 2002 0200",
        "0303,0030,2002,0200",
        "-303 0030 2002 0200",
    ],
)
def test_malformed_text(text: str) -> None:
    with pytest.raises(SpaceError, match="malformed cell"):
        Cell.parse(text)


@pytest.mark.parametrize("text", ["0503 0030 2002 0200", "0303 0030 2002 0209"])
def test_unknown_op_code(text: str) -> None:
    with pytest.raises(SpaceError, match="unknown operation"):
        Cell.parse(text)


def test_diagonal_must_be_zero() -> None:
    with pytest.raises(SpaceError, match="diagonal"):
        Cell.parse("1303 0030 2002 0200")


@pytest.mark.parametrize(
    "text", ["0300 3000 0000 0000", "0001 0000 0000 1000", "0000 0001 0000 0400"]
)
def test_pair_with_both_directions(text: str) -> None:
    with pytest.raises(SpaceError, match="both a forward and a backward edge"):
        Cell.parse(text)


def test_bad_matrix_shape() -> None:
    with pytest.raises(SpaceError, match="4x4"):
        Cell(((0, 1, 0, 0),) * 3)


# --- validity, pruning, canonical form -----------------------------------------------------


def test_validity_examples() -> None:
    # every edge into node 3 is zero: no path, however busy the rest is
    assert not Cell.parse("0330 0040 0000 0000").is_valid()
    assert not Cell.parse("0000 0000 0000 0000").is_valid()
    # only the direct edge
    assert Cell.parse("0003 0000 0000 0000").is_valid()
    # path through nodes 1 and 2
    assert Cell.parse("0100 0010 0001 0000").is_valid()
    # edge into node 3 from a node the input never reaches
    assert not Cell.parse("0000 0001 0000 0000").is_valid()
    # node 1 is reached only through a backward edge (2 -> 1 at the previous step)
    assert Cell.parse("0010 0001 0100 0000").is_valid()


def test_validity_matches_reachability() -> None:
    for cell in enumerate_cells():
        assert cell.is_valid() == (3 in reachable(cell, 0))
    rng = random.Random(1)
    for _ in range(500):
        cell = random_cell(rng, backward=True)
        assert cell.is_valid() == (3 in reachable(cell, 0))


def test_pruning_removes_dead_edges() -> None:
    # 0 -> 1 is dead: node 1 has no way on to node 3
    cell = Cell.parse("0303 0000 0000 0000")
    assert cell.is_valid()
    assert cell.pruned() == Cell.parse("0003 0000 0000 0000")
    # 1 -> 3 is dead: node 1 never gets a value from the input
    assert Cell.parse("0003 0002 0000 0000").pruned() == Cell.parse("0003 0000 0000 0000")
    # a backward edge into a node that cannot reach the output is dead too
    assert Cell.parse("0103 0000 0000 0100").pruned() == Cell.parse("0003 0000 0000 0000")
    # an invalid cell prunes to nothing
    assert Cell.parse("0330 0040 0000 0000").pruned() == Cell.parse("0000 0000 0000 0000")


def test_pruning_properties() -> None:
    rng = random.Random(2)
    for _ in range(500):
        cell = random_cell(rng, backward=rng.random() < 0.5)
        pruned = cell.pruned()
        assert pruned.pruned() == pruned
        assert pruned.is_valid() == cell.is_valid()
        live, useful = reachable(cell, 0), reachable(cell, 3, reverse=True)
        expected = {(s, d, c) for s, d, c in cell.edges() if s in live and d in useful}
        assert set(pruned.edges()) == expected


def test_canonical_swaps_unconnected_middle_nodes() -> None:
    rng = random.Random(3)
    checked = 0
    for _ in range(2000):
        cell = random_cell(rng, backward=rng.random() < 0.5)
        canon = cell.canonical()
        assert canon.canonical() == canon  # idempotent
        assert canon.pruned() == canon
        if cell.matrix[1][2] == ZERO and cell.matrix[2][1] == ZERO:
            other = swapped(cell)
            assert other.canonical() == canon
            checked += 1
    assert checked > 200


def test_canonical_keeps_connected_middle_nodes_apart() -> None:
    # nodes 1 and 2 joined by 1 -> 2: conv3x3 on 0 -> 1 or on 0 -> 2 differ
    a = Cell.parse("0301 0011 0001 0000")  # conv(x) + conv(x) + x
    b = Cell.parse("0131 0011 0001 0000")  # conv(x) + x + x + x
    assert a.function_key() != b.function_key()
    assert a.canonical() != b.canonical()
    # unconnected: conv3x3 on node 1 or node 2 is the same cell
    c = Cell.parse("0310 0001 0001 0000")
    d = Cell.parse("0130 0001 0001 0000")
    assert c.canonical() == d.canonical()
    assert Architecture((c, a), 4).canonical_key() == Architecture((d, a), 4).canonical_key()
    assert Architecture((c, a), 4).canonical_key() != Architecture((c, a), 8).canonical_key()


# --- an independent symbolic enumeration of what a forward cell computes ---------------------
# Written apart from ``Cell.function_key``: sympy computes each node's value (sums flatten and
# collect by themselves), with one opaque function per conv edge (its own weights), an average
# pool distributed over a sum (it is linear) and a skip passing its source on; ops on a node the
# input never reaches are not built (``Cell.pruned``). The values become a graph (the input,
# each conv, each pooled term and the output, edges weighted by how often a term is summed), and
# networkx decides which cells are the same up to a renaming of their convs: graph isomorphism.


def computation_graph(cell: Cell):
    import networkx as nx
    import sympy

    x = sympy.Symbol("x")
    pool = sympy.Function("avgpool3x3")
    inputs: dict[sympy.Basic, sympy.Expr] = {}  # each conv's application -> its input

    def distributed_pool(value):
        terms = sympy.expand(value).as_coefficients_dict()
        return sum((n * pool(t) for t, n in terms.items()), sympy.Integer(0))

    nodes = [x]
    for j in range(1, NUM_NODES):
        value = sympy.Integer(0)
        for i in range(j):
            code = cell.matrix[i][j]
            if nodes[i] == 0 or code == ZERO:
                continue
            if code == SKIP:
                value += nodes[i]
            elif code == 4:
                value += distributed_pool(nodes[i])
            else:
                applied = sympy.Function(f"{OPS[code]}_{i}{j}")(sympy.expand(nodes[i]))
                inputs[applied] = sympy.expand(nodes[i])
                value += applied
        nodes.append(value)

    graph = nx.DiGraph()

    def add(term) -> str:
        """The graph node of a summed term (the input, a conv, or a pooled term)."""
        key = sympy.srepr(term)
        if term == x:
            graph.add_node(key, kind="x")
        elif term.func == pool:
            graph.add_node(key, kind="pool")
            graph.add_edge(add(term.args[0]), key, n="1")
        else:  # a conv: its kind without the edge that names it
            graph.add_node(key, kind=str(term.func).rsplit("_", 1)[0])
            connect(inputs[term], key)
        return key

    def connect(value, target: str) -> None:
        for term, n in sympy.expand(value).as_coefficients_dict().items():
            graph.add_edge(add(term), target, n=str(n))

    graph.add_node("out", kind="out")
    connect(nodes[NUM_NODES - 1], "out")
    return graph


def isomorphism_classes(cells: list[Cell]) -> list[list[Cell]]:
    import networkx as nx
    from networkx.algorithms.isomorphism import categorical_edge_match, categorical_node_match

    node_match, edge_match = categorical_node_match("kind", ""), categorical_edge_match("n", "")
    buckets: dict[str, list[tuple[object, list[Cell]]]] = {}
    for cell in cells:
        graph = computation_graph(cell)
        digest = nx.weisfeiler_lehman_graph_hash(graph, node_attr="kind", edge_attr="n")
        for other, members in buckets.setdefault(digest, []):
            if nx.is_isomorphic(graph, other, node_match=node_match, edge_match=edge_match):
                members.append(cell)
                break
        else:
            buckets[digest].append((graph, [cell]))
    return [members for bucket in buckets.values() for _, members in bucket]


@pytest.mark.filterwarnings("ignore:The hashes produced for directed graphs changed")
@pytest.mark.parametrize(
    ("ops", "functions"),
    [
        (("skip", "conv3x3"), 39),
        (("zero", "skip", "conv3x3"), 98),
        (("zero", "skip", "conv1x1", "avgpool3x3"), None),
    ],
)
def test_distinct_cells_are_the_cells_distinct_up_to_renaming_their_convs(ops, functions) -> None:
    from optuna_spikenas.space import distinct_cells

    codes = sorted(op_code(op) for op in ops)
    classes = isomorphism_classes([c for c in enumerate_cells(codes) if c.is_valid()])
    if functions is not None:
        assert len(classes) == functions
    assert len(distinct_cells(ops)) == len(classes)
    keys = [{member.function_key() for member in members} for members in classes]
    assert all(len(k) == 1 for k in keys)  # one key within a class ...
    assert len(set.union(*keys)) == len(classes)  # ... and another for each other class
    candidates = {c.function_key() for c in distinct_cells(ops)}
    assert candidates == set.union(*keys)
    for members in classes:  # the representative computes the class's function
        assert members[0].canonical().function_key() == members[0].function_key()
        assert len({m.canonical() for m in members}) == 1


def test_one_conv_summed_twice_is_not_two_convs_summed() -> None:
    once_twice = Cell.parse("0300 0011 0001 0000")  # node 1 = c(x) reaches node 3 twice: 2 c(x)
    two = Cell.parse("0303 0010 0001 0000")  # c(x) via node 1 and another c'(x) on edge 03
    assert once_twice.function_key() == "a=conv3x3(x); out=2*a"
    assert two.function_key() == "a=conv3x3(x); b=conv3x3(x); out=a+b"


def test_equivalent_cells_compute_the_same_network_function_with_relabelled_weights() -> None:
    """Two cells of one class, with weights moved between their matching convs, give the same
    output: the equivalence is real, not only symbolic."""
    a, b = Cell.parse("0111 0013 0001 0000"), Cell.parse("0131 0011 0001 0000")
    assert a.function_key() == b.function_key()
    torch.manual_seed(0)
    cell_a, cell_b = SpikingCell(a, 4), SpikingCell(b, 4)
    cell_b.ops["02"].load_state_dict(cell_a.ops["13"].state_dict())  # the one conv, moved
    images = torch.rand(3, 4, 6, 6) * 3
    assert torch.allclose(cell_a(images), cell_b(images), atol=1e-6)


def test_canonical_pairs_compute_the_same_function() -> None:
    """Relabelling nodes 1 and 2, with weights copied edge by edge, gives the same outputs."""
    rng = random.Random(4)
    torch.manual_seed(0)
    done = 0
    while done < 6:
        cell = random_cell(rng, backward=True, p_zero=0.2)
        if cell.matrix[1][2] != ZERO or cell.matrix[2][1] != ZERO or not cell.is_valid():
            continue
        other = swapped(cell)
        assert other.canonical() == cell.canonical()
        a = SpikingCell(cell, 3).double()
        b = SpikingCell(other, 3).double()
        with torch.no_grad():
            for key, op in a.ops.items():
                target = f"{SWAP_12[int(key[0])]}{SWAP_12[int(key[1])]}"
                b.ops[target].load_state_dict(op.state_dict())
        x = 2.0 * torch.randn(2, 3, 5, 5, dtype=torch.float64)
        for _ in range(3):
            torch.testing.assert_close(a(x), b(x))
        done += 1


def test_pruned_cells_build_same_parameter_count() -> None:
    rng = random.Random(5)
    macro = get_macro("light")
    for _ in range(20):
        cell = random_cell(rng, backward=True)
        counts = [
            sum(p.numel() for p in build_network(Architecture((c, c), 4), macro).parameters())
            for c in (cell, cell.pruned(), cell.canonical())
        ]
        assert counts[0] == counts[1] == counts[2]


# --- Optuna parameters ---------------------------------------------------------------------


def random_architecture(rng: random.Random, space: SearchSpace) -> Architecture:
    num_cells = rng.choice(space.num_cells)
    width = rng.choice(space.widths)
    if space.shared_cell:
        cells = (random_cell(rng, space.backward),) * num_cells
    else:
        cells = tuple(random_cell(rng, space.backward) for _ in range(num_cells))
    return Architecture(cells, width)


SPACES = [
    SearchSpace(),
    SearchSpace(backward=True),
    SearchSpace(num_cells=(1, 2, 3), widths=(4, 8, 16), shared_cell=False),
    SearchSpace(num_cells=(1, 2, 3, 4), widths=(8, 32), shared_cell=False, backward=True),
    SearchSpace(num_cells=(2, 3), widths=(16,), shared_cell=True, backward=True),
]


@pytest.mark.parametrize("space", SPACES)
def test_fixed_trial_round_trip(space: SearchSpace) -> None:
    rng = random.Random(6)
    for _ in range(60):
        arch = random_architecture(rng, space)
        params = architecture_params(arch, space)
        assert suggest_architecture(optuna.trial.FixedTrial(params), space) == arch


def test_round_trip_of_released_cells() -> None:
    space = SearchSpace(backward=True)
    for text in (CIFAR10_CELL, CIFAR100_CELL):
        arch = Architecture.parse(text, 2, 16)
        params = architecture_params(arch, space)
        assert suggest_architecture(optuna.trial.FixedTrial(params), space) == arch


def test_parameter_names_and_values() -> None:
    space = SearchSpace(num_cells=(1, 2), widths=(8, 16), shared_cell=False, backward=True)
    arch = Architecture.parse(f"{CIFAR10_CELL} / {CIFAR100_CELL}", 2, 16)
    params = architecture_params(arch, space)
    expected = {"num_cells", "width"}
    for k in (1, 2):
        expected |= {f"cell{k}_edge{i}{j}" for i, j in EDGES}
        expected |= {f"cell{k}_dir{i}{j}" for i, j in EDGES}
    assert set(params) == expected
    assert params["num_cells"] == 2 and params["width"] == 16
    assert params["cell1_edge01"] == "conv3x3" and params["cell1_dir01"] == FORWARD
    assert params["cell1_edge02"] == "conv1x1" and params["cell1_dir02"] == BACKWARD
    assert params["cell1_edge13"] == "conv1x1" and params["cell1_dir13"] == BACKWARD
    assert params["cell2_edge03"] == "conv1x1" and params["cell2_dir03"] == FORWARD
    assert params["cell2_edge12"] == "conv3x3"
    assert params["cell2_edge13"] == "zero" and params["cell2_dir13"] == FORWARD
    # a fixed, shared, forward-only space has only the six edge parameters of cell 1
    fixed = architecture_params(Architecture.parse("0003 0000 0000 0000", 3, 16), SearchSpace())
    assert set(fixed) == {f"cell1_edge{i}{j}" for i, j in EDGES}


def test_distributions_are_categorical_over_all_ops() -> None:
    space = SearchSpace(num_cells=(2, 3), widths=(4, 8), shared_cell=False, backward=True)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    archs: list[Architecture] = []
    study.optimize(lambda t: archs.append(suggest_architecture(t, space)) or 0.0, n_trials=3)
    for trial, arch in zip(study.trials, archs, strict=True):
        dists = trial.distributions
        assert dists["num_cells"] == optuna.distributions.CategoricalDistribution((2, 3))
        assert dists["width"] == optuna.distributions.CategoricalDistribution((4, 8))
        for k in range(1, arch.num_cells + 1):
            for i, j in EDGES:
                edge = dists[f"cell{k}_edge{i}{j}"]
                assert edge == optuna.distributions.CategoricalDistribution(OPS)
                direction = dists[f"cell{k}_dir{i}{j}"]
                assert direction == optuna.distributions.CategoricalDistribution(
                    (FORWARD, BACKWARD)
                )
        assert f"cell{arch.num_cells + 1}_edge01" not in dists
        # the stored params map back to the same architecture
        fixed = optuna.trial.FixedTrial(trial.params)
        assert suggest_architecture(fixed, space) == arch
        # architecture_params agrees, except for the direction of zero edges (any is fine)
        expected = architecture_params(arch, space)
        assert expected.keys() == trial.params.keys()
        for name, value in trial.params.items():
            edge_name = name.replace("_dir", "_edge")
            if name != edge_name and trial.params[edge_name] == "zero":
                assert expected[name] == FORWARD
            else:
                assert expected[name] == value


def test_shared_space_suggests_one_cell() -> None:
    space = SearchSpace(num_cells=(3,), widths=(8,))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    archs: list[Architecture] = []
    study.optimize(lambda t: archs.append(suggest_architecture(t, space)) or 0.0, n_trials=2)
    for trial, arch in zip(study.trials, archs, strict=True):
        assert set(trial.distributions) == {f"cell1_edge{i}{j}" for i, j in EDGES}
        assert arch.num_cells == 3 and arch.width == 8
        assert arch.cells[0] == arch.cells[1] == arch.cells[2]
        assert not arch.cells[0].has_backward_edges


def test_search_space_settings() -> None:
    with pytest.raises(SpaceError, match="num_cells"):
        SearchSpace(num_cells=())
    with pytest.raises(SpaceError, match="num_cells"):
        SearchSpace(num_cells=(0, 2))
    with pytest.raises(SpaceError, match="widths"):
        SearchSpace(widths=(0,))
    assert SearchSpace(num_cells=(1, 4, 2)).max_cells == 4


def test_invalid_reason() -> None:
    forward_space = SearchSpace(num_cells=(2,), widths=(16,))
    assert invalid_reason(Architecture.parse("0003 0000 0000 0000", 2, 16), forward_space) is None
    reason = invalid_reason(Architecture.parse(CIFAR100_CELL, 2, 16), forward_space)
    assert reason == "cell 1 has backward edges and the space is forward-only"
    assert (
        invalid_reason(Architecture.parse(CIFAR100_CELL, 2, 16), SearchSpace(backward=True)) is None
    )

    no_path = Architecture.parse("0003 0000 0000 0000 / 0330 0040 0000 0000", 2, 16)
    assert (
        invalid_reason(no_path, forward_space) == "cell 2 has no path from its input to its output"
    )

    direct = SearchSpace(require_direct_edge=True)
    indirect = Architecture.parse("0100 0001 0000 0000", 2, 16)
    assert invalid_reason(indirect, forward_space) is None
    assert "no direct input-to-output edge" in invalid_reason(indirect, direct)
    assert invalid_reason(Architecture.parse("0103 0001 0000 0000", 2, 16), direct) is None

    assert "3 cells" in invalid_reason(Architecture.parse(CIFAR10_CELL, 3, 16), forward_space)
    assert "width 8" in invalid_reason(
        Architecture.parse("0003 0000 0000 0000", 2, 8), forward_space
    )
