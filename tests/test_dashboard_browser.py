"""The dashboard as a user opens it: `optuna-spikenas dashboard` on a study made by a real
search, read through its JSON API and rendered in headless Chromium (Debian's package).

Set ``SPIKENAS_SCREENSHOT_DIR=docs`` to refresh the screenshots README shows; set
``SPIKENAS_REQUIRE_CHROMIUM=1`` (CI does) to fail rather than skip without Chromium.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
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
SCORED_TRIAL = ("spikes_per_image", "synops_per_image")
EVERY_ARTIFACT = {"architecture.json", "cell.svg", "cell-thumbnail.svg"}
SPIKES = "spikes_by_layer.csv"  # the per-layer spikes: an artifact, not a user attribute


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
        assert "spikes_by_layer" not in attrs
        artifacts = {a["filename"]: a for a in trial["artifacts"]}
        prefix = f"{base}/artifacts/{study_id}/{trial['trial_id']}"
        if attrs["feasible"] == "True":
            feasible += 1
            assert set(SCORED_TRIAL) <= set(attrs)
            assert set(artifacts) == EVERY_ARTIFACT | {SPIKES}
            assert artifacts[SPIKES]["mimetype"] == "text/csv"
            rows = list(csv.DictReader(io.StringIO(
                get(f"{prefix}/{artifacts[SPIKES]['artifact_id']}").decode()
            )))
            total = sum(float(r["spikes_per_image"]) for r in rows)
            assert total == pytest.approx(float(attrs["spikes_per_image"]), abs=1e-3 * len(rows))
        else:
            assert set(artifacts) == EVERY_ARTIFACT
        for name in ("cell.svg", "cell-thumbnail.svg"):
            assert artifacts[name]["mimetype"] == "image/svg+xml"
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


def attrs_of(trial: dict) -> dict[str, str]:
    return {a["key"]: a["value"] for a in trial["user_attrs"]}


def shown_trials(detail: dict) -> tuple[dict, dict]:
    """The last scored trial (feasible, finite score) and the last over-budget one: the trial
    pages the checks and screenshots use."""
    scored = [t for t in detail["trials"] if "spikes_per_image" in attrs_of(t)]
    over = [t for t in detail["trials"] if attrs_of(t)["feasible"] == "False"]
    return scored[-1], over[-1]


def trial_page(base: str, study_id: int, trial: dict) -> str:
    return f"{base}/dashboard/studies/{study_id}/trials?numbers={trial['number']}"


def test_chromium_shows_trials_attributes_and_the_cell_diagram(dashboard, chromium):
    base, tmp = dashboard
    study_id, detail = study_detail(base)
    trial, _ = shown_trials(detail)
    attrs, number = attrs_of(trial), trial["number"]
    dom = browser.dump_dom(trial_page(base, study_id, trial), wait_ms=10_000, chromium=chromium)
    text = visible_text(dom)
    assert f"Trial {number} (trial_id={trial['trial_id']})" in text  # the trial opened
    for number in range(8):
        assert f"Trial {number}" in text  # the list of trials
    for key in EVERY_TRIAL:
        assert f"{key} {attrs[key]}".strip() in text, key
    images = re.findall(r"<img[^>]*>", dom)
    for name in ("cell.svg", "cell-thumbnail.svg"):
        diagram = next(i for i in images if f'alt="{name}"' in i)
        src = html.unescape(re.search(r'src="([^"]+)"', diagram).group(1))
        assert ET.fromstring(get(f"{base}{src}")).tag.endswith("svg")  # the image it shows
    assert "architecture.json" in text and SPIKES in text

    study_dom = browser.dump_dom(f"{base}/dashboard/studies/{study_id}", wait_ms=10_000,
                                 chromium=chromium)
    study_text = visible_text(study_dom)
    assert "Search progress" in study_dom and "Pareto front" in study_dom  # our figures
    assert "Best Trial" in study_text


# What a trial page shows where, measured in Chromium (DevTools protocol, browser.evaluate)
# once the note and the images are there; then the spikes artifact opened as a table.
TRIAL_PAGE_FACTS = """
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  for (let i = 0; i < 200 && !document.querySelector("h3"); i++) await sleep(100);
  for (let i = 0; i < 100 && [...document.images].some(im => !im.complete); i++) await sleep(100);
  const top = e => e ? Math.round(e.getBoundingClientRect().top) : null;
  const label = t => [...document.querySelectorAll("body *")].find(
    e => e.children.length === 0 && e.textContent.trim() === t);
  const h3 = document.querySelector("h3");
  const facts = {
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    innerHeight: window.innerHeight,
    headline: h3 && h3.textContent,
    headlineTop: top(h3),
    codes: [...document.querySelectorAll("code")].map(c => [c.textContent, top(c)]),
    valueTop: top(label("Value")),
    userAttributesTop: top(label("User Attributes")),
    images: [...document.images].map(im => ({
      alt: im.alt, src: im.getAttribute("src"), loaded: im.complete && im.naturalWidth > 0,
      natural: [im.naturalWidth, im.naturalHeight],
      shown: [Math.round(im.getBoundingClientRect().width),
              Math.round(im.getBoundingClientRect().height)]})),
    table: null,
  };
  const button = document.querySelector('button[aria-label="show artifact table"]');
  if (button) {
    button.click();
    const find = () => [...document.querySelectorAll(".MuiModal-root table")][0];
    for (let i = 0; i < 50 && !find(); i++) await sleep(100);
    const table = find();
    facts.table = table && [...table.querySelectorAll("tbody tr")].map(
      r => [...r.cells].map(c => c.textContent));
  }
  return facts;
})()
"""


def expected_headline(trial: dict) -> str:
    """The note's first line, from the trial's user attributes and value as the API gives them."""
    attrs = attrs_of(trial)
    if attrs["feasible"] == "True":
        return f"✓ Feasible · score {trial['values'][0]:.4f}"
    bits, budget = float(attrs["memory_bits"]), float(attrs["memory_budget_bits"])
    return f"✗ Over budget (memory +{100 * (bits - budget) / budget:.1f} %), not scored"


def test_the_note_leads_the_trial_page_which_does_not_scroll_sideways(dashboard, chromium):
    """Architecture and feasibility first (the note, on the first screen, above the values),
    no sideways scrolling (the per-layer spikes were a long user attribute), the cell diagram in
    the note at full size and as a 4:3 thumbnail filling its artifact card, and the per-layer
    spikes as an artifact the dashboard opens as a table."""
    base, _ = dashboard
    study_id, detail = study_detail(base)
    for trial in shown_trials(detail):
        attrs = attrs_of(trial)
        facts = browser.evaluate(trial_page(base, study_id, trial), TRIAL_PAGE_FACTS, 1400, 1100,
                                 wait_ms=500, chromium=chromium)
        assert facts["scrollWidth"] <= facts["clientWidth"] == 1400, trial["number"]
        assert facts["headline"] == expected_headline(trial)
        architecture_top = dict(facts["codes"])[attrs["architecture"]]
        first_screen = facts["innerHeight"] / 3
        assert facts["headlineTop"] < architecture_top < first_screen
        assert architecture_top < facts["valueTop"] < facts["userAttributesTop"]
        artifacts = {a["filename"]: a["artifact_id"] for a in trial["artifacts"]}
        images = {image["alt"]: image for image in facts["images"]}
        prefix = f"/artifacts/{study_id}/{trial['trial_id']}"
        in_note = images["cell diagram"]
        assert in_note["src"] == f"{prefix}/{artifacts['cell.svg']}" and in_note["loaded"]
        assert in_note["shown"] == in_note["natural"]  # full size, not a thumbnail
        thumbnail = images["cell-thumbnail.svg"]
        assert thumbnail["src"] == f"{prefix}/{artifacts['cell-thumbnail.svg']}"
        assert thumbnail["loaded"] and thumbnail["shown"] == [200, 150]
        width, height = thumbnail["natural"]
        assert math.isclose(width / height, 4 / 3, rel_tol=0.01)  # fills the card
        if SPIKES in artifacts:
            spikes = get(f"{base}{prefix}/{artifacts[SPIKES]}").decode()
            rows = list(csv.reader(io.StringIO(spikes)))
            assert facts["table"] == rows[1:]  # the dashboard's table of the CSV
        else:
            assert facts["table"] is None and attrs["feasible"] == "False"


STUDY_NOTE_FACTS = """
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  for (let i = 0; i < 200 && !document.querySelector("h2"); i++) await sleep(100);
  for (let i = 0; i < 100 && [...document.images].some(im => !im.complete); i++) await sleep(100);
  return {
    headings: [...document.querySelectorAll("h2")].map(h => h.textContent),
    links: [...document.querySelectorAll("a")].map(a => [a.textContent, a.href]),
    images: [...document.images].map(im => [im.getAttribute("src"), im.naturalWidth > 0]),
    text: document.body.innerText,
  };
})()
"""


def test_the_study_note_names_the_search_result(dashboard, chromium):
    base, _ = dashboard
    study_id, detail = study_detail(base)
    feasible = [t for t in detail["trials"] if attrs_of(t)["feasible"] == "True"]
    best = max(feasible, key=lambda t: t["values"][0])
    facts = browser.evaluate(f"{base}/dashboard/studies/{study_id}/note", STUDY_NOTE_FACTS,
                             1400, 1100, wait_ms=500, chromium=chromium)
    assert facts["headings"] == ["Search result", "Trials"]
    link = f"{base}/dashboard/studies/{study_id}/trials?numbers={best['number']}"
    assert [f"Trial {best['number']}", link] in facts["links"]  # opens the trial's page
    assert attrs_of(best)["architecture"] in facts["text"]
    cell = next(a["artifact_id"] for a in best["artifacts"] if a["filename"] == "cell.svg")
    assert [f"/artifacts/{study_id}/{best['trial_id']}/{cell}", True] in facts["images"]
    over = len(detail["trials"]) - len(feasible)
    assert f"8 trials: {len(feasible)} scored, {over} over budget (memory {over})." in facts["text"]


def test_screenshots(dashboard, chromium):
    """README's screenshots (``SPIKENAS_SCREENSHOT_DIR=docs`` writes them there)."""
    base, tmp = dashboard
    study_id, detail = study_detail(base)
    scored, over = shown_trials(detail)
    out = Path(os.environ.get("SPIKENAS_SCREENSHOT_DIR") or tmp)
    out.mkdir(parents=True, exist_ok=True)
    study = f"{base}/dashboard/studies/{study_id}"
    for name, url, height in (
        ("dashboard-trial.png", trial_page(base, study_id, scored), 1700),
        ("dashboard-trial-over-budget.png", trial_page(base, study_id, over), 1000),
        ("dashboard-study.png", study, 1900),
        ("dashboard-study-note.png", f"{study}/note", 900),
    ):
        png = browser.screenshot(url, out / name, 1400, height, wait_ms=10_000, chromium=chromium)
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
