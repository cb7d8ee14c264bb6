"""``describe``: parameters, memory and (optionally) IMC hardware costs of one architecture."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from optuna_spikenas.autosnn_space import AUTOSNN_MACROS, AutoSNNArchitecture, autosnn_parameters
from optuna_spikenas.errors import SpikeNASError
from optuna_spikenas.hardware.imc import HardwareProfileError, imc_report, load_profile
from optuna_spikenas.hardware.memory import memory_report
from optuna_spikenas.macros import get_macro
from optuna_spikenas.space import Architecture


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
    layers: Any = info.pop("layers", [])
    for key, value in info.items():
        print(f"{key:18} {value}")
    print(f"{'':18} = {report.parameters / 1e6:.2f} M parameters")
    if layers:
        print_hardware_layers(layers, float(info["tile_area_um2"]))  # type: ignore[arg-type]
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
    for key, value in info.items():
        print(f"{key:18} {value}")
    print(f"{'':18} = {parameters / 1e6:.2f} M parameters")
    return 0


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
