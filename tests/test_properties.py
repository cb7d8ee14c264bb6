"""Property-based tests (hypothesis): the text, parameter and JSON forms of architectures round
trip, the canonical form is a canonical form, and config validation refuses bad values only ever
with a ``ConfigError``, while a config that loads loads again from its own TOML."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, fields, replace
from typing import Any

import optuna
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from optuna_spikenas.architecture_file import (
    ArchitectureFileError,
    architecture_record,
    read_architecture,
)
from optuna_spikenas.autosnn_space import (
    AUTOSNN_MACROS,
    BLOCKS,
    PARAM_NAMES,
    AutoSNNArchitecture,
    suggest_autosnn,
)
from optuna_spikenas.config import (
    _SECTIONS,
    SAMPLERS,
    Config,
    ConfigError,
    config_from_dict,
    load_config,
    resolve_paths,
    validate_compare,
)
from optuna_spikenas.data import DATASET_NAMES
from optuna_spikenas.hardware.imc import PROFILES
from optuna_spikenas.macros import MACROS, get_macro
from optuna_spikenas.space import (
    BACKWARD,
    EDGES,
    FORWARD,
    NUM_NODES,
    OPS,
    Architecture,
    Cell,
    SearchSpace,
    SpaceError,
    architecture_params,
    suggest_architecture,
)

# database=None: no .hypothesis/ folder in the checkout; a failure prints its example
SETTINGS = settings(max_examples=100, deadline=None, database=None)
MANY = settings(max_examples=200, deadline=None, database=None)
FEW = settings(
    max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- strategies ---------------------------------------------------------------------------------

codes = st.integers(0, len(OPS) - 1)


@st.composite
def cells(draw, backward: bool = True) -> Cell:
    """A well-formed cell: one op per node pair, forward or (when allowed) backward."""
    forward, back = {}, {}
    for edge in EDGES:
        code = draw(codes)
        if backward and code and draw(st.booleans()):
            back[edge] = code
        else:
            forward[edge] = code
    return Cell.from_edges(forward, back)


# any 4x4 matrix of digits, most of them not a cell (self-edges, both directions, codes > 4)
matrices = st.lists(
    st.lists(st.integers(0, 9), min_size=NUM_NODES, max_size=NUM_NODES),
    min_size=NUM_NODES,
    max_size=NUM_NODES,
).map(lambda rows: tuple(tuple(row) for row in rows))


@st.composite
def architectures(draw, backward: bool = True) -> Architecture:
    cell_list = draw(st.lists(cells(backward), min_size=1, max_size=4))
    return Architecture(tuple(cell_list), draw(st.integers(1, 512)))


def swap_middle_nodes(cell: Cell) -> Cell:
    """The same cell with nodes 1 and 2 relabelled."""
    order = (0, 2, 1, 3)
    m = cell.matrix
    return Cell(tuple(tuple(m[order[i]][order[j]] for j in range(4)) for i in range(4)))


# --- SNASNet cells and architectures ------------------------------------------------------------


@SETTINGS
@given(matrices)
def test_any_matrix_is_a_cell_that_round_trips_or_a_space_error(matrix):
    try:
        cell = Cell(matrix)
    except SpaceError:
        text = " ".join("".join(map(str, row)) for row in matrix)
        with pytest.raises(SpaceError):
            Cell.parse(text)
        return
    assert Cell.parse(str(cell)) == cell
    assert str(Cell.parse(str(cell))) == str(cell)


@SETTINGS
@given(st.text(alphabet="0123456789 /x\t\n", max_size=40) | st.text(max_size=20))
def test_any_text_parses_to_an_architecture_that_round_trips_or_a_space_error(text):
    try:
        arch = Architecture.parse(text, num_cells=2, width=8)
    except SpaceError:
        return
    assert Architecture.parse(str(arch), num_cells=2, width=8) == arch


@SETTINGS
@given(architectures())
def test_architecture_text_round_trip(arch):
    assert Architecture.parse(str(arch), arch.num_cells, arch.width) == arch


@SETTINGS
@given(cells())
def test_canonical_form_is_idempotent_and_keeps_validity(cell):
    canonical = cell.canonical()
    assert canonical.canonical() == canonical
    assert canonical.pruned() == canonical  # nothing dead is left
    assert canonical.is_valid() == cell.is_valid()
    assert Cell.parse(str(canonical)) == canonical


@SETTINGS
@given(cells())
def test_relabelled_and_pruned_equivalents_have_one_canonical_form(cell):
    assert cell.pruned().canonical() == cell.canonical()
    m = cell.matrix
    assume(m[1][2] == 0 and m[2][1] == 0)  # nodes 1 and 2 are then interchangeable
    assert swap_middle_nodes(cell).canonical() == cell.canonical()


@SETTINGS
@given(architectures())
def test_architecture_canonical_key_is_stable(arch):
    canonical = arch.canonical()
    assert canonical.canonical() == canonical
    assert canonical.canonical_key() == arch.canonical_key()
    relabelled = Architecture(
        tuple(
            swap_middle_nodes(c) if c.matrix[1][2] == 0 == c.matrix[2][1] else c for c in arch.cells
        ),
        arch.width,
    )
    assert relabelled.canonical_key() == arch.canonical_key()


@st.composite
def spaces_and_architectures(draw) -> tuple[SearchSpace, Architecture]:
    backward = draw(st.booleans())
    shared = draw(st.booleans())
    num_cells = tuple(draw(st.sets(st.integers(1, 4), min_size=1, max_size=3)))
    widths = tuple(draw(st.sets(st.integers(1, 64), min_size=1, max_size=3)))
    space = SearchSpace(num_cells, widths, shared, backward)
    n = draw(st.sampled_from(num_cells))
    if shared:
        cell_list = [draw(cells(backward))] * n
    else:
        cell_list = draw(st.lists(cells(backward), min_size=n, max_size=n))
    return space, Architecture(tuple(cell_list), draw(st.sampled_from(widths)))


@SETTINGS
@given(spaces_and_architectures())
def test_params_round_trip_through_a_fixed_trial(space_and_arch):
    space, arch = space_and_arch
    params = architecture_params(arch, space)
    assert suggest_architecture(optuna.trial.FixedTrial(params), space) == arch
    for name, value in params.items():  # every value is one of the categorical's choices
        if "_edge" in name:
            assert value in OPS
        elif "_dir" in name:
            assert value in (FORWARD, BACKWARD)


@FEW
@given(spaces_and_architectures())
def test_params_round_trip_through_an_enqueued_trial(space_and_arch):
    space, arch = space_and_arch
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(architecture_params(arch, space))
    trial = study.ask()
    assert suggest_architecture(trial, space) == arch
    study.tell(trial, 0.0)
    assert suggest_architecture(optuna.trial.FixedTrial(study.trials[0].params), space) == arch


# --- AutoSNN --------------------------------------------------------------------------------------

autosnn_architectures = st.lists(st.sampled_from(BLOCKS), min_size=5, max_size=5).map(
    lambda blocks: AutoSNNArchitecture(tuple(blocks))
)


def respell(block: str, upper: bool, pad: str) -> str:
    return f"{pad}{block.upper() if upper else block.lower()}{pad}"


@SETTINGS
@given(autosnn_architectures, st.booleans(), st.sampled_from(["", " ", "  "]))
def test_autosnn_text_and_params_round_trip(arch, upper, pad):
    assert AutoSNNArchitecture.parse(str(arch)) == arch
    spelled = ",".join(respell(b, upper, pad) for b in arch.blocks)
    assert AutoSNNArchitecture.parse(spelled) == arch  # case and spaces do not matter
    assert set(arch.params()) == set(PARAM_NAMES)
    assert AutoSNNArchitecture.from_params(arch.params()) == arch
    assert suggest_autosnn(optuna.trial.FixedTrial(arch.params())) == arch


@SETTINGS
@given(st.lists(st.sampled_from([*BLOCKS, ",", " ", "x", "SRB_k7"]), max_size=12).map("".join))
def test_any_autosnn_text_round_trips_or_is_a_space_error(text):
    try:
        arch = AutoSNNArchitecture.parse(text)
    except SpaceError:
        return
    assert AutoSNNArchitecture.parse(str(arch)) == arch


# --- architecture documents -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)
measured = st.dictionaries(
    st.sampled_from(["parameters", "score", "feasible", "values", "area_mm2", "note"]), json_values
)


@SETTINGS
@given(architectures(), st.sampled_from(sorted(MACROS)), st.integers(1, 16), measured)
def test_cell_architecture_document_round_trips(arch, macro_name, timesteps, attrs):
    macro = get_macro(macro_name)
    document = architecture_record(arch, macro, timesteps, attrs)
    text = json.dumps(document, allow_nan=False)  # strict JSON: no NaN or infinity in it
    back, back_macro, back_timesteps = read_architecture(text)
    assert back == arch and back_timesteps == timesteps
    assert back_macro == replace(macro, num_cells=arch.num_cells, width=arch.width)
    assert read_architecture(json.loads(text)) == (back, back_macro, back_timesteps)
    for key, value in json.loads(text)["measured"].items():
        assert attrs[key] == value


@SETTINGS
@given(autosnn_architectures, st.sampled_from(sorted(AUTOSNN_MACROS)), st.integers(1, 16))
def test_autosnn_architecture_document_round_trips(arch, macro_name, timesteps):
    macro = AUTOSNN_MACROS[macro_name]
    text = json.dumps(architecture_record(arch, macro, timesteps), allow_nan=False)
    assert read_architecture(text) == (arch, macro, timesteps)


DAMAGE = {
    "format": json_values,
    "version": json_values,
    "search_space": json_values,
    "architecture": json_values,
    "timesteps": json_values,
    "macro": json_values
    | st.dictionaries(st.sampled_from(["width", "name", "colour"]), json_values),
}


@SETTINGS
@given(
    architectures(),
    st.sampled_from(sorted(DAMAGE)).flatmap(lambda k: st.tuples(st.just(k), DAMAGE[k])),
)
def test_a_damaged_document_is_refused_with_an_architecture_file_error(arch, damage):
    key, value = damage
    document = architecture_record(arch, get_macro("light"), 5)
    document[key] = value
    try:  # anything but ArchitectureFileError (a TypeError, a KeyError...) fails the test
        back, macro, timesteps = read_architecture(json.dumps(document))
    except ArchitectureFileError as err:
        assert str(err) and "\n" not in str(err)  # one line for the user
    else:  # the damage left a readable document: what it reads is well-formed
        assert isinstance(timesteps, int) and timesteps >= 1 and macro.width >= 1


@pytest.mark.parametrize(
    "damage",
    [
        {"search_space": ["snasnet-cells"]},  # unhashable: {...}.get(kind) raises
        {"macro": {**asdict(get_macro("light")), "width": "16"}},  # Architecture(width="16")
    ],
    ids=["search-space-not-a-string", "macro-width-not-a-number"],
)
def test_gaps_hypothesis_found_in_reading_a_damaged_document(damage):
    document = architecture_record(
        Architecture.parse("0302 0030 3003 0000", 2, 8), get_macro("light"), 5
    )
    document.update(damage)
    with pytest.raises(ArchitectureFileError):
        read_architecture(json.dumps(document))


# --- configs -----------------------------------------------------------------------------------

PLAUSIBLE: dict[tuple[str, str], st.SearchStrategy] = {
    ("dataset", "name"): st.sampled_from(DATASET_NAMES),
    ("space", "macro"): st.sampled_from([*MACROS, *AUTOSNN_MACROS]),
    ("space", "num_cells"): st.lists(st.integers(1, 4), min_size=1, max_size=3),
    ("space", "widths"): st.lists(st.integers(1, 64), max_size=2),
    ("score", "kind"): st.sampled_from(["sahd", "hamming"]),
    ("score", "device"): st.sampled_from(["cpu", "cuda", "auto"]),
    ("hardware", "profile"): st.sampled_from(PROFILES),
    ("train", "objectives"): st.sampled_from(["score+accuracy", "accuracy"]),
    ("train", "optimizer"): st.sampled_from(["adam", "sgd"]),
    ("search", "sampler"): st.sampled_from(SAMPLERS),
    ("search", "ops"): st.lists(st.sampled_from(OPS), min_size=1, max_size=3),
    ("search", "pruner"): st.sampled_from(["none", "median"]),
    ("fitness", "objectives"): st.sampled_from(["fitness", "accuracy+spikes"]),
    ("compare", "samplers"): st.lists(st.sampled_from(SAMPLERS), min_size=1, max_size=3),
    ("compare", "seeds"): st.lists(st.integers(0, 5), min_size=1, max_size=3),
    ("compare", "quick_seeds"): st.lists(st.integers(0, 5), min_size=1, max_size=3),
}
# values of any type, for any key: most of them wrong
junk = (
    st.booleans()
    | st.integers(-3, 2**33)
    | st.floats()
    | st.text(max_size=6)
    | st.lists(st.integers(-2, 70) | st.text(max_size=4), max_size=3)
)


def plausible(section: str, key: str, default: Any) -> st.SearchStrategy:
    """A value of the key's type, often a usable one."""
    if (section, key) in PLAUSIBLE:
        return PLAUSIBLE[section, key]
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, float):
        return st.floats(0.0, 1.0) | st.floats(0.0, 1e4)
    if isinstance(default, int) or default is None:
        return st.integers(0, 64)
    return st.just(default)


@st.composite
def raw_configs(draw) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if draw(st.booleans()):
        raw["seed"] = draw(junk if draw(st.integers(0, 4)) == 0 else st.integers(0, 2**32 - 1))
    for section in draw(st.sets(st.sampled_from(sorted(_SECTIONS)), max_size=4)):
        cls = _SECTIONS[section]
        defaults = cls()
        keys = draw(st.sets(st.sampled_from([f.name for f in fields(cls)]), max_size=3))
        raw[section] = {
            key: draw(junk if draw(st.integers(0, 4)) == 0 else plausible(section, key, default))
            for key in keys
            for default in [getattr(defaults, key)]
        }
    if draw(st.integers(0, 9)) == 0:  # now and then a key nobody knows
        raw.setdefault("search", {})["n_trails"] = 3
    return raw


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)  # repr(inf) == "inf", valid TOML
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = "".join(
            f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c
            for c in value
        )
        return f'"{escaped}"'
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def toml_text(raw: dict[str, Any]) -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for section, table in raw.items():
        if isinstance(table, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def as_dict(config: Config) -> dict[str, Any]:
    """The dict form of a config, as a TOML file would hold it (tuples as lists, no None)."""

    def plain(value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value

    raw = asdict(config)
    return {
        key: {k: plain(v) for k, v in value.items()} if isinstance(value, dict) else value
        for key, value in raw.items()
        if key != "base_dir"  # where the paths were resolved, not a key of the file
    }


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("configs")


@MANY
@given(raw=raw_configs())
def test_random_config_loads_or_raises_a_config_error(raw, config_dir):
    try:
        config = config_from_dict(raw)
    except ConfigError:
        event("refused")
        return
    event("loaded")
    assert isinstance(config, Config)
    path = config_dir / "config.toml"
    path.write_text(toml_text(as_dict(config)), encoding="utf-8")
    # valid again, and the same from its own TOML, its paths now relative to the file
    assert load_config(path) == resolve_paths(config, config_dir)
    assert config_from_dict(tomllib.loads(toml_text(raw))) == config
    try:
        assert validate_compare(config) == config
    except ConfigError:
        pass


@MANY
@given(raw=raw_configs())
def test_any_toml_of_known_keys_loads_or_raises_a_config_error(raw, config_dir):
    path = config_dir / "any.toml"
    path.write_text(toml_text(raw), encoding="utf-8")
    try:
        config = load_config(path)
    except ConfigError as err:
        assert str(err).startswith(f"config file {path}")
        assert "\n" not in str(err)
        return
    assert load_config(path) == config
