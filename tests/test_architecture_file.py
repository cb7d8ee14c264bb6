"""Architecture documents: what the dashboard artifact holds, read back into the same network,
and the input contract they carry (version 2) or lack (version 1)."""

from __future__ import annotations

import json

import pytest

from optuna_spikenas.architecture_file import (
    ArchitectureFileError,
    architecture_record,
    read_architecture,
    read_input_contract,
)
from optuna_spikenas.autosnn_space import (
    AUTOSNN_MACROS,
    PAPER_CIFAR10_ARCH,
    AutoSNNArchitecture,
    autosnn_parameters,
)
from optuna_spikenas.data import load_dataset
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
    a, b = (
        build_network(arch, macro.__class__(**record["macro"]), 4),
        build_network(back, back_macro, 4),
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
        (lambda d: d.update(version=True), "version True"),
        (lambda d: d.update(version=1.0), "version 1.0"),
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


# --- the input contract (version 2) ------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_document():
    """A version-2 document of a network searched on digits, with the data's input contract."""
    dataset = load_dataset("digits", seed=3)
    arch = Architecture.parse("0302 0030 3003 0000", 2, 4)
    macro = get_macro("light").for_data(1, 8, 10)
    return architecture_record(arch, macro, 2, input_contract=dataset.input_contract), dataset


def test_the_input_contract_is_written_and_read_back(digits_document):
    document, dataset = digits_document
    assert document["version"] == 2
    contract = read_input_contract(json.loads(json.dumps(document, allow_nan=False)))
    assert contract == dataset.input_contract.as_dict(2)
    assert (contract["encoding"], contract["shape"], contract["timesteps"]) == (
        "direct",
        [1, 8, 8],
        2,
    )
    assert contract["classes"] == [str(d) for d in range(10)]


def test_older_documents_are_read_and_say_they_lack_the_contract(digits_document):
    document, _ = digits_document
    old = {k: v for k, v in document.items() if k != "input"} | {"version": 1}
    arch, macro, timesteps = read_architecture(old)  # still builds the same network
    assert (arch, macro, timesteps) == read_architecture(document)
    with pytest.raises(ArchitectureFileError, match="version 1 documents predate it.*--config"):
        read_input_contract(old)
    unknown = dict(document, input=None)  # written without the data (architecture_record alone)
    with pytest.raises(ArchitectureFileError, match="written without the study's data"):
        read_input_contract(unknown)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(encoding="rate"), "encoding 'rate' is not direct or event-frames"),
        (lambda c: c.update(shape=[1, 8]), "shape must be 3 positive integers"),
        (lambda c: c.update(timesteps=5), "timesteps 5, the network's are 2"),
        (lambda c: c["normalise"].update(mean=[0.1, 0.2]), "mean must be 1 numbers"),
        (lambda c: c["normalise"].update(std=[0.0]), "std must be positive"),
        (lambda c: c["normalise"].update(scale="255"), "scale must be a positive number"),
        (lambda c: c["normalise"].update(precision="float16"), "precision must be float32"),
        (lambda c: c.pop("normalise"), 'no "normalise" object'),
        (lambda c: c.update(raw=[]), 'no "raw" object'),
        (lambda c: c["raw"].update(max=True), "raw max must be a positive integer"),
        (lambda c: c.update(classes="0123456789"), "classes must be a list of names or null"),
    ],
)
def test_a_damaged_contract_says_what_is_wrong(digits_document, change, message):
    document, _ = digits_document
    damaged = json.loads(json.dumps(document))
    change(damaged["input"])
    with pytest.raises(ArchitectureFileError, match=message):
        read_input_contract(damaged)
