"""Tests for the SVG architecture diagrams (optuna_spikenas.diagram)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from optuna_spikenas.autosnn_space import AUTOSNN_MACROS, POOL_AFTER, AutoSNNArchitecture
from optuna_spikenas.diagram import (
    UNUSED,
    autosnn_diagram_svg,
    autosnn_thumbnail_svg,
    cell_diagram_svg,
    cell_thumbnail_svg,
)
from optuna_spikenas.space import OPS, Architecture

SVG = "{http://www.w3.org/2000/svg}"
SNASNET = "0302 0030 3003 0000"  # SNASNet's CIFAR100 cell: has a backward edge 2 -> 0
BACKWARD = "0302 0020 4003 0300"  # backward edges 2 -> 0 (avgpool) and 3 -> 1 (conv3x3)
DEAD = "0301 0000 0001 0000"  # node 1 leads nowhere, node 2 gets no input
OTHER = "0334 0044 0003 0000"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == cls]


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def expected_labels(cell_text: str) -> Counter:
    """Edge labels read straight off the op matrix: [i][j] above the diagonal is forward,
    below it backward (output used at the next timestep)."""
    rows = cell_text.split()
    labels: Counter = Counter()
    for i in range(4):
        for j in range(4):
            code = int(rows[i][j])
            if code:
                labels[OPS[code] + (" (t+1)" if i > j else "")] += 1
    return labels


def edge_labels(cell_group: ET.Element) -> Counter:
    labels: Counter = Counter()
    for edge in groups(cell_group, "edge"):
        (label,) = texts(edge)
        labels[label] += 1
    return labels


def assert_inside(svg: str) -> None:
    """Every rect, circle, text and path end point lies inside the viewBox, which matches the
    explicit width and height."""
    root = parse(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert width > 0 and height > 0

    def inside(x: float, y: float, what: str) -> None:
        assert -0.5 <= x <= width + 0.5 and -0.5 <= y <= height + 0.5, (what, x, y, width, height)

    for rect in root.iter(f"{SVG}rect"):
        x, y = float(rect.get("x")), float(rect.get("y"))
        inside(x, y, "rect")
        inside(x + float(rect.get("width")), y + float(rect.get("height")), "rect")
    for circle in root.iter(f"{SVG}circle"):
        cx, cy, r = (float(circle.get(k)) for k in ("cx", "cy", "r"))
        inside(cx - r, cy - r, "circle")
        inside(cx + r, cy + r, "circle")
    for text in root.iter(f"{SVG}text"):
        x, y, size = float(text.get("x")), float(text.get("y")), float(text.get("font-size"))
        extent = 0.55 * size * len(text.text or "")  # a typical sans-serif average
        left = {"start": x, "middle": x - extent / 2, "end": x - extent}[text.get("text-anchor")]
        inside(left, y - size, f"text {text.text!r}")
        inside(left + extent, y, f"text {text.text!r}")
    for path in root.iter(f"{SVG}path"):
        if path.get("marker-end") or path.get("stroke"):  # skip the markers' own shapes
            start = re.match(r"M\s*([-\d.]+)[ ,]([-\d.]+)", path.get("d"))
            inside(float(start.group(1)), float(start.group(2)), "path start")
            end = re.search(r"([-\d.]+)[ ,]([-\d.]+)$", path.get("d"))
            if end:
                inside(float(end.group(1)), float(end.group(2)), "path end")


# --- SNASNet cells ---------------------------------------------------------------------------


def test_shared_cell_is_drawn_once_with_one_arrow_per_edge() -> None:
    arch = Architecture.parse(SNASNET, 2, 16)
    root = parse(cell_diagram_svg(arch))
    (cell,) = groups(root, "cell")
    assert edge_labels(cell) == expected_labels(SNASNET)
    assert sum(expected_labels(SNASNET).values()) == 5  # 4 forward, 1 backward
    assert any("shared by all 2 cells" in t for t in texts(cell))
    for edge in groups(cell, "edge"):
        (path,) = edge.iter(f"{SVG}path")
        assert path.get("marker-end", "").startswith("url(#arrow-")


def test_backward_edges_are_dashed_and_forward_ones_are_not() -> None:
    root = parse(cell_diagram_svg(Architecture.parse(BACKWARD, 1, 16)))
    (cell,) = groups(root, "cell")
    assert edge_labels(cell) == expected_labels(BACKWARD)
    dashed = 0
    for edge in groups(cell, "edge"):
        (label,) = texts(edge)
        (path,) = edge.iter(f"{SVG}path")
        assert (path.get("stroke-dasharray") is not None) == label.endswith("(t+1)"), label
        dashed += path.get("stroke-dasharray") is not None
    assert dashed == 2
    assert any("backward edge" in t for t in texts(root))


def test_operations_have_distinct_colours_and_a_legend() -> None:
    root = parse(cell_diagram_svg(Architecture.parse(BACKWARD, 1, 16)))
    colours: dict[str, set[str]] = {}
    for edge in groups(root, "edge"):
        (path,) = edge.iter(f"{SVG}path")
        op = texts(edge)[0].removesuffix(" (t+1)")
        colours.setdefault(op, set()).add(path.get("stroke"))
    assert all(len(c) == 1 for c in colours.values())
    assert len({c for cs in colours.values() for c in cs}) == len(colours) == 3
    (legend,) = groups(root, "legend")
    assert {"conv1x1", "conv3x3", "avgpool3x3"} <= set(texts(legend))
    assert "skip" not in texts(legend)


def test_different_cells_are_each_drawn() -> None:
    arch = Architecture.parse(f"{SNASNET} / {OTHER}", 2, 16)
    root = parse(cell_diagram_svg(arch))
    assert texts(root)[0].startswith(f"SNASNet architecture {SNASNET} / {OTHER}  |")
    cells = groups(root, "cell")
    assert len(cells) == 2
    for group, text in zip(cells, (SNASNET, OTHER), strict=True):
        assert edge_labels(group) == expected_labels(text)
    assert texts(cells[0])[0].startswith("cell 1:")
    assert texts(cells[1])[0].startswith("cell 2:")
    assert "32 channels" in texts(cells[1])[0]


def test_repeated_cells_are_grouped() -> None:
    arch = Architecture.parse(f"{DEAD} / {OTHER} / {DEAD}", 3, 8)
    cells = groups(parse(cell_diagram_svg(arch)), "cell")
    assert len(cells) == 2
    assert texts(cells[0])[0].startswith(f"cells 1, 3: {DEAD}")
    assert "(8, 32 channels)" in texts(cells[0])[0]


def test_unused_nodes_are_grey() -> None:
    root = parse(cell_diagram_svg(Architecture.parse(DEAD, 1, 16)))
    strokes = [c.get("stroke") for c in root.iter(f"{SVG}circle")]
    assert len(strokes) == 4
    assert [s == UNUSED for s in strokes] == [False, True, True, False]
    faded = [texts(e)[0] for e in groups(root, "edge") if e.get("opacity") != "1"]
    assert sorted(faded) == ["conv3x3", "skip"]  # 0 -> 1 and 2 -> 3; 0 -> 3 is kept
    full = parse(cell_diagram_svg(Architecture.parse(SNASNET, 1, 16)))
    assert UNUSED not in {c.get("stroke") for c in full.iter(f"{SVG}circle")}


def test_title_and_escaped_caption() -> None:
    caption = ['trial 7: <acc> & "spikes" > 0', "héllo → ok"]
    svg = cell_diagram_svg(Architecture.parse(SNASNET, 2, 16), caption)
    assert svg.isascii()
    assert "&lt;acc&gt; &amp;" in svg
    all_text = texts(parse(svg))
    assert all_text[0] == f"SNASNet architecture {SNASNET}  |  width 16, 2 cells"
    assert all_text[1:3] == caption


ARCHS = [
    (SNASNET, 2),
    (BACKWARD, 1),
    (DEAD, 3),
    (f"{SNASNET} / {OTHER} / {BACKWARD} / {DEAD} / {OTHER}", 5),
    ("0000 0000 0000 0000", 1),
]


@pytest.mark.parametrize(("text", "num_cells"), ARCHS)
@pytest.mark.parametrize("caption", [(), ["a long caption line, wider than the cell drawing " * 3]])
def test_cell_diagram_lies_inside_its_view_box(text: str, num_cells: int, caption) -> None:
    assert_inside(cell_diagram_svg(Architecture.parse(text, num_cells, 16), caption))


# --- AutoSNN ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["autosnn-16", "autosnn-128"])
def test_autosnn_blocks_pools_and_channels(name: str) -> None:
    arch = AutoSNNArchitecture.parse("SRB_k5,SRB_k5,skip,SRB_k3,SCB_k5")
    macro = AUTOSNN_MACROS[name]
    root = parse(autosnn_diagram_svg(arch, macro))
    blocks = groups(root, "block")
    assert len(blocks) == 5
    for k, (group, block, (cin, cout)) in enumerate(
        zip(blocks, arch.blocks, macro.channels(), strict=True), start=1
    ):
        name_line, details = texts(group)
        assert name_line == f"block {k}: {block}"
        assert details.startswith(f"{cin} → {cout} ch")
    assert len(groups(root, "pool")) == len(POOL_AFTER) == 3
    order = [g.get("class") for g in root.iter(f"{SVG}g") if g.get("class")]
    assert order == [
        "input", "stem", "block", "pool", "block", "block", "pool", "block", "block", "pool",
        "head",
    ]  # fmt: skip
    assert texts(groups(root, "stem")[0])[1] == f"3 → {macro.width} ch"
    head = texts(groups(root, "head")[0])[1]
    assert f"{macro.head_features()} → 100" in head


def test_autosnn_caption_escaped_and_inside_view_box() -> None:
    arch = AutoSNNArchitecture.parse("skip,skip,SCB_k3,SRB_k3,SRB_k5")
    svg = autosnn_diagram_svg(arch, AUTOSNN_MACROS["autosnn-64"], ["a<b & c>d"])
    assert "a&lt;b &amp; c&gt;d" in svg
    root = parse(svg)
    assert texts(root)[1] == "a<b & c>d"
    assert "conv1x1 projection" in texts(groups(root, "block")[1])[1]  # 64 -> 128 channels
    assert_inside(svg)
    assert_inside(autosnn_diagram_svg(arch, AUTOSNN_MACROS["autosnn-16"], ["x" * 150]))


# --- thumbnails: optuna-dashboard's artifact card --------------------------------------------

CARD = (200, 150)  # optuna-dashboard 0.21's artifact card: the image is fitted into this box
SHORT = {"skip": "skip", "conv1x1": "1×1", "conv3x3": "3×3", "avgpool3x3": "pool"}


def card_scale(root: ET.Element) -> float:
    """How much the card shrinks the image (object-fit: contain)."""
    return min(CARD[0] / float(root.get("width")), CARD[1] / float(root.get("height")))


def smallest_text_on_card(root: ET.Element) -> float:
    """The smallest font size of the image, in px, once fitted into the card."""
    return card_scale(root) * min(float(t.get("font-size")) for t in root.iter(f"{SVG}text"))


@pytest.mark.parametrize(("text", "num_cells"), ARCHS)
def test_cell_thumbnail_is_4_3_inside_its_box_and_labels_every_edge(text, num_cells) -> None:
    arch = Architecture.parse(text, num_cells, 16)
    svg = cell_thumbnail_svg(arch)
    assert_inside(svg)
    root = parse(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    assert width / height == pytest.approx(4 / 3, abs=0.01)  # the card is filled, not letterboxed
    cells = groups(root, "cell")
    assert len(cells) == len(dict.fromkeys(arch.cells))  # a panel per distinct cell
    for group, cell in zip(cells, dict.fromkeys(arch.cells), strict=True):
        expected = Counter(
            SHORT[label.removesuffix(" (t+1)")] for label in expected_labels(str(cell)).elements()
        )
        assert edge_labels(group) == expected
        for edge in groups(group, "edge"):  # the full name stays in the edge's tooltip
            (path,) = edge.iter(f"{SVG}path")
            backward = edge.findtext(f"{SVG}title").startswith("backward")
            assert (path.get("stroke-dasharray") is not None) == backward


def test_cell_thumbnail_text_is_readable_on_the_card_and_the_full_diagram_is_not() -> None:
    """The reason for the thumbnail: fitted into the 200 x 150 card, the full diagram's text is
    about 3 px high, the thumbnail's 12 px when one cell is shared by all."""
    arch = Architecture.parse(f"{SNASNET} / {SNASNET}", 2, 16)
    assert smallest_text_on_card(parse(cell_thumbnail_svg(arch))) >= 11.5
    assert smallest_text_on_card(parse(cell_diagram_svg(arch, ["study s, trial 3"]))) < 4
    two = Architecture.parse(f"{SNASNET} / {OTHER}", 2, 16)  # two panels: smaller, still legible
    assert smallest_text_on_card(parse(cell_thumbnail_svg(two))) >= 7


def test_autosnn_thumbnail_has_a_box_per_block_readable_on_the_card() -> None:
    arch = AutoSNNArchitecture.parse("SRB_k5,SRB_k5,skip,SRB_k3,SCB_k5")
    svg = autosnn_thumbnail_svg(arch)
    assert_inside(svg)
    root = parse(svg)
    blocks = groups(root, "block")
    assert [texts(b) for b in blocks] == [[f"{k}: {b}"] for k, b in enumerate(arch.blocks, 1)]
    assert smallest_text_on_card(root) >= 11.5
    dashed = [b for b in blocks if next(b.iter(f"{SVG}rect")).get("stroke-dasharray")]
    assert [texts(b) for b in dashed] == [["3: skip"]]
