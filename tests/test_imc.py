"""The analytic RRAM in-memory-computing cost model (hardware/imc.py), checked by hand, against
SpikeSim's ela_spikesim.py formulas written out independently (spikesim_reference.py), and
against SpikingJelly's runtime SpikeSim estimator."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from spikesim_reference import layers_of, spikesim
from spikingjelly.activation_based.op_counter.spikesim import SpikeSimEnergyConfig

from optuna_spikenas.hardware import imc
from optuna_spikenas.hardware.imc import (
    PROFILES,
    Extensions,
    HardwareProfileError,
    imc_report,
    load_profile,
)
from optuna_spikenas.hardware.spikesim_runtime import spikesim_energy_uj
from optuna_spikenas.macros import MACROS, get_macro
from optuna_spikenas.snn.network import build_network
from optuna_spikenas.space import Architecture

SMALL = MACROS["light"].for_data(1, 8, 10)  # 1x8x8 images: cells at 8x8 and 4x4
SHIPPED = Path(imc.__file__).parent / "profiles"
E_PE3 = 828.4861472  # SpikeSim's PE-cycle energy of a 3x3 conv, pJ (by hand below)
A_PE3 = 9 * 26.2144 + 8 * (693.633 + 45.9)  # SpikeSim's PE area at k = 3, µm²
A_TILE3 = 8 * 13411.41498 + 484.643999 + 0.7391 * 64 * 128 + 8 * A_PE3 + 216830 * 2
PER_VALUE = 22 * 0.7391  # neuron memory per stored value, µm²


def arch(text: str, num_cells: int = 2, width: int = 40) -> Architecture:
    return Architecture.parse(text, num_cells, width)


def names(report) -> list[str]:
    return [layer.name for layer in report.layers]


def layer(report, name: str):
    return next(layer for layer in report.layers if layer.name == name)


# --- profiles --------------------------------------------------------------------------------


def test_spikesim_profile_has_spikesims_exact_constants_and_no_extensions():
    p = load_profile("spikesim-64")
    sj = SpikeSimEnergyConfig()
    assert (p.name, p.crossbar_size, p.pes_per_tile, p.columns_per_adc) == ("spikesim-64", 64, 8, 8)
    assert (p.pe_cycle_ns, p.pipeline_overlap) == (104.0, 0.75)
    assert (p.neuron_value_bits, p.stored_output_layers) == (22, 5)
    e = p.energy
    assert (e.tile_buffer, e.temp_buffer, e.subtractor) == (sj.tile_buffer_pj, 0.2, sj.sub_pj)
    assert (e.adc, e.mux, e.htree) == (sj.adc_pj, sj.mux_pj, sj.htree_pj)
    assert (e.memory_fetch, e.neuron, e.xbar_per_kernel_position) == (
        sj.mem_fetch_pj,
        sj.neuron_pj,
        sj.rram_xbar_pj,
    )
    a = p.area  # ela_spikesim.py's compute_area, digit for digit
    assert (a.xbar_per_kernel_position, a.adc, a.mux) == (26.2144, 693.633, 45.9)
    assert (a.subtractor, a.temp_buffer, a.tile_buffer) == (13411.41498, 484.643999, 0.7391 * 8192)
    assert (a.htree, a.neuron_memory_per_bit) == (216830 * 2, 0.7391)
    assert p.extensions == Extensions() == Extensions(bits_per_cell=None, stem_once=False)
    assert p.bit_slices(8) == p.bit_slices(32) == 1
    assert p.tile_area_um2(3) == pytest.approx(A_TILE3, rel=1e-15)


def test_sliced_profile_is_spikesim_64_plus_both_extensions():
    sliced = load_profile("spikesim-64-sliced")
    assert sliced.extensions == Extensions(bits_per_cell=4, stem_once=True)
    assert (sliced.bit_slices(8), sliced.bit_slices(4), sliced.bit_slices(9)) == (2, 1, 3)
    plain = replace(sliced, name="spikesim-64", extensions=Extensions())
    assert plain == load_profile("spikesim-64")


def test_neurosim_profile_bit_slices_over_2_bit_cells_and_runs_the_stem_t_steps():
    n = load_profile("neurosim-128")
    assert (n.crossbar_size, n.energy.adc, n.area.adc) == (128, 0.99, 477.0)
    assert n.extensions == Extensions(bits_per_cell=2, stem_once=False)
    assert n.bit_slices(8) == 4


@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("kernel", [1, 3])
def test_pe_cycle_energy_is_spikingjellys_exactly(name, kernel):
    p = load_profile(name)
    sj = SpikeSimEnergyConfig(xbar_size=p.crossbar_size, adc_pj=p.energy.adc)
    assert p.pe_cycle_energy_pj(kernel) == sj.pe_cycle_energy_for_kernel_pj((kernel, kernel))


def test_pe_cycle_energy_by_hand():
    # htree + fetch + tile buffer + 8*16*sub + 8*temp + 64*(adc + mux) + neuron + 8*9*rram
    by_hand = 157.12 + 4.64 + 397 + 128 * 1.15e-6 + 1.6 + 64 * 2.125085 + 5.096 + 72 * 1.76423
    assert load_profile("spikesim-64").pe_cycle_energy_pj(3) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(E_PE3)


def test_unknown_profile_name_lists_the_known_ones():
    with pytest.raises(HardwareProfileError, match="unknown hardware profile 'isaac'.*spikesim-64"):
        load_profile("isaac")


def test_missing_file(tmp_path):
    with pytest.raises(HardwareProfileError, match="nope.toml: cannot read"):
        load_profile(str(tmp_path / "nope.toml"))


def test_user_copy_loads_with_its_edits(tmp_path):
    text = (SHIPPED / "spikesim-64.toml").read_text()
    text = text.replace('name = "spikesim-64"', 'name = "my-chip"')
    text = text.replace("clock_mhz = 250.0", "clock_mhz = 500")
    text += "[extensions]\nstem_once = true\n"
    path = tmp_path / "chip.toml"
    path.write_text(text)
    p = load_profile(str(path))
    plain = replace(p, name="spikesim-64", clock_mhz=250.0, extensions=Extensions())
    assert plain == load_profile("spikesim-64")
    assert (p.name, p.clock_mhz, p.pe_cycle_ns) == ("my-chip", 500.0, 52.0)
    assert p.extensions == Extensions(bits_per_cell=None, stem_once=True)


EXTENSIONS = "neuron_memory_per_bit = 0.7391\n[extensions]\n"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("pes_per_tile = 8", "pes_per_tile = 8\nspeed = 3", "unknown key 'speed'; known: name"),
        ("adc = 2.03084", "adcs = 2.03084", r"unknown key 'adcs' in \[energy_pj\]"),
        ("mux = 45.9", "", r"missing key 'mux' in \[area_um2\]"),
        ("temp_buffer = 484.643999", "", r"missing key 'temp_buffer' in \[area_um2\]"),
        ("neuron_value_bits = 22", "", "missing key 'neuron_value_bits'"),
        ("crossbar_size = 64", "crossbar_size = 0", "crossbar_size must be positive, got 0"),
        ("crossbar_size = 64", "crossbar_size = 64.0", "crossbar_size must be an integer"),
        ("crossbar_size = 64", 'crossbar_size = "64"', "crossbar_size must be an integer"),
        ("stored_output_layers = 5", "stored_output_layers = 5.0", "must be an integer"),
        ("adc = 2.03084", "adc = -2.0", "energy_pj.adc must be positive"),
        ("htree = 433660.0", "htree = true", "area_um2.htree must be a number"),
        ("pipeline_overlap = 0.75", "pipeline_overlap = 1.5", "pipeline_overlap .* at most 1"),
        ("columns_per_adc = 8", "columns_per_adc = 7", "columns_per_adc .7. must divide"),
        ("clock_mhz = 250.0", "clock_mhz = 250.0 MHz", "invalid TOML"),
        ("pes_per_tile = 8", "pes_per_tile = 8\nextensions = 3", "extensions must be a table"),
        ("neuron_memory_per_bit = 0.7391", EXTENSIONS + "slices = 2",
         r"unknown key 'slices' in \[extensions\]; known: bits_per_cell, stem_once"),
        ("neuron_memory_per_bit = 0.7391", EXTENSIONS + "bits_per_cell = 4.5",
         "extensions.bits_per_cell must be an integer"),
        ("neuron_memory_per_bit = 0.7391", EXTENSIONS + "bits_per_cell = 0",
         "extensions.bits_per_cell must be positive"),
        ("neuron_memory_per_bit = 0.7391", EXTENSIONS + "stem_once = 1",
         "extensions.stem_once must be true or false, got 1"),
    ],
)
def test_bad_user_profiles_are_named_by_file_and_key(tmp_path, old, new, message):
    text = (SHIPPED / "spikesim-64.toml").read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(HardwareProfileError, match=message) as err:
        load_profile(str(path))
    assert str(err.value).startswith(f"hardware profile {path}: ")
    assert "\n" not in str(err.value)


# --- the mapping and the formulas, by hand -----------------------------------------------------


def test_one_conv_layer_by_hand():
    # One cell whose only edge is conv3x3 0 -> 3: stem, that conv, the gap head's linear.
    report = imc_report(arch("0003 0000 0000 0000", 1), SMALL, load_profile("spikesim-64"), 8, 3)
    assert names(report) == ["stem", "cell1.edge03.conv3x3", "head.fc"]
    stem, conv, fc = report.layers
    shapes = [(x.in_channels, x.in_size, x.out_channels, x.out_size, x.kernel, x.steps)
              for x in report.layers]
    # Every layer runs T = 3 steps, the stem included; the linear is a 1x1 conv on a 1x1 input.
    assert shapes == [(1, 8, 40, 8, 3, 3), (40, 8, 40, 8, 3, 3), (40, 1, 10, 1, 1, 3)]
    # One column per weight: 40 rows and 40 columns fit one 64x64 crossbar; the 3 PEs share a tile.
    assert [x.pes for x in report.layers] == [1, 1, 1] and report.tiles == 1
    assert conv.energy_pj == pytest.approx(1 * 8 * 8 * 3 * E_PE3, rel=1e-12)
    # Area: one whole tile (all 8 PE slots at k = 3) + neuron memory of every layer's inputs and
    # (the first five layers) outputs, 22 bits each.
    assert report.tile_area_um2 == pytest.approx(A_TILE3, rel=1e-12)
    assert conv.pe_area_um2 == pytest.approx(A_PE3, rel=1e-12)
    assert fc.pe_area_um2 == conv.pe_area_um2  # priced at the network's largest kernel
    assert conv.memory_area_um2 == pytest.approx((40 * 64 + 40 * 64) * PER_VALUE, rel=1e-12)
    values = (1 * 64 + 40 * 64) + (40 * 64 + 40 * 64) + (40 + 10)
    assert report.area_mm2 == pytest.approx((A_TILE3 + values * PER_VALUE) / 1e6, rel=1e-12)
    # Time: 64 pixels x 40 output channels x 3 steps crossbar reads, less SpikeSim's one.
    assert conv.time_ns == pytest.approx((64 * 40 * 3 - 1) * 104.0)
    assert conv.start_ns == pytest.approx(int(0.75 * 64 * 40) * 3 * 104.0)
    assert stem.start_ns == 0.0


def test_pes_and_tiles_count_row_and_column_blocks_and_tiles_are_shared():
    a = arch("0003 0000 0000 0000", 1, 130)
    report = imc_report(a, SMALL, load_profile("spikesim-64"))
    pes = [x.pes for x in report.layers]
    assert pes == [1 * 3, 3 * 3, 3 * 1]  # ceil(Cin / 64) row blocks x ceil(Cout / 64) columns
    assert report.tiles == math.ceil(sum(pes) / 8) == 2  # 15 PEs in 2 shared tiles, not 1 + 2 + 1
    sliced = imc_report(a, SMALL, load_profile("spikesim-64-sliced"))
    assert layer(sliced, "cell1.edge03.conv3x3").pes == 3 * 5  # 8-bit weights: 260 columns
    wide = imc_report(a, SMALL, load_profile("neurosim-128"))
    assert layer(wide, "cell1.edge03.conv3x3").pes == 2 * 5  # 128-wide, 4 columns per weight


@pytest.mark.parametrize(
    "cell",
    [
        "0001 0000 0000 0000",  # skip only
        "0004 0000 0000 0000",  # average pool only
        "0131 0000 0000 0000",  # convs into nodes 1 and 2 are dead: neither reaches the output
    ],
)
def test_cells_without_live_convs_add_no_layers(cell):
    report = imc_report(arch(cell), SMALL, load_profile("spikesim-64"))
    assert names(report) == ["stem", "reduction1", "head.fc"]
    reduction = layer(report, "reduction1")
    assert (reduction.in_channels, reduction.in_size, reduction.out_channels) == (40, 8, 80)
    assert reduction.out_size == 8  # it runs before its pool


def test_snasnet_head_is_two_linears():
    macro = replace(MACROS["light"], head="snasnet", hidden=100, voters_per_class=3)
    macro = macro.for_data(1, 16, 10)  # cells at 16 and 8, pooled to 4x4
    for name, fc1_pes in (("spikesim-64", 8 * 2), ("spikesim-64-sliced", 8 * 4)):
        report = imc_report(arch("0001 0000 0000 0000", 2, 16), macro, load_profile(name))
        fc1, fc2 = layer(report, "head.fc1"), layer(report, "head.fc2")
        assert (fc1.in_channels, fc1.out_channels, fc2.in_channels, fc2.out_channels) == (
            32 * 4 * 4,
            100,
            100,
            30,
        )
        assert all((f.in_size, f.kernel, f.out_size, f.steps) == (1, 1, 1, 5) for f in (fc1, fc2))
        assert (fc1.pes, fc2.pes) == (fc1_pes, 2 * 1)
        assert names(report)[-2:] == ["head.fc1", "head.fc2"]


def test_pipelined_latency_of_a_three_layer_chain():
    report = imc_report(arch("0003 0000 0000 0000", 1), SMALL, load_profile("spikesim-64"), 8, 4)
    reads = [64 * 40 * 4, 64 * 40 * 4, 1 * 10 * 4]  # out pixels x out channels x T
    done = [int(0.75 * 64 * 40) * 4, int(0.75 * 64 * 40) * 4, int(0.75 * 10) * 4]
    starts = [1, 1 + done[0], 1 + done[0] + done[1]]
    halts = [reads[0], done[0] + reads[1], done[0] + done[1] + reads[2]]
    assert [x.start_ns for x in report.layers] == pytest.approx([(s - 1) * 104.0 for s in starts])
    assert [x.time_ns for x in report.layers] == pytest.approx(
        [(h - s) * 104.0 for h, s in zip(halts, starts, strict=True)]
    )
    # The conv ends last (cycle 17,920): the head starts at 75 % of it and is short.
    assert report.latency_ms == pytest.approx((max(halts) - 1) * 104.0 / 1e6)
    assert report.latency_ms == pytest.approx(17919 * 104.0 / 1e6)


def test_totals_and_json():
    report = imc_report(arch("0302 0030 3003 0000"), SMALL, load_profile("neurosim-128"))
    data = json.loads(json.dumps(report.as_dict()))
    assert data["profile"] == "neurosim-128" and (data["weight_bits"], data["timesteps"]) == (8, 5)
    assert data["tiles"] == report.tiles == math.ceil(sum(x.pes for x in report.layers) / 8)
    memory = sum(x["memory_area_um2"] for x in data["layers"])
    assert data["area_mm2"] == pytest.approx((data["tile_area_um2"] + memory) / 1e6)
    assert data["tile_area_um2"] >= sum(x["pe_area_um2"] for x in data["layers"])
    assert data["energy_uj"] == pytest.approx(sum(x.energy_pj for x in report.layers) / 1e6)
    ends = [x["start_ns"] + x["time_ns"] for x in data["layers"]]
    assert data["latency_ms"] == pytest.approx(max(ends) / 1e6)
    assert len(data["layers"]) == len(report.layers) == 1 + 5 + 1 + 5 + 1
    assert data["layers"][2]["name"] == "cell1.edge03.conv1x1"
    assert list(data["layers"][0]) == [
        "name", "in_channels", "in_size", "out_channels", "kernel", "out_size", "steps", "pes",
        "pe_area_um2", "memory_area_um2", "energy_pj", "time_ns", "start_ns",
    ]  # fmt: skip


def test_bad_arguments():
    a, p = arch("0003 0000 0000 0000"), load_profile("spikesim-64")
    with pytest.raises(ValueError, match="weight_bits"):
        imc_report(a, SMALL, p, weight_bits=0)
    with pytest.raises(ValueError, match="timesteps"):
        imc_report(a, SMALL, p, timesteps=0)
    with pytest.raises(ValueError, match="too small"):
        imc_report(arch("0003 0000 0000 0000", 5), SMALL, p)


# --- against SpikeSim's formulas, written out independently ----------------------------------

NETWORKS = {
    # SNASNet's CIFAR-10 network with its released cell, and its CIFAR-100 one.
    "snasnet-cifar10": ("snasnet-cifar10", "0303 0030 2002 0200", 256),
    "snasnet-cifar100": ("snasnet-cifar100", "0302 0030 3003 0000", 128),
    "light": ("light", "0334 0023 0000 0000", 16),
    "light-wide": ("light", "0334 0023 0000 0000", 200),
}


@pytest.mark.parametrize("network", list(NETWORKS))
def test_spikesim_64_reproduces_ela_spikesim(network):
    macro, cell, width = NETWORKS[network]
    report = imc_report(arch(cell, 2, width), get_macro(macro), load_profile("spikesim-64"), 8, 5)
    reference = spikesim(layers_of(report.as_dict()["layers"]), time_steps=5)
    assert [x.pes for x in report.layers] == reference.pes
    assert report.tiles == reference.n_tiles
    assert report.area_mm2 == pytest.approx(reference.area_um2 / 1e6, rel=1e-9)
    assert report.latency_ms == pytest.approx(reference.latency_ns / 1e6, rel=1e-9)
    assert report.energy_uj == pytest.approx(reference.energy_pj / 1e6, rel=1e-9)
    assert all(x.steps == 5 for x in report.layers)


def test_snasnet_cifar10_mapping():
    c10 = get_macro("snasnet-cifar10")
    report = imc_report(arch("0303 0030 2002 0200", 2, 256), c10, load_profile("spikesim-64"))
    edges = ["01.conv3x3", "03.conv3x3", "12.conv3x3", "20.conv1x1", "23.conv1x1", "31.conv1x1"]
    cell1, cell2 = ([f"cell{k}.edge{e}" for e in edges] for k in (1, 2))
    assert names(report) == ["stem", *cell1, "reduction1", *cell2, "head.fc1", "head.fc2"]
    stem, fc1 = report.layers[0], layer(report, "head.fc1")
    assert (stem.in_channels, stem.in_size, stem.out_channels, stem.out_size) == (3, 32, 256, 32)
    assert (fc1.in_channels, fc1.in_size, fc1.out_channels) == (512 * 8 * 8, 1, 1024)


def test_a_network_whose_pe_counts_decrease_is_still_priced():
    # SpikeSim refuses it ("Check layer order"): the head's linear takes fewer PEs than the convs.
    report = imc_report(arch("0003 0000 0000 0000", 1, 128), SMALL, load_profile("spikesim-64"))
    pes = [x.pes for x in report.layers]
    assert pes == [2, 4, 2] and pes != sorted(pes)
    reference = spikesim(layers_of(report.as_dict()["layers"]), time_steps=5)
    assert report.area_mm2 == pytest.approx(reference.area_um2 / 1e6, rel=1e-9)
    assert report.latency_ms == pytest.approx(reference.latency_ns / 1e6, rel=1e-9)
    assert report.energy_uj == pytest.approx(reference.energy_pj / 1e6, rel=1e-9)


def test_latency_about_doubles_with_the_width():
    light, p = get_macro("light"), load_profile("spikesim-64")
    narrow, wide = (imc_report(arch("0334 0023 0000 0000", 2, w), light, p) for w in (16, 32))
    assert wide.latency_ms >= 1.8 * narrow.latency_ms


# --- the extensions change exactly what they say ---------------------------------------------


def test_extensions_slice_weights_and_run_the_stem_once():
    a, light = arch("0334 0023 0000 0000", 2, 64), get_macro("light")
    plain = imc_report(a, light, load_profile("spikesim-64"), 8, 5)
    sliced = imc_report(a, light, load_profile("spikesim-64-sliced"), 8, 5)
    assert names(plain) == names(sliced)
    for p, s in zip(plain.layers, sliced.layers, strict=True):
        assert s.pes == math.ceil(p.in_channels / 64) * math.ceil(2 * p.out_channels / 64)
        if not p.name.startswith("head."):  # 64 and 128 channels: 8-bit weights, 2x columns
            assert s.pes == 2 * p.pes
        assert s.steps == (1 if p.name == "stem" else 5) and p.steps == 5
        ratio = s.pes / p.pes / (5 if p.name == "stem" else 1)
        assert s.energy_pj == pytest.approx(p.energy_pj * ratio, rel=1e-12)
        assert s.memory_area_um2 == p.memory_area_um2
        assert s.pe_area_um2 == p.pe_area_um2 * s.pes / p.pes
    # Latency: only the stem's reads shrink (slices are read in parallel), 5 steps to 1.
    stem_p, stem_s = plain.layers[0], sliced.layers[0]
    assert stem_s.time_ns == pytest.approx((stem_p.time_ns / 104.0 + 1) / 5 * 104.0 - 104.0)
    pairs = zip(plain.layers[1:], sliced.layers[1:], strict=True)
    assert all(p.time_ns == s.time_ns for p, s in pairs)
    assert sliced.latency_ms < plain.latency_ms
    assert sliced.tiles == math.ceil(sum(x.pes for x in sliced.layers) / 8)
    # With 4-bit weights there is one slice: the same PEs as spikesim-64.
    four = imc_report(a, light, load_profile("spikesim-64-sliced"), 4, 5)
    assert [x.pes for x in four.layers] == [x.pes for x in plain.layers]


# --- how cost moves --------------------------------------------------------------------------


def costs(report) -> tuple[float, float, float]:
    return report.area_mm2, report.energy_uj, report.latency_ms


@pytest.mark.parametrize("name", PROFILES)
def test_more_conv_ops_cost_more(name):
    p = load_profile(name)
    skip, one, two = (
        costs(imc_report(arch(c), SMALL, p))
        for c in ("0001 0000 0000 0000", "0003 0000 0000 0000", "0303 0001 0000 0000")
    )
    assert all(a < b < c for a, b, c in zip(skip, one, two, strict=True))


@pytest.mark.parametrize("name", PROFILES)
def test_wider_costs_more(name):
    p = load_profile(name)
    a16, a40, a200 = (
        imc_report(arch("0303 0001 0000 0000", 2, w), SMALL, p) for w in (16, 40, 200)
    )
    assert a16.area_mm2 < a40.area_mm2 < a200.area_mm2  # neuron memory grows with the width
    assert a16.energy_uj <= a40.energy_uj < a200.energy_uj  # 16 and 40 channels: same PEs
    # Every output channel is one more crossbar read: time grows with the width.
    assert a16.latency_ms < a40.latency_ms < a200.latency_ms


@pytest.mark.parametrize("name", PROFILES)
def test_weight_bits_cost_only_with_bit_slicing(name):
    p = load_profile(name)
    reports = [imc_report(arch("0303 0001 0000 0000"), SMALL, p, bits) for bits in (16, 8, 4)]
    if name == "spikesim-64":  # one column per weight, whatever its bits
        assert len({costs(r) for r in reports}) == 1
    elif name == "spikesim-64-sliced":  # 4-bit cells: slices 4, 2, 1; 40 channels: 160, 80, 40
        assert reports[0].area_mm2 > reports[1].area_mm2 > reports[2].area_mm2
        assert reports[0].energy_uj > reports[1].energy_uj > reports[2].energy_uj
    else:  # 2-bit cells: slices 8, 4, 2 over 128 columns; only the widest layers need more
        assert reports[0].area_mm2 >= reports[1].area_mm2 >= reports[2].area_mm2
        assert reports[0].energy_uj > reports[1].energy_uj >= reports[2].energy_uj
    assert len({r.latency_ms for r in reports}) == 1


# --- against SpikingJelly's runtime SpikeSim estimator ---------------------------------------


@pytest.mark.parametrize("name", PROFILES)
def test_conv_energy_matches_spikingjelly_dense_and_event_is_lower(name, one_thread):
    p = load_profile(name)
    a = arch("0303 0031 0003 0000")  # 40 and 80 channels
    network = build_network(a, SMALL, timesteps=3, seed=0)
    images = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    dense = spikesim_energy_uj(network, images, p, activity="dense")
    # SpikingJelly stores one column per weight and charges the convs as the network runs them,
    # the direct-encoded stem once: compare with one bit slice, convs only, the stem's one step.
    one_slice = imc_report(a, SMALL, p, weight_bits=p.extensions.bits_per_cell or 8, timesteps=3)
    convs = [x for x in one_slice.layers if not x.name.startswith("head.")]
    assert len(convs) == 1 + 4 + 1 + 4
    expected = sum(x.energy_pj / x.steps if x.name == "stem" else x.energy_pj for x in convs)
    assert dense == pytest.approx(expected / 1e6, rel=1e-12)

    event = spikesim_energy_uj(network, images, p)  # default: event-driven
    assert 0 < event <= dense
    assert dense < imc_report(a, SMALL, p, weight_bits=8, timesteps=3).energy_uj
    assert network.training  # mode restored, and no state left behind: the estimate repeats
    assert spikesim_energy_uj(network, images, p, activity="dense") == dense


def test_spikesim_energy_is_per_image(one_thread):
    p = load_profile("spikesim-64")
    network = build_network(arch("0003 0000 0000 0000", 1, 8), SMALL, timesteps=2, seed=0)
    images = torch.rand(3, 1, 8, 8)
    one = spikesim_energy_uj(network, images[:1], p, activity="dense")
    assert spikesim_energy_uj(network, images, p, activity="dense") == pytest.approx(one)
    with pytest.raises(ValueError, match="activity"):
        spikesim_energy_uj(network, images, p, activity="sparse")
