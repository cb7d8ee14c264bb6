"""The dashboard as a user opens it: `optuna-spikenas dashboard` on a study made by a real
search, read through its JSON API and rendered in headless Chromium (Debian's package).

Set ``SPIKENAS_SCREENSHOT_DIR=docs`` to refresh the screenshots README shows; set
``SPIKENAS_REQUIRE_CHROMIUM=1`` (CI does) to fail rather than skip without Chromium.
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from optuna_spikenas import browser
from optuna_spikenas.architecture_file import read_architecture

BIN = Path(sys.executable).parent
SEARCH_TOML = """
seed = 0
[dataset]
name = "digits"
[space]
macro = "light"
widths = [4]
[score]
batch_size = 16
repeats = 1
timesteps = 2
[budget]
max_parameters = 1500
[hardware]
profile = "spikesim-64"
[search]
sampler = "random"
n_trials = 8
"""
# What every trial must show (the architecture, its size, hardware costs, feasibility per
# constraint); scored trials also carry their spikes.
EVERY_TRIAL = (
    "architecture",
    "parameters",
    "memory_bits",
    "area_mm2",
    "latency_ms",
    "energy_uj",
    "feasible",
    "broken_budgets",
    "constraint_valid",
    "constraint_memory",
)
SCORED_TRIAL = ("spikes_per_image", "synops_per_image", "spikes_by_layer")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """A real search through the CLI, then `optuna-spikenas dashboard` serving it."""
    tmp = tmp_path_factory.mktemp("dashboard")
    storage = f"sqlite:///{tmp / 'nas.db'}"
    config = tmp / "search.toml"
    config.write_text(SEARCH_TOML)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [str(BIN / "optuna"), "create-study", "--storage", storage, "--study-name", "tiny",
         "--direction", "maximize"], check=True, capture_output=True, env=env,
    )
    subprocess.run(
        [str(BIN / "optuna-spikenas"), "optimize", "--storage", storage, "--study-name", "tiny",
         "--config", str(config), "--quiet"], check=True, capture_output=True, env=env,
    )
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "optuna-spikenas"), "dashboard", "--storage", storage, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            get(f"{base}/api/meta")
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"dashboard did not start: {server.stdout.read()}")
            time.sleep(0.3)
    yield base, tmp
    server.terminate()
    server.wait(timeout=10)


def study_detail(base: str) -> tuple[int, dict]:
    (summary,) = json.loads(get(f"{base}/api/studies"))["study_summaries"]
    study_id = summary["study_id"]
    return study_id, json.loads(get(f"{base}/api/studies/{study_id}?after=0"))


def test_json_api_gives_every_trial_its_attributes_and_artifacts(dashboard):
    base, _ = dashboard
    study_id, detail = study_detail(base)
    trials = detail["trials"]
    assert len(trials) == 8
    feasible = 0
    for trial in trials:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert set(EVERY_TRIAL) <= set(attrs), trial["number"]
        if attrs["feasible"] == "True":
            feasible += 1
            assert set(SCORED_TRIAL) <= set(attrs)
        artifacts = {a["filename"]: a for a in trial["artifacts"]}
        assert set(artifacts) == {"architecture.json", "cell.svg"}
        assert artifacts["cell.svg"]["mimetype"] == "image/svg+xml"
        prefix = f"{base}/artifacts/{study_id}/{trial['trial_id']}"
        document = json.loads(get(f"{prefix}/{artifacts['architecture.json']['artifact_id']}"))
        arch, _, _ = read_architecture(document)
        assert str(arch) == attrs["architecture"]
        assert document["measured"]["parameters"] == int(attrs["parameters"])
        svg = ET.fromstring(get(f"{prefix}/{artifacts['cell.svg']['artifact_id']}"))
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert 0 < feasible < len(trials)  # the budget rejects some: both kinds are checked
    figures = {f["id"] for f in detail["plotly_graph_objects"]}
    assert figures == {"search-progress", "pareto-front"}


def visible_text(dom: str) -> str:
    body = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", body))
    return re.sub(r"\s+", " ", text)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    text: str = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self):
        """This element and every element inside it, in document order."""
        yield self
        for child in self.children:
            yield from child.walk()


class _TreeBuilder(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
            "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.open = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.open[-1].children.append(element)
        if tag not in self.VOID:
            self.open.append(element)

    def handle_startendtag(self, tag, attrs):
        self.open[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                return

    def handle_data(self, data):
        self.open[-1].text += data


def element_by_id(dom: str, element_id: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(dom)
    builder.close()
    return next(e for e in builder.root.walk() if e.attrs.get("id") == element_id)


def fill(element: Element) -> str | None:
    found = re.search(r"(?:^|;)\s*fill:\s*([^;]+)", element.attrs.get("style", ""))
    return found.group(1).strip() if found else None


@pytest.fixture(scope="module")
def chromium():
    found = browser.find_chromium()
    if found is None:
        if os.environ.get("SPIKENAS_REQUIRE_CHROMIUM"):
            pytest.fail("SPIKENAS_REQUIRE_CHROMIUM is set but no Chromium was found")
        pytest.skip("no system Chromium (apt-get install chromium)")
    return found


def test_chromium_shows_trials_attributes_and_the_cell_diagram(dashboard, chromium):
    base, tmp = dashboard
    study_id, detail = study_detail(base)
    def attrs_of(trial: dict) -> dict[str, str]:
        return {a["key"]: a["value"] for a in trial["user_attrs"]}

    # the last scored trial (feasible, finite score): the one the screenshot shows
    trial = [t for t in detail["trials"] if "spikes_per_image" in attrs_of(t)][-1]
    attrs, number = attrs_of(trial), trial["number"]
    page = f"{base}/dashboard/studies/{study_id}/trials?numbers={number}"
    dom = browser.dump_dom(page, wait_ms=10_000, chromium=chromium)
    text = visible_text(dom)
    assert f"Trial {number} (trial_id={trial['trial_id']})" in text  # the trial opened
    for number in range(8):
        assert f"Trial {number}" in text  # the list of trials
    for key in EVERY_TRIAL:
        assert f"{key} {attrs[key]}".strip() in text, key
    images = re.findall(r"<img[^>]*>", dom)
    diagram = next(i for i in images if 'alt="cell.svg"' in i)
    src = html.unescape(re.search(r'src="([^"]+)"', diagram).group(1))
    assert ET.fromstring(get(f"{base}{src}")).tag.endswith("svg")  # the image it shows
    assert "architecture.json" in text

    study_dom = browser.dump_dom(f"{base}/dashboard/studies/{study_id}", wait_ms=10_000,
                                 chromium=chromium)
    study_text = visible_text(study_dom)
    assert "Search progress" in study_dom and "Pareto front" in study_dom  # our figures
    assert "Best Trial" in study_text

    out = Path(os.environ.get("SPIKENAS_SCREENSHOT_DIR") or tmp)
    out.mkdir(parents=True, exist_ok=True)
    for name, url, height in (("dashboard-trial.png", page, 1100),
                              ("dashboard-study.png", f"{base}/dashboard/studies/{study_id}",
                               1900)):
        png = browser.screenshot(url, out / name, 1400, height, wait_ms=10_000,
                                 chromium=chromium)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


GREY = "rgb(204, 204, 204)"  # optuna-dashboard's "#cccccc" for infeasible trials


def test_chromium_greys_out_the_over_budget_trials(dashboard, chromium):
    """optuna-dashboard draws a completed trial whose ``constraints`` list has a positive value
    as infeasible: on the study page's timeline, a grey bar of the trace "Infeasible" instead of
    a bar of "Complete". Without the list every trial would be drawn feasible."""
    base, _ = dashboard
    study_id, detail = study_detail(base)
    trials = detail["trials"]
    assert all(t["state"] == "Complete" and t["constraints"] for t in trials)
    infeasible = [t["number"] for t in trials if any(v > 0 for v in t["constraints"])]
    over_budget = [
        t["number"] for t in trials
        if {a["key"]: a["value"] for a in t["user_attrs"]}["feasible"] == "False"
    ]
    assert infeasible == over_budget and 0 < len(infeasible) < len(trials)

    dom = browser.dump_dom(f"{base}/dashboard/studies/{study_id}", wait_ms=10_000,
                           chromium=chromium)
    timeline = element_by_id(dom, "graph-timeline")
    legend = [e.text for e in timeline.walk() if "legendtext" in e.classes]
    traces = [e for e in timeline.walk() if {"trace", "bars"} <= e.classes]
    assert legend == ["Complete", "Infeasible"] and len(traces) == 2
    bars = {
        name: [fill(p) for p in trace.walk() if p.tag == "path"]
        for name, trace in zip(legend, traces, strict=True)
    }
    assert bars["Infeasible"] == [GREY] * len(infeasible)
    assert len(bars["Complete"]) == len(trials) - len(infeasible)
    assert GREY not in bars["Complete"]
