"""How many of the true neighbours an approximate graph found."""

from __future__ import annotations

import numpy as np
import torch

from katdensity._validate import as_embeddings, check_int
from katdensity.errors import InvalidInputError
from katdensity.knn.neighbors import Neighbors

__all__ = ["knn_recall", "sampled_recall"]


def knn_recall(approx: Neighbors, exact: Neighbors) -> float:
    """Recall@k: the mean share of each point's exact k neighbours found in `approx`.

    Both graphs must describe the same points with the same `k`. Ties in distance make a
    recall slightly below 1 possible even for two exact methods.
    """
    if approx.indices.shape != exact.indices.shape:
        raise InvalidInputError(
            "approx and exact should have the same shape (N, k), but got "
            f"{tuple(approx.indices.shape)} and {tuple(exact.indices.shape)}"
        )
    found = approx.indices[:, :, None] == exact.indices[:, None, :]
    return float(found.any(dim=1).float().mean())


def sampled_recall(
    neighbors: Neighbors,
    embeddings: torch.Tensor | np.ndarray,
    *,
    n_queries: int = 1000,
    seed: int = 0,
) -> float:
    """Recall@k of `neighbors` on a random subsample of points, against brute force.

    Exact neighbours are computed only for `n_queries` sampled rows (against all `N`), so
    this checks an approximate graph of millions of points in seconds.

    Args:
        neighbors: the graph to check, of the `N` rows of `embeddings`.
        embeddings: `(N, D)` the points the graph was searched on. A density estimator may
            centre them first (`center="auto"` does for anisotropic sets) and merges exact
            duplicates: check `DensityResult.neighbors` only from an estimator built with
            `center=False` on distinct rows, or check `approx_knn` output directly.
        n_queries: rows to check (all rows if `N` is smaller).
        seed: which rows.
    """
    points = as_embeddings(embeddings).cpu()
    n, k = len(neighbors), neighbors.k
    if points.shape[0] != n:
        raise InvalidInputError(f"embeddings has {points.shape[0]} rows but neighbors has {n}")
    check_int("n_queries", n_queries, low=1)
    generator = torch.Generator().manual_seed(check_int("seed", seed))
    queries = torch.randperm(n, generator=generator)[: min(n_queries, n)]
    if neighbors.metric == "cosine":
        points = torch.nn.functional.normalize(points, dim=1)
    hits = 0
    for chunk in torch.split(queries, 256):
        if neighbors.metric == "euclidean":
            scores = -torch.cdist(points[chunk], points)
        else:
            scores = points[chunk] @ points.T
        scores[torch.arange(chunk.numel()), chunk] = float("-inf")
        truth = torch.topk(scores, k, dim=1).indices
        found = neighbors.indices[chunk]
        hits += int((found[:, :, None] == truth[:, None, :]).any(dim=1).sum())
    return hits / (queries.numel() * k)
