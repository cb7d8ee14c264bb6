"""The standalone ``model.py`` of an exported architecture, assembled from this package's source.

``model.py`` needs only PyTorch and SpikingJelly. It holds the architecture document as a JSON
literal, the code that builds the network, ``preprocess()`` that prepares raw data as the
study's data was (``model_preprocess``), ``build_model()`` and a ``__main__`` block that runs one
forward pass on a random image.

Why assembled from the source and not a hand-written template: the exported network must be the
package's network exactly (module names, state-dict keys, order of weight initialisation, forward
pass), so that weights trained with the package load into it and give the same outputs. Copying
the package's own code with ``inspect.getsource`` cannot drift from it; a second, hand-kept
implementation would, silently, at the package's next change.

What is copied: starting from the build function and the architecture and macro classes of the
document's search space (``ROOTS``), every package function, class and module constant that the
copied code names, recursively, dependencies first, each headed by the module it comes from.
Methods that building and running the network never call (search-space helpers such as
``Cell.canonical``, listed in ``DROP``) are cut from the copied classes, which keeps the file
short enough to read. The imports are generated from what the copied code names and may come
only from the standard library, PyTorch and SpikingJelly; anything else is an error here, not a
broken ``model.py``.
"""

from __future__ import annotations

import ast
import inspect
import json
import logging
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

from optuna_spikenas.architecture_file import AUTOSNN_BLOCKS, SNASNET_CELLS
from optuna_spikenas.autosnn_space import AutoSNNArchitecture, AutoSNNMacro
from optuna_spikenas.macros import Macro
from optuna_spikenas.model_preprocess import PREPROCESS_SOURCE, input_output_paragraph
from optuna_spikenas.snn.autosnn import build_autosnn
from optuna_spikenas.snn.network import build_network
from optuna_spikenas.space import Architecture, Cell

ROOTS: dict[str, tuple[Any, ...]] = {
    SNASNET_CELLS: (Architecture, Macro, build_network),
    AUTOSNN_BLOCKS: (AutoSNNArchitecture, AutoSNNMacro, build_autosnn),
}
"""Per search space, what ``build_model`` calls; everything else follows from their source."""

DROP: dict[Any, tuple[str, ...]] = {
    Cell: ("from_edges", "count_ops", "is_valid", "canonical", "function_key", "_merged_labels"),
    Architecture: ("is_valid", "canonical", "canonical_key"),
    Macro: ("for_data",),
    AutoSNNArchitecture: ("params", "from_params"),
    AutoSNNMacro: ("for_data",),
}
"""Methods left out of copied classes: the build never calls them."""

_PACKAGE = "optuna_spikenas"
_ALLOWED_IMPORTS = ("torch", "spikingjelly")  # and the standard library

_HEADER = '''\
"""{title}

Architecture ({macro_name}, {search_space}): {architecture}

Written by ``optuna-spikenas export``; needs only PyTorch and SpikingJelly 2.0 (not
optuna-spikenas). The network code below is copied from optuna-spikenas, so the network has the
same modules, state-dict keys and outputs as the package's.

    python model.py              # build, load weights.pt if it lies beside, one forward pass

    from model import CLASSES, build_model, preprocess
    network = build_model("weights.pt").eval()
    scores = network(preprocess(raw_images))  # raw samples, prepared as the study's data was

{input_output}
"""

from __future__ import annotations

{imports}

ARCHITECTURE_JSON = {document}
DOCUMENT = json.loads(ARCHITECTURE_JSON)
'''

_BUILD = {
    SNASNET_CELLS: """\
    macro = Macro(**DOCUMENT["macro"])
    arch = Architecture.parse(DOCUMENT["architecture"], macro.num_cells, macro.width)
    network = build_network(arch, macro, DOCUMENT["timesteps"], seed=seed)""",
    AUTOSNN_BLOCKS: """\
    macro = AutoSNNMacro(**DOCUMENT["macro"])
    arch = AutoSNNArchitecture.parse(DOCUMENT["architecture"])
    network = build_autosnn(arch, macro, seed=seed)""",
}

_FOOTER = '''\
{preprocess}


def build_model(weights: str | Path | None = None, seed: int | None = None) -> nn.Module:
    """The network of ``DOCUMENT``, in training mode (call ``.eval()`` for inference). With
    ``weights``, a state-dict file loaded into it; with ``seed``, the initial weights that
    optuna-spikenas gives the same architecture for that seed."""
{build}
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    return network


def main() -> None:
    """Build the network, load ``weights.pt`` from this folder when present, and run one
    forward pass on a random image."""
    weights = Path(__file__).resolve().with_name("weights.pt")
    network = build_model(weights if weights.is_file() else None).eval()
    if INPUT is None:
        macro = DOCUMENT["macro"]
        images = torch.rand(1, macro["in_channels"], macro["image_size"], macro["image_size"])
    else:  # random raw pixels (or event counts), prepared as the study's data was
        raw = torch.randint(0, INPUT["raw"].get("max", 3) + 1, (1, *INPUT["shape"]))
        images = preprocess(raw)
    with torch.no_grad():
        scores = network(images)
    functional.reset_net(network)
    print(f"{{DOCUMENT['search_space']}} {{DOCUMENT['architecture']}}")
    print(f"weights: {{weights.name if weights.is_file() else 'initial (no weights.pt)'}}")
    print(f"input: {{list(images.shape)}}{{' from preprocess()' if INPUT else ', random'}}")
    print(f"output shape: {{list(scores.shape)}}")


if __name__ == "__main__":
    main()
'''


def model_source(document: dict[str, Any]) -> str:
    """The text of ``model.py`` for an architecture document (see ``architecture_file``)."""
    kind = document.get("search_space")
    if kind not in ROOTS:
        raise ValueError(f"unknown search_space {kind!r}")
    constants, code, external = _copied_parts(ROOTS[kind])
    sections = []
    for module_name, assignments in constants.items():  # constants first, by module
        lines = "\n".join(source for _, source in sorted(assignments))
        sections.append(f"# From {module_name}\n{lines}")
    last_module = None
    for module_name, source in code:  # then functions and classes, each after what it uses
        if module_name != last_module:
            source = f"# From {module_name}\n{source}"
            last_module = module_name
        sections.append(source)
    macro = document["macro"]
    origin = document.get("origin") or {}
    title = "An exported spiking network"
    if "study" in origin and "trial" in origin:
        title += f": trial {origin['trial']} of study {origin['study']}"
    header = _HEADER.format(
        title=title.replace("\\", "/").replace('"', "'"),
        macro_name=macro.get("name", "macro"),
        search_space=kind,
        architecture=document["architecture"],
        input_output=input_output_paragraph(document),
        imports=_imports(external),
        document=_json_literal(document),
    )
    footer = _FOOTER.format(build=_BUILD[kind], preprocess=PREPROCESS_SOURCE.rstrip("\n"))
    return "\n\n\n".join([header.rstrip("\n"), *sections, footer.rstrip("\n")]) + "\n"


def write_model_py(document: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``out_dir/model.py`` for ``document``; returns its path."""
    path = Path(out_dir) / "model.py"
    path.write_text(model_source(document), encoding="utf-8")
    return path


# --- collecting the source ------------------------------------------------------------------


def _copied_parts(
    roots: tuple[Any, ...],
) -> tuple[dict[str, list[tuple[int, str]]], list[tuple[str, str]], dict[str, Any]]:
    """What model.py copies to define ``roots``: the module constants ``{module: [(line,
    source)]}``, the functions and classes ``[(module, source)]``, each after what it uses, and
    the outside names ``{alias: object}`` (imports) that the copied code uses."""
    constants: dict[str, list[tuple[int, str]]] = {}
    code: list[tuple[str, str]] = []
    external: dict[str, Any] = {}
    done: set[tuple[str, str]] = set()

    def visit(module: types.ModuleType, name: str) -> None:
        obj = getattr(module, name, None)
        is_code = inspect.isclass(obj) or inspect.isfunction(obj)
        if is_code:
            module, line = sys.modules[obj.__module__], 0
            source = _source(obj, DROP.get(obj, ()))
        else:  # a constant: the assignment in the module that makes it
            module, line, source = _constant_source(module, name)
        if (module.__name__, source) in done:
            return
        done.add((module.__name__, source))
        for used in _names_used(source):
            if used in module.__dict__:
                value = module.__dict__[used]
                if _is_package(value, module):
                    visit(module, used)
                else:
                    external[used] = value
        if is_code:
            code.append((module.__name__, source))
        else:
            constants.setdefault(module.__name__, []).append((line, source))

    for root in roots:
        visit(sys.modules[root.__module__], root.__name__)
    return constants, code, external


def _is_package(value: Any, module: types.ModuleType) -> bool:
    """Whether ``module.name`` is this package's own function, class or constant."""
    if inspect.ismodule(value):
        return False
    if inspect.isclass(value) or inspect.isfunction(value):
        return value.__module__.startswith(_PACKAGE)
    return module.__name__.startswith(_PACKAGE)


def _names_used(source: str) -> list[str]:
    """Every name the code reads, in source order (a superset of its free names: locals are
    found in no module and left alone)."""
    names = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)]
    return list(dict.fromkeys(n.id for n in sorted(names, key=lambda n: (n.lineno, n.col_offset))))


def _source(obj: Any, drop: tuple[str, ...] = ()) -> str:
    """The package's source of ``obj`` (decorators included), without the methods in ``drop``.
    A name in ``drop`` that the class lacks is an error: the package changed, update ``DROP``."""
    source = textwrap.dedent(inspect.getsource(obj)).rstrip("\n")
    if not drop:
        return source
    (node,) = ast.parse(source).body
    assert isinstance(node, ast.ClassDef), obj
    cut: set[int] = set()
    found = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name in drop:
            start = min([item.lineno, *(d.lineno for d in item.decorator_list)])
            cut.update(range(start - 1, item.end_lineno or item.lineno))
            found.add(item.name)
    if found != set(drop):
        missing = ", ".join(sorted(set(drop) - found))
        raise RuntimeError(f"{obj.__qualname__} has no method {missing}; update DROP")
    kept: list[str] = []
    for index, line in enumerate(source.split("\n")):
        if index in cut or (not line.strip() and kept and not kept[-1].strip()):
            continue  # a cut method, or a second blank line left where one was cut
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept)


def _constant_source(module: types.ModuleType, name: str) -> tuple[types.ModuleType, int, str]:
    """``(module, line, source)`` of the module-level assignment of ``name``: in ``module``, or
    in the package module that ``module`` imports it from."""
    source = inspect.getsource(module)
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
                return module, node.lineno, ast.get_source_segment(source, node) or ""
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(_PACKAGE):
            if any((alias.asname or alias.name) == name for alias in node.names):
                return _constant_source(sys.modules[node.module or ""], name)
    raise RuntimeError(f"{module.__name__} does not assign {name}; update model_template")


# --- the imports ----------------------------------------------------------------------------


def _imports(external: dict[str, Any]) -> str:
    """The import block of model.py, in ruff's isort order, for the outside names it uses."""
    import torch
    from spikingjelly.activation_based import functional

    template = {"json": json, "logging": logging, "Path": Path, "torch": torch, "nn": torch.nn}
    straight: dict[str, set[str]] = {}  # section -> "import x" lines
    from_names: dict[tuple[str, str], set[str]] = {}  # (section, module) -> names
    imported: str | None
    for alias, value in {**template, "functional": functional, **external}.items():
        if inspect.ismodule(value) and value.__name__ == alias:
            module, imported = alias, None
        elif inspect.ismodule(value):
            module, _, imported = value.__name__.rpartition(".")
        else:
            module, imported = getattr(value, "__module__", None) or "", alias
        top = module.split(".")[0]
        if top in sys.stdlib_module_names:
            section = "stdlib"
        elif top in _ALLOWED_IMPORTS:
            section = "spikingjelly" if top == "spikingjelly" else "third"
        else:
            raise RuntimeError(
                f"model.py would import {module or alias} (for {alias}); only the standard "
                "library, torch and spikingjelly are allowed"
            )
        if imported is None:
            straight.setdefault(section, set()).add(f"import {module}")
        else:
            from_names.setdefault((section, module), set()).add(imported)
    blocks = []
    for section in ("stdlib", "third", "spikingjelly"):
        lines = sorted(straight.get(section, ()))
        for (sec, module), names in sorted(from_names.items()):
            if sec == section:
                lines.append(f"from {module} import {', '.join(sorted(names, key=_by_type))}")
        if section == "spikingjelly":
            silence = [
                "# SpikingJelly's import logs a harmless Triton warning on CPU builds",
                'logging.getLogger("torch._library.triton").setLevel(logging.ERROR)',
            ]
            lines = [*silence, *(f"{line}  # noqa: E402" for line in lines)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _by_type(name: str) -> tuple[int, str]:
    """isort's order-by-type: CONSTANTS, then Classes, then functions and modules."""
    if name.isupper():
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def _json_literal(document: dict[str, Any]) -> str:
    """The document's JSON as a Python literal: a raw triple-quoted string when that is exact."""
    text = json.dumps(document, indent=2)
    if '"""' in text:
        return repr(text)
    return f'r"""\n{text}\n"""'
