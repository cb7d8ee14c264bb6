"""Architecture documents: what the dashboard artifact holds, read back into the same network."""

from __future__ import annotations

import json

import pytest

from optuna_spikenas.architecture_file import (
    ArchitectureFileError,
    architecture_record,
    read_architecture,
)
from optuna_spikenas.autosnn_space import (
    AUTOSNN_MACROS,
    PAPER_CIFAR10_ARCH,
    AutoSNNArchitecture,
    autosnn_parameters,
)
from optuna_spikenas.macros import get_macro
from optuna_spikenas.snn.autosnn import build_autosnn
from optuna_spikenas.snn.network import build_network
from optuna_spikenas.space import Architecture


def test_cell_architecture_round_trips_to_the_same_network():
    arch = Architecture.parse("0302 0030 3003 0000 / 0300 0030 0003 0000", 2, 8)
    macro = get_macro("light").for_data(1, 28, 10)  # the macro's own width/cells differ
    record = architecture_record(arch, macro, 4, {"parameters": 123, "score": float("-inf")})
    text = json.dumps(record, allow_nan=False)  # JSON-safe: -inf was dropped, not written
    back, back_macro, timesteps = read_architecture(text)
    assert back == arch and timesteps == 4
    assert (back_macro.num_cells, back_macro.width) == (2, 8)
    assert (back_macro.in_channels, back_macro.image_size) == (1, 28)
    assert record["measured"] == {"parameters": 123}
    a, b = build_network(arch, macro.__class__(**record["macro"]), 4), build_network(
        back, back_macro, 4
    )
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())


def test_autosnn_architecture_round_trips():
    arch = AutoSNNArchitecture.parse(PAPER_CIFAR10_ARCH)
    macro = AUTOSNN_MACROS["autosnn-16"]
    back, back_macro, timesteps = read_architecture(architecture_record(arch, macro, 8))
    assert back == arch and back_macro == macro and timesteps == 8
    network = build_autosnn(back, back_macro)
    assert sum(p.numel() for p in network.parameters()) == autosnn_parameters(arch, macro)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(format="something"), "not an architecture document"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.update(search_space="darts"), "unknown search_space"),
        (lambda d: d["macro"].update(colour="red"), "unknown keys: colour"),
        (lambda d: d.update(architecture="0302 0030"), "architecture:"),
        (lambda d: d.update(timesteps=0), "timesteps must be a positive integer"),
        (lambda d: d.pop("macro"), 'no "macro"'),
    ],
)
def test_bad_documents_say_what_is_wrong(change, message):
    arch = Architecture.parse("0302 0030 3003 0000", 2, 8)
    document = architecture_record(arch, get_macro("light"), 4)
    change(document)
    with pytest.raises(ArchitectureFileError, match=message):
        read_architecture(document)


def test_text_that_is_not_json_is_refused():
    with pytest.raises(ArchitectureFileError, match="not JSON"):
        read_architecture("{architecture: 1")
