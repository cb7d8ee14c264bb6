"""``describe``: parameters, memory and (optionally) IMC hardware costs of one architecture."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace

from optuna_spikenas.autosnn_space import AUTOSNN_MACROS, AutoSNNArchitecture, autosnn_parameters
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.hardware.imc import HardwareProfileError, imc_report, load_profile
from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.macros import get_macro
from optuna_spikenas.space import Architecture, SearchSpace, invalid_reason
from optuna_spikenas.wording import plural


class UsageError(SpikeNASError):
    """A command-line value that cannot be used."""


def describe(args: argparse.Namespace) -> int:
    if args.macro in AUTOSNN_MACROS:
        return describe_autosnn(args)
    macro = get_macro(args.macro)
    if args.final_pool is not None:
        macro = replace(macro, final_pool=args.final_pool)
    for key in ("num_classes", "in_channels", "image_size"):
        if getattr(args, key) is not None:
            macro = replace(macro, **{key: getattr(args, key)})
    num_cells = args.num_cells or macro.num_cells
    if len(args.arch.split("/")) > 1 and args.num_cells is None:
        num_cells = len(args.arch.split("/"))
    arch = Architecture.parse(args.arch, num_cells, args.width or macro.width)
    try:
        report = memory_report(arch, macro, args.weight_bits)
        hardware = None
        if args.hardware is not None:
            profile = load_profile(args.hardware)
            hardware = imc_report(arch, macro, profile, args.weight_bits, args.timesteps)
    except HardwareProfileError as err:
        raise UsageError(f"--hardware: {err}") from None
    except ValueError as err:
        raise UsageError(str(err)) from None
    info = {
        "macro": macro.name,
        "architecture": str(arch),
        "canonical": str(arch.canonical()),
        "valid": arch.is_valid(),
        "num_cells": arch.num_cells,
        "width": arch.width,
        "final_pool": macro.final_pool,
        "input": [macro.in_channels, macro.image_size, macro.image_size],
        "num_classes": macro.num_classes,
        **report.as_dict(),
    }
    if hardware is not None:
        info.update(hardware.as_dict())
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    reason = invalid_reason(arch, SearchSpace((arch.num_cells,), (arch.width,), False, True))
    canonical = arch.canonical()
    head = f", final pool {macro.final_pool}" if macro.head == "snasnet" else ""
    rows = [
        ("architecture", str(arch)),
        ("canonical form", "the same" if canonical == arch else str(canonical)),
        ("valid", "yes" if reason is None else f"no: {reason}"),
        ("macro", f"{macro.name}: {plural(arch.num_cells, 'cell')}, width {arch.width}{head}"),
        ("input", image_shape(macro.in_channels, macro.image_size, macro.num_classes)),
        ("", ""),
        ("parameters", ""),
        *parts_table(
            [
                ("stem", report.stem),
                *((f"cell {k}", n) for k, n in enumerate(report.cells, start=1)),
                ("reductions", report.reductions),
                ("head", report.head),
            ]
        ),
        ("memory", memory(report.parameters, args.weight_bits)),
    ]
    if hardware is not None:
        rows += [
            ("", ""),
            (
                "hardware",
                f"{hardware.profile}, {plural(hardware.timesteps, 'timestep')} per "
                f"inference, {hardware.weight_bits}-bit weights",
            ),
            (
                "  area",
                f"{hardware.area_mm2:.4g} mm² ({plural(hardware.tiles, 'tile')}: "
                f"{hardware.tile_area_um2 / 1e6:.4g} mm², the rest neuron memory)",
            ),
            ("  latency", f"{hardware.latency_ms:.4g} ms"),
            ("  energy", f"{hardware.energy_uj:.4g} µJ"),
        ]
    print_table(rows)
    if hardware is not None:
        print_hardware_layers([asdict(layer) for layer in hardware.layers], hardware.tile_area_um2)
    return 0


def describe_autosnn(args: argparse.Namespace) -> int:
    if args.hardware is not None:
        raise UsageError(f"--hardware prices SNASNet cells; {args.macro} has AutoSNN blocks")
    macro = AUTOSNN_MACROS[args.macro]
    for key in ("num_classes", "in_channels", "image_size", "width"):
        if getattr(args, key) is not None:
            macro = replace(macro, **{key: getattr(args, key)})
    arch = AutoSNNArchitecture.parse(args.arch)
    parameters = autosnn_parameters(arch, macro)
    info = {
        "macro": macro.name,
        "architecture": str(arch),
        "width": macro.width,
        "input": [macro.in_channels, macro.image_size, macro.image_size],
        "num_classes": macro.num_classes,
        "timesteps": macro.timesteps,
        "parameters": parameters,
        "weight_bits": args.weight_bits,
        "memory_bits": parameters * args.weight_bits,
        "memory_megabytes": round(parameters * args.weight_bits / 8e6, 4),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print_table(
        [
            ("architecture", str(arch)),
            ("macro", f"{macro.name}: width {macro.width}, {plural(macro.timesteps, 'timestep')}"),
            ("input", image_shape(macro.in_channels, macro.image_size, macro.num_classes)),
            ("parameters", count(parameters)),
            ("memory", memory(parameters, args.weight_bits)),
        ]
    )
    return 0


def print_table(rows: list[tuple[str, str]]) -> None:
    """Label and value per line, the values in one column; ("", "") is a blank line."""
    for label, value in rows:
        print(f"{label:16} {value}".rstrip())


def parts_table(parts: list[tuple[str, int]]) -> list[tuple[str, str]]:
    """Rows of parameters per part and their total, the counts right-aligned."""
    total = sum(n for _, n in parts)
    width = len(f"{total:,}")
    rows = [(f"  {name}", f"{n:>{width},}") for name, n in parts]
    return [*rows, ("  total", f"{total:>{width},}{in_millions(total)}")]


def count(parameters: int) -> str:
    """A parameter count in full, with millions beside it from one million on."""
    return f"{parameters:,}{in_millions(parameters)}"


def in_millions(parameters: int) -> str:
    return f" ({parameters / 1e6:.2f} M)" if parameters >= 1_000_000 else ""


def memory(parameters: int, weight_bits: int) -> str:
    bits = parameters * weight_bits
    return f"{bits:,} bits at {weight_bits}-bit weights = {bits / 8e6:.4g} MB"


def image_shape(channels: int, size: int, classes: int) -> str:
    return f"{channels} x {size} x {size} images, {plural(classes, 'class', 'classes')}"


def print_hardware_layers(layers: list[dict], tile_area_um2: float) -> None:
    """Per layer: PEs, area (its PEs' share of the tiles and its neuron memory), energy and its
    place in the pipeline; the tiles' periphery (buffers, subtractors, H-trees) and empty PE slots
    are a network total."""
    print(f"\n{'layer':28} {'PEs':>5} {'PE mm²':>8} {'mem mm²':>8} {'energy µJ':>10}", end="")
    print(f" {'start ms':>9} {'time ms':>8}")
    for layer in layers:
        print(
            f"{layer['name']:28} {layer['pes']:5d} {layer['pe_area_um2'] / 1e6:8.4f} "
            f"{layer['memory_area_um2'] / 1e6:8.4f} {layer['energy_pj'] / 1e6:10.4f} "
            f"{layer['start_ns'] / 1e6:9.4f} {layer['time_ns'] / 1e6:8.4f}"
        )
    shared = tile_area_um2 - sum(layer["pe_area_um2"] for layer in layers)
    print(f"{'tile periphery + empty PE slots':34} {shared / 1e6:8.4f}")
