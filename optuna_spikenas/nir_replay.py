"""Check a written NIR graph with a reader this package did not write.

SpikingJelly's ``import_from_nir`` (through nirtorch's graph interpreter) turns the ``.nir`` file
back into a runnable model; it runs ``timesteps`` steps on the same input as the package's network
(static images, direct-encoded: the same image at every step), and the two are compared: the
mean output over the steps (the network's prediction) and every neuron's spike train. The
comparison runs in double precision on both sides: the reader sums a node's inputs in an order of
its own, and in single precision a membrane potential within rounding of the threshold could
then fire on one side only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from spikingjelly.activation_based import functional
from torch import nn

from optuna_spikenas.nir_graph import DT, NIR_INSTALL, NIRExportError


@dataclass(frozen=True)
class Replay:
    """What a model computed: the mean output over the steps ``[B, classes]`` and each neuron's
    spikes ``[T, B, ...]``, keyed by the neuron's name in the package's network."""

    output: torch.Tensor
    spikes: dict[str, torch.Tensor]


@dataclass(frozen=True)
class ReplayCheck:
    """The reader's run against the package's: largest output difference, neurons compared, and
    the neurons whose spike trains differ (empty when identical)."""

    max_abs_difference: float
    neurons: int
    differing_neurons: list[str]
    spikes: int  # spikes the package's network fired in the run

    @property
    def agrees(self) -> bool:
        return self.max_abs_difference <= 1e-5 and not self.differing_neurons

    def summary(self) -> str:
        spikes = (
            f"identical spike trains ({self.spikes:,} spikes)"
            if not self.differing_neurons
            else f"different spikes in {', '.join(self.differing_neurons[:3])}"
        )
        return (
            f"SpikingJelly's NIR reader reproduces the network: output max |diff| "
            f"{self.max_abs_difference:.1e}, {spikes} in {self.neurons} neuron layers"
            if self.agrees
            else f"SpikingJelly's NIR reader disagrees with the network: output max |diff| "
            f"{self.max_abs_difference:.1e}, {spikes}"
        )


def run_reader(path: Path, images: torch.Tensor, timesteps: int, neurons: dict[str, str]) -> Replay:
    """Run the graph in ``path`` with SpikingJelly's reader for ``timesteps`` steps on
    ``images`` (given at every step); ``neurons`` maps graph node names to package names."""
    try:
        from spikingjelly.activation_based.nir_exchange import import_from_nir
    except ImportError:
        raise NIRExportError(f"checking an NIR file needs nirtorch: {NIR_INSTALL}") from None
    model = import_from_nir(str(path), dt=DT, dtype=images.dtype)
    recorded: dict[str, list[torch.Tensor]] = {name: [] for name in neurons.values()}
    handles = []
    for node, module in model.named_children():
        if node in neurons:
            sink = recorded[neurons[node]]
            handles.append(
                module.register_forward_hook(
                    lambda _m, _i, out, sink=sink: sink.append(out[0].detach().clone())
                )
            )
    outputs = []
    state = None
    try:
        with torch.no_grad():
            for _ in range(timesteps):
                out, state = model(images, state)
                outputs.append(out)
    finally:
        for handle in handles:
            handle.remove()
    return Replay(torch.stack(outputs).mean(0), {k: torch.stack(v) for k, v in recorded.items()})


def run_package(network: nn.Module, images: torch.Tensor, neurons: list[str]) -> Replay:
    """The package's network on ``images``, one step at a time, with the spikes of the neurons
    named in ``neurons`` (module paths)."""
    modules = dict(network.named_modules())
    recorded: dict[str, list[torch.Tensor]] = {name: [] for name in neurons}
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, sink=recorded[name]: sink.append(out.detach().clone())
        )
        for name in neurons
    ]
    previous_mode = network.step_mode  # type: ignore[attr-defined]
    network.set_step_mode("single")  # type: ignore[operator]
    try:
        functional.reset_net(network)
        with torch.no_grad():
            output = network(images)
        functional.reset_net(network)
    finally:
        network.set_step_mode(previous_mode)  # type: ignore[operator]
        for handle in handles:
            handle.remove()
    return Replay(output, {k: torch.stack(v) for k, v in recorded.items()})


def check_graph(
    path: Path, network: nn.Module, neurons: dict[str, str], timesteps: int, images: torch.Tensor
) -> ReplayCheck:
    """Run ``network`` (in double precision, on a copy) and the graph in ``path`` on ``images``
    and compare them."""
    import copy

    reference = copy.deepcopy(network).double().eval()
    images = images.double()
    ours = run_package(reference, images, list(neurons.values()))
    theirs = run_reader(path, images, timesteps, neurons)
    differing = [
        name
        for name, spikes in ours.spikes.items()
        if spikes.shape != theirs.spikes[name].shape or not torch.equal(spikes, theirs.spikes[name])
    ]
    difference = float((ours.output - theirs.output).abs().max())
    fired = int(sum(float(spikes.sum()) for spikes in ours.spikes.values()))
    return ReplayCheck(difference, len(neurons), differing, fired)
