"""A 3D view of prompt space: one point per prompt, sized by rarity, in one offline HTML file.

Each prompt's embedding is projected to 3D ([`project`][katdensity.viz.project]: PCA, built
in and the default, or UMAP on request when `umap-learn` is installed). A point's size grows
as its density falls ([`marker_sizes`][katdensity.viz.marker_sizes]), its colour is its label
(a categorical legend) or, without labels, its log-density, and hovering shows its prompt
text and the texts of its nearest neighbours. A second figure below holds histograms of the
log-density and of `N × weight` (1 is the uniform weight) over all prompts.

[`write_view`][katdensity.viz.write_view] writes the HTML page, with plotly.js embedded so it
opens offline (no CDN), and optionally a JSON file in the research scripts' shape,
`{"points": [{"x", "y", "z", "size", "color", "prompt", ...}, ...]}`;
[`view_points`][katdensity.viz.view_points] returns those points without writing anything.
Only the HTML needs plotly (the `viz` extra: `pip install "katdensity[viz]"`), imported on
first use.

Sets above `max_points` prompts (default [`DEFAULT_MAX_POINTS`][katdensity.viz.DEFAULT_MAX_POINTS],
20 000) are shown as a uniform random subsample, seeded and kept in input order, and the plot
title says so; the histograms always cover every prompt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from katdensity._atomic import atomic_path
from katdensity._optional import require
from katdensity._validate import (
    as_embeddings,
    as_groups,
    as_log_density,
    as_probabilities,
    check_choice,
    check_int,
    check_real,
)
from katdensity._viz_page import View, page
from katdensity.errors import InvalidInputError
from katdensity.knn.neighbors import Neighbors

__all__ = [
    "DEFAULT_MAX_POINTS",
    "METHODS",
    "SIZE_RANGE",
    "Method",
    "ViewSummary",
    "marker_sizes",
    "project",
    "view_points",
    "write_view",
    "write_view_json",
]

logger = logging.getLogger(__name__)

Method = Literal["pca", "umap"]
METHODS: tuple[Method, ...] = ("pca", "umap")

DEFAULT_MAX_POINTS = 20_000
"""Points drawn at most; a larger set is shown as a seeded random subsample of this size.

20 000 points with prompts of a few hundred characters make a page of about 25 MB, mostly
hover text, that a browser still opens in seconds and rotates smoothly."""

SIZE_RANGE = (3.0, 12.0)
"""Marker diameters in pixels, from the densest prompt to the rarest."""

_NEIGHBORS_SHOWN = 3
_MIN_ROWS: dict[str, int] = {"pca": 2, "umap": 5}
# Above this many rows and columns, PCA uses a seeded randomised SVD instead of a full one.
_EXACT_PCA_MAX_DIM = 1024
_RANDOMIZED_OVERSAMPLE = 10
_RANDOMIZED_POWER_ITERATIONS = 4


@dataclass(frozen=True)
class ViewSummary:
    """What [`write_view`][katdensity.viz.write_view] wrote.

    Attributes:
        html: the HTML page.
        json: the JSON points file, or `None` when none was asked for.
        n_points: prompts in the input.
        n_shown: prompts drawn (`min(n_points, max_points)`).
        method: the projection used, `"pca"` or `"umap"`.
        explained_variance: for PCA, the share of the shown points' total variance along
            each of the three axes; `None` for UMAP.
    """

    html: Path
    json: Path | None
    n_points: int
    n_shown: int
    method: Method
    explained_variance: tuple[float, float, float] | None


def project(
    embeddings: torch.Tensor | np.ndarray, *, method: Method = "pca", seed: int = 0
) -> torch.Tensor:
    """Project embeddings to 3D for plotting.

    `"pca"` (the default, always available and deterministic) centres the rows and projects
    them on their three leading principal axes, each axis's sign fixed so that its largest
    loading is positive. Up to 1024 rows or columns it is an exact SVD in float64; above,
    a randomised SVD (Halko et al., 2011) seeded by `seed`. `"umap"` runs
    `umap.UMAP(n_components=3, n_neighbors=min(15, N - 1), random_state=seed)` in the
    Euclidean metric, which ranks neighbours as cosine does for L2-normalised embeddings;
    it needs `umap-learn` and is slower (seconds to minutes) but keeps local neighbourhoods.

    Args:
        embeddings: `(N, D)` tensor or array, `N >= 2` (`N >= 5` for UMAP).
        method: `"pca"` or `"umap"`.
        seed: seeds the randomised SVD and UMAP.

    Returns:
        `(N, 3)` float64 CPU coordinates, row `i` for embedding row `i`; columns beyond the
        data's rank (e.g. `D < 3`) are zero.

    Raises:
        InvalidInputError: bad embeddings, too few rows, or an unknown `method`.
        MissingDependencyError: `method="umap"` without `umap-learn` (extra `viz`).

    Example:
        >>> import torch
        >>> from katdensity.viz import project
        >>> project(torch.randn(100, 16, generator=torch.Generator().manual_seed(0))).shape
        torch.Size([100, 3])
    """
    method = _check_method(method)
    seed = check_int("seed", seed)
    rows = as_embeddings(embeddings, min_rows=_MIN_ROWS[method])
    if method == "umap":
        return _umap(rows, seed)
    return _pca(rows, seed)[0]


def _check_method(method: Any) -> Method:
    return "umap" if check_choice("method", method, METHODS) == "umap" else "pca"


def _pca(rows: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the `(N, 3)` PCA coordinates and the `(3,)` explained-variance ratios."""
    centred = rows.cpu() - rows.cpu().mean(dim=0)  # (N, D) float32
    n, d = centred.shape
    if min(n, d) <= _EXACT_PCA_MAX_DIM:
        centred = centred.double()
        _, singular, components = torch.linalg.svd(centred, full_matrices=False)
    else:
        singular, components = _randomized_svd(centred, seed)
    total = float(torch.linalg.vector_norm(centred)) ** 2
    k = min(3, components.shape[0])
    components = components[:k]  # (k, D)
    # NOTE [ PCA signs ]: an SVD fixes each axis only up to sign, and the sign can differ
    # between LAPACK builds; making each axis's largest loading positive (as scikit-learn's
    # svd_flip does) gives the same picture everywhere.
    pivots = components.abs().argmax(dim=1)
    signs = torch.sign(components[torch.arange(k), pivots])
    components = components * signs[:, None]
    coords = torch.zeros(n, 3, dtype=torch.float64)
    coords[:, :k] = (centred @ components.to(centred.dtype).T).double()
    ratio = torch.zeros(3, dtype=torch.float64)
    if total > 0:
        ratio[:k] = singular[:k].double() ** 2 / total
    return coords, ratio


def _randomized_svd(centred: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading singular values `(r,)` and right singular vectors `(r, D)` of a tall matrix."""
    generator = torch.Generator().manual_seed(seed)
    rank = 3 + _RANDOMIZED_OVERSAMPLE
    probe = torch.randn(centred.shape[1], rank, generator=generator, dtype=centred.dtype)
    basis = torch.linalg.qr(centred @ probe).Q  # (N, r)
    for _ in range(_RANDOMIZED_POWER_ITERATIONS):
        basis = torch.linalg.qr(centred.T @ basis).Q  # (D, r)
        basis = torch.linalg.qr(centred @ basis).Q  # (N, r)
    small = (basis.T @ centred).double()  # (r, D)
    _, singular, components = torch.linalg.svd(small, full_matrices=False)
    return singular, components


def _umap(rows: torch.Tensor, seed: int) -> torch.Tensor:
    umap = require("umap", extra="viz", purpose="the UMAP projection", package="umap-learn")
    with warnings.catch_warnings():
        # A fixed random_state makes UMAP single-threaded, and it says so on every call.
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        reducer = umap.UMAP(
            n_components=3, n_neighbors=min(15, rows.shape[0] - 1), random_state=seed
        )
        coords = reducer.fit_transform(rows.cpu().numpy())
    return torch.from_numpy(np.asarray(coords, dtype=np.float64))


def marker_sizes(
    log_density: torch.Tensor | np.ndarray,
    *,
    size_range: tuple[float, float] = SIZE_RANGE,
) -> torch.Tensor:
    """Marker diameters that grow as density falls: the rarest prompt largest.

    Sizes follow the rank of `-log_density` among its distinct values, spread linearly over
    `size_range`, so one outlier does not shrink every other point and equal densities get
    equal sizes. Every point gets the middle size when all densities are equal.

    Args:
        log_density: `(N,)` log-densities, e.g. `DensityResult.log_density`.
        size_range: `(smallest, largest)` diameter in pixels, `0 < smallest <= largest`.

    Returns:
        `(N,)` float64 diameters, non-increasing in `log_density`.

    Raises:
        InvalidInputError: bad `log_density` or `size_range`.
    """
    density = as_log_density(log_density)
    if not isinstance(size_range, (tuple, list)) or len(size_range) != 2:
        raise InvalidInputError(
            f"size_range should be a (smallest, largest) pair, but got size_range={size_range!r}"
        )
    low = check_real("size_range[0]", size_range[0], low=0.0, low_open=True)
    high = check_real("size_range[1]", size_range[1], low=low)
    distinct, rank = torch.unique(density, sorted=True, return_inverse=True)
    if distinct.numel() == 1:
        return torch.full_like(density, (low + high) / 2)
    top = distinct.numel() - 1
    rarity = (top - rank).double() / top  # 1 for the lowest density, 0 for the highest
    sizes: torch.Tensor = low + (high - low) * rarity
    return sizes


def _as_strings(name: str, values: Sequence[Any] | None, n: int) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InvalidInputError(
            f"{name} should be a sequence with one entry per embedding row, "
            f"but got {type(values).__name__}"
        )
    _check_length(name, len(values), n)
    return ["(none)" if value is None else str(value) for value in values]


def _check_length(name: str, length: int, n: int) -> None:
    if length != n:
        raise InvalidInputError(
            f"{name} should have one entry per embedding row ({n}), but got {length}"
        )


def _prepare(
    embeddings: torch.Tensor | np.ndarray,
    *,
    log_density: torch.Tensor | np.ndarray,
    weights: torch.Tensor | np.ndarray | None,
    texts: Sequence[str] | None,
    ids: Sequence[str] | None,
    labels: Sequence[Any] | None,
    neighbors: Neighbors | None,
    modes: torch.Tensor | np.ndarray | Sequence[int] | None,
    method: Method,
    max_points: int,
    seed: int,
) -> View:
    method = _check_method(method)
    max_points = check_int("max_points", max_points, low=1)
    seed = check_int("seed", seed)
    matrix = as_embeddings(embeddings, min_rows=_MIN_ROWS[method])
    n = int(matrix.shape[0])
    density = as_log_density(log_density)
    _check_length("log_density", density.shape[0], n)
    probabilities = None if weights is None else as_probabilities(weights)
    if probabilities is not None:
        _check_length("weights", probabilities.shape[0], n)
    text_list = _as_strings("texts", texts, n)
    id_list = _as_strings("ids", ids, n)
    label_list = _as_strings("labels", labels, n)
    mode_of: list[int] | None = None
    mode_rows: list[int] | None = None
    if modes is not None:
        mode_labels, n_modes = as_groups(modes, n, name="modes")
        mode_of = mode_labels.tolist()
        mode_rows = torch.bincount(mode_labels, minlength=n_modes).tolist()
    nearest: torch.Tensor | None = None
    if neighbors is not None:
        if not isinstance(neighbors, Neighbors):
            raise InvalidInputError(
                f"neighbors should be a katdensity.Neighbors, but got {type(neighbors).__name__}"
            )
        _check_length("neighbors", len(neighbors), n)
        nearest = neighbors.indices[:, :_NEIGHBORS_SHOWN].cpu()
        if nearest.numel() and (int(nearest.min()) < 0 or int(nearest.max()) >= n):
            raise InvalidInputError(
                f"neighbors.indices should be row numbers in [0, {n}), but got values in "
                f"[{int(nearest.min())}, {int(nearest.max())}]"
            )

    if n > max_points:
        generator = torch.Generator().manual_seed(seed)
        shown = torch.randperm(n, generator=generator)[:max_points].sort().values
    else:
        shown = torch.arange(n)
    subset = matrix[shown]
    if method == "umap":
        coords, explained = _umap(subset, seed), None
    else:
        coords, ratio = _pca(subset, seed)
        explained = (float(ratio[0]), float(ratio[1]), float(ratio[2]))
    # Python lists: indexing a tensor element by element is slow for 20 000 points.
    size_of: list[float] = marker_sizes(density).tolist()
    density_of: list[float] = density.tolist()
    weight_of = None if probabilities is None else probabilities.tolist()
    neighbours_of = None if nearest is None else nearest.tolist()
    names = id_list if id_list is not None else [f"#{row}" for row in range(n)]
    points: list[dict[str, Any]] = []
    for (x, y, z), row in zip(coords.tolist(), shown.tolist(), strict=True):
        point: dict[str, Any] = {
            "x": round(x, 6),
            "y": round(y, 6),
            "z": round(z, 6),
            "size": round(size_of[row], 4),
            "color": density_of[row] if label_list is None else label_list[row],
            "prompt": names[row] if text_list is None else text_list[row],
            "row": row,
        }
        if id_list is not None:
            point["id"] = id_list[row]
        point["log_density"] = density_of[row]
        if weight_of is not None:
            point["weight"] = weight_of[row]
        if neighbours_of is not None:
            point["neighbors"] = neighbours_of[row]
        if mode_of is not None and mode_rows is not None:
            point["mode"] = mode_of[row]
            point["mode_rows"] = mode_rows[mode_of[row]]
        points.append(point)
    return View(
        points=points,
        names=names,
        texts=text_list,
        labelled=label_list is not None,
        log_density=density,
        weights=probabilities,
        method=method,
        explained_variance=explained,
        seed=seed,
    )


def view_points(
    embeddings: torch.Tensor | np.ndarray,
    *,
    log_density: torch.Tensor | np.ndarray,
    weights: torch.Tensor | np.ndarray | None = None,
    texts: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    neighbors: Neighbors | None = None,
    modes: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    method: Method = "pca",
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The points of the view, as written to the JSON file; needs no plotly.

    Each point is a dict with, in this order:

    - `x`, `y`, `z`: its 3D coordinates (see [`project`][katdensity.viz.project]);
    - `size`: its marker diameter in pixels (see [`marker_sizes`][katdensity.viz.marker_sizes],
      ranked over all `N` prompts);
    - `color`: its label when `labels` is given, else its log-density;
    - `prompt`: its full text, or its id (`"#<row>"` without ids) when `texts` is `None`;
    - `row`: its row in `embeddings`; `id` (only with `ids`); `log_density`;
      `weight` (only with `weights`, a probability over all `N` prompts);
    - `neighbors` (only with `neighbors`): the rows of its (up to) 3 nearest neighbours,
      nearest first; a neighbour need not be among the shown points.

    Args:
        embeddings: `(N, D)` tensor or array, `N >= 2` (`N >= 5` for UMAP).
        log_density: `(N,)` log-densities, e.g. `DensityResult.log_density`.
        weights: `(N,)` sampling weights (normalised here), e.g. from
            [`inverse_density_weights`][katdensity.inverse_density_weights].
        texts: `N` prompt texts, row-aligned.
        ids: `N` prompt ids, row-aligned.
        labels: `N` labels (e.g. each record's `src`); `None` entries become `"(none)"`,
            others are turned into strings.
        neighbors: the kNN graph of the same `N` points, e.g. `DensityResult.neighbors`.
        modes: `N` mode labels (e.g. [`find_modes`][katdensity.density.modes.find_modes]);
            each point then records its `mode` and the rows in it (`mode_rows`), and the
            hover box names the mode when it holds several rows.
        method: the projection, `"pca"` or `"umap"`.
        max_points: draw at most this many points: above it, a uniform random subsample
            seeded by `seed`, in input order.
        seed: seeds the subsample and the projection.

    Returns:
        One dict per shown point, in input order.

    Raises:
        InvalidInputError: an argument does not have one entry per embedding row, too few
            rows, or a bad `method`, `max_points` or `seed`.
        MissingDependencyError: `method="umap"` without `umap-learn`.
    """
    return _prepare(
        embeddings,
        log_density=log_density,
        weights=weights,
        texts=texts,
        ids=ids,
        labels=labels,
        neighbors=neighbors,
        modes=modes,
        method=method,
        max_points=max_points,
        seed=seed,
    ).points


def write_view_json(
    path: str | os.PathLike[str],
    embeddings: torch.Tensor | np.ndarray,
    *,
    log_density: torch.Tensor | np.ndarray,
    weights: torch.Tensor | np.ndarray | None = None,
    texts: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    neighbors: Neighbors | None = None,
    modes: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    method: Method = "pca",
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Write only the JSON file, `{"points": view_points(...)}`; needs no plotly.

    The file is written to a temporary file and renamed into place. The arguments are those
    of [`view_points`][katdensity.viz.view_points], with `path` the file to write.

    Returns:
        The points written.

    Raises:
        InvalidInputError: as [`view_points`][katdensity.viz.view_points].
        MissingDependencyError: `method="umap"` without `umap-learn`.
    """
    points = view_points(
        embeddings,
        log_density=log_density,
        weights=weights,
        texts=texts,
        ids=ids,
        labels=labels,
        neighbors=neighbors,
        modes=modes,
        method=method,
        max_points=max_points,
        seed=seed,
    )
    with atomic_path(path) as temporary:
        temporary.write_text(_points_json(points), encoding="utf-8")
    logger.info("wrote %d points to %s", len(points), path)
    return points


def _points_json(points: list[dict[str, Any]]) -> str:
    return json.dumps({"points": points}, ensure_ascii=False, allow_nan=False) + "\n"


def write_view(
    out: str | os.PathLike[str],
    embeddings: torch.Tensor | np.ndarray,
    *,
    log_density: torch.Tensor | np.ndarray,
    weights: torch.Tensor | np.ndarray | None = None,
    texts: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    neighbors: Neighbors | None = None,
    modes: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    json_path: str | os.PathLike[str] | None = None,
    method: Method = "pca",
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
    title: str = "Prompt space",
) -> ViewSummary:
    """Write the 3D view as a self-contained HTML page, and optionally its points as JSON.

    The page holds two figures: the 3D scatter (drag to rotate, scroll to zoom, click a
    legend entry to hide a label) and histograms of the log-density and, with `weights`,
    of `N × weight` over all prompts. plotly.js is embedded, so the page opens offline.
    The hover box shows the prompt's id (or `#row`), label, log-density, `N × weight`, its
    text cut to 300 characters and its 3 nearest neighbours' texts cut to 120 characters,
    all HTML-escaped. With labels, the 20 most frequent get their own colour and legend
    entry and the rest share a grey one. Each figure's `<div>` gets the attribute
    `data-katdensity-drawn="1"` once plotly has drawn it.

    Both files are written to temporary files and renamed only when both are complete, so a
    failure leaves neither behind.

    Args:
        out: the HTML file to write.
        embeddings: `(N, D)` tensor or array.
        log_density: `(N,)` log-densities.
        weights: `(N,)` sampling weights; adds the `N × weight` histogram and hover line.
        texts: `N` prompt texts.
        ids: `N` prompt ids.
        labels: `N` labels to colour by; without them the colour is the log-density.
        neighbors: the kNN graph of the same points, for the hover box's neighbours.
        modes: `N` mode labels (e.g. [`find_modes`][katdensity.density.modes.find_modes]);
            each point then records its `mode` and the rows in it (`mode_rows`), and the
            hover box names the mode when it holds several rows.
        json_path: also write `{"points": view_points(...)}` here.
        method: the projection, `"pca"` or `"umap"`.
        max_points: draw at most this many points (a seeded subsample above it).
        seed: seeds the subsample and the projection.
        title: the page's title, followed in the plot by what is shown.

    Returns:
        What was written, with the PCA's explained variance.

    Raises:
        InvalidInputError: as [`view_points`][katdensity.viz.view_points], or `json_path`
            equal to `out`.
        MissingDependencyError: plotly (or, for UMAP, `umap-learn`) is not installed.

    Example:
        ```python
        from katdensity import ExactKNNDensity, InverseDensityWeighting
        from katdensity.viz import write_view

        result = ExactKNNDensity(k=10).estimate(embeddings)
        write_view(
            "view.html", embeddings,
            log_density=result.log_density, neighbors=result.neighbors,
            weights=InverseDensityWeighting()(result),
            texts=texts, labels=sources, json_path="view.json",
        )
        ```
    """
    # Fail before a long projection, not after.
    require("plotly", extra="viz", purpose="the HTML view")
    target = Path(out)
    points_file = None if json_path is None else Path(json_path)
    if points_file is not None and points_file.resolve() == target.resolve():
        raise InvalidInputError(f"json_path should differ from out, but both are {str(target)!r}")
    view = _prepare(
        embeddings,
        log_density=log_density,
        weights=weights,
        texts=texts,
        ids=ids,
        labels=labels,
        neighbors=neighbors,
        modes=modes,
        method=method,
        max_points=max_points,
        seed=seed,
    )
    document = page(view, title)
    with contextlib.ExitStack() as stack:
        page_temporary = stack.enter_context(atomic_path(target))
        page_temporary.write_text(document, encoding="utf-8")
        if points_file is not None:
            points_temporary = stack.enter_context(atomic_path(points_file))
            points_temporary.write_text(_points_json(view.points), encoding="utf-8")
    logger.info(
        "wrote a %s view of %d of %d prompts to %s",
        view.method,
        len(view.points),
        view.n_points,
        target,
    )
    return ViewSummary(
        html=target,
        json=points_file,
        n_points=view.n_points,
        n_shown=len(view.points),
        method=view.method,
        explained_variance=view.explained_variance,
    )
