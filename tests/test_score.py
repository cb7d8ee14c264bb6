"""Tests for the SAHD training-free score (optuna_spikenas.score)."""

from __future__ import annotations

import logging
import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from spikingjelly.activation_based import neuron, surrogate  # noqa: E402

from optuna_spikenas import score, spike_counts  # noqa: E402
from optuna_spikenas.score import (  # noqa: E402
    BATCHED_KERNELS,
    SpikeKernelRecorder,
    count_spikes,
    hamming_kernel,
    hamming_score,
    kernel_score,
    log_abs_det,
    sahd_kernel,
    sahd_score,
)

T_STEPS = 3


def lif() -> neuron.LIFNode:
    return neuron.LIFNode(
        tau=4 / 3,
        v_threshold=1.0,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.ATan(),
    )


class TinyMLP(nn.Module):
    """Linear → LIF → Linear → LIF, looping over T_STEPS timesteps."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 32)
        self.lif1 = lif()
        self.fc2 = nn.Linear(32, 16)
        self.lif2 = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 16)
        for _ in range(T_STEPS):
            out = out + self.lif2(self.fc2(self.lif1(self.fc1(x))))
        return out / T_STEPS


class TinyConvSNN(nn.Module):
    """Conv → BN → LIF → Conv → BN → LIF → Linear, looping over T_STEPS timesteps."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(4),
            lif(),
            nn.Conv2d(4, 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(4),
            lif(),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(images.shape[0], 3)
        for _ in range(T_STEPS):
            logits = logits + self.head(self.features(images))
        return logits / T_STEPS


def lif_nodes(module: nn.Module) -> list[neuron.LIFNode]:
    return [m for m in module.modules() if isinstance(m, neuron.LIFNode)]


def random_spikes(shape: tuple[int, ...], rate: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) < rate).float()


# ---------------------------------------------------------------- independent numpy references


def numpy_sahd(spikes: np.ndarray) -> np.ndarray:
    x = (spikes.reshape(spikes.shape[0], -1) > 0).astype(np.float64)
    n = x.shape[1]
    d_h = (x[:, None, :] != x[None, :, :]).sum(axis=-1).astype(np.float64)
    r = x.mean(axis=1)
    expected = n * (r[:, None] * (1.0 - r[None, :]) + (1.0 - r[:, None]) * r[None, :])
    return n - 0.5 * d_h / (expected + 1e-3)


def numpy_hamming(spikes: np.ndarray) -> np.ndarray:
    x = spikes.reshape(spikes.shape[0], -1) > 0
    n = x.shape[1]
    d_h = (x[:, None, :] != x[None, :, :]).sum(axis=-1)
    return (n - d_h).astype(np.float64)


CASES = [
    ((8, 50), 0.05),
    ((8, 50), 0.5),
    ((5, 3, 4, 4), 0.3),
    ((16, 2, 7), 0.9),
    ((12, 1000), 0.1),
]


def case_spikes(shape: tuple[int, ...], rate: float, seed: int) -> torch.Tensor:
    spikes = random_spikes(shape, rate, seed)
    spikes[0] = 0.0  # an all-zero sample (r = 0)
    spikes[1] = 1.0  # an all-one sample (r = 1)
    return spikes


@pytest.mark.parametrize(("shape", "rate"), CASES)
def test_sahd_kernel_matches_numpy(shape: tuple[int, ...], rate: float) -> None:
    spikes = case_spikes(shape, rate, seed=len(CASES) + int(rate * 100))
    kernel = sahd_kernel(spikes)
    assert kernel.dtype == torch.float64
    assert kernel.shape == (shape[0], shape[0])
    np.testing.assert_allclose(kernel.numpy(), numpy_sahd(spikes.numpy()), rtol=1e-6, atol=0)
    assert torch.equal(kernel, kernel.T)


@pytest.mark.parametrize(("shape", "rate"), CASES)
def test_hamming_kernel_matches_numpy(shape: tuple[int, ...], rate: float) -> None:
    spikes = case_spikes(shape, rate, seed=7 + int(rate * 100))
    kernel = hamming_kernel(spikes)
    assert kernel.dtype == torch.float64
    np.testing.assert_allclose(kernel.numpy(), numpy_hamming(spikes.numpy()), rtol=1e-6, atol=0)


def test_kernels_threshold_any_dtype_at_zero() -> None:
    spikes = random_spikes((6, 40), 0.4, seed=3)
    # bool input, and a float input where values > 0 are spikes and values ≤ 0 are not.
    scaled = torch.where(spikes > 0, torch.full_like(spikes, 2.5), -torch.rand(6, 40))
    expected = numpy_sahd(spikes.numpy())
    np.testing.assert_allclose(sahd_kernel(spikes.bool()).numpy(), expected, rtol=1e-6, atol=0)
    np.testing.assert_allclose(sahd_kernel(scaled).numpy(), expected, rtol=1e-6, atol=0)
    np.testing.assert_allclose(
        hamming_kernel(scaled.double()).numpy(), numpy_hamming(spikes.numpy()), rtol=1e-6, atol=0
    )


def test_log_abs_det() -> None:
    assert log_abs_det(torch.diag(torch.tensor([2.0, 3.0]))) == pytest.approx(math.log(6.0))
    assert log_abs_det(torch.tensor([[0.0, 2.0], [5.0, 0.0]])) == pytest.approx(math.log(10.0))
    assert log_abs_det(torch.ones(4, 4)) == -math.inf
    with pytest.raises(ValueError):
        log_abs_det(torch.ones(2, 3))


# ---------------------------------------------------------------- analytic large-N limit


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_independent_spikes_reach_analytic_limit(rate: float) -> None:
    # For independent units d_H(i,j) ≈ E[d_H(i,j)] (i ≠ j) and d_H(i,i) = 0, so
    # K ≈ (N − 0.5)·11ᵀ + 0.5·I with det = 0.5^(B−1)·(0.5 + B·(N − 0.5)).
    batch, n_units = 256, 100_000
    gen = torch.Generator().manual_seed(1234 + int(rate * 10))
    spikes = torch.empty(batch, n_units)
    for start in range(0, batch, 64):
        spikes[start : start + 64] = (torch.rand(64, n_units, generator=gen) < rate).float()
    limit = (batch - 1) * math.log(0.5) + math.log(0.5 + batch * (n_units - 0.5))
    assert limit == pytest.approx(-159.7, abs=0.05)
    score = log_abs_det(sahd_kernel(spikes))
    assert abs(score - limit) <= 0.01 * abs(limit)


# ---------------------------------------------------------------- recorder


def capture_spikes(network: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    captured: list[torch.Tensor] = []
    handles = [
        node.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().clone()))
        for node in lif_nodes(network)
    ]
    try:
        network(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return captured


@pytest.mark.parametrize("kind", ["sahd", "hamming"])
def test_recorder_counts_layers_times_steps_and_averages(kind: str) -> None:
    torch.manual_seed(0)
    network = TinyMLP()
    inputs = 3.0 * torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    reference = {"sahd": sahd_kernel, "hamming": hamming_kernel}[kind]
    kernel = reference

    captured: list[torch.Tensor] = []
    hooks = [
        node.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().clone()))
        for node in lif_nodes(network)
    ]
    with torch.no_grad(), SpikeKernelRecorder(network, kernel) as recorder:
        network(inputs)
    for handle in hooks:
        handle.remove()

    assert recorder.count == 2 * T_STEPS == len(captured)
    rates = [float(s.mean()) for s in captured]
    assert any(0.0 < r < 1.0 for r in rates), "test network should fire sometimes"
    expected = torch.stack([reference(s) for s in captured]).mean(dim=0)
    assert recorder.kernel_sum is not None
    torch.testing.assert_close(recorder.mean_kernel(), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(recorder.kernel_sum, expected * recorder.count, rtol=1e-12, atol=0)

    # Hooks are gone after exit: a further forward pass records nothing.
    assert all(len(node._forward_hooks) == 0 for node in lif_nodes(network))
    with torch.no_grad():
        network(inputs)
    assert recorder.count == 2 * T_STEPS


def test_recorder_splits_multistep_neurons_into_timesteps() -> None:
    node = lif()
    node.step_mode = "m"
    inputs = 2.0 * torch.rand(4, 7, 20, generator=torch.Generator().manual_seed(5))  # [T, B, N]
    with torch.no_grad(), SpikeKernelRecorder(node) as recorder:
        spikes = node(inputs)
    assert recorder.count == 4
    expected = torch.stack([sahd_kernel(step) for step in spikes]).mean(dim=0)
    torch.testing.assert_close(recorder.mean_kernel(), expected, rtol=1e-12, atol=0)


# ---------------------------------------------------------------- sahd_score


def image_batches(count: int = 2, batch: int = 12) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(42)
    return [torch.randn(batch, 1, 6, 6, generator=gen) for _ in range(count)]


def manual_score(network: nn.Module, batches: list[torch.Tensor]) -> float:
    """Independent recomputation: BN in train mode, state reset, mean kernel per batch."""
    scores = []
    network.train()
    for images in batches:
        for node in lif_nodes(network):
            node.reset()
        with torch.no_grad():
            captured = capture_spikes(network, images)
        for node in lif_nodes(network):
            node.reset()
        kernel = torch.stack([sahd_kernel(s) for s in captured]).mean(dim=0)
        scores.append(float(torch.linalg.slogdet(kernel)[1]))
    return sum(scores) / len(scores)


def test_sahd_score_deterministic_resets_state_and_has_no_side_effects() -> None:
    torch.manual_seed(0)
    network = TinyConvSNN()
    batches = image_batches()
    bn_before = {k: v.clone() for k, v in network.state_dict().items()}

    # Leave stale membrane potentials behind: scoring must reset them first.
    network.eval()
    with torch.no_grad():
        network(batches[0])
    assert any(isinstance(node.v, torch.Tensor) for node in lif_nodes(network))

    first = sahd_score(network, batches)
    second = sahd_score(network, batches)
    assert math.isfinite(first)
    assert first == second

    for node in lif_nodes(network):
        assert isinstance(node.v, float) and node.v == 0.0
    assert not network.training  # mode restored
    for key, value in network.state_dict().items():
        assert torch.equal(value, bn_before[key]), key  # BN running stats restored

    # Equals an independent recomputation (which uses BN batch statistics).
    assert first == pytest.approx(manual_score(network, batches), rel=1e-9)
    single = sahd_score(network, batches[:1])
    assert single == pytest.approx(manual_score(network, batches[:1]), rel=1e-9)
    assert single != pytest.approx(first, rel=1e-9)


def test_sahd_score_hamming_kind_differs() -> None:
    torch.manual_seed(0)
    network = TinyConvSNN()
    batches = image_batches(count=1)
    sahd = sahd_score(network, batches)
    ham = hamming_score(network, batches)
    assert ham == kernel_score(network, batches, hamming_kernel)
    assert math.isfinite(ham) and ham != pytest.approx(sahd)


def test_silent_network_scores_minus_inf() -> None:
    # Documented: no spikes ⇒ every K_layer = N·11ᵀ (rank one) ⇒ score = -inf, never NaN.
    torch.manual_seed(0)
    network = TinyConvSNN()
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.zeros_(module.weight)
    for score_of in (sahd_score, hamming_score):
        score = score_of(network, image_batches())
        assert isinstance(score, float)
        assert not math.isnan(score)
        assert score == -math.inf


def test_network_without_neurons_raises() -> None:
    network = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    with pytest.raises(ValueError, match="network has no spiking neurons"):
        sahd_score(network, image_batches())
    with pytest.raises(ValueError):
        sahd_score(TinyConvSNN(), [])


def test_spike_counts_do_not_depend_on_layout_or_on_the_binary_shortcut() -> None:
    generator = torch.Generator().manual_seed(3)
    spikes = (torch.rand(3, 6, 4, 5, 7, generator=generator) < 0.3).float()  # [M, B, C, H, W]
    x = spikes.reshape(3, 6, -1).double()
    expected_gram = x @ x.transpose(1, 2)  # an independent count, in float64
    channels_last = torch.stack([s.contiguous(memory_format=torch.channels_last) for s in spikes])
    assert not channels_last.is_contiguous()
    for layout in (spikes, channels_last):
        for binary in (False, True):
            counts = count_spikes(layout, binary)
            torch.testing.assert_close(counts.gram, expected_gram, rtol=0, atol=0)
            torch.testing.assert_close(counts.row_sums, x.sum(dim=2), rtol=0, atol=0)
            assert counts.units.tolist() == [140.0] * 3
    # Without the shortcut any value > 0 is a spike (and only those).
    graded = spikes * torch.rand(spikes.shape, generator=generator) - (1 - spikes) * 0.5
    torch.testing.assert_close(count_spikes(graded).gram, expected_gram, rtol=0, atol=0)


def test_recorder_calls_a_kernel_without_batched_form_once_per_map() -> None:
    calls: list[tuple[int, ...]] = []

    def trace_kernel(spikes: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(spikes.shape))
        return torch.eye(spikes.shape[0], dtype=torch.float64) * float(spikes.sum())

    assert trace_kernel not in BATCHED_KERNELS
    node = lif()
    node.step_mode = "m"
    inputs = 2.0 * torch.rand(4, 5, 9, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), SpikeKernelRecorder(node, trace_kernel) as recorder:
        spikes = node(inputs)
    assert calls == [(5, 9)] * 4 and recorder.count == 4
    expected = torch.eye(5, dtype=torch.float64) * float(spikes.sum()) / 4
    torch.testing.assert_close(recorder.mean_kernel(), expected)


@pytest.mark.parametrize("route", sorted(spike_counts.GRAM_ROUTES))
@pytest.mark.parametrize(("maps", "batch", "units"), [(1, 32, 12544), (5, 16, 300), (2, 7, 50)])
def test_every_gram_route_counts_exactly(route: str, maps, batch, units) -> None:
    if route == "bfloat16" and not spike_counts._CPU_BF16:
        pytest.skip("this CPU has no bfloat16 dot products")
    if route == "halves" and batch % 2:
        pytest.skip("halves needs an even batch")
    generator = torch.Generator().manual_seed(batch)
    dense = torch.rand(batch, generator=generator)[:, None] * 0.9  # rates from 0 to 90 %
    spikes = (torch.rand(maps, batch, units, generator=generator) < dense).float()
    x = spikes.double()
    expected = x @ x.transpose(1, 2)  # float64, an independent count
    precision = torch.backends.mkldnn.matmul.fp32_precision
    gram = spike_counts.GRAM_ROUTES[route](spikes)
    assert torch.backends.mkldnn.matmul.fp32_precision == precision  # left as it was
    assert gram.dtype == torch.float32
    torch.testing.assert_close(gram.double(), expected, rtol=0, atol=0)


@pytest.mark.parametrize(("maps", "batch", "units"), [(1, 32, 12544), (5, 16, 300), (2, 7, 50)])
def test_the_route_timed_fastest_is_kept_per_shape_and_counts_exactly(
    monkeypatch, maps, batch, units
) -> None:
    monkeypatch.setattr(spike_counts, "_fastest", {})
    generator = torch.Generator().manual_seed(units)
    spikes = (torch.rand(maps, batch, units, generator=generator) < 0.3).float()
    x = spikes.double()
    precision = torch.backends.mkldnn.matmul.fp32_precision
    counts = count_spikes(spikes, binary=True)
    assert torch.backends.mkldnn.matmul.fp32_precision == precision
    torch.testing.assert_close(counts.gram, x @ x.transpose(1, 2), rtol=0, atol=0)
    torch.testing.assert_close(counts.row_sums, x.sum(dim=2), rtol=0, atol=0)
    (key, route), = spike_counts._fastest.items()  # one shape met, one choice kept
    assert key[0] == (maps, batch, units) and route in spike_counts.allowed_routes(spikes)
    timed = []
    monkeypatch.setattr(spike_counts, "fastest_route", lambda *a: timed.append(a) or "whole")
    count_spikes(spikes, binary=True)
    assert timed == []  # the shape is not timed again
    count_spikes(spikes[:, :, : units - 1], binary=True)  # a new shape is
    assert len(timed) == (len(spike_counts.allowed_routes(spikes)) > 1)


def test_fastest_route_returns_one_of_the_routes_it_was_given() -> None:
    spikes = (torch.rand(1, 8, 64) < 0.5).float()
    assert spike_counts.fastest_route(spikes, ["whole"]) == "whole"
    assert spike_counts.fastest_route(spikes, ["halves", "whole"]) in ("halves", "whole")


def test_only_the_main_thread_takes_the_bfloat16_route() -> None:
    spikes = torch.ones(1, 4, 8)
    seen: dict[str, object] = {}

    def in_a_worker() -> None:
        seen["allowed"] = spike_counts.allowed_routes(spikes)
        seen["route"] = spike_counts._route_for(spikes.view(1, 4, -1))

    worker = threading.Thread(target=in_a_worker)
    worker.start()
    worker.join()
    assert seen["allowed"] == ["whole", "halves"] and seen["route"] in ("whole", "halves")
    expected = ["whole", "halves"] + (["bfloat16"] if spike_counts._CPU_BF16 else [])
    assert spike_counts.allowed_routes(spikes) == expected
    assert spike_counts.allowed_routes(spikes.double()) == ["whole", "halves"]
    assert spike_counts.allowed_routes(torch.ones(1, 5, 8)) == expected[:1] + expected[2:]


def test_scoring_mode_leaves_statistics_and_each_modules_mode_as_they_were() -> None:
    torch.manual_seed(0)
    network = TinyConvSNN()
    network.train()
    frozen = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)][0]
    frozen.eval()  # a submodule in its own mode
    before = {k: v.clone() for k, v in network.state_dict().items()}
    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    with score.scoring_mode(network), torch.no_grad():
        assert all(m.training for m in network.modules())
        assert not any(m.track_running_stats for m in norms)  # batch statistics, no updates
        network(image_batches(count=1)[0])
        for key, value in network.state_dict().items():
            assert torch.equal(value, before[key]), key  # untouched inside the block too
    assert all(m.track_running_stats for m in norms)
    assert network.training and not frozen.training
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key]), key
