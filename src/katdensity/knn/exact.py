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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist

from katdensity._progress import progress_counter
from katdensity._validate import as_embeddings, check_choice, check_int
from katdensity.errors import InvalidInputError
from katdensity.knn._rows import MappedRows, RowSource, TensorRows
from katdensity.knn.neighbors import METRICS, Metric, Neighbors

__all__ = ["Precision", "exact_knn", "rescore"]

Precision = Literal["auto", "float32", "bfloat16"]

_GROUP = 32
_NEG_INF = float("-inf")
# Above this fraction of a tile surviving the group filter, a plain top-k is cheaper.
_DENSE_FRACTION = 0.2


def exact_knn(
    embeddings: torch.Tensor | np.ndarray | RowSource,
    k: int,
    *,
    metric: Metric = "cosine",
    precision: Precision = "auto",
    memory_budget_bytes: int = 256 * 2**20,
    progress: bool | None = None,
    distributed: bool | None = None,
) -> Neighbors:
    """Find the exact k nearest neighbours of every row of `embeddings` among the others.

    The work runs on the device `embeddings` lives on. Peak extra memory is about
    `memory_budget_bytes` for the score tile plus `N * k * 12` bytes for the running
    top-k: no `N x N` matrix is ever formed.

    A `numpy.memmap` (e.g. `np.load("emb.npy", mmap_mode="r")`) is streamed instead of
    loaded: blocks of rows ("panels", about `memory_budget_bytes / 2` each, two at a time)
    are read, searched against each other and dropped, so peak memory stays near
    `2 * memory_budget_bytes + N * k * 12` bytes whatever the file size.

    When `torch.distributed` is initialised with more than one process (NCCL on GPUs,
    gloo on CPUs), every process passes the same `embeddings` (a memmap reads only the
    process's own rows), each searches a contiguous shard of `N / world_size` rows, the
    shards travel around a ring so each pair of shards is multiplied once, partial top-k
    lists go back to the shard they belong to, and a final all-gather gives every process
    the same complete graph. See the "Distributed" section of the density docs.

    Args:
        embeddings: `(N, D)` tensor or array of finite values, on any device, or a
            memory-mapped array.
        k: neighbours per point, `1 <= k < N`.
        metric: `"cosine"`, `"euclidean"` or `"ip"` (see [`Neighbors`][katdensity.Neighbors]).
        precision: `"float32"` ranks with fp32 products. `"bfloat16"` ranks candidates with
            bf16 products (fast on GPUs and CPUs with bf16 units), keeping a margin of extra
            candidates that are then re-scored in fp32; ties within bf16 rounding can differ
            from the fp32 result. `"auto"` picks `"bfloat16"` on CUDA, `"float32"` elsewhere.
        memory_budget_bytes: bytes allowed for the score tile and its scratch space.
        progress: show a progress bar; `None` shows one on a terminal for long runs.
        distributed: split the search over the `torch.distributed` processes; `None` (the
            default) does so when a process group with more than one process is initialised.

    Returns:
        The neighbour graph, distances ascending, ties broken by the smaller index.
    """
    source = as_row_source(embeddings, metric)
    n = source.n
    if n < 2:
        raise InvalidInputError(f"embeddings should have at least 2 rows, but got {n}")
    check_int("k", k, low=1, high=n)
    check_choice("metric", metric, METRICS)
    check_choice("precision", precision, ("auto", "float32", "bfloat16"))
    check_int("memory_budget_bytes", memory_budget_bytes, low=1)
    if precision == "auto":
        precision = "bfloat16" if source.device.type == "cuda" else "float32"
    # bf16 scores are coarse: keep extra candidates so the fp32 re-scoring can reorder them.
    n_candidates = min(n - 1, k + max(8, k)) if precision == "bfloat16" else k
    search = SearchSettings(
        n_candidates=n_candidates,
        scoring_dtype=torch.bfloat16 if precision == "bfloat16" else torch.float32,
        euclidean=metric == "euclidean",
        tile=_tile_size(memory_budget_bytes),
        progress=progress,
    )
    if _use_distributed(distributed):
        from katdensity.knn.distributed import ring_search

        return ring_search(source, search, k=k, metric=metric, precision=precision)
    if isinstance(source, TensorRows):
        panel = n
    else:
        panel = max(search.tile, (memory_budget_bytes // 2) // (4 * source.dim))
    scores, candidates = _panel_search(source, search, panel_rows=panel)
    return finish(source, 0, scores, candidates, k=k, metric=metric, precision=precision)


def as_row_source(embeddings: torch.Tensor | np.ndarray | RowSource, metric: Metric) -> RowSource:
    """Wrap the input of a search: memmaps are read lazily, anything else is checked whole."""
    if isinstance(embeddings, RowSource):
        return embeddings
    if isinstance(embeddings, np.memmap):
        if embeddings.ndim != 2 or embeddings.shape[1] == 0:
            raise InvalidInputError(
                f"embeddings should be a 2-D (N, D) array, but got shape {embeddings.shape}"
            )
        return MappedRows(embeddings, normalize=metric == "cosine")
    return TensorRows(as_embeddings(embeddings, min_rows=2), normalize=metric == "cosine")


def _use_distributed(requested: bool | None) -> bool:
    initialised = dist.is_available() and dist.is_initialized()
    if requested is None:
        return initialised and dist.get_world_size() > 1
    if requested and not initialised:
        raise InvalidInputError(
            "distributed=True needs torch.distributed.init_process_group(...) first"
        )
    return requested


def finish(
    source: RowSource,
    first_row: int,
    scores: torch.Tensor,
    candidates: torch.Tensor,
    *,
    k: int,
    metric: Metric,
    precision: Precision,
) -> Neighbors:
    """Turn the running top-k of rows `first_row:first_row + len(scores)` into neighbours."""
    if precision == "float32" and metric != "euclidean":
        # fp32 scores are already the exact products; euclidean is re-scored to avoid the
        # cancellation in |x|^2 + |y|^2 - 2<x, y> for near-duplicates.
        return _sorted_neighbors(1.0 - scores, candidates, k, metric)
    return _rescore(source, first_row, candidates, k, metric)


@dataclass(frozen=True)
class SearchSettings:
    """How a search scores: candidates kept per row, product dtype, tile side, progress."""

    n_candidates: int
    scoring_dtype: torch.dtype
    euclidean: bool
    tile: int
    progress: bool | None


@dataclass(frozen=True)
class Block:
    """A block of rows ready to multiply: padded to a multiple of the group size.

    Rows at and after `valid` are padding and never become candidates; row `i` is global
    point `offset + i`.
    """

    points: torch.Tensor  # (P, D) in the scoring dtype, P a multiple of _GROUP
    valid: int
    offset: int
    half_sq_norms: torch.Tensor | None  # (P,) fp32, for euclidean scores

    @classmethod
    def of(cls, rows: torch.Tensor, offset: int, settings: SearchSettings, size: int) -> Block:
        """Pad `rows` (fp32, prepared) to `size` rows and cast them for scoring."""
        valid = rows.shape[0]
        if size != valid:
            rows = torch.cat([rows, rows.new_zeros(size - valid, rows.shape[1])])
        half = 0.5 * rows.square().sum(1) if settings.euclidean else None
        return cls(rows.to(settings.scoring_dtype), valid, offset, half)


@dataclass(frozen=True)
class TopK:
    """Running top-k scores and global indices of a block's rows, `(P, c)` each."""

    scores: torch.Tensor
    indices: torch.Tensor

    @classmethod
    def empty(cls, rows: int, c: int, device: torch.device) -> TopK:
        return cls(
            torch.full((rows, c), _NEG_INF, device=device),
            torch.full((rows, c), -1, dtype=torch.int64, device=device),
        )

    def rows(self, start: int, stop: int) -> TopK:
        return TopK(self.scores[start:stop], self.indices[start:stop])

    def merge(self, other: TopK) -> None:
        _merge_rows(
            self.scores,
            self.indices,
            slice(None),
            other.scores,
            other.indices,
            self.scores.shape[1],
        )


def padded(n: int) -> int:
    """`n` rounded up to a multiple of the group size."""
    return -(-n // _GROUP) * _GROUP


def _tile_size(memory_budget_bytes: int) -> int:
    # A tile holds the fp32 product plus about as much again of scratch (group maxima,
    # masks, gathered candidates).
    side = int(math.sqrt(memory_budget_bytes / 8))
    return max(_GROUP, side // _GROUP * _GROUP)


def _panel_search(
    source: RowSource, settings: SearchSettings, *, panel_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Search all pairs of panels of `panel_rows` rows; a single panel when it is all of them."""
    n = source.n
    panel_rows = max(settings.tile, panel_rows // settings.tile * settings.tile)
    starts = list(range(0, n, panel_rows))
    best = TopK.empty(padded(n), settings.n_candidates, source.device)
    sizes = [min(panel_rows, padded(n) - start) for start in starts]
    tiles = [-(-size // settings.tile) for size in sizes]
    total = sum(t * (t + 1) // 2 for t in tiles)
    total += sum(tiles[p] * tiles[q] for p in range(len(starts)) for q in range(p + 1, len(starts)))
    with progress_counter(
        total=total, progress=settings.progress, desc="exact kNN", unit="tile"
    ) as bar:
        scratch = torch.empty(
            min(settings.tile, padded(n)) ** 2, dtype=torch.float32, device=source.device
        )
        for p, start in enumerate(starts):
            rows = _load(source, start, sizes[p], settings)
            rows_best = best.rows(start, start + sizes[p])
            search_pair(rows, rows_best, None, None, settings, scratch, bar.update)
            for q in range(p + 1, len(starts)):
                cols = _load(source, starts[q], sizes[q], settings)
                cols_best = best.rows(starts[q], starts[q] + sizes[q])
                search_pair(rows, rows_best, cols, cols_best, settings, scratch, bar.update)
    return best.scores[:n], best.indices[:n]


def _load(source: RowSource, start: int, size: int, settings: SearchSettings) -> Block:
    stop = min(source.n, start + size)
    return Block.of(source.block(start, stop), start, settings, size)


def search_pair(
    rows: Block,
    rows_best: TopK,
    cols: Block | None,
    cols_best: TopK | None,
    settings: SearchSettings,
    scratch: torch.Tensor,
    tick: Callable[[], object],
) -> None:
    """Multiply two blocks tile by tile and merge the scores into the running top-k.

    `cols=None` searches `rows` against itself: only tiles on and above the diagonal are
    multiplied (diagonal tiles first, so the group filter prunes from the next tile on),
    and each off-diagonal tile updates both its rows and, transposed, its columns. With a
    second block, `cols_best` (if given) receives the transposed update.
    """
    same = cols is None
    other = rows if cols is None else cols
    tile, k = settings.tile, settings.n_candidates
    row_starts = range(0, rows.points.shape[0], tile)
    col_starts = range(0, other.points.shape[0], tile)
    if same:
        count = len(row_starts)
        pairs = [(i, i) for i in range(count)]
        pairs += [(i, j) for i in range(count) for j in range(i + 1, count)]
    else:
        pairs = [(i, j) for i in range(len(row_starts)) for j in range(len(col_starts))]
    for i, j in pairs:
        r0, c0 = row_starts[i], col_starts[j]
        r1, c1 = min(r0 + tile, rows.points.shape[0]), min(c0 + tile, other.points.shape[0])
        product = scratch[: (r1 - r0) * (c1 - c0)].view(r1 - r0, c1 - c0)
        _tile_product(rows.points[r0:r1], other.points[c0:c1], out=product)
        if same and i == j:
            product.fill_diagonal_(_NEG_INF)
        # Padding rows are never candidates (their own top-k is dropped at the end).
        product[max(0, rows.valid - r0) :, :] = _NEG_INF
        product[:, max(0, other.valid - c0) :] = _NEG_INF
        # Rows of the tile as queries, its columns as candidates.
        if other.half_sq_norms is not None:
            product.sub_(other.half_sq_norms[c0:c1])
        _update(rows_best.scores, rows_best.indices, product, r0, other.offset + c0, k)
        transposed_best = (rows_best if i != j else None) if same else cols_best
        if transposed_best is not None:
            # Columns as queries, the rows as candidates.
            if other.half_sq_norms is not None and rows.half_sq_norms is not None:
                product.add_(other.half_sq_norms[c0:c1]).sub_(rows.half_sq_norms[r0:r1, None])
            _update(
                transposed_best.scores, transposed_best.indices, product.T, c0, rows.offset + r0, k
            )
        tick()


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
    return _rescore(TensorRows(points, normalize=False), 0, candidates, k, metric)


def _rescore(
    source: RowSource, first_row: int, candidates: torch.Tensor, k: int, metric: Metric
) -> Neighbors:
    """`rescore` for rows `first_row:first_row + len(candidates)` of any row source."""
    if bool((candidates < 0).any()):
        raise RuntimeError("exact_knn: a point received fewer than k candidates (a bug)")
    rows_per_chunk = max(1, (64 * 2**20) // (4 * candidates.shape[1] * source.dim))
    distances = torch.empty(candidates.shape, dtype=torch.float32, device=candidates.device)
    for start in range(0, candidates.shape[0], rows_per_chunk):
        stop = min(candidates.shape[0], start + rows_per_chunk)
        query = source.block(first_row + start, first_row + stop)[:, None, :]
        neighbor = source.take(candidates[start:stop])
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
