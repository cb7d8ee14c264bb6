"""AutoSNN's networks run multi-step (each layer over all T timesteps at once) with the outputs,
spikes, BatchNorm statistics and gradients of the single-step form (optuna_spikenas.snn.autosnn,
optuna_spikenas.snn.multistep)."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spikingjelly.activation_based import functional, neuron, surrogate  # noqa: E402

from optuna_spikenas import supernet as sn  # noqa: E402
from optuna_spikenas.autosnn_space import AutoSNNArchitecture, AutoSNNMacro  # noqa: E402
from optuna_spikenas.data import Split, load_dataset  # noqa: E402
from optuna_spikenas.snn.autosnn import (  # noqa: E402
    AutoSNNNetwork,
    SkipBlock,
    SpikingConvBlock,
    SuperNetwork,
    build_autosnn,
    plif,
)
from optuna_spikenas.spikes import Activity, ActivityCounter  # noqa: E402
from optuna_spikenas.supernet import SuperNetSettings, evaluate_path  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

T = 3
MACRO = AutoSNNMacro(
    width=4, in_channels=2, image_size=8, num_classes=3, voters_per_class=2, timesteps=T
)
# Between them every block kind, with and without a channel change: SRB with the identity
# shortcut (positions 1, 3 and 5 keep the channels) and with conv1x1 + BN (positions 2 and 4
# double them), SCB at both kernels with and without a change, skip as identity and projection.
ARCHS = [
    AutoSNNArchitecture.parse("SRB_k3,SRB_k5,SCB_k3,skip,SCB_k5"),
    AutoSNNArchitecture.parse("skip,SCB_k3,SRB_k5,SRB_k3,skip"),
]
PATHS = [*ARCHS, AutoSNNArchitecture.parse("SCB_k5,skip,skip,SRB_k5,SRB_k3")]


def static_images(batch: int = 6, seed: int = 0) -> torch.Tensor:
    return 3.0 * torch.rand(
        batch, MACRO.in_channels, 8, 8, generator=torch.Generator().manual_seed(seed)
    )


def event_frames(batch: int = 6, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 3.0 * torch.rand(batch, T, MACRO.in_channels, 8, 8, generator=g)


def lively(network: nn.Module) -> None:
    """BN statistics and affines, head weights and PLIF leaks far from their initial values, so
    that a tiny network's spikes reach the voting head within T steps (at its initial state the
    head is silent)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(7)
        for m in network.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 2.5)
                m.bias.uniform_(0.2, 1.2)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.5)
            elif isinstance(m, neuron.ParametricLIFNode):
                m.w.uniform_(0.0, 1.0)


def pair(network: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The network (made lively) in single-step mode and an identical copy in multi-step mode."""
    lively(network)
    single, multi = network, copy.deepcopy(network)
    single.set_step_mode("single")
    multi.set_step_mode("multi")
    return single, multi


def run(network: nn.Module, images: torch.Tensor, *args) -> tuple[torch.Tensor, Activity]:
    functional.reset_net(network)
    try:
        with ActivityCounter(network) as counter:
            out = network(images, *args)
    finally:
        functional.reset_net(network)
    return out, counter.result()


def assert_same_run(single: nn.Module, multi: nn.Module, images: torch.Tensor, *args) -> None:
    """Outputs to float tolerance, spikes (per layer, pooled), SynOps and MACs exactly."""
    out_s, act_s = run(single, images, *args)
    out_m, act_m = run(multi, images, *args)
    torch.testing.assert_close(out_m, out_s, atol=1e-5, rtol=0)
    assert act_m == act_s
    assert act_s.neuron_spikes > 0 and sum(act_s.pooled_spikes_by_layer.values()) > 0
    assert out_s.sum() > 0  # spikes reach the voting head


def assert_same_state(single: nn.Module, multi: nn.Module) -> None:
    """Parameters and buffers (BN running statistics, batches tracked) to float tolerance."""
    state_s, state_m = single.state_dict(), multi.state_dict()
    assert state_s.keys() == state_m.keys()
    for key in state_s:
        torch.testing.assert_close(state_m[key], state_s[key], atol=1e-6, rtol=1e-5, msg=key)


def assert_same_grads(single: nn.Module, multi: nn.Module) -> None:
    grads_m = dict(multi.named_parameters())
    for name, p in single.named_parameters():
        q = grads_m[name]
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-4, msg=name)


def neurons(network: nn.Module) -> list[neuron.BaseNode]:
    return [m for m in network.modules() if isinstance(m, neuron.BaseNode)]


# --- the standalone network ---------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS, ids=str)
@pytest.mark.parametrize("frames", [False, True], ids=["static", "events"])
def test_train_mode_pass_and_backward_match(arch, frames):
    single, multi = pair(build_autosnn(arch, MACRO, seed=0))
    images = event_frames() if frames else static_images()
    target = torch.rand(
        images.shape[0], MACRO.num_classes, generator=torch.Generator().manual_seed(2)
    )
    losses = []
    for network in (single, multi):
        network.train()
        functional.reset_net(network)
        loss = ((network(images) - target) ** 2).mean()
        loss.backward()
        functional.reset_net(network)
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=0)
    assert_same_grads(single, multi)
    assert_same_state(single, multi)  # BN running statistics: updated once per step, in order
    tracked = [
        m.num_batches_tracked.item() for m in multi.modules() if isinstance(m, nn.BatchNorm2d)
    ]
    assert max(tracked) == T  # a block's BN saw every timestep as its own batch
    assert min(tracked) == (T if frames else 1)  # the stem's: once per image, or per frame


@pytest.mark.parametrize("arch", ARCHS, ids=str)
@pytest.mark.parametrize("frames", [False, True], ids=["static", "events"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_spikes_and_outputs_match(arch, frames, train):
    single, multi = pair(build_autosnn(arch, MACRO, seed=0))
    single.train(train)
    multi.train(train)
    images = event_frames() if frames else static_images()
    with torch.no_grad():
        assert_same_run(single, multi, images)
    assert_same_state(single, multi)


def test_multi_step_puts_the_neurons_in_multi_step_mode_and_back():
    network = build_autosnn(ARCHS[0], MACRO, seed=0, step_mode="multi")
    assert network.step_mode == "multi"
    images = static_images()
    with torch.no_grad():
        first = network(images)
        assert {n.step_mode for n in neurons(network)} == {"m"}
        functional.reset_net(network)
        network.set_step_mode("single")
        again = network(images)
        assert {n.step_mode for n in neurons(network)} == {"s"}
    torch.testing.assert_close(again, first, atol=1e-5, rtol=0)


def test_blocks_run_all_timesteps_at_once():
    x_seq = (torch.rand(T, 2, 4, 6, 6, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    for block in (
        SkipBlock(4, 4),
        SkipBlock(4, 8),
        SpikingConvBlock(4, 8, 3, residual=True),
        SpikingConvBlock(4, 4, 5, residual=True),
        SpikingConvBlock(4, 8, 5, residual=False),
    ):
        steps = [block(x) for x in x_seq]
        functional.reset_net(block)
        functional.set_step_mode(block, "m")
        torch.testing.assert_close(
            block.forward_steps(x_seq), torch.stack(steps), atol=1e-5, rtol=0
        )


def test_step_mode_is_validated_and_multi_accepted_everywhere():
    for bad in ("Multi", "m", "", None):
        with pytest.raises(ValueError, match="step_mode must be one of"):
            AutoSNNNetwork(ARCHS[0], MACRO, step_mode=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="step_mode must be one of"):
            SuperNetwork(MACRO, step_mode=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="step_mode must be one of"):
            build_autosnn(ARCHS[0], MACRO, step_mode=bad)  # type: ignore[arg-type]
    network = build_autosnn(ARCHS[1], MACRO, seed=0)
    with pytest.raises(ValueError, match="step_mode must be one of"):
        network.set_step_mode("both")
    assert network.step_mode == "auto"
    for mode in ("multi", "single", "auto"):
        network.set_step_mode(mode)
        assert AutoSNNNetwork(ARCHS[0], MACRO, step_mode=mode).step_mode == mode
        supernet = SuperNetwork(MACRO, step_mode=mode)
        assert supernet.step_mode == mode
        assert supernet.extract(ARCHS[0]).step_mode == mode  # the extracted path runs alike


def test_auto_is_multi_step_on_cuda_only():
    for network in (build_autosnn(ARCHS[0], MACRO), SuperNetwork(MACRO)):
        assert network.step_mode == "auto"
        assert not network.runs_multi_step(torch.device("cpu"))
        assert network.runs_multi_step(torch.device("cuda"))
        network.set_step_mode("multi")
        assert network.runs_multi_step(torch.device("cpu"))
        network.set_step_mode("single")
        assert not network.runs_multi_step(torch.device("cuda"))


def test_state_dicts_do_not_depend_on_the_step_mode():
    single = build_autosnn(ARCHS[0], MACRO, seed=0, step_mode="single")
    multi = build_autosnn(ARCHS[0], MACRO, seed=0, step_mode="multi")
    with torch.no_grad():
        multi(static_images())  # its neurons are now in multi-step mode
    functional.reset_net(multi)
    assert list(single.state_dict()) == list(multi.state_dict())
    multi.load_state_dict(single.state_dict())
    supernet = SuperNetwork(MACRO, step_mode="multi")
    assert list(supernet.state_dict()) == list(SuperNetwork(MACRO).state_dict())


# --- the super-network --------------------------------------------------------------------------


def supernet_pair() -> tuple[SuperNetwork, SuperNetwork]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        supernet = SuperNetwork(MACRO)
    return pair(supernet)  # type: ignore[return-value]


def test_super_network_paths_train_alike():
    """Several paths in turn, in training mode: per-path outputs, spikes, gradients (None off the
    path) and the shared BN statistics agree."""
    single, multi = supernet_pair()
    g = torch.Generator().manual_seed(4)
    for i, arch in enumerate(PATHS):
        images = event_frames(seed=10 + i) if i == 1 else static_images(seed=10 + i)
        target = torch.rand(images.shape[0], MACRO.num_classes, generator=g)
        for network in (single, multi):
            network.train()
            network.zero_grad(set_to_none=True)
        with torch.no_grad():
            assert_same_run(single, multi, images, arch)
        for network in (single, multi):
            functional.reset_net(network)
            ((network(images, arch) - target) ** 2).mean().backward()
            functional.reset_net(network)
        assert_same_grads(single, multi)
        assert_same_state(single, multi)


def test_evaluate_path_does_not_depend_on_the_step_mode():
    single, multi = supernet_pair()
    heldout = Split(static_images(batch=10, seed=5), torch.arange(10) % MACRO.num_classes)
    settings = SuperNetSettings(width=4, timesteps=T, batch_size=4)
    for arch in PATHS:
        assert evaluate_path(multi, arch, heldout, settings) == evaluate_path(
            single, arch, heldout, settings
        )
    assert {n.step_mode for n in neurons(multi)} == {"m"}


def test_train_supernet_multi_step_matches_single_step(monkeypatch):
    """``train_supernet`` (Adam over sampled paths, augmentation off for digits) in multi-step
    mode ends with the weights and BN statistics of the single-step run, to float tolerance."""
    digits = load_dataset("digits", seed=0)
    settings = SuperNetSettings(width=4, timesteps=2, epochs=1, batch_size=32, max_train_batches=2)
    trained = {}
    for mode in ("single", "multi"):
        monkeypatch.setattr(sn, "SuperNetwork", lambda macro, mode=mode: SuperNetwork(macro, mode))
        trained[mode] = sn.train_supernet(digits, settings)
        assert trained[mode].step_mode == mode
    state_s, state_m = trained["single"].state_dict(), trained["multi"].state_dict()
    for key in state_s:
        torch.testing.assert_close(state_m[key], state_s[key], atol=1e-5, rtol=1e-4, msg=key)


# --- the lean no-grad PLIF ----------------------------------------------------------------------


@pytest.mark.parametrize("multi_step", [False, True], ids=["single", "multi"])
def test_lean_plif_is_bit_for_bit_spikingjellys(multi_step):
    """Without gradients, ``AutoSNNPLIF`` computes SpikingJelly's spikes and potentials exactly,
    including inputs that land the potential exactly on the threshold."""
    g = torch.Generator().manual_seed(8)
    x_seq = torch.randn(6, 4, 3, 5, 5, generator=g) * 1.5 + 0.5
    x_seq[2, 0] = 2.0  # h = 0 + (2 - 0) / 2 = 1 at the first step after a reset ...
    x_seq[0, 1] = 2.0  # ... exactly the threshold
    lean, reference = (
        plif(),
        neuron.ParametricLIFNode(
            init_tau=2.0, detach_reset=True, surrogate_function=surrogate.ATan()
        ),
    )
    for w in (torch.tensor(0.0), torch.tensor(-1.3), torch.tensor(0.7)):
        for node in (lean, reference):
            node.w.data.copy_(w)
            functional.reset_net(node)
            node.step_mode = "m" if multi_step else "s"
        with torch.no_grad():
            for _ in range(2):  # the second pass starts from the first one's potentials
                if multi_step:
                    out, ref = lean(x_seq), reference(x_seq)
                else:
                    out = torch.stack([lean(x) for x in x_seq])
                    ref = torch.stack([reference(x) for x in x_seq])
                assert torch.equal(out, ref)
                assert torch.equal(lean.v, reference.v)
                assert 0 < out.sum() < out.numel()


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_network_without_gradients_matches_spikingjellys_plif(mode):
    """The lean neurons (no gradient) and SpikingJelly's (gradients enabled) give one network the
    same outputs and spike counts, bit for bit."""
    network = build_autosnn(ARCHS[0], MACRO, seed=0, step_mode=mode)
    lively(network)
    network.eval()
    images = static_images()
    with torch.no_grad():
        lean_out, lean_activity = run(network, images)
    sj_out, sj_activity = run(network, images)  # gradients on: SpikingJelly's implementation
    assert sj_out.requires_grad and not lean_out.requires_grad
    assert torch.equal(lean_out, sj_out.detach())
    assert lean_activity == sj_activity
