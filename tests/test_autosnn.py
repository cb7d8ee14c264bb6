"""Tests for AutoSNN's search space and networks (optuna_spikenas.snn.autosnn)."""

from __future__ import annotations

import logging
import random

import optuna
import pytest
import torch
from torch import nn

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spikingjelly.activation_based import functional  # noqa: E402

from optuna_spikenas.autosnn_space import (  # noqa: E402
    AUTOSNN_MACROS,
    BLOCKS,
    PAPER_CIFAR10_ARCH,
    PARAM_NAMES,
    POSITIONS,
    AutoSNNArchitecture,
    AutoSNNMacro,
    autosnn_parameters,
    block_parameters,
    get_autosnn_macro,
    suggest_autosnn,
)
from optuna_spikenas.snn.autosnn import (  # noqa: E402
    AutoSNNNetwork,
    SuperNetwork,
    build_autosnn,
    make_block,
    path_state_dict,
)
from optuna_spikenas.space import SpaceError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def random_arch(rng: random.Random) -> AutoSNNArchitecture:
    return AutoSNNArchitecture(tuple(rng.choice(BLOCKS) for _ in range(POSITIONS)))


# --- the space ---------------------------------------------------------------------------------


def test_parse_round_trips_and_normalises():
    arch = AutoSNNArchitecture.parse(" SRB_k5, srb_k5 ,SKIP,SRB_k3,  SRB_k5 ")
    assert arch.blocks == ("SRB_k5", "SRB_k5", "skip", "SRB_k3", "SRB_k5")
    assert str(arch) == PAPER_CIFAR10_ARCH
    assert AutoSNNArchitecture.parse(str(arch)) == arch
    assert len({AutoSNNArchitecture.parse(str(arch)), arch}) == 1  # hashable value object


def test_params_round_trip():
    arch = AutoSNNArchitecture.parse(PAPER_CIFAR10_ARCH)
    params = arch.params()
    assert list(params) == ["block1", "block2", "block3", "block4", "block5"] == list(PARAM_NAMES)
    assert params["block3"] == "skip"
    assert AutoSNNArchitecture.from_params(params) == arch
    with pytest.raises(SpaceError, match="block4"):
        AutoSNNArchitecture.from_params({k: v for k, v in params.items() if k != "block4"})


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("SRB_k5,SRB_k5,skip,SRB_k7,SRB_k5", r"unknown block 'SRB_k7' at position 4; known"),
        ("SRB_k5,SRB_k5,skip,SRB_k3", r"5 comma-separated blocks, got 4"),
        ("SRB_k5,SRB_k5,skip,SRB_k3,SRB_k5,skip", r"got 6"),
        ("SRB_k5,,skip,SRB_k3,SRB_k5", r"unknown block '' at position 2"),
        ("", r"got 1"),
        ("SRB_k5 SRB_k5 skip SRB_k3 SRB_k5", r"got 1"),
    ],
)
def test_bad_architecture_strings(text, pattern):
    with pytest.raises(SpaceError, match=pattern) as info:
        AutoSNNArchitecture.parse(text)
    assert "\n" not in str(info.value)
    if "unknown" in pattern:
        assert "skip, SCB_k3, SCB_k5, SRB_k3, SRB_k5" in str(info.value)


def test_bad_block_tuples():
    with pytest.raises(SpaceError, match="has 5 blocks"):
        AutoSNNArchitecture(("skip",) * 4)
    with pytest.raises(SpaceError, match="unknown block 3"):
        AutoSNNArchitecture(("skip", "skip", 3, "skip", "skip"))


def test_suggest_autosnn():
    arch = AutoSNNArchitecture.parse(PAPER_CIFAR10_ARCH)
    assert suggest_autosnn(optuna.trial.FixedTrial(arch.params())) == arch
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    sampled = suggest_autosnn(trial)
    assert sampled.params() == trial.params
    for name in PARAM_NAMES:
        assert trial.distributions[name] == optuna.distributions.CategoricalDistribution(BLOCKS)
    assert len(BLOCKS) ** POSITIONS == 3125


# --- the macro ---------------------------------------------------------------------------------


def test_macro_registry_and_for_data():
    macro = get_autosnn_macro("autosnn-16")
    assert macro is AUTOSNN_MACROS["autosnn-16"]
    assert (macro.width, macro.in_channels, macro.image_size, macro.num_classes) == (16, 3, 32, 10)
    assert (macro.voters_per_class, macro.timesteps) == (10, 8)
    fitted = macro.for_data(1, 28, 5)
    assert (fitted.in_channels, fitted.image_size, fitted.num_classes) == (1, 28, 5)
    assert fitted.sizes() == ([28, 14, 14, 7, 7], 3)
    assert fitted.channels() == [(16, 16), (16, 32), (32, 32), (32, 64), (64, 64)]
    assert [m.width for m in AUTOSNN_MACROS.values()] == [16, 32, 64, 128]
    assert all(AUTOSNN_MACROS[f"autosnn-{m.width}"] is m for m in AUTOSNN_MACROS.values())
    with pytest.raises(ValueError, match="unknown AutoSNN macro 'autosnn-99'"):
        get_autosnn_macro("autosnn-99")


def test_too_small_images_are_refused():
    with pytest.raises(ValueError, match=r"7x7 images are too small .* at least 8x8"):
        AUTOSNN_MACROS["autosnn-16"].for_data(1, 7, 10)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        AutoSNNMacro(width=0)
    assert AutoSNNMacro(image_size=8).sizes()[1] == 1


# --- blocks and networks -----------------------------------------------------------------------


def test_every_block_at_every_position_has_the_right_shape():
    macro = AutoSNNMacro(width=4, in_channels=1, image_size=16, num_classes=3)
    sizes, _ = macro.sizes()
    for (cin, cout), size in zip(macro.channels(), sizes, strict=True):
        x = (torch.rand(2, cin, size, size) < 0.5).float()
        for name in BLOCKS:
            block = make_block(name, cin, cout)
            out = block(x)
            functional.reset_net(block)
            assert out.shape == (2, cout, size, size), (name, cin, cout)
            assert bool(((out == 0) | (out == 1)).all()), f"{name} does not output spikes"
            assert num_params(block) == block_parameters(name, cin, cout)
            if name == "skip" and cin == cout:
                assert out is x


def test_channel_change_rule():
    # skip: identity or conv1x1 + BN + PLIF; SRB: identity or conv1x1 + BN shortcut.
    assert block_parameters("skip", 8, 8) == 0
    assert block_parameters("skip", 8, 16) == 8 * 16 + 2 * 16 + 1
    assert block_parameters("SRB_k3", 8, 16) - block_parameters("SCB_k3", 8, 16) == 8 * 16 + 32
    assert block_parameters("SRB_k3", 8, 8) == block_parameters("SCB_k3", 8, 8)


def test_paper_architecture_has_about_042_m_parameters():
    arch = AutoSNNArchitecture.parse(PAPER_CIFAR10_ARCH)
    macro = AUTOSNN_MACROS["autosnn-16"]  # 3x32x32, 10 classes, 10 voters
    network = build_autosnn(arch, macro, seed=0)
    plif_layers = 10  # stem, 2 per SRB (x4), head; the skip at block3 keeps 32 channels
    assert autosnn_parameters(arch, macro) == num_params(network) == 417_626
    assert num_params(network) - plif_layers == 417_616
    head = network.head[1]
    assert head.weight.shape == (100, 64 * 4 * 4) and head.bias is None


def test_analytic_parameter_count_matches_the_built_network():
    rng = random.Random(0)
    for _ in range(25):
        macro = AutoSNNMacro(
            width=rng.choice([1, 2, 3, 4, 8]),
            in_channels=rng.choice([1, 2, 3]),
            image_size=rng.choice([8, 9, 16, 28, 32]),
            num_classes=rng.choice([2, 10]),
            voters_per_class=rng.choice([1, 3, 10]),
        )
        arch = random_arch(rng)
        assert autosnn_parameters(arch, macro) == num_params(AutoSNNNetwork(arch, macro)), (
            arch,
            macro,
        )


def test_network_outputs_firing_rates():
    macro = AutoSNNMacro(
        width=2, in_channels=1, image_size=8, num_classes=3, voters_per_class=2, timesteps=2
    )
    network = build_autosnn(AutoSNNArchitecture.parse("SCB_k3,skip,SRB_k3,skip,SRB_k5"), macro, 0)
    with torch.no_grad():
        network.head[1].weight.mul_(50.0)  # make the head fire
        images = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 4
        out = network(images)  # seeded and strong: fires for every seed tried
    assert out.shape == (4, 3)
    assert bool(((out >= 0) & (out <= 1)).all())
    assert out.sum() > 0
    steps = out * macro.timesteps * macro.voters_per_class  # counts of output spikes
    assert torch.equal(steps, steps.round())


def test_build_autosnn_is_seeded_and_leaves_the_rng_alone():
    arch = AutoSNNArchitecture.parse(PAPER_CIFAR10_ARCH)
    macro = AutoSNNMacro(width=2, in_channels=1, image_size=8)
    state = torch.random.get_rng_state()
    a = build_autosnn(arch, macro, seed=3).state_dict()
    b = build_autosnn(arch, macro, seed=3).state_dict()
    c = build_autosnn(arch, macro, seed=4).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# --- the super-network -------------------------------------------------------------------------


def test_super_network_holds_every_block_once():
    macro = AutoSNNMacro(width=4, in_channels=1, image_size=8, num_classes=10)
    supernet = SuperNetwork(macro)
    stem_and_head = autosnn_parameters(AutoSNNArchitecture(("skip",) * 5), macro) - sum(
        block_parameters("skip", cin, cout) for cin, cout in macro.channels()
    )
    blocks = sum(
        block_parameters(name, cin, cout) for cin, cout in macro.channels() for name in BLOCKS
    )
    assert num_params(supernet) == stem_and_head + blocks
    assert list(supernet.choices[2]) == list(BLOCKS)


def _perturbed_supernet(macro: AutoSNNMacro) -> SuperNetwork:
    """A super-network whose BN statistics, leaks and head are far from their defaults, so that
    a path that dropped or mixed up any of them would give other outputs."""
    torch.manual_seed(0)
    supernet = SuperNetwork(macro)
    with torch.no_grad():
        for module in supernet.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.02, 0.2)
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.2, 0.5)
        for name, p in supernet.named_parameters():
            if name.endswith(".w") or name == "stem_neuron.w":
                p.uniform_(-1.0, 1.0)
        supernet.head[1].weight.normal_(0.5, 2.0)
    return supernet


@pytest.mark.parametrize("train_mode", [False, True])
def test_super_network_path_equals_the_extracted_network(train_mode):
    macro = AutoSNNMacro(
        width=4, in_channels=1, image_size=8, num_classes=4, voters_per_class=3, timesteps=3
    )
    supernet = _perturbed_supernet(macro)
    supernet.train(train_mode)
    images = torch.randn(6, 1, 8, 8)
    rng = random.Random(1)
    archs = [AutoSNNArchitecture.parse(PAPER_CIFAR10_ARCH)] + [random_arch(rng) for _ in range(5)]
    outputs = set()
    for arch in archs:
        network = supernet.extract(arch)
        assert network.training == train_mode
        assert set(network.state_dict()) == set(path_state_dict(supernet, arch))
        with torch.no_grad():
            expected = supernet(images, arch)
            functional.reset_net(supernet)
            got = network(images)
            functional.reset_net(network)
        assert expected.sum() > 0, "the test needs a firing head"
        assert torch.equal(got, expected), arch
        outputs.add(tuple(expected.flatten().tolist()))
    assert len(outputs) == len(archs)  # the paths differ


def test_extracted_weights_are_copies():
    macro = AutoSNNMacro(width=2, in_channels=1, image_size=8)
    supernet = SuperNetwork(macro)
    arch = AutoSNNArchitecture.parse(PAPER_CIFAR10_ARCH)
    network = supernet.extract(arch)
    with torch.no_grad():
        network.blocks[0].conv1[0].weight.add_(1.0)
    assert not torch.equal(
        network.blocks[0].conv1[0].weight, supernet.choices[0]["SRB_k5"].conv1[0].weight
    )
