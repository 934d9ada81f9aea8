"""The HTML page of [`katdensity.viz`][katdensity.viz]: hover texts, plotly figures, the page.

plotly is imported inside the functions that draw, so importing this module costs nothing.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from katdensity._optional import require
from katdensity._text import shorten

__all__ = ["View", "hover_texts", "page"]

_PROMPT_CHARS = 300
_NEIGHBOR_CHARS = 120
_HOVER_WIDTH = 80
_HISTOGRAM_BINS = 50
_MAX_LEGEND_LABELS = 20
# Marks a figure's <div> once plotly has drawn it, for tests and browser automation.
_DRAWN_SCRIPT = "document.getElementById('{plot_id}').setAttribute('data-katdensity-drawn', '1');"


@dataclass(frozen=True)
class View:
    """What the page draws.

    Attributes:
        points: the shown points, as written to the JSON (`x`, `y`, `z`, `size`, `color`,
            `prompt`, `row`, `log_density`, and `weight`/`neighbors` when known).
        names: `(N,)` every prompt's id, or `"#row"`.
        texts: `(N,)` every prompt's text, or `None`.
        labelled: whether each point's `color` is a label (else it is the log-density).
        log_density: `(N,)` float64 log-density of every prompt.
        weights: `(N,)` float64 probabilities of every prompt, or `None`.
        method: the projection, `"pca"` or `"umap"`.
        explained_variance: PCA's share of variance per axis; `None` for UMAP.
        seed: the seed of the subsample.
    """

    points: list[dict[str, Any]]
    names: list[str]
    texts: list[str] | None
    labelled: bool
    log_density: torch.Tensor
    weights: torch.Tensor | None
    method: Literal["pca", "umap"]
    explained_variance: tuple[float, float, float] | None
    seed: int

    @property
    def n_points(self) -> int:
        """Prompts in the input, shown or not."""
        return len(self.names)


def _lines(text: str, limit: int) -> list[str]:
    """`text` cut to `limit` characters, wrapped at word boundaries, each line HTML-escaped."""
    # textwrap.wrap is ten times slower, which shows over 20 000 points with 4 texts each.
    lines: list[str] = []
    line = ""
    for word in shorten(text, limit).split(" "):
        while len(word) > _HOVER_WIDTH:  # a URL or code: cut it rather than widen the box
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:_HOVER_WIDTH])
            word = word[_HOVER_WIDTH:]
        if line and len(line) + 1 + len(word) > _HOVER_WIDTH:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    # Plotly draws hover text as a small subset of HTML: escape the prompt so that a "<b>" in
    # it shows as text; escaping after wrapping keeps every entity whole.
    return [html.escape(piece) for piece in lines]


def hover_texts(view: View) -> list[str]:
    """The hover box of each shown point, as plotly's HTML subset.

    A box holds the prompt's id (or `#row`) and label, its log-density, `N × weight` and its
    mode (when the mode holds several rows), its text cut to 300 characters, and its nearest
    neighbours' texts (ids without texts) cut to 120 characters; all user text is
    HTML-escaped and wrapped at 80 characters.
    """
    boxes = []
    neighbour_cache: dict[int, str] = {}  # a prompt is the neighbour of about k others

    def neighbour(row: int) -> str:
        if row not in neighbour_cache:
            text = view.names[row] if view.texts is None else view.texts[row]
            neighbour_cache[row] = "<br>    ".join(_lines(text, _NEIGHBOR_CHARS))
        return neighbour_cache[row]

    for point in view.points:
        row = point["row"]
        head = f"<b>{html.escape(view.names[row])}</b>"
        if view.labelled:
            head += f" · {html.escape(point['color'])}"
        stats = f"log-density {point['log_density']:.4g}"
        if "weight" in point:
            stats += f" · N×weight {view.n_points * point['weight']:.3g}"
        if point.get("mode_rows", 1) > 1:
            stats += f" · mode {point['mode']} ({point['mode_rows']} rows)"
        lines = [head, stats]
        if view.texts is not None:
            lines += _lines(view.texts[row], _PROMPT_CHARS)
        if "neighbors" in point:
            lines.append("<i>nearest neighbours:</i>")
            for rank, other in enumerate(point["neighbors"], start=1):
                lines.append(f"{rank}. {neighbour(other)}")
        boxes.append("<br>".join(lines))
    return boxes


def _scatter_figure(view: View, title: str) -> Any:
    go = require("plotly.graph_objects", extra="viz", purpose="the HTML view")
    colors = require("plotly.colors", extra="viz", purpose="the HTML view")
    hover = hover_texts(view)
    style = {"sizemode": "diameter", "opacity": 0.85, "line": {"width": 0}}

    def trace(positions: list[int], marker: dict[str, Any], **options: Any) -> Any:
        chosen = [view.points[p] for p in positions]
        return go.Scatter3d(
            x=[p["x"] for p in chosen],
            y=[p["y"] for p in chosen],
            z=[p["z"] for p in chosen],
            mode="markers",
            marker={**style, "size": [p["size"] for p in chosen], **marker},
            hovertext=[hover[p] for p in positions],
            hoverinfo="text",
            **options,
        )

    figure = go.Figure()
    if not view.labelled:
        density = {
            "color": [p["color"] for p in view.points],
            "colorscale": "Viridis",
            "colorbar": {"title": {"text": "log-density"}},
        }
        figure.add_trace(trace(list(range(len(view.points))), density, showlegend=False))
    else:
        counts = Counter(p["color"] for p in view.points)
        groups: dict[str, list[int]] = {
            label: [] for label, _ in counts.most_common(_MAX_LEGEND_LABELS)
        }
        rest: list[int] = []
        for position, point in enumerate(view.points):
            groups.get(point["color"], rest).append(position)
        palette = colors.qualitative.Dark24
        for index, (label, positions) in enumerate(groups.items()):
            name = f"{html.escape(label)} ({len(positions)})"
            figure.add_trace(trace(positions, {"color": palette[index % len(palette)]}, name=name))
        if rest:
            name = f"{len(counts) - len(groups)} other labels ({len(rest)})"
            figure.add_trace(trace(rest, {"color": "#999999"}, name=name))

    shown = len(view.points)
    caption = f"{shown:,} prompts"
    if shown < view.n_points:
        caption = f"{shown:,} of {view.n_points:,} prompts (random subsample, seed {view.seed})"
    if view.explained_variance is None:
        axes = [f"UMAP {i}" for i in (1, 2, 3)]
    else:
        axes = [f"PC{i} ({share:.1%})" for i, share in enumerate(view.explained_variance, 1)]
    figure.update_layout(
        title={"text": f"{html.escape(title)}: {caption}, {view.method.upper()}, size ∝ rarity"},
        scene={"xaxis_title": axes[0], "yaxis_title": axes[1], "zaxis_title": axes[2]},
        legend={"itemsizing": "constant"},
        margin={"l": 0, "r": 0, "t": 50, "b": 0},
        template="plotly_white",
    )
    return figure


def _histogram_figure(view: View) -> Any:
    go = require("plotly.graph_objects", extra="viz", purpose="the HTML view")
    subplots = require("plotly.subplots", extra="viz", purpose="the HTML view")
    panels: list[tuple[str, np.ndarray]] = [("log-density", view.log_density.numpy())]
    if view.weights is not None:
        panels.append(("N × weight (1 = uniform)", (view.weights * view.n_points).numpy()))
    figure = subplots.make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels])
    for column, (label, values) in enumerate(panels, start=1):
        counts, edges = np.histogram(values, bins=_HISTOGRAM_BINS)
        bars = go.Bar(
            x=((edges[:-1] + edges[1:]) / 2).tolist(),
            y=counts.tolist(),
            width=np.diff(edges).tolist(),
            marker={"line": {"width": 0}},
            name=label,
            hovertemplate="%{x:.4g}: %{y} prompts<extra></extra>",
            showlegend=False,
        )
        figure.add_trace(bars, row=1, col=column)
        figure.update_yaxes(title_text="prompts", row=1, col=column)
    if view.weights is not None:
        figure.add_vline(x=1.0, line_dash="dash", line_color="#666666", row=1, col=2)
    figure.update_layout(
        title={"text": f"Over all {view.n_points:,} prompts"},
        margin={"t": 80},
        template="plotly_white",
    )
    return figure


def page(view: View, title: str) -> str:
    """The whole HTML page: the 3D scatter above the histograms, plotly.js embedded once."""
    config = {"displaylogo": False, "responsive": True}
    common = {"full_html": False, "include_mathjax": False, "config": config}
    scatter = _scatter_figure(view, title).to_html(
        include_plotlyjs=True,
        div_id="katdensity-scatter",
        default_height="80vh",
        post_script=_DRAWN_SCRIPT,
        **common,
    )
    histogram = _histogram_figure(view).to_html(
        include_plotlyjs=False,
        div_id="katdensity-histogram",
        default_height="380px",
        post_script=_DRAWN_SCRIPT,
        **common,
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body { margin: 0 1rem; font-family: system-ui, sans-serif; }</style>\n"
        f"</head>\n<body>\n{scatter}\n{histogram}\n</body>\n</html>\n"
    )
