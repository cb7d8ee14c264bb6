"""SpikeSim's ``ela_spikesim.py`` (Intelligent-Computing-Lab-Yale/SpikeSim,
SNN_train_infer_quantization_ela/) written out again for the tests, independently of
``optuna_spikenas.hardware.imc``: its constants typed in, its formulas in numpy.

What is not SpikeSim's, and why (the model's documented choices): energy uses each layer's own
kernel and area the largest one (SpikeSim has one k for the network), latency counts T once and
is the pipeline's end, every layer overlaps by 0.75 and the layer-order check is not applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

XBAR = 64
PE_PER_TILE = 8
CLK_MHZ = 250
PE_CYCLE_NS = 26 * (1000 / CLK_MHZ)
CP = 0.75  # latency_gen's checkpoint fraction

# compute_energy, device 'rram' (pJ)
E_XBAR = 1.76423
E_TILE_BUFF = 397
E_TEMP_BUFF = 0.2
E_SUB = 1.15e-6
E_ADC = 2.03084
E_HTREE = 19.64 * 8
E_MUX = 0.094245
E_MEM_FETCH = 4.64
E_NEURON = 1.274 * 4.0

# compute_area, device 'rram' (µm²)
A_XBAR = 26.2144
A_TILE_BUFF = 0.7391 * 64 * 128
A_TEMP_BUFF = 484.643999
A_SUB = 13411.41498
A_ADC = 693.633
A_HTREE = 216830 * 2
A_MUX = 45.9
NEURON_MEM_PER_VALUE = 0.7391 * 22
STORED_OUTPUT_LAYERS = 5


class Layer(NamedTuple):
    in_ch: int
    in_dim: int
    out_ch: int
    out_dim: int
    k: int


class Costs(NamedTuple):
    area_um2: float
    latency_ns: float
    energy_pj: float
    n_tiles: int
    pes: list[int]


def layers_of(rows: Iterable[Mapping[str, Any]]) -> list[Layer]:
    """The layer list from a report's layers as dicts (``as_dict()["layers"]``, describe's JSON)."""
    return [
        Layer(r["in_channels"], r["in_size"], r["out_channels"], r["out_size"], r["kernel"])
        for r in rows
    ]


def spikesim(layers: list[Layer], time_steps: int) -> Costs:
    """Area (µm²), latency (ns) and energy (pJ) of ``layers`` by ela_spikesim.py's formulas."""
    in_ch = np.array([layer.in_ch for layer in layers], dtype=np.float64)
    in_dim = np.array([layer.in_dim for layer in layers], dtype=np.float64)
    out_ch = np.array([layer.out_ch for layer in layers], dtype=np.float64)
    out_dim = np.array([layer.out_dim for layer in layers], dtype=np.float64)
    ks = np.array([layer.k for layer in layers], dtype=np.float64)

    # pe_tile_count (without its "Check layer order" refusal)
    pe_list = np.ceil(in_ch / XBAR) * np.ceil(out_ch / XBAR)
    num_pe = pe_list.sum()
    n_tiles = num_pe // PE_PER_TILE + 1 if num_pe % PE_PER_TILE != 0 else num_pe / PE_PER_TILE

    # compute_energy, with each layer's own k in PE_ar
    pe_ar_e = ks * ks * E_XBAR + (XBAR / 8) * (E_ADC + E_MUX)
    pe_cycle_energy = (
        E_HTREE
        + E_MEM_FETCH
        + E_NEURON
        + XBAR / 8 * pe_ar_e
        + (XBAR / 8) * 16 * E_SUB
        + (XBAR / 8) * E_TEMP_BUFF
        + E_TILE_BUFF
    )
    total_pe_cycle = np.ceil(out_ch / XBAR) * np.ceil(in_ch / XBAR) * (out_dim * out_dim)
    energy = np.sum(total_pe_cycle * pe_cycle_energy * time_steps)

    # compute_area, with the network's largest k
    k = ks.max()
    pe_ar = k * k * A_XBAR + (XBAR / 8) * (A_ADC + A_MUX)
    tile_ar_ov = (XBAR / 8) * A_SUB + A_TEMP_BUFF + A_TILE_BUFF + PE_PER_TILE * pe_ar + A_HTREE
    total_compute_ar_ov = tile_ar_ov * n_tiles + np.sum(in_ch * in_dim * in_dim) * 0.7391 * 22
    first = slice(0, STORED_OUTPUT_LAYERS)
    neuron_mem = np.sum(out_ch[first] * out_dim[first] * out_dim[first]) * 0.7391 * 22
    area = total_compute_ar_ov + neuron_mem

    # latency_gen, cp = 0.75 for every layer, T counted once, the pipeline's end
    checkpoints_1 = np.array(
        [int(CP * d * d * c) * time_steps for d, c in zip(out_dim, out_ch, strict=True)]
    )
    temp = np.cumsum(checkpoints_1)
    starts = np.insert(1 + temp, 0, 1)[:-1]
    checkpoints_2 = np.array(
        [int(d * d * c) * time_steps for d, c in zip(out_dim, out_ch, strict=True)]
    )
    halts = checkpoints_2 + np.insert(temp[:-1], 0, 0)
    latency = (halts.max() - starts[0]) * PE_CYCLE_NS

    pes = pe_list.astype(int).tolist()
    return Costs(float(area), float(latency), float(energy), int(n_tiles), pes)
