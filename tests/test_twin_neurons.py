"""Twin neurons (``snn/lean_neuron.py``): the neurons of the conv ops fed by one cell node are
computed once per step where no gradient is taken.

The reference is the same network with its twins untied (every neuron computes for itself, as
before twins existed): outputs, every neuron layer's spikes, BatchNorm statistics and scores must
be bit-for-bit the same, per-step and multi-step, with forward and backward cells.
"""

from __future__ import annotations

import copy
import logging
import random

import pytest
import torch

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spike_recording import SpikeRecorder  # noqa: E402
from spikingjelly.activation_based import functional  # noqa: E402

from optuna_spikenas import spike_counts  # noqa: E402
from optuna_spikenas.macros import get_macro  # noqa: E402
from optuna_spikenas.score import SpikeKernelRecorder, sahd_score  # noqa: E402
from optuna_spikenas.snn.cell import SNASNetLIF, SpikingCell, lif  # noqa: E402
from optuna_spikenas.snn.lean_neuron import LeanForward, share_input  # noqa: E402
from optuna_spikenas.snn.network import SpikingNetwork, build_network  # noqa: E402
from optuna_spikenas.space import (  # noqa: E402
    CONV1X1,
    CONV3X3,
    EDGES,
    OPS,
    SKIP,
    ZERO,
    Architecture,
    Cell,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def random_cell(rng: random.Random, backward: bool) -> Cell:
    """A random valid cell over every op; with ``backward``, half its edges point back."""
    while True:
        codes = {e: ZERO if rng.random() < 0.25 else rng.randrange(1, len(OPS)) for e in EDGES}
        back = {e: codes.pop(e) for e in EDGES if backward and rng.random() < 0.5}
        cell = Cell.from_edges(codes, back)
        if cell.is_valid() and cell.has_backward_edges == backward:
            return cell


def untied(network: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``network`` whose neurons all compute for themselves."""
    copied = copy.deepcopy(network)
    for module in copied.modules():
        if isinstance(module, LeanForward):
            module._twins = None
    return copied


def twin_groups(network: torch.nn.Module) -> int:
    return len({id(m._twins) for m in network.modules() if getattr(m, "_twins", None)})


def run(network: SpikingNetwork, images: torch.Tensor, training: bool):
    """Output and every neuron layer's spikes ``{name: [T, B, ...]}`` of one no-grad pass."""
    network.train(training)
    recorder = SpikeRecorder(network)
    with torch.no_grad():
        out = network(images)
    functional.reset_net(network)
    return out, recorder.stacked()


@pytest.mark.parametrize(
    ("backward", "step_mode"), [(False, "single"), (False, "multi"), (True, "single")]
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twins_change_nothing(backward: bool, step_mode: str, seed: int) -> None:
    rng = random.Random(seed)
    macro = get_macro("light").for_data(1, 12, 10)
    tied = None
    while tied is None or twin_groups(tied) == 0:  # a node that feeds two conv ops or more
        arch = Architecture((random_cell(rng, backward), random_cell(rng, backward)), 4)
        tied = build_network(arch, macro, timesteps=4, seed=seed, step_mode=step_mode)
    plain = untied(tied)
    images = torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(seed)) * 3
    for training in (True, False):
        (out_t, spikes_t), (out_p, spikes_p) = (
            run(tied, images, training),
            run(plain, images, training),
        )
        assert torch.equal(out_t, out_p)
        assert spikes_t.keys() == spikes_p.keys()
        for name in spikes_t:
            assert torch.equal(spikes_t[name], spikes_p[name]), name
    for (key, a), (_, b) in zip(tied.state_dict().items(), plain.state_dict().items(), strict=True):
        assert torch.equal(a, b), key  # BatchNorm statistics updated alike
    assert sahd_score(tied, [images]) == sahd_score(plain, [images])


def cell_with_twins() -> SpikingCell:
    """Node 0 feeds a conv3x3 (to node 1) and a conv1x1 (to node 2); node 1 a conv3x3 and node
    2 a skip to node 3."""
    codes = dict.fromkeys(EDGES, ZERO)
    codes[(0, 1)], codes[(0, 2)], codes[(1, 3)], codes[(2, 3)] = CONV3X3, CONV1X1, CONV3X3, SKIP
    cell = SpikingCell(Cell.from_edges(codes), 3)
    for op in cell.ops.values():
        if isinstance(op, torch.nn.Sequential):
            op[0].step_mode = "s"
    return cell


def test_a_twin_returns_its_twins_spikes_only_without_gradients() -> None:
    cell = cell_with_twins()
    first, second = cell.ops["01"][0], cell.ops["02"][0]
    assert first._twins is second._twins is not None
    outputs: dict[str, list[torch.Tensor]] = {"01": [], "02": []}
    for key in outputs:
        cell.ops[key][0].register_forward_hook(lambda m, i, out, key=key: outputs[key].append(out))
    x = torch.randn(2, 3, 5, 5) * 3
    with torch.no_grad():
        for _ in range(3):
            cell(x)
    assert all(a is b for a, b in zip(outputs["01"], outputs["02"], strict=True))
    assert first.v is second.v  # one potential, shared
    functional.reset_net(cell)
    assert first._twins is not None and first._twins.last is None  # nothing held after a reset
    outputs = {"01": [], "02": []}
    cell(x.requires_grad_())  # with gradients: SpikingJelly's own path, each for itself
    assert outputs["01"][0] is not outputs["02"][0]
    assert torch.equal(outputs["01"][0], outputs["02"][0])


def test_a_twin_given_another_tensor_or_state_computes_for_itself() -> None:
    a, b = lif(), lif()
    share_input([a, b])
    x = torch.rand(4, 3) * 3
    with torch.no_grad():
        sa = a(x)
        assert b(x) is sa  # same input, same state: shared
        sa = a(x)
        sb = b(x.clone())  # equal values but another tensor: no promise, computed
        assert sb is not sa and torch.equal(sb, sa)
        a.reset()  # a's state differs from b's now
        sa = a(x)
        sb = b(x)
        assert sb is not sa and not torch.equal(b.v, a.v)


def test_twins_must_be_of_one_kind() -> None:
    class OtherLIF(SNASNetLIF):
        pass

    with pytest.raises(ValueError, match="one kind"):
        share_input([lif(), OtherLIF()])


def test_the_recorder_counts_every_twin_and_multiplies_once(monkeypatch) -> None:
    cell = cell_with_twins()
    x = torch.randn(8, 3, 5, 5) * 3
    grams = []
    counting = spike_counts.spike_grams
    monkeypatch.setattr(spike_counts, "spike_grams", lambda *a: grams.append(a) or counting(*a))
    with torch.no_grad(), SpikeKernelRecorder(cell) as recorder:
        cell(x)
    tied_kernel = recorder.mean_kernel()
    assert recorder.count == 3  # the neurons of ops 01, 02 and 13 (one step)
    assert len(grams) == 2  # the twins of ops 01 and 02 share one Gram matrix
    functional.reset_net(cell)
    plain = untied(cell)
    with torch.no_grad(), SpikeKernelRecorder(plain) as reference:
        plain(x)
    assert reference.count == 3
    assert torch.equal(tied_kernel, reference.mean_kernel())
