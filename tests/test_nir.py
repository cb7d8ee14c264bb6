"""NIR export (``export --nir``): every kind of searched network written as an NIR graph, read
back with ``nir.read`` and run by SpikingJelly's NIR reader (an implementation this package did
not write), with the package network's outputs and spike trains."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn

from optuna_spikenas.architecture_file import architecture_record
from optuna_spikenas.autosnn_space import AUTOSNN_MACROS, AutoSNNArchitecture
from optuna_spikenas.cli import main
from optuna_spikenas.config import load_config
from optuna_spikenas.dashboard import TrialArtifacts, artifact_dir_for, open_artifact_store
from optuna_spikenas.export import ExportError, build_from_document, export_trial
from optuna_spikenas.macros import get_macro
from optuna_spikenas.objective import SpikeNASObjective
from optuna_spikenas.space import Architecture, Cell

nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")
from spikingjelly.activation_based.nir_exchange import import_from_nir  # noqa: E402

from optuna_spikenas import nir_graph  # noqa: E402
from optuna_spikenas.nir_graph import DT, bn_affine, network_graph  # noqa: E402
from optuna_spikenas.nir_replay import check_graph  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def lively(network: nn.Module, seed: int = 0) -> nn.Module:
    """Batch-norm statistics and affines, linear weights and PLIF leaks drawn so that every
    layer spikes at a moderate rate: the comparison then means something."""
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    with torch.no_grad():
        for m in network.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(draw(c) - 0.5)
                m.running_var.copy_(draw(c) * 0.45 + 0.05)
                m.weight.copy_(draw(c) + 0.5)
                m.bias.copy_(draw(c))
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 0.3)
            elif isinstance(m, neuron.ParametricLIFNode):
                m.w.copy_(draw(()) * 2 - 1)
    return network.eval()


def reader_run(path: Path, images: torch.Tensor, timesteps: int, hooked: list[str]):
    """SpikingJelly's reader on the file: the mean output over the steps, and the spikes of
    the nodes ``hooked``."""
    model = import_from_nir(str(path), dt=DT, dtype=torch.float64)
    spikes: dict[str, list[torch.Tensor]] = {name: [] for name in hooked}
    modules = dict(model.named_children())
    for name in hooked:
        modules[name].register_forward_hook(
            lambda _m, _i, out, sink=spikes[name]: sink.append(out[0].clone())
        )
    state, outputs = None, []
    with torch.no_grad():
        for _ in range(timesteps):
            out, state = model(images, state)
            outputs.append(out)
    return torch.stack(outputs).mean(0), {k: torch.stack(v) for k, v in spikes.items()}


def package_run(network: nn.Module, images: torch.Tensor, hooked: list[str]):
    """The package's network, one step at a time, in double precision."""
    network = copy.deepcopy(network).double().eval()
    network.set_step_mode("single")
    modules = dict(network.named_modules())
    spikes: dict[str, list[torch.Tensor]] = {name: [] for name in hooked}
    for name in hooked:
        modules[name].register_forward_hook(
            lambda _m, _i, out, sink=spikes[name]: sink.append(out.clone())
        )
    functional.reset_net(network)
    with torch.no_grad():
        out = network(images)
    return out, {k: torch.stack(v) for k, v in spikes.items()}


def assert_reader_reproduces(path: Path, network: nn.Module, timesteps: int) -> None:
    """The file, read by ``nir.read`` and run by SpikingJelly's reader, computes what the
    package's network computes: outputs within 1e-5, every neuron layer's spikes identical."""
    graph = nir.read(str(path))
    assert isinstance(graph.nodes["input"], nir.Input)
    written = network_graph(copy.deepcopy(network), timesteps)  # node name -> package neuron
    assert set(written.neurons) <= set(graph.nodes)
    assert all(isinstance(graph.nodes[n], nir.LIF) for n in written.neurons)
    macro = network.macro
    generator = torch.Generator().manual_seed(1)
    shape = (3, macro.in_channels, macro.image_size, macro.image_size)
    images = torch.randn(shape, generator=generator, dtype=torch.float64)
    theirs, their_spikes = reader_run(path, images, timesteps, list(written.neurons))
    ours, our_spikes = package_run(network, images, list(written.neurons.values()))
    assert ours.abs().max() > 0.01  # something reached the output
    assert float((theirs - ours).abs().max()) <= 1e-5
    for node, module in written.neurons.items():
        assert torch.equal(their_spikes[node], our_spikes[module]), (node, module)
    rates = [float(s.mean()) for s in our_spikes.values()]
    assert sum(r > 0 for r in rates) >= len(rates) * 0.8  # most layers spike


def study_with_document(tmp_path: Path, document: dict) -> str:
    """A SQLite study with one complete trial whose architecture artifact is ``document``."""
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    trial = study.ask()
    trial.set_user_attr("feasible", True)
    file = tmp_path / "architecture.json"
    file.write_text(json.dumps(document))
    store = open_artifact_store(artifact_dir_for(storage))
    optuna.artifacts.upload_artifact(
        artifact_store=store, file_path=str(file), study_or_trial=trial
    )
    study.tell(trial, 1.0)
    return storage


def export_with_weights(storage: str, tmp_path: Path, document: dict, seed: int):
    """``export --nir --weights`` through the command line, with lively weights."""
    network = lively(build_from_document(document, seed=seed), seed)
    weights = tmp_path / "trained.pt"
    torch.save(network.state_dict(), weights)
    out = tmp_path / "out"
    argv = ["export", "--storage", storage, "--study-name", "s", "--out", str(out)]
    assert main([*argv, "--weights", str(weights), "--nir"]) == 0
    return out / "model.nir", network


def test_quickstart_best_trial_exports_as_nir(tmp_path, capsys, one_thread):
    config = load_config(ROOT / "studies" / "quickstart.toml")
    config = replace(config, score=replace(config.score, inits=1, batch_size=8))
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.create_study(
        storage=storage,
        study_name="s",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    store = open_artifact_store(artifact_dir_for(storage))
    study.optimize(TrialArtifacts(SpikeNASObjective(config), store), n_trials=3)
    best = max(
        (t for t in study.trials if math.isfinite(t.value)), key=lambda t: (t.value, -t.number)
    )
    result = export_trial(storage, "s", tmp_path / "plain", nir=True)  # untrained weights
    assert result.trial_number == best.number
    assert result.nir_check is not None and "reproduces the network" in result.nir_check

    document = json.loads(result.architecture_json.read_text())
    path, network = export_with_weights(storage, tmp_path, document, seed=best.number)
    printed = capsys.readouterr().out
    assert f"trial {best.number} exported" in printed
    assert "SpikingJelly's NIR reader reproduces the network" in printed
    assert "identical spike trains" in printed
    assert_reader_reproduces(path, network, timesteps=config.score.timesteps)


NETWORKS = {
    # SNASNet's released CIFAR100 cell: a backward edge 2 -> 0 inside a cycle
    "backward-cell": (
        Architecture.parse("0302 0030 3003 0000 / 0333 0000 0204 0000", 2, 8),
        get_macro("light"),
        4,
    ),
    # backward 2 -> 1 with no path 1 -> 2 (no cycle without the writer's zero edge), and
    # node 1 fed only by a backward edge (it starts from zeros)
    "backward-no-cycle": (
        Architecture.parse("0330 0003 0303 0000 / 0033 0003 0300 0000", 2, 8),
        get_macro("light"),
        3,
    ),
    "snasnet-cifar10": (
        Architecture.parse("0303 0030 2002 0200", 2, 16),
        get_macro("snasnet-cifar10"),
        5,
    ),
    "snasnet-cifar100-three-cells": (
        Architecture.parse("0302 0030 3003 0000", 3, 8),
        get_macro("snasnet-cifar100").for_data(3, 16, 100),
        3,
    ),
    "autosnn": (
        AutoSNNArchitecture.parse("SRB_k3,SCB_k5,skip,SRB_k5,SCB_k3"),
        replace(AUTOSNN_MACROS["autosnn-16"], width=8, timesteps=4).for_data(3, 16, 10),
        4,
    ),
}


@pytest.mark.parametrize("case", NETWORKS)
def test_every_network_kind_exports_and_the_reader_reproduces_it(case, tmp_path, capsys):
    arch, macro, timesteps = NETWORKS[case]
    document = architecture_record(arch, macro, timesteps, {}, {"study": "s", "trial": 0})
    storage = study_with_document(tmp_path, document)
    path, network = export_with_weights(storage, tmp_path, document, seed=3)
    assert "reproduces the network" in capsys.readouterr().out
    assert_reader_reproduces(path, network, timesteps)


def test_backward_edges_are_recurrent_and_a_zero_edge_closes_the_open_ones():
    arch, macro, timesteps = NETWORKS["backward-no-cycle"]
    network = build_from_document(architecture_record(arch, macro, timesteps), seed=0)
    graph = network_graph(network, timesteps).graph
    # cell 1: the backward conv 2 -> 1 feeds node 1, with a zero edge from node 1 into the
    # backward op (closing the cycle node 1 -> op -> node 1, which no forward path closes)
    names = list(graph.nodes)
    node1 = next(n for n in names if n.endswith("cell1_node1"))
    back = next(n for n in names if n.endswith("cell1_op21_conv"))
    assert (back, node1) in graph.edges
    assert names.index(back) > names.index(node1)  # written later: read one step late
    closing = next(n for n in names if n.endswith("cell1_cycle21"))
    assert (node1, closing) in graph.edges
    assert not np.any(graph.nodes[closing].weight) and not np.any(graph.nodes[closing].bias)
    # cell 2: node 1 is fed by nothing forward; it starts from a zero computed from node 0
    zero = next(n for n in names if n.endswith("cell2_zero1"))
    assert (zero, next(n for n in names if n.endswith("cell2_node1"))) in graph.edges


def test_batch_norm_folds_into_an_affine_map():
    bn = nn.BatchNorm2d(5).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.1, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(2, 5, 3, 3, dtype=torch.float64)
    scale, shift = bn_affine(bn)
    with torch.no_grad():
        expected = bn.double()(x).numpy()
    assert np.allclose(
        scale[None, :, None, None] * x.numpy() + shift[None, :, None, None], expected, atol=1e-12
    )


def test_lif_parameters_are_snasnet_neuron_under_forward_euler():
    arch, macro, timesteps = NETWORKS["snasnet-cifar10"]
    network = build_from_document(architecture_record(arch, macro, timesteps), seed=0)
    graph = network_graph(network, timesteps).graph
    lifs = [node for node in graph.nodes.values() if isinstance(node, nir.LIF)]
    assert lifs
    for node in lifs:
        assert np.allclose(node.tau / DT, 4 / 3) and np.all(node.r == 1)
        assert np.all(node.v_leak == 0) and np.all(node.v_reset == 0)
        assert np.all(node.v_threshold == 1)
    assert graph.metadata["timesteps"] == timesteps


def test_a_graph_the_reader_does_not_reproduce_is_not_written(tmp_path, monkeypatch):
    arch, macro, timesteps = NETWORKS["autosnn"]
    document = architecture_record(arch, macro, timesteps, {}, {"study": "s", "trial": 0})
    storage = study_with_document(tmp_path, document)
    network = lively(build_from_document(document, seed=3), 3)
    weights = tmp_path / "trained.pt"
    torch.save(network.state_dict(), weights)
    wrong = nir_graph._voting_matrix
    monkeypatch.setattr(nir_graph, "_voting_matrix", lambda c, v: wrong(c, v) * 2)  # a bug
    with pytest.raises(ExportError, match=r"model\.nir not written: .* disagrees"):
        export_trial(storage, "s", tmp_path / "out", nir=True, weights=weights)
    assert not (tmp_path / "out" / "model.nir").exists()
    assert (tmp_path / "out" / "model.py").is_file()


def test_random_cells_export_exactly(tmp_path):
    """Valid cells drawn at random (forward and backward edges, every op) on two macros."""
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 12:
        forward, backward = {}, {}
        for pair in [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]:
            side = backward if rng.random() < 0.4 else forward
            side[pair] = int(rng.integers(0, 5))
        cell = Cell.from_edges(forward, backward)
        if not cell.is_valid():
            continue
        checked += 1
        macro = get_macro("light" if checked % 2 else "snasnet-cifar100").for_data(2, 12, 10)
        arch = Architecture((cell, cell), 4)
        network = lively(build_from_document(architecture_record(arch, macro, 3), seed=checked))
        path = tmp_path / f"random_{checked}.nir"
        written = nir_graph.write_nir(network, 3, path)
        images = torch.randn(2, 2, 12, 12, generator=torch.Generator().manual_seed(checked))
        check = check_graph(path, network, written.neurons, 3, images)
        assert check.agrees, (str(cell), check.summary())


def test_a_k_bit_trial_is_written_with_its_k_bit_weights(tmp_path, capsys):
    """NeuroNAS's trials are measured with k-bit weights: the graph holds those, not the float
    weights ``weights.pt`` keeps."""
    from optuna_spikenas.quantize import k_bit_copy

    arch, macro, timesteps = NETWORKS["snasnet-cifar100-three-cells"]
    document = architecture_record(arch, macro, timesteps, {"weight_bits": 4}, {"trial": 0})
    storage = study_with_document(tmp_path, document)
    path, network = export_with_weights(storage, tmp_path, document, seed=5)
    assert "reproduces the network" in capsys.readouterr().out
    graph = nir.read(str(path))
    (hidden,) = [n for name, n in graph.nodes.items() if name.endswith("head_hidden")]
    float_weight = network.head[5].weight.detach().double().numpy()
    assert len(np.unique(hidden.weight)) <= 2**4 < len(np.unique(float_weight))
    assert_reader_reproduces(path, k_bit_copy(network, 4), timesteps)
