"""An order of the rows that puts near neighbours close together, so the exact search prunes sooner.

Beyond its products, the exact search spends its time on the groups of a tile that pass the
group-max filter (`katdensity.knn._search`): until a row's running top-k holds near neighbours,
many groups beat its k-th best score and are gathered and merged. In the input's order a row
meets its near neighbours in random tiles; in this order (rows of one cluster together, similar
clusters next to each other) most of them are in its first, diagonal tile or the next ones, and
later tiles are pruned almost whole. Any order gives the same exact graph: this one only makes
it faster (`benchmarks/bench_knn.py`).

The clusters come from a few rounds of k-means on an evenly spaced sample of the rows, with
evenly spaced rows as the first centres: no random choice, so the order is reproducible.
"""

from __future__ import annotations

import torch

from katdensity.knn._rows import RowSource

__all__ = ["locality_order"]

_ROUNDS = 3
_SAMPLE_PER_CLUSTER = 64
# Rows per assignment block: `_BLOCK_ROWS x n_clusters` scores at a time.
_BLOCK_ROWS = 16_384


def locality_order(
    source: RowSource, *, n_clusters: int, spherical: bool, run: int | None = None
) -> torch.Tensor:
    """A permutation of `source`'s rows: clusters in a chain of similar ones, input order within.

    Args:
        source: the rows.
        n_clusters: how many clusters to group the rows into (at most `source.n`).
        spherical: cluster directions (cosine and inner-product searches) rather than
            positions (euclidean).
        run: if given, rows are only reordered within consecutive runs of this many rows
            (the panels a streamed search reads), each run in the same cluster order.

    Returns:
        `(N,)` int64 on `source.device`: row `i` of the new order is row `order[i]`.
    """
    n_clusters = max(1, min(n_clusters, source.n))
    sample_size = min(source.n, n_clusters * _SAMPLE_PER_CLUSTER)
    # The rounds run on the CPU whatever the device: CUDA's index_add_ sums in no fixed
    # order, and the same rows must give the same order (it decides among tied neighbours).
    chosen = _evenly_spaced(source.n, sample_size, source.device)
    sample = _prepared(source.take(chosen).cpu(), spherical)
    centres = sample[_evenly_spaced(sample_size, n_clusters, torch.device("cpu"))]
    for _ in range(_ROUNDS):
        labels = _nearest(sample, centres, spherical)
        sums = torch.zeros_like(centres).index_add_(0, labels, sample)
        counts = torch.bincount(labels, minlength=n_clusters)
        # A centre that lost all its rows keeps its place.
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
        if spherical:
            centres = torch.nn.functional.normalize(centres, dim=1)
    rank = _chain(centres, spherical).to(source.device)
    centres = centres.to(source.device)
    labels = torch.empty(source.n, dtype=torch.int64, device=source.device)
    for start in range(0, source.n, _BLOCK_ROWS):
        stop = min(source.n, start + _BLOCK_ROWS)
        rows = _prepared(source.block(start, stop), spherical)
        labels[start:stop] = _nearest(rows, centres, spherical)
    key = rank[labels]
    if run is not None and run < source.n:
        key += torch.arange(source.n, device=source.device).div(run, rounding_mode="floor") * (
            n_clusters
        )
    return torch.sort(key, stable=True).indices


def _evenly_spaced(n: int, count: int, device: torch.device) -> torch.Tensor:
    return torch.linspace(0, n - 1, count, device=device).round().long()


def _prepared(rows: torch.Tensor, spherical: bool) -> torch.Tensor:
    return torch.nn.functional.normalize(rows, dim=1) if spherical else rows


def _nearest(rows: torch.Tensor, centres: torch.Tensor, spherical: bool) -> torch.Tensor:
    """Index of each row's nearest centre (largest cosine, or smallest euclidean distance)."""
    scores = rows @ centres.T
    if not spherical:
        scores -= 0.5 * centres.square().sum(1)
    return scores.argmax(1)


def _chain(centres: torch.Tensor, spherical: bool) -> torch.Tensor:
    """Rank of each centre along a greedy nearest-neighbour path from centre 0."""
    count = centres.shape[0]
    similarity = centres @ centres.T
    if not spherical:
        half_norms = 0.5 * centres.square().sum(1)
        similarity = similarity - half_norms[:, None] - half_norms[None, :]
    visited = torch.zeros(count, dtype=torch.bool)
    rank = torch.empty(count, dtype=torch.int64)
    current = 0
    for position in range(count):
        rank[current] = position
        visited[current] = True
        if position + 1 < count:
            current = int(similarity[current].masked_fill(visited, float("-inf")).argmax())
    return rank
