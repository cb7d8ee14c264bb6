"""Tests for the spiking cell and macro networks (optuna_spikenas.snn) and the analytic memory
model (optuna_spikenas.hardware.memory)."""

from __future__ import annotations

import dataclasses
import logging
import random

import pytest
import torch
from torch import nn

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spikingjelly.activation_based import functional  # noqa: E402

from optuna_spikenas.hardware.memory import memory_report  # noqa: E402
from optuna_spikenas.macros import MACROS, Macro, get_macro  # noqa: E402
from optuna_spikenas.snn.cell import SpikingCell  # noqa: E402
from optuna_spikenas.snn.network import build_network  # noqa: E402
from optuna_spikenas.space import EDGES, OPS, ZERO, Architecture, Cell  # noqa: E402

CIFAR10_CELL = "0303 0030 2002 0200"
CIFAR100_CELL = "0302 0030 3003 0000"


pytestmark = pytest.mark.usefixtures("one_thread")


def num_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def random_cell(rng: random.Random, backward: bool) -> Cell:
    forward: dict[tuple[int, int], int] = {}
    back: dict[tuple[int, int], int] = {}
    for edge in EDGES:
        code = ZERO if rng.random() < 0.3 else rng.randrange(1, len(OPS))
        (back if backward and rng.random() < 0.5 else forward)[edge] = code
    return Cell.from_edges(forward, back)


def random_case(rng: random.Random) -> tuple[Architecture, Macro]:
    """A random architecture in a random macro, small enough to build in milliseconds."""
    name = rng.choice(
        ["light", "light", "snasnet-cifar10", "snasnet-cifar100", "snasnet-tinyimagenet"]
    )
    macro = get_macro(name)
    if name == "light":
        num_cells = rng.randint(1, 4)
        width = rng.choice([1, 2, 4, 8, 16])
        macro = macro.for_data(rng.choice([1, 3]), rng.choice([8, 28, 32]), rng.choice([2, 10]))
    else:
        num_cells = rng.randint(1, 3)
        width = rng.randint(4, 8)
        if rng.random() < 0.3:
            macro = macro.for_data(rng.choice([1, 3]), rng.choice([28, 32]), macro.num_classes)
        if rng.random() < 0.3:
            macro = dataclasses.replace(
                macro, final_pool=rng.choice([1, 2, 4]), hidden=64, voters_per_class=3
            )
    backward = rng.random() < 0.5
    if rng.random() < 0.5:
        cells = (random_cell(rng, backward),) * num_cells
    else:
        cells = tuple(random_cell(rng, backward) for _ in range(num_cells))
    return Architecture(cells, width), macro


# --- parameter anchors ---------------------------------------------------------------------


def test_cifar100_anchor() -> None:
    arch = Architecture.parse(CIFAR100_CELL, 2, 128)
    macro = get_macro("snasnet-cifar100")
    report = memory_report(arch, macro)
    assert abs(report.parameters - 20.62e6) <= 0.01e6
    assert abs(report.as_dict()["parameters_by_part"]["head"] - 17.29e6) <= 0.01e6
    assert num_params(build_network(arch, macro)) == report.parameters


def test_cifar10_anchor() -> None:
    arch = Architecture.parse(CIFAR10_CELL, 2, 256)
    macro = dataclasses.replace(get_macro("snasnet-cifar10"), final_pool=4)
    report = memory_report(arch, macro)
    assert abs(report.parameters - 19.52e6) <= 0.01e6
    assert num_params(build_network(arch, macro)) == report.parameters


# --- memory model --------------------------------------------------------------------------


def test_memory_model_matches_built_networks() -> None:
    rng = random.Random(2024)
    seen_macros, seen_backward = set(), 0
    for _ in range(120):
        arch, macro = random_case(rng)
        net = build_network(arch, macro, timesteps=1)
        report = memory_report(arch, macro, weight_bits=rng.choice([4, 8, 16, 32]))
        total = num_params(net)
        assert report.parameters == total, (str(arch), arch.width, macro)
        # part by part
        spiking_cells = [m for m in net.body if isinstance(m, SpikingCell)]
        assert list(report.cells) == [num_params(c) for c in spiking_cells]
        assert report.stem == num_params(net.stem)
        assert report.head == num_params(net.head)
        assert report.reductions == total - report.stem - sum(report.cells) - report.head
        assert report.memory_bits == total * report.weight_bits
        seen_macros.add(macro.name)
        seen_backward += any(c.has_backward_edges for c in arch.cells)
    assert seen_macros == set(MACROS)
    assert seen_backward > 20


def test_memory_bits() -> None:
    arch = Architecture.parse(CIFAR10_CELL, 3, 8)
    macro = get_macro("light")
    full = memory_report(arch, macro, 32)
    quarter = memory_report(arch, macro, 8)
    assert full.parameters == quarter.parameters > 0
    assert full.memory_bits == 32 * full.parameters
    assert quarter.memory_bits * 4 == full.memory_bits
    assert quarter.memory_bytes == quarter.parameters
    info = quarter.as_dict()
    assert info["parameters"] == quarter.parameters and info["memory_bits"] == quarter.memory_bits
    assert memory_report(arch, macro).weight_bits == 32
    with pytest.raises(ValueError, match="weight_bits"):
        memory_report(arch, macro, 0)


def test_dead_edges_cost_nothing() -> None:
    macro = get_macro("light")
    direct = Architecture.parse("0003 0000 0000 0000", 2, 8)
    dead = Architecture.parse("0333 0000 0000 0000", 2, 8)  # conv3x3s into nodes 1 and 2 unused
    assert memory_report(dead, macro).parameters == memory_report(direct, macro).parameters
    assert num_params(build_network(dead, macro)) == num_params(build_network(direct, macro))


# --- forward pass --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MACROS))
def test_forward_shapes(name: str) -> None:
    macro = get_macro(name)
    arch = Architecture.parse(CIFAR100_CELL, 2, 2)
    net = build_network(arch, macro, timesteps=2, seed=0)
    images = torch.randn(2, macro.in_channels, macro.image_size, macro.image_size)
    with torch.no_grad():
        out = net(images)
    assert out.shape == (2, macro.num_classes)
    assert torch.isfinite(out).all()


def test_forward_shapes_for_other_data() -> None:
    macro = get_macro("snasnet-cifar10").for_data(in_channels=1, image_size=28, num_classes=7)
    arch = Architecture.parse(f"{CIFAR10_CELL} / {CIFAR100_CELL} / 0003 0000 0000 0000", 3, 2)
    net = build_network(arch, macro, timesteps=1, seed=0)
    with torch.no_grad():
        out = net(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 7)


def test_image_too_small() -> None:
    light = get_macro("light").for_data(1, 8, 10)
    build_network(Architecture.parse(CIFAR10_CELL, 4, 2), light)  # 8, 4, 2, 1: fits
    too_many = Architecture.parse(CIFAR10_CELL, 5, 2)
    with pytest.raises(ValueError, match=r"8x8 images are too small for 5 cells"):
        build_network(too_many, light)
    with pytest.raises(ValueError, match="too small"):
        memory_report(too_many, light)
    # the snasnet head pools once more
    cifar = get_macro("snasnet-cifar10").for_data(3, 8, 10)
    build_network(Architecture.parse(CIFAR10_CELL, 3, 2), cifar)
    with pytest.raises(ValueError, match=r"too small for 4 cells in macro 'snasnet-cifar10'"):
        build_network(Architecture.parse(CIFAR10_CELL, 4, 2), cifar)


def test_feature_sizes() -> None:
    assert get_macro("snasnet-tinyimagenet").feature_sizes(2) == ([32, 16], 8)
    assert get_macro("snasnet-cifar10").feature_sizes(3) == ([32, 16, 8], 4)
    assert get_macro("light").feature_sizes(3) == ([28, 14, 7], 1)
    with pytest.raises(ValueError, match="unknown macro"):
        get_macro("resnet")


# --- seeding -------------------------------------------------------------------------------


def test_seeded_builds() -> None:
    arch = Architecture.parse(CIFAR10_CELL, 2, 4)
    macro = get_macro("light")
    torch.manual_seed(0)
    a = build_network(arch, macro, seed=7).state_dict()
    torch.manual_seed(1)  # the global seed does not matter
    b = build_network(arch, macro, seed=7).state_dict()
    c = build_network(arch, macro, seed=8).state_dict()
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    weights = [k for k in a if k.endswith("weight") and a[k].dim() > 1]
    assert len(weights) > 5
    assert all(not torch.equal(a[k], c[k]) for k in weights)
    # seeded builds leave the global generator alone; unseeded builds draw from it
    before = torch.get_rng_state()
    build_network(arch, macro, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    build_network(arch, macro)
    assert not torch.equal(torch.get_rng_state(), before)


# --- temporal state ------------------------------------------------------------------------


def test_backward_skip_edge_feeds_the_next_step() -> None:
    # 0 -skip-> 1 -skip-> 3, and backward 3 -skip-> 0: out_t = t * x
    loop = SpikingCell(Cell.parse("0100 0001 0000 1000"), 2)
    chain = SpikingCell(Cell.parse("0100 0001 0000 0000"), 2)
    x = torch.randn(2, 2, 3, 3)
    for step in (1, 2, 3):
        torch.testing.assert_close(loop(x), step * x)
        torch.testing.assert_close(chain(x), x)
    functional.reset_net(loop)
    assert loop.feedback is None
    torch.testing.assert_close(loop(x), x)


def test_backward_conv_edges_carry_state() -> None:
    torch.manual_seed(0)
    with_back = SpikingCell(Cell.parse(CIFAR10_CELL), 4)
    forward_only = SpikingCell(Cell.parse("0303 0030 0002 0000"), 4)
    assert set(forward_only.ops) < set(with_back.ops)
    forward_only.load_state_dict(with_back.state_dict(), strict=False)
    x = 3.0 * torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        first = with_back(x)
        assert torch.equal(first, forward_only(x))  # no feedback yet at step 1
        second = with_back(x)
        assert not torch.allclose(second, forward_only(x))  # feedback at step 2
        functional.reset_net(with_back)
        assert torch.equal(with_back(x), first)  # reset clears feedback and membranes


class ReferenceBackwardCell(nn.Module):
    """SNASNet's backward cell (``Neuronal_Cell_backward``) written out as its equations, around
    the package cell's op modules: every pair (i, j) has a forward and a backward op, a zero op
    multiplies by 0, every op runs at every step, and the backward sums of step t enter the
    next step's nodes (``last_xin``, ``last_x1``, ``last_x2``, 0 before the first step)."""

    FORWARD = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    BACKWARD = ((1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2))

    def __init__(self, cell: SpikingCell) -> None:
        super().__init__()
        self.cell = cell
        self.last = [0.0, 0.0, 0.0]

    def op(self, src: int, dst: int, x: torch.Tensor) -> torch.Tensor:
        key = f"{src}{dst}"
        return self.cell.ops[key](x) if key in self.cell.ops else x * 0.0

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        lin, l1, l2 = self.last
        x1 = self.op(0, 1, x_in + lin)
        x2 = self.op(0, 2, x_in + lin) + self.op(1, 2, x1 + l1)
        x3 = self.op(0, 3, x_in + lin) + self.op(1, 3, x1 + l1) + self.op(2, 3, x2 + l2)
        new_in = self.op(1, 0, x1 + l1) + self.op(2, 0, x2 + l2) + self.op(3, 0, x3)
        new_1 = self.op(2, 1, x2 + l2) + self.op(3, 1, x3)
        self.last = [new_in, new_1, self.op(3, 2, x3)]
        return x3


def snasnet_pruned(cell: Cell) -> list[list[int]]:
    """SNASNet's sampler's pruning, written out: nodes that cannot reach node 3, or be reached
    from node 0, along forward or backward edges (matrix powers up to 4) lose all their edges."""
    m = torch.tensor(cell.matrix, dtype=torch.float64)
    graph = m + m @ m + m @ m @ m + m @ m @ m @ m
    for node in range(3):
        if graph[node, 3] == 0:
            m[:, node] = 0
            m[node, :] = 0
    for node in range(3):
        if graph[0, node + 1] == 0:
            m[:, node + 1] = 0
            m[node + 1, :] = 0
    return m.int().tolist()


def lif_calls(module: nn.Module, run) -> list[tuple[str, torch.Tensor]]:
    """(neuron name, its spikes) for every neuron call while ``run()`` runs, in call order."""
    from spikingjelly.activation_based import neuron

    calls: list[tuple[str, torch.Tensor]] = []
    handles = [
        sub.register_forward_hook(lambda m, i, out, name=name: calls.append((name, out.clone())))
        for name, sub in module.named_modules()
        if isinstance(sub, neuron.BaseNode)
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return calls


def test_backward_cells_run_every_op_at_every_step_as_snasnet() -> None:
    # 24 random backward cells as SNASNet's sampler draws them (a direction and an op per
    # pair, the input-output edge not zero): the package's cell and SNASNet's equations give the
    # same outputs, and call the same neurons the same number of times with the same spikes, so
    # SAHD sums exactly the reference's (LIF layer, timestep) kernels.
    rng = random.Random(7)
    checked = fed_only_backward = 0
    while checked < 24:
        cell = random_cell(rng, backward=True)
        if cell.matrix[0][3] == ZERO:
            continue
        checked += 1
        pruned = cell.pruned()
        assert [list(row) for row in pruned.matrix] == snasnet_pruned(cell)
        torch.manual_seed(checked)
        ours = SpikingCell(cell, 3)
        reference = ReferenceBackwardCell(ours)
        x = 2.0 * torch.randn(2, 3, 4, 4)
        steps = 4

        outputs: list[list[torch.Tensor]] = []

        def run(module, x=x, steps=steps, outputs=outputs):
            return lambda: outputs.append([module(x) for _ in range(steps)])

        with torch.no_grad():
            our_calls = lif_calls(ours, run(ours))
            functional.reset_net(ours)
            ref_calls = lif_calls(ours, run(reference))
        functional.reset_net(ours)
        convs = sum(1 for _, _, code in pruned.edges() if code in (2, 3))
        assert len(ref_calls) == convs * steps  # every conv op's neuron at every step
        assert sorted(n for n, _ in our_calls) == sorted(n for n, _ in ref_calls)
        ours_by_name = {}
        for name, spikes in our_calls:
            ours_by_name.setdefault(name, []).append(spikes)
        for name, spikes in ref_calls:
            torch.testing.assert_close(ours_by_name[name].pop(0), spikes, rtol=0, atol=0)
        for a, b in zip(*outputs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        live_at_first_step = {0}  # nodes with a value at the first step: forward edges only
        for src, dst, _ in sorted(pruned.edges(), key=lambda e: e[1]):
            if src < dst and src in live_at_first_step:
                live_at_first_step.add(dst)
        if any(src not in live_at_first_step for src, _, _ in pruned.edges()):
            fed_only_backward += 1
    assert fed_only_backward >= 3  # cells where the old skip-at-step-0 rule changed the count


def test_an_op_fed_only_through_a_backward_edge_runs_on_zeros_at_the_first_step() -> None:
    # 0 -conv-> 1 -skip-> 3, 0 -skip-> 3, backward 3 -conv-> 2 and 2 -conv-> 0: node 2 has no
    # value at step 1, yet the 2 -> 0 op runs on zeros there (its neuron called, silent) and its
    # BN's bias reaches node 0, so the output at step 2, and only there, carries it.
    cell = SpikingCell(Cell.parse("0301 0001 3000 0030"), 2)
    with torch.no_grad():
        cell.ops["20"][2].bias.fill_(0.5)
        out: list[torch.Tensor] = []
        zeros = torch.zeros(1, 2, 3, 3)
        calls = lif_calls(cell, lambda: out.extend(cell(zeros) for _ in range(2)))
    names = [name for name, _ in calls]
    assert sorted(names[:3]) == ["ops.01.0", "ops.20.0", "ops.32.0"]  # all three, first step
    assert sorted(names) == sorted(names[:3] * 2)
    assert all(spikes.sum() == 0 for _, spikes in calls)
    torch.testing.assert_close(out[0], zeros)
    torch.testing.assert_close(out[1], torch.full((1, 2, 3, 3), 0.5))


@pytest.mark.parametrize("name", ["light", "snasnet-cifar10"])
def test_network_with_backward_cell(name: str) -> None:
    macro = get_macro(name).for_data(1, 8, 3)
    loop = Architecture.parse("0100 0001 0000 1000", 2, 4)
    chain = Architecture.parse("0100 0001 0000 0000", 2, 4)
    images = torch.randn(4, 1, 8, 8)

    def run(net: nn.Module) -> torch.Tensor:
        torch.manual_seed(0)  # the same dropout masks on every call
        with torch.no_grad():
            return net(images)

    outputs = {}
    for steps in (1, 3):
        nets = [build_network(a, macro, timesteps=steps, seed=1) for a in (loop, chain)]
        for net in nets:  # SNASNet's N(0, 0.01) linears barely make the hidden layer spike
            for layer in net.head:
                if isinstance(layer, nn.Linear):
                    layer.weight.data.mul_(100.0)
        outputs[steps] = [run(net) for net in nets]
        assert outputs[steps][0].abs().sum() > 0  # spikes reach the head
        changed = run(nets[0])  # no reset: feedback and membranes carry over
        assert not torch.equal(changed, outputs[steps][0])
        functional.reset_net(nets[0])
        torch.testing.assert_close(run(nets[0]), outputs[steps][0], rtol=0, atol=0)
    # one step: the feedback has not arrived yet; three steps: it has
    torch.testing.assert_close(outputs[1][0], outputs[1][1], rtol=0, atol=0)
    assert not torch.allclose(outputs[3][0], outputs[3][1])


def test_head_dropout_keeps_one_mask_for_all_timesteps_until_reset() -> None:
    # SNASNet's head uses SpikingJelly's layer.Dropout: the mask is drawn at the first step and
    # kept for all T steps until the network is reset (torch's Dropout draws one per step). The
    # dropout's input is replaced by ones, so its output at each step is the mask itself.
    from spikingjelly.activation_based import layer

    macro = get_macro("snasnet-cifar10").for_data(1, 8, 3)
    net = build_network(Architecture.parse(CIFAR100_CELL, 2, 4), macro, timesteps=4, seed=0)
    dropouts = [m for m in net.modules() if isinstance(m, layer.Dropout | nn.Dropout)]
    assert len(dropouts) == 1 and isinstance(dropouts[0], layer.Dropout)
    masks: list[torch.Tensor] = []
    dropouts[0].register_forward_pre_hook(lambda m, args: (torch.ones_like(args[0]),))
    dropouts[0].register_forward_hook(lambda m, args, out: masks.append(out.clone()))
    images = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        net.train()
        net(images)
        functional.reset_net(net)
        net(images)
        functional.reset_net(net)
        net.eval()
        net(images)
    first, second, evaluation = masks[:4], masks[4:8], masks[8:]
    assert set(first[0].unique().tolist()) == {0.0, 2.0}  # p = 0.5: kept units scaled by 2
    assert all(torch.equal(m, first[0]) for m in first)
    assert all(torch.equal(m, second[0]) for m in second)
    assert not torch.equal(first[0], second[0])  # a new mask after the reset
    assert all(torch.equal(m, torch.ones_like(m)) for m in evaluation)  # off in eval mode


def test_output_is_time_average() -> None:
    macro = get_macro("light")
    arch = Architecture.parse(CIFAR100_CELL, 2, 3)
    net = build_network(arch, macro, timesteps=3, seed=2)
    images = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out = net(images)
        functional.reset_net(net)
        encoded = net.stem(images)
        steps = [net.head(net.body(encoded)) for _ in range(3)]
    torch.testing.assert_close(out, sum(steps) / 3)
    assert not torch.allclose(steps[0], steps[2])  # the steps really differ


# --- voting --------------------------------------------------------------------------------


def test_voting_averages_groups_of_voters() -> None:
    macro = dataclasses.replace(
        get_macro("snasnet-cifar10").for_data(1, 8, 4), hidden=6, voters_per_class=3
    )
    net = build_network(Architecture.parse("0001 0000 0000 0000", 1, 2), macro, timesteps=2)
    last = net.head[-1]
    assert last.out_features == 12
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20.0]))
        out = net(torch.randn(5, 1, 8, 8))
    expected = torch.tensor([1.0, 4.0, 7.0, 13.0]).expand(5, 4)
    torch.testing.assert_close(out, expected)


def test_voting_matches_raw_head() -> None:
    macro = get_macro("snasnet-cifar100").for_data(3, 16, 100)
    net = build_network(Architecture.parse(CIFAR100_CELL, 1, 2), macro, timesteps=1, seed=0)
    net.eval()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        net.head[-1].bias.normal_()
        out = net(images)
        functional.reset_net(net)
        raw = net.head(net.body(net.stem(images)))
    assert raw.shape == (2, 500)
    torch.testing.assert_close(out, raw.view(2, 100, 5).mean(dim=2))
