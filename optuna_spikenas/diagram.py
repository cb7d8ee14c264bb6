"""Diagrams of found architectures as self-contained SVG strings (standard library only).

``cell_diagram_svg`` draws SNASNet cells: nodes 0 (input) .. 3 (output) on a line, forward edges
as arrows above it, backward (temporal) edges dashed below it, one colour per operation.
``autosnn_diagram_svg`` draws an AutoSNN network as a top-down chain of boxes. Both return plain
SVG 1.1 (rect, circle, path, text, marker, g) that browsers and optuna-dashboard show as an image;
text is XML-escaped and non-ASCII characters are written as character references.
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


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    w, h = int(width + 0.5), int(height + 0.5)
    markers = "".join(
        f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
        f'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
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
    x1: float, x2: float, y: float, span_h: float, op: str, backward: bool, used: bool
) -> str:
    """One edge as a <g class="edge">: a quadratic arc from node to node and its label."""
    cx, cy = (x1 + x2) / 2, y - 2 * span_h  # control point; the arc's apex is at height span_h
    ends = []
    for px in (x1, x2):
        dx, dy = cx - px, cy - y
        norm = (dx * dx + dy * dy) ** 0.5
        ends.append((px + RADIUS * dx / norm, y + RADIUS * dy / norm))
    (sx, sy), (ex, ey) = ends
    mx, my = 0.25 * sx + 0.5 * cx + 0.25 * ex, 0.25 * sy + 0.5 * cy + 0.25 * ey
    label = f"{op} (t+1)" if backward else op
    colour, opacity = OP_COLOURS[op], "1" if used else "0.35"
    dash = ' stroke-dasharray="6 4"' if backward else ""
    lw, size = text_width(label, FONT - 1) + 6, FONT - 1
    return (
        f'<g class="edge" opacity="{opacity}"><title>{"backward" if backward else "forward"} '
        f"edge: {escape(label)}</title>"
        f'<path d="M{sx:.1f},{sy:.1f} Q{cx:.1f},{cy:.1f} {ex:.1f},{ey:.1f}" fill="none" '
        f'stroke="{colour}" stroke-width="1.8"{dash} marker-end="url(#arrow-{op})"/>'
        f'<rect x="{mx - lw / 2:.1f}" y="{my - 8:.1f}" width="{lw:.1f}" height="16" rx="3" '
        f'fill="white" fill-opacity="0.9"/>'
        + _text(mx, my + 4, label, size, "middle", fill=colour)
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
