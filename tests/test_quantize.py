"""k-bit weights: the levels, the straight-through gradient, float evaluation, and training."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional
from torch import nn

from optuna_spikenas.data import load_dataset
from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.macros import MACROS
from optuna_spikenas.quantize import (
    WeightQuantizer,
    float_weights,
    k_bit_copy,
    quantize_weights,
    quantizers,
    weight_bits,
)
from optuna_spikenas.snn.network import build_network
from optuna_spikenas.space import Architecture
from optuna_spikenas.train import TrainSettings, build_trainable, evaluate, train_network

LIGHT = MACROS["light"]
ARCH = Architecture.parse("0302 0030 3003 0000", 2, 8)


def numpy_quantize(w: np.ndarray, bits: int) -> np.ndarray:
    """Symmetric per-tensor k-bit quantization, written independently in numpy."""
    scale = np.abs(w).max()
    levels = 2**bits - 1
    index = np.round((w / (2 * scale) + 0.5) * levels)  # numpy also rounds half to even
    return (2 * index / levels - 1) * scale


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
def test_quantizer_matches_an_independent_numpy_version(bits):
    w = torch.randn(64, 32, 3, 3, dtype=torch.float64)
    got = WeightQuantizer(bits)(w).numpy()
    np.testing.assert_allclose(got, numpy_quantize(w.numpy(), bits), rtol=0, atol=1e-12)
    assert len(np.unique(got)) <= 2**bits
    step = 2 * np.abs(w.numpy()).max() / (2**bits - 1)
    assert np.abs(got - w.numpy()).max() <= step / 2 + 1e-12


def test_gradient_passes_straight_through():
    w = torch.randn(16, 8, requires_grad=True)
    upstream = torch.randn(16, 8)
    (WeightQuantizer(4)(w) * upstream).sum().backward()
    torch.testing.assert_close(w.grad, upstream)


def test_every_conv_and_linear_is_quantized_and_batchnorm_is_not():
    network = quantize_weights(build_network(ARCH, LIGHT, 2, seed=0), 8)
    layers = [m for m in network.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(quantizers(network)) == len(layers) > 0
    assert weight_bits(network) == 8
    for layer in layers:
        assert len(torch.unique(layer.weight)) <= 256
    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(hasattr(m, "parametrizations") for m in norms)


def test_32_bits_leaves_the_network_in_float():
    network = quantize_weights(build_network(ARCH, LIGHT, 2, seed=0), 32)
    assert quantizers(network) == [] and weight_bits(network) == 32


def test_float_weights_gives_the_unquantized_outputs_and_quantized_ones_differ():
    images = torch.rand(4, 1, 28, 28)
    plain = build_network(ARCH, LIGHT, 3, seed=1)
    with torch.no_grad():
        expected = plain(images)
    functional.reset_net(plain)
    network = quantize_weights(build_network(ARCH, LIGHT, 3, seed=1), 4)
    with torch.no_grad():
        quantized = network(images)
        functional.reset_net(network)
        with float_weights(network):
            unquantized = network(images)
        functional.reset_net(network)
    torch.testing.assert_close(unquantized, expected)
    assert not torch.allclose(quantized, expected)
    assert all(q.enabled for q in quantizers(network))


def test_memory_at_8_bits_is_a_quarter_of_32_bits():
    macro = LIGHT.for_data(1, 28, 10)
    eight, thirty_two = memory_report(ARCH, macro, 8), memory_report(ARCH, macro, 32)
    assert eight.memory_bits * 4 == thirty_two.memory_bits
    assert eight.parameters == thirty_two.parameters


def test_one_epoch_with_8_bit_weights_beats_chance_on_the_embedded_dataset(one_thread):
    dataset = load_dataset("animal-mnist", seed=0)
    macro = LIGHT.for_data(dataset.in_channels, dataset.image_size, dataset.num_classes)
    settings = TrainSettings(
        epochs=1, timesteps=2, weight_bits=8, optimizer="adam", lr=0.005, min_lr=0.0
    )
    network = build_trainable(ARCH, macro, dataset, settings, seed=0)
    result = train_network(network, dataset, settings, seed=0)
    chance = 1 / dataset.num_classes
    # 1,000 validation images: chance is 0.10 +- 0.01, so 0.15 is five standard deviations above
    assert result.final_val_accuracy >= chance + 0.05
    assert weight_bits(network) == 8
    with float_weights(network):
        float_accuracy = evaluate(network, dataset.val, 64)
    assert abs(float_accuracy - result.final_val_accuracy) < 0.1  # 8 bits cost little


def test_k_bit_copy_holds_the_k_bit_weights_as_plain_weights():
    network = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 4))
    quantized = quantize_weights(copy.deepcopy(network), 4)
    frozen = k_bit_copy(network, 4)
    assert not quantizers(frozen) and not quantizers(network)  # the original is untouched
    live = dict(quantized.named_modules())
    for name, plain in frozen.named_modules():
        if isinstance(plain, nn.Conv2d | nn.Linear):
            assert torch.equal(plain.weight, live[name].weight)  # what the quantized forward uses
            assert len(torch.unique(plain.weight)) <= 2**4
