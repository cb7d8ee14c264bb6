"""Multi-step execution (optuna_spikenas.snn.multistep) against the per-step network, and the
lean no-grad LIF against SpikingJelly's own.

The per-step network is the reference: a network run multi-step must give the same outputs, the
same spikes in every neuron layer, the same BatchNorm statistics, the same SAHD score and (to
float tolerance) the same gradients.
"""

from __future__ import annotations

import copy
import logging
import random

import pytest
import torch

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spike_recording import SpikeRecorder  # noqa: E402
from spikingjelly.activation_based import functional, neuron, surrogate  # noqa: E402

from optuna_spikenas.macros import get_macro  # noqa: E402
from optuna_spikenas.score import hamming_score, sahd_score  # noqa: E402
from optuna_spikenas.snn.cell import LIF_TAU, SNASNetLIF, lif  # noqa: E402
from optuna_spikenas.snn.multistep import run_steps, set_multi_step  # noqa: E402
from optuna_spikenas.snn.network import (  # noqa: E402
    SpikingNetwork,
    build_common_network,
    build_network,
)
from optuna_spikenas.space import EDGES, OPS, ZERO, Architecture, Cell  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def forward_cell(rng: random.Random) -> Cell:
    """A random valid cell without backward edges, over every op."""
    while True:
        cell = Cell.from_edges(
            {e: ZERO if rng.random() < 0.3 else rng.randrange(1, len(OPS)) for e in EDGES}
        )
        if cell.is_valid():
            return cell


CASES = [
    # (macro, in_channels, image size, classes, cells, width, T, batch)
    ("light", 1, 12, 10, 2, 4, 4, 6),
    ("light", 3, 8, 2, 3, 4, 3, 5),
    ("snasnet-cifar10", 3, 16, 10, 2, 4, 3, 4),  # the voting head and dropout
]


def pair(case_index: int, seed: int) -> tuple[SpikingNetwork, SpikingNetwork, torch.Tensor]:
    """The same network (same weights) single-step and multi-step, and a batch for it."""
    name, channels, size, classes, num_cells, width, timesteps, batch = CASES[case_index]
    rng = random.Random(seed)
    macro = get_macro(name).for_data(channels, size, classes)
    arch = Architecture(tuple(forward_cell(rng) for _ in range(num_cells)), width)
    single = build_network(arch, macro, timesteps, seed=seed, step_mode="single")
    multi = copy.deepcopy(single)
    multi.set_step_mode("multi")
    images = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))
    return single, multi, images * 3


@pytest.mark.parametrize("case_index", range(len(CASES)))
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("training", [True, False])
def test_multi_step_equals_per_step(case_index: int, seed: int, training: bool) -> None:
    single, multi, images = pair(case_index, seed)
    outputs, spikes = [], []
    for network in (single, multi):
        network.train(training)
        recorder = SpikeRecorder(network)
        torch.manual_seed(seed)  # the same dropout mask
        with torch.no_grad():
            outputs.append(network(images))
        functional.reset_net(network)
        spikes.append(recorder.stacked())
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    assert spikes[0].keys() == spikes[1].keys() and spikes[0]
    for name in spikes[0]:
        assert torch.equal(spikes[0][name], spikes[1][name]), name
    for (key, a), (_, b) in zip(
        single.state_dict().items(), multi.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=key)  # BN running stats too


@pytest.mark.parametrize("case_index", range(len(CASES)))
def test_multi_step_gradients_equal_per_step(case_index: int) -> None:
    single, multi, images = pair(case_index, 3)
    grads = []
    for network in (single, multi):
        network.train()
        torch.manual_seed(3)
        network(images).square().sum().backward()
        functional.reset_net(network)
        grads.append({n: p.grad.clone() for n, p in network.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("score", [sahd_score, hamming_score])
def test_scores_equal_in_both_step_modes(score) -> None:
    for case_index in range(len(CASES)):
        single, multi, images = pair(case_index, 5)
        torch.manual_seed(0)
        expected = score(single, [images])
        torch.manual_seed(0)
        assert score(multi, [images]) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_event_frames_run_multi_step_as_per_step() -> None:
    rng = random.Random(7)
    macro = get_macro("light").for_data(2, 8, 4)
    arch = Architecture((forward_cell(rng), forward_cell(rng)), 4)
    single = build_network(arch, macro, 3, seed=7, step_mode="single")
    multi = copy.deepcopy(single)
    multi.set_step_mode("multi")
    frames = (torch.rand(5, 3, 2, 8, 8, generator=torch.Generator().manual_seed(7)) < 0.3).float()
    with torch.no_grad():
        expected = single(frames)
        functional.reset_net(single)
        got = multi(frames)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="T = 4"):
        multi(torch.zeros(2, 4, 2, 8, 8))


def test_step_modes_chosen_and_refused() -> None:
    macro = get_macro("light").for_data(1, 8, 2)
    forward = Architecture((Cell.parse("0303 0033 0003 0000"),) * 2, 4)
    backward = Architecture((Cell.parse("0303 0030 2002 0200"),) * 2, 4)
    cpu = torch.device("cpu")
    auto = build_network(forward, macro, 2)
    assert not auto.runs_multi_step(cpu, gradients=False)  # scoring on the CPU: per-step
    assert auto.runs_multi_step(cpu, gradients=True)  # training: multi-step
    assert auto.runs_multi_step(torch.device("cuda"), gradients=False)
    assert not build_network(backward, macro, 2).runs_multi_step(torch.device("cuda"))
    assert build_network(forward, macro, 2, step_mode="multi").runs_multi_step(cpu)
    with pytest.raises(ValueError, match="backward edges"):
        build_network(backward, macro, 2, step_mode="multi")
    with pytest.raises(ValueError, match="step_mode"):
        build_network(forward, macro, 2, step_mode="steps")
    cell = build_network(backward, macro, 2).body[0]
    with pytest.raises(RuntimeError, match="one timestep at a time"):
        cell.forward_steps(torch.zeros(2, 1, 4, 8, 8))


def test_run_steps_refuses_a_neuron_left_in_single_step_mode() -> None:
    node = lif()
    with pytest.raises(RuntimeError, match="single-step mode"):
        run_steps(torch.nn.Sequential(node), torch.zeros(2, 3, 4))
    set_multi_step(node, True)
    assert (
        run_steps(torch.nn.Sequential(node), torch.full((2, 3, 4), 2.0)).sum() == 24
    )  # 1.5 >= 1 each step


def test_batch_norm_is_per_step_in_training_and_affine_in_eval() -> None:
    bn = torch.nn.BatchNorm2d(3)
    reference = copy.deepcopy(bn)
    x_seq = torch.randn(4, 5, 3, 2, 2) * torch.arange(1.0, 5.0).view(4, 1, 1, 1, 1)
    out = run_steps(bn, x_seq)
    expected = torch.stack([reference(x) for x in x_seq])  # statistics of each step alone
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(bn.running_var, reference.running_var)
    assert int(bn.num_batches_tracked) == 4
    bn.eval()
    reference.eval()
    flat = reference(x_seq.flatten(0, 1)).unflatten(0, (4, 5))
    torch.testing.assert_close(run_steps(bn, x_seq), flat)


def spikingjelly_lif() -> neuron.LIFNode:
    return neuron.LIFNode(
        tau=LIF_TAU,
        v_threshold=1.0,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.ATan(),
    )


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_lean_lif_is_spikingjelly_lif_bit_for_bit(step_mode: str) -> None:
    ours, theirs = lif(), spikingjelly_lif()
    ours.step_mode = theirs.step_mode = step_mode
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):  # two sequences, the state carried over, then a reset
        x_seq = torch.randn(6, 4, 3, 5, 5, generator=generator) * 2
        x_seq[0, 0, 0, 0, :2] = torch.tensor([1.0, LIF_TAU])  # exactly at the threshold
        with torch.no_grad():
            if step_mode == "m":
                a, b = ours(x_seq), theirs(x_seq)
            else:
                a = torch.stack([ours(x) for x in x_seq])
                b = torch.stack([theirs(x) for x in x_seq])
        assert torch.equal(a, b)
        assert torch.equal(ours.v, theirs.v)
        assert set(a.unique().tolist()) <= {0.0, 1.0}
    functional.reset_net(ours)
    assert ours.v == 0.0


def test_lean_lif_leaves_training_to_spikingjelly() -> None:
    ours, theirs = lif(), spikingjelly_lif()
    ours.step_mode = theirs.step_mode = "m"
    x = torch.randn(4, 3, 6, requires_grad=True)
    ours(x).sum().backward()
    grad = x.grad.clone()
    x.grad = None
    theirs(x).sum().backward()
    assert torch.equal(grad, x.grad)  # the surrogate gradient, through SpikingJelly's code
    assert isinstance(ours, SNASNetLIF) and isinstance(ours, neuron.LIFNode)


def test_initial_weights_do_not_depend_on_the_memory_layout() -> None:
    macro = get_macro("light").for_data(1, 8, 2)
    arch = Architecture((Cell.parse("0303 0033 0003 0000"),) * 2, 4)
    network = build_common_network(arch, macro, 2, seed=11)
    conv = network.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    again = build_common_network(arch, macro, 2, seed=11)
    flat = {n: p.contiguous() for n, p in network.state_dict().items()}
    for name, value in again.state_dict().items():
        assert torch.equal(value.contiguous(), flat[name]), name
    # The draw is that of a contiguous tensor: the same values as drawing without the layout.
    import hashlib

    key = f"11|stem.0|Conv2d|{tuple(conv.shape)}"
    digest = hashlib.sha256(key.encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    expected = torch.nn.init.kaiming_uniform_(torch.empty(conv.shape), a=2, generator=generator)
    assert torch.equal(conv.contiguous(), expected)
