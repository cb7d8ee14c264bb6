"""Spike and SynOp counting against hand-counted networks and SpikingJelly's own counters."""

from __future__ import annotations

import csv
import io

import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
from torch import nn

from optuna_spikenas.macros import MACROS
from optuna_spikenas.snn.network import build_network
from optuna_spikenas.space import Architecture
from optuna_spikenas.spikes import ActivityCounter, measure_activity


class TwoLayers(nn.Module):
    """Linear(2 -> 3) -> IF -> Linear(3 -> 1) -> IF over T steps, with hand-set weights."""

    def __init__(self, timesteps: int = 4) -> None:
        super().__init__()
        self.timesteps = timesteps
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.if1 = neuron.IFNode(v_threshold=1.0, v_reset=0.0)
        self.fc2 = nn.Linear(3, 1, bias=False)
        self.if2 = neuron.IFNode(v_threshold=1.0, v_reset=0.0)
        with torch.no_grad():
            # input (2, 2), not binary: currents 1.0, 0.5 and 0.0 into the hidden neurons
            self.fc1.weight.copy_(torch.tensor([[0.25, 0.25], [0.125, 0.125], [0.0, 0.0]]))
            self.fc2.weight.copy_(torch.tensor([[0.5, 0.5, 0.5]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(self.if2(self.fc2(self.if1(self.fc1(x)))) for _ in range(self.timesteps))


def test_spikes_of_a_hand_built_two_layer_network():
    # hidden: neuron 1 fires at every step (4), neuron 2 every second step (2), neuron 3 never.
    # output current: 0.5 x (hidden spikes) = 0.5, 1.0, 0.5, 1.0 -> v = .5, 1.5 (fire), .5, 1.5
    # (fire): 2 spikes. SynOps: 6 hidden spikes x 1 synapse; the image (not binary) costs 2 x 3
    # MACs per step.
    activity = measure_activity(TwoLayers(), torch.full((3, 2), 2.0))  # 3 identical images
    assert activity.images == 3
    assert activity.spikes_by_layer == {"if1": 6.0, "if2": 2.0}
    assert activity.spikes == 8.0
    assert activity.synops == 6.0
    assert activity.macs == 4 * 6
    fp32 = (6 * 0.9 + 24 * 4.6) / 1e6
    assert activity.energy_uj(32) == pytest.approx(fp32)
    assert activity.energy_uj(8) == pytest.approx((6 * 0.03 + 24 * 0.23) / 1e6)
    attrs = activity.as_user_attrs(8)
    assert attrs["spikes_per_image"] == 8.0
    assert all(isinstance(v, int | float | str) for v in attrs.values())  # one value each
    assert activity.by_layer() == {"spikes_by_layer": {"if1": 6.0, "if2": 2.0}}
    rows = list(csv.DictReader(io.StringIO(activity.layer_csv())))
    assert rows == [
        {"layer": "if1", "kind": "neurons", "spikes_per_image": "6.000", "share": "75.0"},
        {"layer": "if2", "kind": "neurons", "spikes_per_image": "2.000", "share": "25.0"},
    ]


class SpikesThenMaxPool(nn.Module):
    """IF neurons that copy a binary input (threshold 0.5, one step), a 2x2 max pool of their
    spikes, and a max pool of the real-valued input (not spikes: never counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.neuron = neuron.IFNode(v_threshold=0.5, v_reset=0.0)
        self.pool = nn.MaxPool2d(2)
        self.real_pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.real_pool(x * 0.3)
        return self.pool(self.neuron(x))


def test_max_pooled_spike_maps_count_as_autosnn_counts_them():
    # AutoSNN's SpikingMaxPool2d adds the pooled map's sum to the spike count; the neuron-only
    # count leaves it out. Independent count with numpy: 2x2 block maxima of the spike map.
    x = (torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    blocks = x.numpy().reshape(3, 2, 3, 2, 3, 2).max(axis=(3, 5))
    activity = measure_activity(SpikesThenMaxPool(), x)
    assert activity.neuron_spikes == pytest.approx(float(x.sum()) / 3)
    assert activity.pooled_spikes_by_layer == {"pool": pytest.approx(float(blocks.sum()) / 3)}
    assert activity.spikes == pytest.approx((float(x.sum()) + float(blocks.sum())) / 3)
    attrs = activity.as_user_attrs()
    assert attrs["spikes_per_image"] == activity.spikes
    assert attrs["neuron_spikes_per_image"] == activity.neuron_spikes < activity.spikes
    assert set(activity.by_layer()["pooled_spikes_by_layer"]) == {"pool"}
    rows = list(csv.DictReader(io.StringIO(activity.layer_csv())))
    assert [(r["layer"], r["kind"]) for r in rows] == [
        ("neuron", "neurons"),
        ("pool", "max-pooled spikes"),
    ]
    assert sum(float(r["spikes_per_image"]) for r in rows) == pytest.approx(activity.spikes, 1e-3)
    assert sum(float(r["share"]) for r in rows) == pytest.approx(100, abs=0.1)


def test_networks_without_max_pooling_count_neurons_only():
    activity = measure_activity(TwoLayers(), torch.full((3, 2), 2.0))
    assert activity.pooled_spikes_by_layer == {}
    assert activity.spikes == activity.neuron_spikes == 8.0
    assert "pooled_spikes_by_layer" not in activity.by_layer()


def test_counts_are_per_image_over_all_calls():
    network = TwoLayers()
    with ActivityCounter(network) as counter:
        network(torch.full((2, 2), 2.0))
        functional.reset_net(network)
        network(torch.zeros(2, 2))  # nothing fires
    assert counter.result().images == 4
    assert counter.result().spikes == pytest.approx(8.0 * 2 / 4)


def test_synops_match_spikingjelly_on_a_snasnet_network_with_1x1_convs():
    # one cell of 1x1 convs: no border effect, so our fan-out rule is exact; the stem (image
    # input) and the head's linear (pooled spikes) are MACs, not SynOps, in both counts
    arch = Architecture.parse("0222 0022 0002 0000", 1, 8)
    network = build_network(arch, MACROS["light"], timesteps=3, seed=0).eval()
    images = torch.rand(4, 1, 28, 28) * 20
    ours = measure_activity(network, images)
    counter = SynOpCounter()
    functional.reset_net(network)
    with torch.no_grad(), DispatchCounterMode([counter]):
        network(images)
    functional.reset_net(network)
    assert ours.synops > 0
    assert ours.synops == pytest.approx(counter.get_total() / 4, rel=1e-9)


def test_spike_count_equals_the_sum_of_every_neuron_output():
    arch = Architecture.parse("0302 0030 3003 0000", 2, 4)
    network = build_network(arch, MACROS["light"], timesteps=2, seed=1).eval()
    images = torch.rand(3, 1, 28, 28) * 20  # strong enough to make the untrained network fire
    outputs: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: outputs.append(out.clone()))
        for m in network.modules()
        if isinstance(m, neuron.BaseNode)
    ]
    with torch.no_grad():
        network(images)
    for h in handles:
        h.remove()
    functional.reset_net(network)
    expected = sum(float(o.sum()) for o in outputs) / 3
    assert measure_activity(network, images).spikes == pytest.approx(expected)
    assert expected > 0
