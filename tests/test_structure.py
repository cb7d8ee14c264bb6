"""The package's shape, as ``ARCHITECTURE.md`` draws it: a core that loads without torch, imports
that flow one way (no cycle, even through imports inside functions), and files small enough to
read in one sitting unless ``ARCHITECTURE.md`` says why not."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "optuna_spikenas"
MAX_LINES = 400

CORE = (
    "optuna_spikenas.config",
    "optuna_spikenas.budgets",
    "optuna_spikenas.sampler_catalog",
    "optuna_spikenas.proxy_catalog",
    "optuna_spikenas.space",
    "optuna_spikenas.autosnn_space",
    "optuna_spikenas.macros",
    "optuna_spikenas.dataset_catalog",
    "optuna_spikenas.limits",
    "optuna_spikenas.hardware.memory",
    "optuna_spikenas.hardware.imc",
)
"""Search spaces, macros, configs, budgets and the analytic hardware models."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Every package module and the package modules it imports, anywhere in its code."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def test_the_core_loads_without_torch():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "print(sorted(m for m in ('torch', 'spikingjelly') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_config_is_checked_without_torch(tmp_path):
    """Loading and validating a study's config (what every command does first) stays light."""
    config = ROOT / "studies" / "spikenas_memory.toml"
    code = (
        "import sys\nfrom optuna_spikenas.config import load_config\n"
        f"load_config({str(config)!r})\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(package_imports()) == []


def test_files_over_400_lines_are_named_in_architecture_md():
    named = set(
        re.findall(r"^\| `(optuna_spikenas/[\w/]+\.py)` \| \d+ \|", _architecture(), flags=re.M)
    )
    long = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in PACKAGE.rglob("*.py")
        if len(p.read_text().splitlines()) > MAX_LINES
    }
    assert set(long) <= named, f"over {MAX_LINES} lines and not in ARCHITECTURE.md: {long}"
    short = named - set(long)
    assert not short, f"ARCHITECTURE.md names files that are short now: {short}"


def _architecture() -> str:
    return (ROOT / "ARCHITECTURE.md").read_text()


def test_architecture_md_names_only_modules_that_exist():
    for path in re.findall(r"`(optuna_spikenas/[\w/]+\.py)`", _architecture()):
        assert (ROOT / path).is_file(), path


def test_registries_agree():
    """The names the config accepts are the ones the code implements: proxies (each loads, with
    the arguments of its kind), samplers (each builds and is described), hardware profiles (the
    folder)."""
    from optuna_spikenas.hardware.imc import PROFILES, load_profile
    from optuna_spikenas.proxy_catalog import PROXIES, SCORE_KINDS, proxy_function
    from optuna_spikenas.sampler_catalog import SAMPLERS
    from optuna_spikenas.samplers import make_sampler, sampler_settings

    for kind in SCORE_KINDS:
        arguments = list(inspect.signature(proxy_function(kind)).parameters)
        expected = ["network", "batches"] if PROXIES[kind].uses_network else ["arch", "macro"]
        assert arguments == expected, kind
    from optuna_spikenas.space import SearchSpace

    for name in SAMPLERS:
        assert make_sampler(name, 0, space=SearchSpace()) is not None
        assert sampler_settings(name) != name
    files = sorted(p.stem for p in (PACKAGE / "hardware" / "profiles").glob("*.toml"))
    assert list(PROFILES) == files
    assert all(load_profile(name).name for name in PROFILES)


def test_every_user_error_is_a_spikenas_error():
    """The CLI's one-line errors share one base class: a new error kind cannot slip past it."""
    import importlib
    import inspect

    from optuna_spikenas.errors import SpikeNASError

    kinds = []
    for name in sorted(package_imports()):
        if name.endswith("__main__"):  # running it is the command line
            continue
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, ValueError):
                kinds.append(cls)
    assert len(kinds) >= 12
    assert [k.__name__ for k in kinds if not issubclass(k, SpikeNASError)] == []
