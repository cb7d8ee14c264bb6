"""Analytic RRAM in-memory-computing (IMC) cost model: area, latency and energy of an architecture.

NeuroNAS constrains area, latency and energy on RRAM crossbar hardware. This module prices an
``Architecture`` in a ``Macro`` from shapes alone (no network is built: it runs for every trial)
with the formulas of SpikeSim's ``ela_spikesim.py`` (Moitra et al., TCAD 2023). Numbers live in
a ``HardwareProfile`` loaded from a TOML file (``profiles/spikesim-64.toml``, which reproduces
SpikeSim, ``spikesim-64-sliced.toml``, ``neurosim-128.toml``, or a user's copy).

Mapping conventions
-------------------
Crossbar-mapped layers, in network order (the layout of ``snn/network.py``)::

    stem                      conv3x3(in -> C)          image size in, / stem_stride out
    cell{k}.edge{ij}.{op}     conv1x1 / conv3x3 edges   edges of the PRUNED cell
    reduction{k}              conv3x3(C_k -> 2 C_k)     before its 2x2 average pool
    head.fc1, head.fc2        "snasnet" head linears    a linear is a 1x1 conv with a 1x1 input
    head.fc                   "gap" head linear           (all features as channels) and output

Skips, average pools, batch norm (folded into neuron thresholds) and voting use no crossbar and
are not costed. Every layer runs all T steps (SpikeSim's rule), the stem included. The layers
form one chain in network order, even parallel edges of a cell (SpikeSim prices a chain), and
each edge's input is stored on its own, even where two edges read the same node.

The model, rule by rule
-----------------------
X = crossbar size, G = X / columns_per_adc ADC groups per crossbar (X / 8 in SpikeSim); per
layer: k its kernel, Cin x Hin x Hin its input, Cout x H x H its output, s its steps.

* **PEs** = ceil(Cin / X) * ceil(Cout * slices / X): one PE is one X x X crossbar holding all k*k
  kernel positions; slices = 1 in SpikeSim (one column per weight, ``weight_bits`` unused).
  All PEs of the network share **tiles** = ceil(sum PEs / pes_per_tile), as in SpikeSim.
* **energy** = PEs * H^2 * s * E_pe(k): ``HardwareProfile.pe_cycle_energy_pj``, SpikeSim's
  PE-cycle energy term for term. SpikeSim takes one k for the whole network (3 for its VGG); we
  use each layer's own k, so a 1x1 conv or a linear pays 1 kernel position, not 9.
* **area** = tiles * A_tile(k_max) + neuron memory, both SpikeSim's: A_pe(k) = k^2 * xbar +
  G * (adc + mux); A_tile(k) = G * subtractor + temp_buffer + tile_buffer + pes_per_tile *
  A_pe(k) + htree (every tile pays all its PE slots, used or not). Tiles are homogeneous, so every
  slot is priced at the network's largest kernel k_max (3: the stem is a 3x3 conv), which is
  SpikeSim's formula with k = 3. Neuron memory = neuron_value_bits * neuron_memory_per_bit per
  stored value (22 bits in SpikeSim): every layer's inputs (Cin * Hin^2) plus the outputs
  (Cout * H^2) of the first ``stored_output_layers`` (5) layers in network order. Per layer we
  report its PEs' share (PEs * A_pe(k_max)) and its neuron memory; the rest of the tile area
  (buffers, subtractors, H-trees, empty PE slots) is only a network total.
* **latency** is SpikeSim's ``latency_gen`` pipeline, in PE cycles (of clocks_per_pe_cycle clocks):
  layer i reads n_i = H^2 * Cout * s times (one column group per output channel); it starts at
  start_i = 1 + sum_{j<i} c_j and halts at halt_i = sum_{j<i} c_j + n_i, where c_j =
  int(pipeline_overlap * H_j^2 * Cout_j) * s_j (0.75: the next layer starts when 75 % is done).
  Its time is halt_i - start_i = n_i - 1 cycles; the network's latency is max_i halt_i - start_0.

Where we differ from ``ela_spikesim.py`` on purpose
---------------------------------------------------
* Energy uses each layer's own kernel; area prices every PE slot at k_max (above).
* T is counted once: SpikeSim's printed layer latency multiplies by ``time_steps`` a second time,
  though its checkpoints already hold T. It prints only per-layer latencies; ours is the
  pipeline's end.
* Every layer overlaps by ``pipeline_overlap``; SpikeSim's list of 12 values (all 0.75) fails on
  a 13th layer.
* SpikeSim refuses networks whose per-layer PE counts are not non-decreasing ("Check layer
  order"); a head's linears usually have fewer than the convs before them: we price them all.
* Numbers SpikeSim hard-codes are profile keys, equal to its values in ``spikesim-64``:
  columns_per_adc (8), pipeline_overlap (0.75), neuron_value_bits (22), stored_output_layers (5).
* Two extensions, off unless a profile's ``[extensions]`` table turns them on
  (``spikesim-64-sliced`` has both): ``bits_per_cell`` bit-slices each weight over
  ceil(weight_bits / bits_per_cell) columns (multi-bit weights on few-bit RRAM cells; latency is
  unchanged, slices are read in parallel), and ``stem_once`` charges the direct-encoded stem one
  step (the network computes it once and feeds the same output at every step).

Totals are per inference (one image, all T steps): ``area_mm2``, ``latency_ms``, ``energy_uj``.
``spikesim_runtime.spikesim_energy_uj`` runs SpikingJelly's runtime SpikeSim estimator on a built
network instead.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.limits import brief
from optuna_spikenas.macros import Macro
from optuna_spikenas.paths import MAX_TEXT_FILE_BYTES, read_capped
from optuna_spikenas.space import CONV1X1, CONV3X3, OPS, Architecture

PROFILES: tuple[str, ...] = tuple(
    sorted(
        entry.name.removesuffix(".toml")
        for entry in (resources.files("optuna_spikenas.hardware") / "profiles").iterdir()
        if entry.name.endswith(".toml")
    )
)
"""The shipped profiles: every ``.toml`` file in ``optuna_spikenas/hardware/profiles/`` (the
registry of profiles is that folder; a new profile is a new file there)."""

# SpikeSim quotes the crossbar read energy per 8 rows: a read of X rows costs X / 8 of them.
ROWS_PER_READ_UNIT = 8
KERNEL = {CONV1X1: 1, CONV3X3: 3}


class HardwareProfileError(SpikeNASError):
    """A hardware profile that cannot be loaded; the message names the file and the key."""


@dataclass(frozen=True)
class EnergyPj:
    """Energy of each component per PE cycle, in pJ (the ``[energy_pj]`` table)."""

    xbar_per_kernel_position: float
    adc: float
    mux: float
    tile_buffer: float
    htree: float
    memory_fetch: float
    neuron: float
    temp_buffer: float
    subtractor: float


@dataclass(frozen=True)
class AreaUm2:
    """Area of each component, in square micrometres (the ``[area_um2]`` table)."""

    adc: float
    mux: float
    xbar_per_kernel_position: float
    subtractor: float
    temp_buffer: float
    tile_buffer: float
    htree: float
    neuron_memory_per_bit: float


@dataclass(frozen=True)
class Extensions:
    """Our departures from SpikeSim (the optional ``[extensions]`` table); defaults = SpikeSim."""

    bits_per_cell: int | None = None  # bit slicing: weight bits per RRAM cell; None: 1 column
    stem_once: bool = False  # the direct-encoded stem runs 1 step, not T


@dataclass(frozen=True)
class HardwareProfile:
    """An IMC chip's numbers; see the shipped TOML files for units and sources."""

    name: str
    crossbar_size: int
    pes_per_tile: int
    clock_mhz: float
    clocks_per_pe_cycle: int
    columns_per_adc: int
    pipeline_overlap: float
    neuron_value_bits: int
    stored_output_layers: int
    energy: EnergyPj
    area: AreaUm2
    extensions: Extensions = Extensions()

    @property
    def pe_cycle_ns(self) -> float:
        return self.clocks_per_pe_cycle * 1000.0 / self.clock_mhz

    @property
    def adc_groups(self) -> int:
        """ADCs per crossbar: each serves ``columns_per_adc`` columns."""
        return self.crossbar_size // self.columns_per_adc

    def bit_slices(self, weight_bits: int) -> int:
        """Columns one weight takes: 1 (SpikeSim) unless ``extensions.bits_per_cell`` is set."""
        bits = self.extensions.bits_per_cell
        return 1 if bits is None else math.ceil(weight_bits / bits)

    def pe_cycle_energy_pj(self, kernel: int) -> float:
        """SpikeSim's energy of one PE cycle of a k x k conv. With ``columns_per_adc = 8`` this is
        ``SpikeSimEnergyConfig.pe_cycle_energy_for_kernel_pj`` term for term, in its order (so
        the floats agree exactly). SpikeSim charges (X / 8)^2 ADC conversions per PE cycle: 64 at
        X = 64, but 256 at X = 128 (it grows as X^2, not X); we keep its convention."""
        e, x, groups = self.energy, float(self.crossbar_size), float(self.adc_groups)
        patch_control = (
            e.htree
            + e.memory_fetch
            + e.tile_buffer
            + groups * 16.0 * e.subtractor
            + groups * e.temp_buffer
            + groups * groups * (e.adc + e.mux)
        )
        reads = x / ROWS_PER_READ_UNIT
        return patch_control + e.neuron + reads * kernel * kernel * e.xbar_per_kernel_position

    def pe_area_um2(self, kernel: int) -> float:
        """SpikeSim's PE area: k*k crossbar kernel positions and G ADCs with their MUXes."""
        a = self.area
        return kernel * kernel * a.xbar_per_kernel_position + self.adc_groups * (a.adc + a.mux)

    def tile_area_um2(self, kernel: int) -> float:
        """SpikeSim's tile area: subtractors, temp and tile buffers, all PE slots, H-tree."""
        a = self.area
        return (
            self.adc_groups * a.subtractor
            + a.temp_buffer
            + a.tile_buffer
            + self.pes_per_tile * self.pe_area_um2(kernel)
            + a.htree
        )


# --- loading profiles -----------------------------------------------------------------------

_TABLES: dict[str, type] = {"energy_pj": EnergyPj, "area_um2": AreaUm2}
# Keys that count things must be integers (annotations are strings under `from __future__`).
_INTEGER_KEYS = frozenset(f.name for f in fields(HardwareProfile) if f.type == "int") | {
    "bits_per_cell"
}


def _number(source: str, key: str, value: Any) -> int | float:
    """A positive number; integers where the key counts things (bools are not numbers)."""
    integer = key.rsplit(".", 1)[-1] in _INTEGER_KEYS
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise HardwareProfileError(f"{source}: {key} must be {kind}, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise HardwareProfileError(f"{source}: {key} must be positive, got {value!r}")
    return value if integer else float(value)


def _check_keys(
    source: str, where: str, data: Mapping[str, Any], known: list[str], optional: tuple = ()
) -> None:
    for key in data:
        if key not in known:
            raise HardwareProfileError(
                f"{source}: unknown key {key!r}{where}; known: {', '.join(known)}"
            )
    for key in known:
        if key not in data and key not in optional:
            raise HardwareProfileError(f"{source}: missing key {key!r}{where}")


def _table(source: str, table: str, data: Any) -> EnergyPj | AreaUm2:
    cls = _TABLES[table]
    if not isinstance(data, dict):
        raise HardwareProfileError(f"{source}: {table} must be a table ([{table}])")
    _check_keys(source, f" in [{table}]", data, [f.name for f in fields(cls)])
    return cls(**{k: _number(source, f"{table}.{k}", v) for k, v in data.items()})


def _extensions(source: str, data: Any) -> Extensions:
    if not isinstance(data, dict):
        raise HardwareProfileError(f"{source}: extensions must be a table ([extensions])")
    known = [f.name for f in fields(Extensions)]
    _check_keys(source, " in [extensions]", data, known, optional=tuple(known))
    stem_once = data.get("stem_once", False)
    if not isinstance(stem_once, bool):
        raise HardwareProfileError(
            f"{source}: extensions.stem_once must be true or false, got {stem_once!r}"
        )
    bits = data.get("bits_per_cell")
    if bits is not None:
        bits = int(_number(source, "extensions.bits_per_cell", bits))
    return Extensions(bits_per_cell=bits, stem_once=stem_once)


def _profile(source: str, data: dict[str, Any]) -> HardwareProfile:
    tables = ("energy", "area", "extensions")
    scalars = [f.name for f in fields(HardwareProfile) if f.name not in tables]
    _check_keys(source, "", data, [*scalars, *_TABLES, "extensions"], optional=("extensions",))
    if not isinstance(data["name"], str) or not data["name"].strip():
        raise HardwareProfileError(f"{source}: name must be a non-empty string")
    values: dict[str, Any] = {k: _number(source, k, data[k]) for k in scalars if k != "name"}
    if values["pipeline_overlap"] > 1:
        raise HardwareProfileError(
            f"{source}: pipeline_overlap is the fraction of a layer done before the next starts, "
            f"at most 1, got {values['pipeline_overlap']!r}"
        )
    if values["crossbar_size"] % values["columns_per_adc"]:
        raise HardwareProfileError(
            f"{source}: columns_per_adc ({values['columns_per_adc']}) must divide "
            f"crossbar_size ({values['crossbar_size']})"
        )
    energy, area = (
        _table(source, "energy_pj", data["energy_pj"]),
        _table(source, "area_um2", data["area_um2"]),
    )
    assert isinstance(energy, EnergyPj) and isinstance(area, AreaUm2)
    return HardwareProfile(
        name=data["name"],
        energy=energy,
        area=area,
        extensions=_extensions(source, data.get("extensions", {})),
        **values,
    )


def load_profile(name_or_path: str) -> HardwareProfile:
    """A shipped profile by name (``PROFILES``), or a user's TOML file (any path ending .toml)."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        source = f"hardware profile {path}"
        try:
            raw = read_capped(path)
            if raw is None:
                raise HardwareProfileError(f"{source} is larger than {MAX_TEXT_FILE_BYTES:,} bytes")
            text = raw.decode("utf-8")
        except OSError as err:
            raise HardwareProfileError(f"{source}: cannot read it ({err.strerror})") from err
        except UnicodeDecodeError:
            raise HardwareProfileError(f"{source} is not a text (UTF-8) file") from None
    elif name_or_path in PROFILES:
        source = f"hardware profile {name_or_path}.toml"
        shipped = resources.files("optuna_spikenas.hardware") / "profiles" / f"{name_or_path}.toml"
        text = shipped.read_text(encoding="utf-8")
    else:
        raise HardwareProfileError(
            f"unknown hardware profile {brief(name_or_path)}; known: {', '.join(PROFILES)} "
            "(or a path to a .toml file)"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise HardwareProfileError(f"{source}: invalid TOML ({err})") from err
    except RecursionError:
        raise HardwareProfileError(f"{source}: nested too deeply to be a profile") from None
    return _profile(source, data)


# --- the cost model -------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerCost:
    """One crossbar-mapped layer: its shape, its resources and its place in the pipeline."""

    name: str
    in_channels: int
    in_size: int  # H = W of its input (1 for head linears)
    out_channels: int
    kernel: int
    out_size: int  # H = W of its output (1 for head linears)
    steps: int  # times it runs per image: T (1 for the stem with extensions.stem_once)
    pes: int
    pe_area_um2: float  # its PEs' share of the tiles: pes * A_pe(k_max)
    memory_area_um2: float  # neuron memory of its inputs (and outputs, for the first layers)
    energy_pj: float
    time_ns: float  # halt - start
    start_ns: float  # from the first layer's start


@dataclass(frozen=True)
class HardwareReport:
    """Cost of one inference (one image, all timesteps) of an architecture on a profile."""

    profile: str
    weight_bits: int
    timesteps: int
    tiles: int  # shared by all layers
    tile_area_um2: float  # tiles * A_tile(k_max): PEs, empty PE slots, buffers, H-trees
    layers: tuple[LayerCost, ...]

    @property
    def area_mm2(self) -> float:
        memory = sum(layer.memory_area_um2 for layer in self.layers)
        return (self.tile_area_um2 + memory) / 1e6

    @property
    def latency_ms(self) -> float:
        return max((layer.start_ns + layer.time_ns for layer in self.layers), default=0.0) / 1e6

    @property
    def energy_uj(self) -> float:
        return sum(layer.energy_pj for layer in self.layers) / 1e6

    def as_dict(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "weight_bits": self.weight_bits,
            "timesteps": self.timesteps,
            "area_mm2": self.area_mm2,
            "latency_ms": self.latency_ms,
            "energy_uj": self.energy_uj,
            "tiles": self.tiles,
            "tile_area_um2": self.tile_area_um2,
            "layers": [asdict(layer) for layer in self.layers],
        }


def _mapped_layers(
    arch: Architecture, macro: Macro, timesteps: int, stem_steps: int
) -> Iterator[tuple[str, int, int, int, int, int, int]]:
    """(name, in channels, in size, out channels, kernel, out size, steps) in network order."""
    sizes, final = macro.feature_sizes(arch.num_cells)
    widths = [arch.width * 2**k for k in range(arch.num_cells)]
    yield "stem", macro.in_channels, macro.image_size, widths[0], 3, sizes[0], stem_steps
    for k, (cell, width, size) in enumerate(zip(arch.cells, widths, sizes, strict=True), 1):
        if k > 1:  # the reduction conv runs at the previous cell's size, before its pool
            before = sizes[k - 2]
            yield f"reduction{k - 1}", widths[k - 2], before, width, 3, before, timesteps
        for src, dst, code in cell.pruned().edges():
            if code in KERNEL:
                name = f"cell{k}.edge{src}{dst}.{OPS[code]}"
                yield name, width, size, width, KERNEL[code], size, timesteps
    last = widths[-1]
    if macro.head == "snasnet":
        outputs = macro.voters_per_class * macro.num_classes
        yield "head.fc1", last * final * final, 1, macro.hidden, 1, 1, timesteps
        yield "head.fc2", macro.hidden, 1, outputs, 1, 1, timesteps
    else:
        yield "head.fc", last, 1, macro.num_classes, 1, 1, timesteps


def imc_report(
    arch: Architecture,
    macro: Macro,
    profile: HardwareProfile,
    weight_bits: int = 8,
    timesteps: int = 5,
) -> HardwareReport:
    """Area, pipelined latency and energy of ``arch`` in ``macro`` on ``profile`` (pure
    arithmetic; see the module docstring for the mapping and the formulas)."""
    if weight_bits < 1:
        raise ValueError(f"weight_bits must be positive, got {weight_bits}")
    if timesteps < 1:
        raise ValueError(f"timesteps must be positive, got {timesteps}")
    x, slices = profile.crossbar_size, profile.bit_slices(weight_bits)
    stem_steps = 1 if profile.extensions.stem_once else timesteps
    shapes = list(_mapped_layers(arch, macro, timesteps, stem_steps))
    k_max = max(shape[4] for shape in shapes)
    pe_area = profile.pe_area_um2(k_max)
    per_value = profile.neuron_value_bits * profile.area.neuron_memory_per_bit
    layers: list[LayerCost] = []
    done = 0  # sum_{j<i} c_j: PE cycles until layer i may start (SpikeSim's checkpoints)
    for i, (name, c_in, s_in, c_out, k, size, steps) in enumerate(shapes):
        pes = math.ceil(c_in / x) * math.ceil(c_out * slices / x)
        reads = size * size * c_out * steps  # n_i: one crossbar read per output channel
        start, halt = 1 + done, done + reads
        done += int(profile.pipeline_overlap * size * size * c_out) * steps
        stored = c_in * s_in * s_in  # its inputs, and its outputs if among the first layers
        stored += c_out * size * size if i < profile.stored_output_layers else 0
        layers.append(
            LayerCost(
                name=name,
                in_channels=c_in,
                in_size=s_in,
                out_channels=c_out,
                kernel=k,
                out_size=size,
                steps=steps,
                pes=pes,
                pe_area_um2=pes * pe_area,
                memory_area_um2=stored * per_value,
                energy_pj=pes * size * size * steps * profile.pe_cycle_energy_pj(k),
                time_ns=(halt - start) * profile.pe_cycle_ns,
                start_ns=(start - 1) * profile.pe_cycle_ns,
            )
        )
    tiles = math.ceil(sum(layer.pes for layer in layers) / profile.pes_per_tile)
    return HardwareReport(
        profile.name,
        weight_bits,
        timesteps,
        tiles,
        tiles * profile.tile_area_um2(k_max),
        tuple(layers),
    )
