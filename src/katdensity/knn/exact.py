"""Exact k-nearest-neighbour graph of a point set: tiled matrix products and a running top-k.

The self-kNN graph is symmetric in its score matrix `S = X X^T`, so only the tiles on and
above the diagonal are multiplied; each off-diagonal tile feeds the top-k of its rows *and*,
transposed, of its columns. That halves the arithmetic. Ranking a whole tile with `topk`
would then cost more than the product itself, so after the first tiles (once every query
holds k candidates) a tile is scanned in groups of 32 consecutive entries: the group
maximum is compared with the query's current k-th best score, and only groups that can
improve it are gathered and merged. In all but the first tiles that is a tiny fraction.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from katdensity._progress import progress_bar
from katdensity._validate import as_embeddings, check_choice, check_int
from katdensity.knn.neighbors import METRICS, Metric, Neighbors

__all__ = ["Precision", "exact_knn", "rescore"]

Precision = Literal["auto", "float32", "bfloat16"]

_GROUP = 32
_NEG_INF = float("-inf")
# Above this fraction of a tile surviving the group filter, a plain top-k is cheaper.
_DENSE_FRACTION = 0.2


def exact_knn(
    embeddings: torch.Tensor | np.ndarray,
    k: int,
    *,
    metric: Metric = "cosine",
    precision: Precision = "auto",
    memory_budget_bytes: int = 256 * 2**20,
    progress: bool | None = None,
) -> Neighbors:
    """Find the exact k nearest neighbours of every row of `embeddings` among the others.

    The work runs on the device `embeddings` lives on. Peak extra memory is about
    `memory_budget_bytes` for the score tile plus `N * k * 12` bytes for the running
    top-k: no `N x N` matrix is ever formed.

    Args:
        embeddings: `(N, D)` tensor or array of finite values, on any device.
        k: neighbours per point, `1 <= k < N`.
        metric: `"cosine"`, `"euclidean"` or `"ip"` (see [`Neighbors`][katdensity.Neighbors]).
        precision: `"float32"` ranks with fp32 products. `"bfloat16"` ranks candidates with
            bf16 products (fast on GPUs and CPUs with bf16 units), keeping a margin of extra
            candidates that are then re-scored in fp32; ties within bf16 rounding can differ
            from the fp32 result. `"auto"` picks `"bfloat16"` on CUDA, `"float32"` elsewhere.
        memory_budget_bytes: bytes allowed for the score tile and its scratch space.
        progress: show a progress bar; `None` shows one on a terminal for long runs.

    Returns:
        The neighbour graph, distances ascending, ties broken by the smaller index.
    """
    embeddings = as_embeddings(embeddings, min_rows=2)
    n = embeddings.shape[0]
    check_int("k", k, low=1, high=n)
    check_choice("metric", metric, METRICS)
    check_choice("precision", precision, ("auto", "float32", "bfloat16"))
    check_int("memory_budget_bytes", memory_budget_bytes, low=1)
    if precision == "auto":
        precision = "bfloat16" if embeddings.device.type == "cuda" else "float32"

    points = embeddings.to(torch.float32)
    if metric == "cosine":
        points = torch.nn.functional.normalize(points, dim=1)
    scoring = points.to(torch.bfloat16) if precision == "bfloat16" else points
    # bf16 scores are coarse: keep extra candidates so the fp32 re-scoring can reorder them.
    n_candidates = min(n - 1, k + max(8, k)) if precision == "bfloat16" else k
    scores, candidates = _top_scores(
        scoring,
        n_candidates,
        half_sq_norms=_half_sq_norms(points, n) if metric == "euclidean" else None,
        tile=_tile_size(memory_budget_bytes),
        progress=progress,
    )
    if precision == "float32" and metric != "euclidean":
        # fp32 scores are already the exact products; euclidean is re-scored to avoid the
        # cancellation in |x|^2 + |y|^2 - 2<x, y> for near-duplicates.
        return _sorted_neighbors(1.0 - scores, candidates, k, metric)
    return rescore(points, candidates, k, metric)


def _half_sq_norms(points: torch.Tensor, n: int) -> torch.Tensor:
    padded_n = -(-n // _GROUP) * _GROUP
    norms = torch.zeros(padded_n, device=points.device)
    norms[:n] = 0.5 * points.square().sum(1)
    return norms


def _tile_size(memory_budget_bytes: int) -> int:
    # A tile holds the fp32 product plus about as much again of scratch (group maxima,
    # masks, gathered candidates).
    side = int(math.sqrt(memory_budget_bytes / 8))
    return max(_GROUP, side // _GROUP * _GROUP)


def _top_scores(
    points: torch.Tensor,
    k: int,
    *,
    half_sq_norms: torch.Tensor | None,
    tile: int,
    progress: bool | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k of `score(i, j) = <x_i, x_j> - half_sq_norms[j]` over `j != i`."""
    n, dim = points.shape
    device = points.device
    padded_n = -(-n // _GROUP) * _GROUP
    if padded_n != n:
        points = torch.cat([points, points.new_zeros(padded_n - n, dim)])
    tile = min(tile, padded_n)
    starts = list(range(0, padded_n, tile))
    best_scores = torch.full((padded_n, k), _NEG_INF, device=device)
    best_indices = torch.full((padded_n, k), -1, dtype=torch.int64, device=device)
    buffer = torch.empty(tile * tile, dtype=torch.float32, device=device)

    # Diagonal tiles first: afterwards every query holds k candidates from its own tile, so
    # the group filter prunes from the first off-diagonal tile on.
    diagonal = [(i, i) for i in range(len(starts))]
    pairs = diagonal + [(i, j) for i in range(len(starts)) for j in range(i + 1, len(starts))]
    for i, j in progress_bar(
        pairs, total=len(pairs), progress=progress, desc="exact kNN", unit="tile"
    ):
        r0, r1 = starts[i], min(starts[i] + tile, padded_n)
        c0, c1 = starts[j], min(starts[j] + tile, padded_n)
        product = buffer[: (r1 - r0) * (c1 - c0)].view(r1 - r0, c1 - c0)
        _tile_product(points[r0:r1], points[c0:c1], out=product)
        if i == j:
            product.fill_diagonal_(_NEG_INF)
        # Padding rows are never candidates (their own top-k is dropped at the end).
        product[max(0, n - r0) :, :] = _NEG_INF
        product[:, max(0, n - c0) :] = _NEG_INF
        # Rows of the tile as queries, the columns c0:c1 as candidates.
        if half_sq_norms is not None:
            product.sub_(half_sq_norms[c0:c1])
        _update(best_scores, best_indices, product, r0, c0, k)
        if i != j:
            # Columns as queries, rows r0:r1 as candidates.
            if half_sq_norms is not None:
                product.add_(half_sq_norms[c0:c1]).sub_(half_sq_norms[r0:r1, None])
            _update(best_scores, best_indices, product.T, c0, r0, k)
    return best_scores[:n], best_indices[:n]


def _tile_product(rows: torch.Tensor, cols: torch.Tensor, *, out: torch.Tensor) -> None:
    if rows.device.type == "cpu" and rows.dtype == torch.float32:
        # NumPy's BLAS runs fp32 GEMM markedly faster than torch's on some CPUs (AMD with MKL).
        np.matmul(rows.numpy(), cols.numpy().T, out=out.numpy())
    else:
        out.copy_(rows @ cols.T)


def _update(
    best_scores: torch.Tensor,
    best_indices: torch.Tensor,
    scores: torch.Tensor,
    query_start: int,
    cand_start: int,
    k: int,
) -> None:
    """Merge a `(q, c)` score tile (queries x candidates, any strides) into the running top-k."""
    n_queries, n_cands = scores.shape
    queries = slice(query_start, query_start + n_queries)
    threshold = best_scores[queries, k - 1]
    groups = _group_max(scores)  # (q, c / G)
    hits = groups > threshold[:, None]
    n_hits = int(hits.sum())
    if n_hits == 0:
        return
    if n_hits * _GROUP > _DENSE_FRACTION * n_queries * n_cands:
        top_scores, top_cols = torch.topk(scores, min(k, n_cands), dim=1)
        _merge_rows(best_scores, best_indices, queries, top_scores, top_cols + cand_start, k)
        return
    query_ids, group_ids = hits.nonzero(as_tuple=True)
    members = torch.arange(_GROUP, device=scores.device)
    group_cols = group_ids[:, None] * _GROUP + members  # (hits, G) local candidate columns
    group_values = _gather_groups(scores, query_ids, group_ids)  # (hits, G)
    # Second stage: of the surviving groups, keep the single entries that beat the threshold.
    hit_rows, hit_members = (group_values > threshold[query_ids, None]).nonzero(as_tuple=True)
    query_ids = query_ids[hit_rows]
    values = group_values[hit_rows, hit_members]
    cols = group_cols[hit_rows, hit_members] + cand_start
    counts = torch.bincount(query_ids, minlength=n_queries)
    active = counts.nonzero().squeeze(1)
    slot_of_query = torch.cumsum(counts > 0, 0) - 1
    first_hit = torch.cumsum(counts, 0) - counts
    position = torch.arange(query_ids.numel(), device=scores.device) - first_hit[query_ids]
    width = int(counts.max())
    padded_values = scores.new_full((active.numel(), width), _NEG_INF)
    padded_cols = torch.zeros((active.numel(), width), dtype=torch.int64, device=scores.device)
    slots = slot_of_query[query_ids]
    padded_values[slots, position] = values
    padded_cols[slots, position] = cols
    _merge_rows(best_scores, best_indices, active + query_start, padded_values, padded_cols, k)


def _gather_groups(
    scores: torch.Tensor, query_ids: torch.Tensor, group_ids: torch.Tensor
) -> torch.Tensor:
    """Row h: the scores of group `group_ids[h]` for query `query_ids[h]`, no tile copy."""
    n_queries, n_cands = scores.shape
    if scores.stride(1) == 1:
        return scores.view(n_queries, n_cands // _GROUP, _GROUP)[query_ids, group_ids]
    grouped = scores.T.view(n_cands // _GROUP, _GROUP, n_queries)
    return grouped[group_ids, :, query_ids]


def _group_max(scores: torch.Tensor) -> torch.Tensor:
    n_queries, n_cands = scores.shape
    if scores.stride(1) == 1:
        return scores.view(n_queries, n_cands // _GROUP, _GROUP).amax(2)
    # A transposed tile: group along the contiguous dimension without copying it.
    return scores.T.view(n_cands // _GROUP, _GROUP, n_queries).amax(1).T


def _merge_rows(
    best_scores: torch.Tensor,
    best_indices: torch.Tensor,
    rows: slice | torch.Tensor,
    new_scores: torch.Tensor,
    new_indices: torch.Tensor,
    k: int,
) -> None:
    merged_scores = torch.cat([best_scores[rows], new_scores], dim=1)
    merged_indices = torch.cat([best_indices[rows], new_indices], dim=1)
    top_scores, position = torch.topk(merged_scores, k, dim=1)
    best_scores[rows] = top_scores
    best_indices[rows] = torch.gather(merged_indices, 1, position)


def rescore(points: torch.Tensor, candidates: torch.Tensor, k: int, metric: Metric) -> Neighbors:
    """Exact fp32 distances from each row of `points` to its `(N, c)` candidate rows.

    Keeps the k nearest (`k <= c`), ascending, ties broken by the smaller index.
    `points` must already be L2-normalised for `"cosine"`.
    """
    n = points.shape[0]
    if bool((candidates < 0).any()):
        raise RuntimeError("exact_knn: a point received fewer than k candidates (a bug)")
    rows_per_chunk = max(1, (64 * 2**20) // (4 * candidates.shape[1] * points.shape[1]))
    distances = torch.empty(candidates.shape, dtype=torch.float32, device=points.device)
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        query = points[start:stop, None, :]
        neighbor = points[candidates[start:stop]]
        if metric == "euclidean":
            distances[start:stop] = (neighbor - query).norm(dim=2)
        else:
            distances[start:stop] = 1.0 - (neighbor * query).sum(dim=2)
    return _sorted_neighbors(distances, candidates, k, metric)


def _sorted_neighbors(
    distances: torch.Tensor, candidates: torch.Tensor, k: int, metric: Metric
) -> Neighbors:
    """Keep the k smallest distances per row, ascending, ties broken by the smaller index."""
    by_index = torch.sort(candidates, dim=1).indices
    candidates = torch.gather(candidates, 1, by_index)
    distances = torch.gather(distances, 1, by_index)
    order = torch.sort(distances, dim=1, stable=True).indices[:, :k]
    return Neighbors(
        distances=torch.gather(distances, 1, order).clamp_min(0.0).contiguous(),
        indices=torch.gather(candidates, 1, order).contiguous(),
        metric=metric,
    )
