"""A searched network written as an NIR graph (``optuna-spikenas export --nir``).

The graph is written node by node from the network's modules, for every network this package
searches: SNASNet cells (forward and backward) in every macro, and AutoSNN's blocks. What each
construct becomes (all exact at inference; the network must be in eval mode):

- **conv + BatchNorm** -> one ``Conv2d`` with bias (BatchNorm's running statistics folded in);
  a BatchNorm alone (before a neuron) -> a 1x1 ``Conv2d`` with a diagonal weight;
- **neurons**: SNASNet's LIF (decaying input, hard reset to 0, threshold 1, tau 4/3) and
  AutoSNN's PLIF (the same with its trained leak, tau = 1 / sigmoid(w)) -> ``LIF`` with
  ``r = 1``, ``v_leak = v_reset = 0`` and ``tau = tau_steps * DT``: NIR's LIF under forward Euler
  with step ``DT`` is SpikingJelly's ``v += (x - v) / tau_steps``;
- **node sums** of a cell -> fan-in (several edges into one node are summed); an intermediate node
  (1 or 2) that ops read is one 1x1 identity ``Conv2d`` summing its inputs, so that each value
  has one name and a term is never counted twice;
- **skip edges** -> edges; **average pools** -> ``AvgPool2d`` (zero padding counted, as
  PyTorch's default); AutoSNN's **max pool of spikes** -> ``SumPool2d`` then an ``IF`` neuron
  with threshold 0.5 and reset to 0: for binary inputs it fires exactly when a spike is in the
  window and keeps no charge (the sum is 0 or at least 1), a stateless max;
- **backward edges** (a node's value at step t fed to an earlier node at step t + 1) ->
  recurrent edges: each backward op is written after the cell's forward part, so its output
  reaches its target node one step late, as in a reader that runs nodes in file order and feeds
  a node an input not yet computed in this step from the previous step (nirtorch's convention,
  SpikingJelly's reader). Where the target would not feed the op's source within the step (no
  cycle, so nothing would mark the edge as recurrent) a zero-weight 1x1 ``Conv2d`` from the
  target to the op closes the cycle; it adds exactly 0;
- **heads**: dropout is the identity at inference and is left out; global average pooling is an
  ``AvgPool2d`` over the whole map; the voting layer (the mean of each class's voters) is a fixed
  linear map, folded into SNASNet's last ``Linear`` and written as an ``Affine`` after AutoSNN's
  output neurons.

The input is direct-encoded: a static image is given, unchanged, at every step (the stem is in
the graph); event frames give frame t at step t. The graph's output at each step is the class
scores of that step; the network's prediction is their mean over the ``timesteps`` steps
(graph metadata ``readout``). Node names start with their position (``n007_...``) so that file
order, which NIR's HDF5 files keep alphabetically, is the order of computation. Parameters are
written in double precision (folding in single precision would round them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from optuna_spikenas.autosnn_space import POOL_AFTER, AutoSNNMacro
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.macros import Macro
from optuna_spikenas.snn.autosnn import AutoSNNNetwork, AutoSNNPLIF, SkipBlock, SpikingConvBlock
from optuna_spikenas.snn.cell import LIF_TAU, LIF_THRESHOLD, SNASNetLIF, SpikingCell
from optuna_spikenas.snn.network import SpikingNetwork
from optuna_spikenas.space import AVGPOOL3X3, CONV1X1, CONV3X3, NUM_NODES, SKIP

DT = 1e-4
"""Seconds per timestep written into the graph (NIR's customary step; readers take it as ``dt``)."""

NIR_INSTALL = "pip install 'optuna-spikenas[nir]'"

Shape = tuple[int, ...]


class NIRExportError(SpikeNASError):
    """A network that cannot be written as an NIR graph; the message (one line) says why."""


def import_nir() -> Any:
    """The ``nir`` package, or a one-line error naming the extra that installs it."""
    try:
        import nir
    except ImportError:
        raise NIRExportError(f"NIR export needs the nir package: {NIR_INSTALL}") from None
    return nir


@dataclass
class GraphBuilder:
    """Nodes in order of computation, their edges, output shapes, and for each neuron node the
    package module it was written from (``neurons``: node name -> module path)."""

    nir: Any
    nodes: dict[str, Any] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)
    neurons: dict[str, str] = field(default_factory=dict)

    def add(self, label: str, node: Any, inputs: Sequence[str], shape: Shape) -> str:
        """Add ``node`` fed by the sum of ``inputs``; returns its name."""
        name = f"n{len(self.nodes):03d}_{label}"
        self.nodes[name] = node
        self.shapes[name] = shape
        self.edges += [(source, name) for source in inputs]
        return name

    def feed(self, source: str, target: str) -> None:
        """One more input into an existing node (a recurrent or cycle-closing edge)."""
        self.edges.append((source, target))

    # --- layers ----------------------------------------------------------------------------

    def conv(
        self,
        label: str,
        conv_module: nn.Module,
        bn: nn.Module | None,
        inputs: Sequence[str],
        in_shape: Shape,
    ) -> str:
        """``conv_module`` (with ``bn`` folded in, when given) as one ``Conv2d`` with bias."""
        conv = _expect(conv_module, nn.Conv2d, label)
        weight = _array(conv.weight)
        bias = _array(conv.bias) if conv.bias is not None else np.zeros(weight.shape[0])
        if bn is not None:
            scale, shift = bn_affine(bn)
            weight = weight * scale[:, None, None, None]
            bias = bias * scale + shift
        if conv.groups != 1:
            raise NIRExportError(f"{label}: grouped convolutions have no NIR reader here")
        node = self.nir.Conv2d(
            input_shape=in_shape[1:],
            weight=weight,
            stride=_pair(conv.stride),
            padding=_pair(conv.padding),
            dilation=_pair(conv.dilation),
            groups=1,
            bias=bias,
        )
        with torch.no_grad():
            out = conv(torch.zeros(1, *in_shape, dtype=conv.weight.dtype))
        return self.add(label, node, inputs, tuple(out.shape[1:]))

    def pointwise(
        self,
        label: str,
        diagonal: np.ndarray,
        bias: np.ndarray,
        inputs: Sequence[str],
        shape: Shape,
    ) -> str:
        """A 1x1 ``Conv2d`` with a diagonal weight: ``diagonal * x + bias`` per channel."""
        channels = shape[0]
        weight = np.zeros((channels, channels, 1, 1))
        weight[np.arange(channels), np.arange(channels), 0, 0] = diagonal
        node = self.nir.Conv2d(
            input_shape=shape[1:],
            weight=weight,
            stride=(1, 1),
            padding=(0, 0),
            dilation=(1, 1),
            groups=1,
            bias=np.asarray(bias, dtype=np.float64),
        )
        return self.add(label, node, inputs, shape)

    def batch_norm(self, label: str, bn: nn.Module, inputs: Sequence[str], shape: Shape) -> str:
        scale, shift = bn_affine(bn)
        return self.pointwise(label, scale, shift, inputs, shape)

    def identity(self, label: str, inputs: Sequence[str], shape: Shape) -> str:
        """The sum of ``inputs`` under one name."""
        return self.pointwise(label, np.ones(shape[0]), np.zeros(shape[0]), inputs, shape)

    def zero(self, label: str, source: str) -> str:
        """Exactly 0, computed from ``source`` (a zero-weight 1x1 conv)."""
        shape = self.shapes[source]
        return self.pointwise(label, np.zeros(shape[0]), np.zeros(shape[0]), [source], shape)

    def lif(
        self,
        label: str,
        tau_steps: float,
        module_path: str,
        inputs: Sequence[str],
        shape: Shape,
        threshold: float = LIF_THRESHOLD,
    ) -> str:
        full = np.ones(shape)
        node = self.nir.LIF(
            tau=full * tau_steps * DT,
            r=full.copy(),
            v_leak=np.zeros(shape),
            v_threshold=full * threshold,
            v_reset=np.zeros(shape),
        )
        name = self.add(label, node, inputs, shape)
        self.neurons[name] = module_path
        return name

    def avg_pool(
        self,
        label: str,
        kernel: int,
        stride: int,
        padding: int,
        inputs: Sequence[str],
        in_shape: Shape,
    ) -> str:
        node = self.nir.AvgPool2d(
            kernel_size=np.array([kernel, kernel]),
            stride=np.array([stride, stride]),
            padding=np.array([padding, padding]),
        )
        return self.add(label, node, inputs, _pooled(in_shape, kernel, stride, padding))

    def max_pool_of_spikes(
        self, label: str, kernel: int, inputs: Sequence[str], in_shape: Shape
    ) -> str:
        """Max pooling of binary spikes: a sum pool, then an IF neuron firing at 0.5."""
        node = self.nir.SumPool2d(
            kernel_size=np.array([kernel, kernel]),
            stride=np.array([kernel, kernel]),
            padding=np.array([0, 0]),
        )
        shape = _pooled(in_shape, kernel, kernel, 0)
        summed = self.add(f"{label}_sum", node, inputs, shape)
        full = np.ones(shape)
        fire = self.nir.IF(r=full / DT, v_threshold=full * 0.5, v_reset=np.zeros(shape))
        return self.add(f"{label}_any", fire, [summed], shape)

    def flatten(self, label: str, source: str) -> str:
        shape = self.shapes[source]
        node = self.nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        return self.add(label, node, [source], (int(np.prod(shape)),))

    def affine(
        self, label: str, weight: np.ndarray, bias: np.ndarray | None, inputs: Sequence[str]
    ) -> str:
        if bias is None:
            node = self.nir.Linear(weight=weight)
        else:
            node = self.nir.Affine(weight=weight, bias=bias)
        return self.add(label, node, inputs, (weight.shape[0],))


def bn_affine(module: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as ``scale * x + shift`` per channel (double precision)."""
    bn = _expect(module, nn.BatchNorm2d, "batch norm")
    assert bn.running_mean is not None and bn.running_var is not None
    mean, var = _array(bn.running_mean), _array(bn.running_var)
    gamma = _array(bn.weight) if bn.weight is not None else np.ones_like(mean)
    beta = _array(bn.bias) if bn.bias is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def _array(tensor: Any) -> np.ndarray:
    assert isinstance(tensor, torch.Tensor)
    return tensor.detach().to(torch.float64).cpu().numpy().copy()


M = TypeVar("M", bound=nn.Module)


def _expect(module: nn.Module | None, kind: type[M], where: str) -> M:
    """``module`` as a ``kind``, or a one-line error: the network's layout is not the one this
    writer reads (a network class changed without its NIR writer)."""
    if not isinstance(module, kind):
        found = type(module).__name__
        raise NIRExportError(f"{where}: expected a {kind.__name__}, found a {found}")
    return module


def _pool_size(module: nn.Module, where: str) -> tuple[int, int]:
    """An ``AvgPool2d``'s kernel size and stride (square, unpadded)."""
    pool = _expect(module, nn.AvgPool2d, where)
    kernel, stride = _pair(pool.kernel_size), _pair(pool.stride)
    return kernel[0], stride[0]


def _pair(value: int | tuple[int, ...] | str) -> tuple[int, int]:
    if isinstance(value, str):
        raise NIRExportError(f"padding {value!r} has no NIR form here")
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[-1]))


def _pooled(shape: Shape, kernel: int, stride: int, padding: int) -> Shape:
    channels, height, width = shape
    size = [(n + 2 * padding - kernel) // stride + 1 for n in (height, width)]
    return (channels, size[0], size[1])


def _voting_matrix(classes: int, voters: int) -> np.ndarray:
    """The mean of each class's ``voters`` consecutive outputs, as a ``[classes, classes *
    voters]`` matrix."""
    matrix = np.zeros((classes, classes * voters))
    for c in range(classes):
        matrix[c, c * voters : (c + 1) * voters] = 1.0 / voters
    return matrix


# --- SNASNet ---------------------------------------------------------------------------------


def _write_cell(
    g: GraphBuilder, cell: SpikingCell, path: str, label: str, source: str, shape: Shape
) -> list[str]:
    """Write one cell fed by ``source``; returns the terms whose sum is its output."""
    edges = [(src, dst, code) for src, dst, code in cell.cell.edges()]
    backward = [(src, dst, code) for src, dst, code in edges if src > dst]
    targets = {dst for _, dst, _ in backward}
    # Backward ops' last nodes are named when written; their targets are fed afterwards.
    value: dict[int, str] = {}
    terms: dict[int, list[str]] = {0: [source]}
    if 0 in targets:
        value[0] = g.identity(f"{label}_node0", [source], shape)
    else:
        value[0] = source

    def op(src: int, dst: int, code: int, inputs: list[str]) -> str | None:
        name = f"{label}_op{src}{dst}"
        if code in (CONV1X1, CONV3X3):
            neuron, conv, bn = _expect(cell.ops[f"{src}{dst}"], nn.Sequential, name)
            _expect(neuron, SNASNetLIF, name)  # make_op's conv op: LIF, conv, BN
            spikes = g.lif(f"{name}_lif", LIF_TAU, f"{path}.ops.{src}{dst}.0", inputs, shape)
            return g.conv(f"{name}_conv", conv, bn, [spikes], shape)
        if code == AVGPOOL3X3:
            return g.avg_pool(f"{name}_pool", 3, 1, 1, inputs, shape)
        assert code == SKIP
        return None  # the source's value itself

    for j in range(1, NUM_NODES):
        incoming: list[str] = []
        for src, dst, code in edges:
            if dst == j and src < j:
                out = op(src, dst, code, [value[src]])
                incoming.append(value[src] if out is None else out)
        if j == NUM_NODES - 1:
            terms[j] = incoming
            break
        if not incoming and j not in targets:
            continue  # pruned: nothing reads this node
        if not incoming:  # fed only by backward edges: start from zeros, as the cell does
            incoming = [g.zero(f"{label}_zero{j}", value[0])]
        value[j] = g.identity(f"{label}_node{j}", incoming, shape)
    output_terms = terms[NUM_NODES - 1]
    if NUM_NODES - 1 in {src for src, _, _ in backward}:
        value[NUM_NODES - 1] = g.identity(f"{label}_node3", output_terms, shape)
        output_terms = [value[NUM_NODES - 1]]

    for src, dst, code in backward:
        target = value[dst]
        first_input = [value[src]]
        if not _reaches(g.edges, target, value[src]):
            first_input.append(g.zero(f"{label}_cycle{src}{dst}", target))
        out = op(src, dst, code, first_input)
        if out is None:  # a backward skip: the source's value, carried to the next step
            out = g.identity(f"{label}_op{src}{dst}_carry", first_input, shape)
        g.feed(out, target)
    return output_terms


def _reaches(edges: list[tuple[str, str]], start: str, end: str) -> bool:
    seen, frontier = {start}, [start]
    while frontier:
        node = frontier.pop()
        if node == end:
            return True
        for a, b in edges:
            if a == node and b not in seen:
                seen.add(b)
                frontier.append(b)
    return False


def _snasnet_graph(g: GraphBuilder, network: SpikingNetwork) -> str:
    macro = network.macro
    shape: Shape = (macro.in_channels, macro.image_size, macro.image_size)
    stem_conv, stem_bn = network.stem
    current = [g.conv("stem_conv", stem_conv, stem_bn, ["input"], shape)]
    shape = g.shapes[current[0]]
    modules = list(network.body)
    k, cell_index = 0, 0
    while k < len(modules):
        module = modules[k]
        if isinstance(module, SpikingCell):
            cell_index += 1
            (source,) = current
            current = _write_cell(g, module, f"body.{k}", f"cell{cell_index}", source, shape)
            k += 1
            continue
        bn, neuron, conv, conv_bn, pool = modules[k : k + 5]
        label = f"reduce{cell_index}"
        normed = g.batch_norm(f"{label}_bn", bn, current, shape)
        spikes = g.lif(f"{label}_lif", LIF_TAU, f"body.{k + 1}", [normed], shape)
        convolved = g.conv(f"{label}_conv", conv, conv_bn, [spikes], shape)
        shape = g.shapes[convolved]
        kernel, stride = _pool_size(pool, f"{label}_pool")
        current = [g.avg_pool(f"{label}_pool", kernel, stride, 0, [convolved], shape)]
        shape = g.shapes[current[0]]
        k += 5
    head = list(network.head)
    normed = g.batch_norm("head_bn", head[0], current, shape)
    spikes = g.lif("head_lif", LIF_TAU, "head.1", [normed], shape)
    if macro.head == "snasnet":
        _, _, pool, _, _, hidden, _, last = head
        kernel, stride = _pool_size(pool, "head_pool")
        pooled = g.avg_pool("head_pool", kernel, stride, 0, [spikes], shape)
        flat = g.flatten("head_flatten", pooled)  # dropout: the identity at inference
        hidden_in = g.affine("head_hidden", _array(hidden.weight), None, [flat])
        hidden_spikes = g.lif(
            "head_hidden_lif", LIF_TAU, "head.6", [hidden_in], g.shapes[hidden_in]
        )
        vote = _voting_matrix(macro.num_classes, macro.voters_per_class)
        return g.affine(
            "head_vote", vote @ _array(last.weight), vote @ _array(last.bias), [hidden_spikes]
        )
    linear = head[4]
    pooled = g.avg_pool("head_pool", shape[1], shape[1], 0, [spikes], shape)
    flat = g.flatten("head_flatten", pooled)
    return g.affine("head_linear", _array(linear.weight), _array(linear.bias), [flat])


# --- AutoSNN ---------------------------------------------------------------------------------


def _plif_tau(neuron: AutoSNNPLIF) -> float:
    """PLIF's leak as LIF's tau in steps: ``1 / sigmoid(w)``."""
    return float(1.0 / torch.sigmoid(neuron.w.detach().to(torch.float64)))


def _autosnn_graph(g: GraphBuilder, network: AutoSNNNetwork) -> str:
    macro = network.macro
    shape: Shape = (macro.in_channels, macro.image_size, macro.image_size)
    stem_conv, stem_bn = network.stem
    stem = g.conv("stem_conv", stem_conv, stem_bn, ["input"], shape)
    shape = g.shapes[stem]
    x = g.lif("stem_lif", _plif_tau(network.stem_neuron), "stem_neuron", [stem], shape)
    for i, block in enumerate(network.blocks):
        label, path = f"block{i + 1}", f"blocks.{i}"
        if isinstance(block, SkipBlock):
            if block.project is not None:
                conv, bn, neuron = block.project
                projected = g.conv(f"{label}_project", conv, bn, [x], shape)
                shape = g.shapes[projected]
                tau = _plif_tau(_expect(neuron, AutoSNNPLIF, label))
                x = g.lif(f"{label}_lif", tau, f"{path}.project.2", [projected], shape)
        else:
            assert isinstance(block, SpikingConvBlock)
            first = g.conv(f"{label}_conv1", block.conv1[0], block.conv1[1], [x], shape)
            out_shape = g.shapes[first]
            spikes = g.lif(
                f"{label}_lif1", _plif_tau(block.neuron1), f"{path}.neuron1", [first], out_shape
            )
            second = g.conv(f"{label}_conv2", block.conv2[0], block.conv2[1], [spikes], out_shape)
            summed = [second]
            if block.residual:
                if block.shortcut is None:
                    summed.append(x)
                else:
                    conv, bn = _expect(block.shortcut, nn.Sequential, label)
                    summed.append(g.conv(f"{label}_shortcut", conv, bn, [x], shape))
            shape = out_shape
            x = g.lif(f"{label}_lif2", _plif_tau(block.neuron2), f"{path}.neuron2", summed, shape)
        if i in POOL_AFTER:
            x = g.max_pool_of_spikes(f"pool{i + 1}", 2, [x], shape)
            shape = g.shapes[x]
    flat = g.flatten("head_flatten", x)
    linear = network.head[1]
    outputs = g.affine("head_linear", _array(linear.weight), None, [flat])
    spikes = g.lif(
        "head_lif", _plif_tau(network.head_neuron), "head_neuron", [outputs], g.shapes[outputs]
    )
    vote = _voting_matrix(macro.num_classes, macro.voters_per_class)
    return g.affine("head_vote", vote, np.zeros(macro.num_classes), [spikes])


# --- the graph -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrittenGraph:
    """An NIR graph and, for each of its neuron nodes, the network module it stands for."""

    graph: Any
    neurons: dict[str, str]


def network_graph(network: nn.Module, timesteps: int) -> WrittenGraph:
    """``network`` (a ``SpikingNetwork`` or ``AutoSNNNetwork``, put in eval mode) as an NIR
    graph with nodes ``input`` and ``output``."""
    nir = import_nir()
    network.eval()
    g = GraphBuilder(nir)
    macro: Macro | AutoSNNMacro
    if isinstance(network, SpikingNetwork):
        last, macro, kind = _snasnet_graph(g, network), network.macro, "SNASNet"
    elif isinstance(network, AutoSNNNetwork):
        last, macro, kind = _autosnn_graph(g, network), network.macro, "AutoSNN"
    else:
        raise NIRExportError(f"no NIR writer for a {type(network).__name__}")
    in_shape = np.array([macro.in_channels, macro.image_size, macro.image_size])
    nodes = {"input": nir.Input(input_type={"input": in_shape}), **g.nodes}
    nodes["output"] = nir.Output(output_type={"output": np.array([macro.num_classes])})
    metadata = {
        "source": f"optuna-spikenas, {kind} network",
        "dt": DT,
        "timesteps": timesteps,
        "encoding": "direct: the input (an image, or event frame t) is given at every step",
        "readout": f"the mean over {timesteps} steps of the output",
    }
    graph = nir.NIRGraph(
        nodes=nodes, edges=[*g.edges, (last, "output")], metadata=metadata, type_check=False
    )
    return WrittenGraph(graph, dict(g.neurons))


def write_nir(network: nn.Module, timesteps: int, path: Path) -> WrittenGraph:
    """Write ``network``'s NIR graph to ``path`` (``nir.write``); returns what was written."""
    nir = import_nir()
    written = network_graph(network, timesteps)
    nir.write(str(path), written.graph)
    return written
