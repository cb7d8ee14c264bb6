"""Diagrams of found architectures as self-contained SVG strings (standard library only).

``cell_diagram_svg`` draws SNASNet cells: nodes 0 (input) .. 3 (output) on a line, forward edges
as arrows above it, backward (temporal) edges dashed below it, one colour per operation.
``autosnn_diagram_svg`` draws an AutoSNN network as a top-down chain of boxes. All return plain
SVG 1.1 (rect, circle, path, text, marker, g) that browsers and optuna-dashboard show as an image;
text is XML-escaped and non-ASCII characters are written as character references.

``cell_thumbnail_svg`` and ``autosnn_thumbnail_svg`` draw the same architectures for
optuna-dashboard's artifact card, which shows an image scaled into a 200 x 150 box: 4:3, no
captions, short edge labels and large type (12 px on the card when one cell is shared by all).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from optuna_spikenas.space import NUM_NODES, OPS, Architecture, Cell

if TYPE_CHECKING:
    from optuna_spikenas.autosnn_space import AutoSNNArchitecture, AutoSNNMacro

OP_COLOURS = {
    "skip": "#1f77b4",
    "conv1x1": "#2ca02c",
    "conv3x3": "#d62728",
    "avgpool3x3": "#9467bd",
}
UNUSED = "#b0b0b0"
THUMBNAIL_LABELS = {"skip": "skip", "conv1x1": "1×1", "conv3x3": "3×3", "avgpool3x3": "pool"}
FONT = 12
MARGIN = 20
NODE_GAP = 170  # horizontal distance between cell nodes
RADIUS = 17
FORWARD_RISE = (0, 0, 48, 92)  # apex height of a forward edge, by span j - i
BACKWARD_DROP = (0, 34, 70, 106)  # depth of a backward edge, by span i - j


def text_width(text: str, size: float = FONT) -> float:
    """A generous estimate of the rendered width of ``text`` in a sans-serif font."""
    return 0.62 * size * len(text)


def _text(
    x: float, y: float, text: str, size: float = FONT, anchor: str = "start", **attrs: object
) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def _svg(width: float, height: float, title: str, body: list[str], arrow: float = 9) -> str:
    w, h = int(width + 0.5), int(height + 0.5)
    markers = "".join(
        f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="{arrow}" '
        f'markerHeight="{arrow}" markerUnits="userSpaceOnUse" orient="auto">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for name, colour in [*OP_COLOURS.items(), ("plain", "#444")]
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="sans-serif">'
        f"<title>{escape(title)}</title><defs>{markers}</defs>"
        f'<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>' + "\n".join(body) + "</svg>"
    )
    return svg.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _header(lines: Sequence[str], y: float) -> tuple[list[str], float]:
    """The bold first line and the caption lines below it; returns the elements and the next y."""
    out = []
    for k, line in enumerate(lines):
        y += 20 if k == 0 else 17
        weight = "bold" if k == 0 else "normal"
        out.append(_text(MARGIN, y, line, FONT + 2 if k == 0 else FONT, font_weight=weight))
    return out, y


# --- SNASNet cells ---------------------------------------------------------------------------


def _edge(
    x1: float,
    x2: float,
    y: float,
    span_h: float,
    op: str,
    backward: bool,
    used: bool,
    short: bool = False,
    size: float = FONT - 1,
    radius: float = RADIUS,
) -> str:
    """One edge as a <g class="edge">: a quadratic arc from node to node and its label
    (``short``: the thumbnail's label, ``THUMBNAIL_LABELS``, the dashes alone mark t+1)."""
    cx, cy = (x1 + x2) / 2, y - 2 * span_h  # control point; the arc's apex is at height span_h
    ends = []
    for px in (x1, x2):
        dx, dy = cx - px, cy - y
        norm = (dx * dx + dy * dy) ** 0.5
        ends.append((px + radius * dx / norm, y + radius * dy / norm))
    (sx, sy), (ex, ey) = ends
    mx, my = 0.25 * sx + 0.5 * cx + 0.25 * ex, 0.25 * sy + 0.5 * cy + 0.25 * ey
    full = f"{op} (t+1)" if backward else op
    label = THUMBNAIL_LABELS[op] if short else full
    colour, opacity = OP_COLOURS[op], "1" if used else "0.35"
    dash = f' stroke-dasharray="{size / 2:.0f} {size / 3:.0f}"' if backward else ""
    lw, lh = text_width(label, size) + size / 2, size + 5
    return (
        f'<g class="edge" opacity="{opacity}"><title>{"backward" if backward else "forward"} '
        f"edge: {escape(full)}</title>"
        f'<path d="M{sx:.1f},{sy:.1f} Q{cx:.1f},{cy:.1f} {ex:.1f},{ey:.1f}" fill="none" '
        f'stroke="{colour}" stroke-width="{size / 6:.1f}"{dash} marker-end="url(#arrow-{op})"/>'
        f'<rect x="{mx - lw / 2:.1f}" y="{my - lh / 2:.1f}" width="{lw:.1f}" height="{lh:.1f}" '
        f'rx="3" fill="white" fill-opacity="0.9"/>'
        + _text(mx, my + 0.36 * size, label, size, "middle", fill=colour)
        + "</g>"
    )


def _cell_panel(cell: Cell, label: str, top: float) -> tuple[list[str], float]:
    """A cell drawn below ``top``; returns its elements and its height."""
    edges = list(cell.edges())
    kept = set(cell.pruned().edges())
    useful = {n for s, d, _ in kept for n in (s, d)} | {0, NUM_NODES - 1}
    rise = max([FORWARD_RISE[d - s] for s, d, _ in edges if s < d] + [RADIUS])
    drop = max([BACKWARD_DROP[s - d] for s, d, _ in edges if s > d] + [RADIUS])
    y = top + 22 + rise + 10  # the node line
    xs = [MARGIN + 50 + RADIUS + k * NODE_GAP for k in range(NUM_NODES)]
    out = ['<g class="cell">', _text(MARGIN, top + 16, label, FONT + 1, font_weight="bold")]
    for s, d, code in edges:
        backward = s > d
        h = -BACKWARD_DROP[s - d] if backward else FORWARD_RISE[d - s]
        out.append(_edge(xs[s], xs[d], y, h, OPS[code], backward, (s, d, code) in kept))
    for k, x in enumerate(xs):
        fill, stroke = ("#f4f4f4", UNUSED) if k not in useful else ("#fff8dc", "#444")
        out.append(
            f'<circle class="node" cx="{x}" cy="{y:.1f}" r="{RADIUS}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
        )
        out.append(_text(x, y + 4.5, str(k), FONT + 1, "middle", fill=stroke))
    out.append(_text(xs[0] - RADIUS - 6, y + 4, "input", FONT, "end", fill="#444"))
    out.append(_text(xs[-1] + RADIUS + 6, y + 4, "output", FONT, "start", fill="#444"))
    out.append("</g>")
    return out, y + drop + 12 - top


def _cell_groups(cells: Sequence[Cell]) -> list[tuple[Cell, list[int]]]:
    """Distinct cells in order of first appearance, each with its (1-based) positions."""
    groups: dict[Cell, list[int]] = {}
    for k, cell in enumerate(cells, start=1):
        groups.setdefault(cell, []).append(k)
    return list(groups.items())


def cell_diagram_svg(arch: Architecture, caption: Sequence[str] = ()) -> str:
    """An SVG diagram of ``arch``'s cells; a cell shared by all network cells is drawn once."""
    n = arch.num_cells
    channels = [arch.width * 2**k for k in range(n)]  # cell k has width C * 2^(k-1)
    groups = _cell_groups(arch.cells)
    shared = str(arch.cells[0]) if len(groups) == 1 else str(arch)
    title = f"SNASNet architecture {shared}  |  width {arch.width}, {n} cell{'s' * (n > 1)}"
    body, y = _header([title, *caption], 0)
    ops_used: set[str] = set()
    any_backward = any_unused = False
    for cell, positions in groups:
        if n == 1:
            label = "cell"
        elif len(groups) == 1:
            label = f"cell, shared by all {n} cells"
        else:
            label = f"cell{'s' * (len(positions) > 1)} {', '.join(map(str, positions))}: {cell}"
        label += f" ({', '.join(str(channels[p - 1]) for p in positions)} channels)"
        if not cell.is_valid():
            label += " - invalid: the output is not reachable from the input"
        panel, height = _cell_panel(cell, label, y + 8)
        body += panel
        y += 8 + height
        ops_used |= {OPS[code] for _, _, code in cell.edges()}
        any_backward |= cell.has_backward_edges
        any_unused |= set(cell.edges()) != set(cell.pruned().edges())
    # Legend: a short sample line per operation, then notes.
    y += 18
    x: float = MARGIN
    body.append(f'<g class="legend">{_text(x, y + 4, "operations:", FONT, fill="#444")}')
    x += text_width("operations:") + 8
    for op in (op for op in OPS if op in ops_used):
        colour = OP_COLOURS[op]
        body.append(
            f'<path d="M{x:.1f},{y:.1f} h22" stroke="{colour}" stroke-width="3" fill="none"/>'
        )
        body.append(_text(x + 28, y + 4, op, FONT, fill=colour))
        x += 28 + text_width(op) + 14
    notes = []
    if any_backward:
        notes.append("dashed, below the nodes: backward edge, its output reaches the target at t+1")
    if any_unused:
        notes.append("grey node, faded edge: does not contribute to the cell output")
    for note in notes:
        y += 17
        body.append(_text(MARGIN, y + 4, note, FONT, fill="#444"))
    body.append("</g>")
    lines = [title, *caption, *notes]
    panel_width = MARGIN + 50 + 2 * RADIUS + 3 * NODE_GAP + 60 + MARGIN
    width = max([x + MARGIN, panel_width] + [2 * MARGIN + text_width(s, FONT + 2) for s in lines])
    return _svg(width, y + 16, title, body)


# --- AutoSNN ---------------------------------------------------------------------------------

BLOCK_FILLS = {"skip": "#ffffff", "SCB": "#d9f0d3", "SRB": "#fde0c5"}


def autosnn_diagram_svg(
    arch: AutoSNNArchitecture, macro: AutoSNNMacro, caption: Sequence[str] = ()
) -> str:
    """An SVG diagram of AutoSNN network ``arch`` in ``macro``, drawn top-down."""
    from optuna_spikenas.autosnn_space import POOL_AFTER

    sizes, final = macro.sizes()
    outputs = macro.num_classes * macro.voters_per_class
    rows: list[tuple[str, str, str, str]] = [  # (class, name, details, fill)
        ("input", "input", f"{macro.in_channels} ch, {macro.image_size}×{macro.image_size}", "#eee")
    ]
    rows.append(
        ("stem", "stem: conv3x3 + BN + PLIF", f"{macro.in_channels} → {macro.width} ch", "#dbe9f6")
    )
    for k, (name, (cin, cout)) in enumerate(zip(arch.blocks, macro.channels(), strict=True)):
        details = f"{cin} → {cout} ch, {sizes[k]}×{sizes[k]}"
        if name == "skip" and cin != cout:
            details += " (conv1x1 projection)"
        rows.append(("block", f"block {k + 1}: {name}", details, BLOCK_FILLS[name.split("_")[0]]))
        if k in POOL_AFTER:
            size = sizes[k + 1] if k + 1 < len(sizes) else final
            rows.append(("pool", f"max-pool 2×2 → {size}×{size}", "", "#f3e8ff"))
    head = f"linear {macro.head_features()} → {outputs}, PLIF"
    voting = f"{macro.num_classes} classes × {macro.voters_per_class} voters"
    rows.append(("head", "voting classifier", f"{head}; {voting}", "#eee"))

    title = f"AutoSNN architecture {arch}  |  {macro.name}, T = {macro.timesteps}"
    body, y = _header([title, *caption], 0)
    box_w = max(320.0, *(text_width(d or n) + 30 for _, n, d, _ in rows))
    x0, y = MARGIN, y + 18
    for k, (kind, name, details, fill) in enumerate(rows):
        h = 24 if kind == "pool" else 42
        if k:
            body.append(
                f'<path d="M{x0 + box_w / 2:.1f},{y - 16:.1f} V{y:.1f}" stroke="#444" '
                f'stroke-width="1.5" marker-end="url(#arrow-plain)"/>'
            )
        dash = ' stroke-dasharray="5 3"' if name.endswith("skip") else ""
        body.append(
            f'<g class="{kind}"><rect x="{x0}" y="{y:.1f}" width="{box_w:.1f}" height="{h}" '
            f'rx="5" fill="{fill}" stroke="#444" stroke-width="1.2"{dash}/>'
        )
        cx = x0 + box_w / 2
        if details:
            body.append(_text(cx, y + 17, name, FONT + 1, "middle", font_weight="bold"))
            body.append(_text(cx, y + 34, details, FONT - 1, "middle", fill="#333"))
        else:
            body.append(_text(cx, y + 16, name, FONT - 1, "middle", fill="#333"))
        body.append("</g>")
        y += h + 16
    legend = "SRB: spiking residual block, SCB: spiking conv block, kK: K×K kernels"
    body.append(_text(MARGIN, y + 6, legend, FONT - 1, fill="#444"))
    lines = [title, *caption]
    width = max(
        [x0 + box_w + MARGIN, 2 * MARGIN + text_width(legend, FONT - 1)]
        + [2 * MARGIN + text_width(s, FONT + 2) for s in lines]
    )
    return _svg(width, y + 18, title, body)


# --- thumbnails for optuna-dashboard's artifact card --------------------------------------

THUMB_W, THUMB_H = 400.0, 300.0  # the card's 4:3, drawn at twice its 200 x 150 px
THUMB_FONT = 24.0  # 12 px on the card
THUMB_GAP = 100.0  # between the nodes
THUMB_RADIUS = 19.0
THUMB_SPAN = (0.0, 33.0, 71.0, 109.0)  # an edge's apex height (above) or depth (below), by span


def _fit_4_3(content_w: float, content_h: float) -> tuple[float, float, float, float]:
    """The thumbnail's size (at least 400 x 300, always 4:3, so that the card shows it whole
    and as large as it can) and the offsets that centre content of this size in it."""
    height = max(THUMB_H, content_h, content_w * 3 / 4)
    width = height * 4 / 3
    return width, height, (width - content_w) / 2, (height - content_h) / 2


def _thumbnail_rows(cell: Cell) -> tuple[float, float]:
    """The room a cell's thumbnail panel needs above its node line (its label, then the highest
    forward edge's label) and below it (the deepest backward edge's label)."""
    edges = list(cell.edges())
    rise = max([THUMB_SPAN[d - s] for s, d, _ in edges if s < d] + [0.0])
    drop = max([THUMB_SPAN[s - d] for s, d, _ in edges if s > d] + [0.0])
    above = THUMB_FONT + 14 + rise + THUMB_FONT / 2 + 4
    below = max(drop + THUMB_FONT / 2, THUMB_RADIUS) + 8
    return above, below


def _thumbnail_panel(cell: Cell, label: str, x0: float, top: float, above: float) -> list[str]:
    kept = set(cell.pruned().edges())
    useful = {v for s, d, _ in kept for v in (s, d)} | {0, NUM_NODES - 1}
    y = top + above  # the node line
    xs = [x0 + 20 + THUMB_RADIUS + k * THUMB_GAP for k in range(NUM_NODES)]
    out = [
        '<g class="cell">',
        _text(x0 + 6, top + THUMB_FONT + 2, label, THUMB_FONT, font_weight="bold"),
    ]
    for s, d, code in cell.edges():
        backward = s > d
        h = -THUMB_SPAN[s - d] if backward else THUMB_SPAN[d - s]
        used = (s, d, code) in kept
        out.append(
            _edge(xs[s], xs[d], y, h, OPS[code], backward, used, True, THUMB_FONT, THUMB_RADIUS)
        )
    for k, x in enumerate(xs):
        fill, stroke = ("#f4f4f4", UNUSED) if k not in useful else ("#fff8dc", "#444")
        out.append(
            f'<circle class="node" cx="{x:.1f}" cy="{y:.1f}" r="{THUMB_RADIUS}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="2.5"/>'
        )
        out.append(_text(x, y + 0.36 * THUMB_FONT, str(k), THUMB_FONT, "middle", fill=stroke))
    out.append("</g>")
    return out


def cell_thumbnail_svg(arch: Architecture) -> str:
    """``arch``'s cells as optuna-dashboard's artifact card shows them best (module doc): a
    panel per distinct cell, its edges labelled ``skip``, ``1×1``, ``3×3``, ``pool``."""
    n = arch.num_cells
    panels = []
    for cell, positions in _cell_groups(arch.cells):
        if n == 1:
            label = "cell"
        elif len(positions) == n:
            label = f"cell, all {n} cells"
        else:
            label = f"cell{'s' * (len(positions) > 1)} {', '.join(map(str, positions))}"
        panels.append((cell, label, *_thumbnail_rows(cell)))
    content_w = 3 * THUMB_GAP + 2 * THUMB_RADIUS + 40
    content_h = sum(above + below for _, _, above, below in panels)
    width, height, x0, top = _fit_4_3(content_w, content_h)
    body: list[str] = []
    for cell, label, above, below in panels:
        body += _thumbnail_panel(cell, label, x0, top, above)
        top += above + below
    return _svg(width, height, f"cell diagram of {arch}", body, arrow=16)


def autosnn_thumbnail_svg(arch: AutoSNNArchitecture) -> str:
    """``arch``'s five blocks as optuna-dashboard's artifact card shows them best (module doc):
    a box per block, top to bottom, coloured as in :func:`autosnn_diagram_svg`."""
    row, gap, size = 44.0, 10.0, 24.0
    content_w, content_h = 360.0, len(arch.blocks) * (row + gap) - gap
    width, height, x0, y0 = _fit_4_3(content_w, content_h)
    body = []
    for k, name in enumerate(arch.blocks):
        y = y0 + k * (row + gap)
        dash = ' stroke-dasharray="8 5"' if name == "skip" else ""
        fill = BLOCK_FILLS[name.split("_")[0]]
        body.append(
            f'<g class="block"><rect x="{x0:.1f}" y="{y:.1f}" width="{content_w:.1f}" '
            f'height="{row}" rx="7" fill="{fill}" stroke="#444" stroke-width="2"{dash}/>'
        )
        label = f"{k + 1}: {name}"
        body.append(
            _text(
                x0 + content_w / 2,
                y + row / 2 + 0.36 * size,
                label,
                size,
                "middle",
                font_weight="bold",
            )
        )
        body.append("</g>")
    return _svg(width, height, f"AutoSNN architecture {arch}", body)
