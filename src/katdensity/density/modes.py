"""Modes of a prompt set: exact copies and near-duplicate families, found on the neighbour graph.

A mode is a set of rows that are one prompt in all but wording. It is built in three steps,
all on the neighbour graph the density came from, so no new search is made:

1. Cores: two prompts are joined when one is among the other's nearest neighbours and they
   lie closer than `radius_fraction` times the median distance from a prompt to its nearest
   neighbour. Exact copies lie at distance 0 and always join.
2. Closed neighbourhoods: a family about the size of `k` is no tighter than ordinary
   prompts of a templated set, but it is closed: its members' neighbours are each other.
   When the members of a prompt's neighbourhood (the prompt and its `k` neighbours) keep on
   average at least `closed_share` of their own neighbours inside it, the prompt joins those
   members that keep at least `closure` of theirs inside and lie closer to it than the
   median nearest-neighbour distance.
3. Closure: a family of rewrites is a loose cloud, and its stragglers (a long prefix, a typo
   in a key word) lie as far from the core as ordinary prompts lie from each other. But
   their nearest neighbours are still the family's members. So a prompt left on its own
   joins a mode (of two or more prompts) that holds at least `closure` of its nearest
   neighbours, and a mode whose members' neighbours fall at least `merge_fraction` in
   another mode merges with it. Only neighbours within twice the median nearest-neighbour
   distance count: a farther one is merely the least far prompt, not a relative. This is
   repeated four times, so that stragglers of stragglers join too.

Ordinary prompts of one topic stay apart: they are not closer than the typical
nearest-neighbour distance, their neighbours spread over many prompts rather than one mode,
and their neighbourhoods open onto the rest of the set.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch
from scipy.sparse.csgraph import connected_components

from katdensity._groups import first_occurrence, regroup
from katdensity._validate import check_real
from katdensity.density.formula import neighbor_radii
from katdensity.density.result import DensityResult

__all__ = [
    "DEFAULT_CLOSED_SHARE",
    "DEFAULT_CLOSURE",
    "DEFAULT_MERGE_FRACTION",
    "DEFAULT_RADIUS_FRACTION",
    "find_modes",
]

# Chosen with benchmarks/bench_density.py (see docs/density.md).
DEFAULT_RADIUS_FRACTION = 0.65
DEFAULT_CLOSED_SHARE = 0.85
DEFAULT_CLOSURE = 0.5
DEFAULT_MERGE_FRACTION = 0.4
_CLOSURE_ROUNDS = 4
# Closure counts only neighbours within this many median nearest-neighbour distances.
_REACH = 2.0
# Neighbourhoods are compared in chunks of at most this many elements (bytes of booleans).
_CHUNK_ELEMENTS = 1 << 25


def find_modes(
    result: DensityResult,
    *,
    radius_fraction: float = DEFAULT_RADIUS_FRACTION,
    closure: float = DEFAULT_CLOSURE,
    merge_fraction: float = DEFAULT_MERGE_FRACTION,
    closed_share: float = DEFAULT_CLOSED_SHARE,
) -> torch.Tensor:
    """The mode of every row: its exact copies and near-duplicates share a label.

    Args:
        result: a density estimate; its neighbour graph is used, no new search is made.
        radius_fraction: a mode's core joins prompts closer than this times the median
            nearest-neighbour distance (default 0.65); smaller is stricter.
        closure: a prompt on its own joins a mode holding at least this share of its
            nearest neighbours, in `(0, 1]` (default 0.5); larger is stricter.
        merge_fraction: two modes merge when at least this share of one's neighbours lie
            in the other, in `(0, 1]` (default 0.4); larger is stricter.
        closed_share: a neighbourhood is closed, and its members a mode, when they keep on
            average at least this share of their neighbours inside it, in `(0, 1]`
            (default 0.85); larger is stricter, 1 finds only families that see nothing else.

    Returns:
        `(N,)` int64 labels, numbered in order of first appearance; a row that is a prompt
            of its own has a label no other row has.

    Raises:
        InvalidInputError: an option out of its range.

    Example:
        >>> import torch
        >>> from katdensity import ExactKNNDensity
        >>> from katdensity.density.modes import find_modes
        >>> points = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
        >>> points[1] = points[0] + 1e-3  # a near-duplicate of row 0
        >>> points[2] = points[0]  # an exact copy
        >>> labels = find_modes(ExactKNNDensity(k=5).estimate(points))
        >>> labels[:4].tolist(), int(labels.max()) + 1
        ([0, 0, 0, 1], 58)
    """
    fraction = check_real("radius_fraction", radius_fraction, low=0.0, low_open=True)
    closure = check_real("closure", closure, low=0.0, high=1.0, low_open=True)
    merge_fraction = check_real("merge_fraction", merge_fraction, low=0.0, high=1.0, low_open=True)
    closed_share = check_real("closed_share", closed_share, low=0.0, high=1.0, low_open=True)
    distinct = result.distinct_index
    n_distinct = int(distinct.max()) + 1
    # One row per distinct prompt: its first row holds that prompt's neighbours.
    first = first_occurrence(distinct, n_distinct)
    radii = neighbor_radii(result.neighbors)[first]
    neighbour = distinct[result.neighbors.indices.to("cpu")[first]].numpy()
    positive = radii[:, 0][radii[:, 0] > 0]
    typical = float(positive.median()) if positive.numel() else 0.0
    rows, columns = torch.nonzero(radii < fraction * typical, as_tuple=True)
    rows_np = rows.numpy()
    near = (radii < typical).numpy()
    closed_sources, closed_targets = _closed_neighbourhoods(neighbour, near, closed_share, closure)
    reach = (radii < _REACH * typical).numpy()
    labels = _components(
        n_distinct,
        np.concatenate([rows_np, closed_sources]),
        np.concatenate([neighbour[rows_np, columns.numpy()], closed_targets]),
    )
    for _ in range(_CLOSURE_ROUNDS):
        labels = _join_closed(labels, neighbour, reach, closure, merge_fraction)
    return regroup(torch.from_numpy(labels.astype(np.int64))[distinct]).inverse


def _components(n: int, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Connected components of the undirected graph with the given edges."""
    edges = scipy.sparse.coo_matrix((np.ones(sources.size), (sources, targets)), shape=(n, n))
    labels: np.ndarray = connected_components(edges.tocsr(), directed=False)[1]
    return labels


def _closed_neighbourhoods(
    neighbour: np.ndarray, near: np.ndarray, closed_share: float, closure: float
) -> tuple[np.ndarray, np.ndarray]:
    """Edges from each prompt whose neighbourhood is closed to the members that keep enough
    of their own neighbours inside it and are `near` it."""
    n, k = neighbour.shape
    hood = np.concatenate([np.arange(n)[:, None], neighbour], axis=1)  # the prompt, then N(i)
    near = np.concatenate([np.ones((n, 1), dtype=bool), near], axis=1)
    chunk = max(1, _CHUNK_ELEMENTS // ((k + 1) ** 2 * k))
    sources, targets = [], []
    for start in range(0, n, chunk):
        block = hood[start : start + chunk]
        # inside[i, a]: the share of member a's neighbours that lie in prompt i's neighbourhood.
        inside = (neighbour[block][..., None] == block[:, None, None, :]).any(axis=-1).mean(axis=-1)
        closed = inside.mean(axis=1) >= closed_share
        rows, members = np.nonzero(
            closed[:, None] & (inside >= closure) & near[start : start + chunk]
        )
        sources.append(rows + start)
        targets.append(block[rows, members])
    return np.concatenate(sources), np.concatenate(targets)


def _join_closed(
    labels: np.ndarray,
    neighbour: np.ndarray,
    reach: np.ndarray,
    closure: float,
    merge_fraction: float,
) -> np.ndarray:
    """Join each part to a mode that holds enough of its members' neighbours within
    `reach` (out of all `k` of them)."""
    n_parts = int(labels.max()) + 1
    size = np.bincount(labels, minlength=n_parts)
    k = neighbour.shape[1]
    # Neighbour edges between parts, summed: links[a, b] = edges from a's members into b.
    links = (
        scipy.sparse.coo_matrix(
            (reach.ravel().astype(float), (np.repeat(labels, k), labels[neighbour.ravel()])),
            shape=(n_parts, n_parts),
        )
        .tocsr()
        .tocoo()
    )
    share = links.data / (size[links.row] * k)
    needed = np.where(size[links.row] == 1, closure, merge_fraction)
    join = (links.row != links.col) & (share >= needed) & (size[links.col] > 1)
    parts = _components(n_parts, links.row[join], links.col[join])
    joined: np.ndarray = parts[labels]
    return joined
