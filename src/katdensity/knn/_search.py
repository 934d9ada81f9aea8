"""The machinery of the exact search: blocks of rows, tile products and running top-k lists.

A search multiplies blocks of rows tile by tile and merges each tile's scores into a running
top-k per row. The score matrix of a self-search is symmetric, so a block searched against
itself multiplies only the tiles on and above the diagonal, and each off-diagonal tile feeds
the top-k of its rows *and*, transposed, of its columns. Ranking a whole tile with `topk`
would then cost more than the product itself, so once every query holds k candidates a tile
is scanned in groups of 32 consecutive entries: the group maximum is compared with the
query's current k-th best score, and only groups that can improve it are gathered and
merged. In all but the first tiles that is a tiny fraction. The columns' update reuses the
rows' group maxima (the maximum of each 32 x 32 block) instead of reading the tile again,
and a query's first tile ranks only its k groups of largest maximum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from katdensity._progress import progress_bar
from katdensity.knn._rows import RowSource
from katdensity.knn.neighbors import Metric, Neighbors

__all__ = [
    "GROUP",
    "Block",
    "Scratch",
    "SearchSettings",
    "TopK",
    "finish",
    "padded",
    "rescore_rows",
    "search_pair",
]

GROUP = 32
_NEG_INF = float("-inf")
# Above this fraction of a tile surviving the group filter, a plain top-k is cheaper.
_DENSE_FRACTION = 0.2
# Above this fraction of a tile's 32 x 32 blocks passing, the columns' update reads the tile.
_BLOCK_FRACTION = 0.25
# Rows are cast into a block this many fp32 bytes at a time.
_READ_BYTES = 64 * 2**20


@dataclass(frozen=True)
class SearchSettings:
    """How a search scores: candidates kept per row, product dtype, tile side, progress.

    With int8 products every row is quantised with the same `int8_scale` (127 over the
    largest absolute value of the whole set), so one tile's integer scores rank candidates
    exactly as `int8_scale**2` times the real products would: no per-entry rescaling.
    """

    n_candidates: int
    scoring_dtype: torch.dtype
    euclidean: bool
    tile: int
    progress: bool | None
    int8_scale: float = 1.0

    def width(self, dim: int) -> int:
        """Columns of a block of `dim`-wide rows (CUDA's int8 product wants a multiple of 8;
        the zeros added change no product)."""
        return -(-dim // 8) * 8 if self.scoring_dtype == torch.int8 else dim

    def quantised(self, rows: torch.Tensor) -> torch.Tensor:
        """fp32 rows cast to the scoring dtype (int8: scaled, rounded, saturated, padded)."""
        if self.scoring_dtype != torch.int8:
            return rows.to(self.scoring_dtype)
        scaled = rows * self.int8_scale
        if self.width(rows.shape[1]) != rows.shape[1]:
            scaled = torch.nn.functional.pad(scaled, (0, self.width(rows.shape[1]) - rows.shape[1]))
        return scaled.round_().clamp_(-127, 127).to(torch.int8)


@dataclass(frozen=True)
class Block:
    """A block of rows ready to multiply: padded to a multiple of the group size.

    Rows at and after `valid` are padding and never become candidates; row `i` is global
    point `offset + i`.
    """

    points: torch.Tensor  # (P, D) in the scoring dtype, P a multiple of GROUP
    valid: int
    offset: int
    half_sq_norms: torch.Tensor | None  # (P,) fp32, for euclidean scores

    @classmethod
    def read(cls, source: RowSource, start: int, size: int, settings: SearchSettings) -> Block:
        """Rows `start:start + size` of `source` (any past its end are padding), cast for scoring.

        The rows are read in chunks straight into the block, so no second full copy of them
        is ever held (a memory-mapped or reordered source hands out fresh copies).
        """
        valid = max(0, min(source.n, start + size) - start)
        width = settings.width(source.dim)
        points = torch.zeros(size, width, dtype=settings.scoring_dtype, device=source.device)
        half = torch.zeros(size, device=source.device) if settings.euclidean else None
        step = max(1, _READ_BYTES // (4 * source.dim))
        for first in range(0, valid, step):
            last = min(valid, first + step)
            rows = source.block(start + first, start + last)
            points[first:last] = settings.quantised(rows)
            if half is not None:
                # In the units of the int8 scores: products there are scale^2 times the real ones.
                half[first:last] = (0.5 * settings.int8_scale**2) * rows.square().sum(1)
        return cls(points, valid, start, half)


@dataclass(frozen=True)
class Scratch:
    """Tile buffers reused by every product of a search.

    `scores` holds a tile's fp32 scores. A bf16 (int8) search multiplies into a bf16 (int32)
    `product` first: a fresh output tensor per tile would cost page faults as large as the
    product itself.
    """

    scores: torch.Tensor
    product: torch.Tensor | None

    @classmethod
    def of(cls, side: int, settings: SearchSettings, device: torch.device) -> Scratch:
        """Buffers for tiles of at most `side x side` scores."""
        dtype = {torch.int8: torch.int32}.get(settings.scoring_dtype, settings.scoring_dtype)
        low = None if dtype == torch.float32 else torch.empty(side**2, dtype=dtype, device=device)
        return cls(torch.empty(side**2, dtype=torch.float32, device=device), low)

    def tile(self, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Views of `rows x cols` for the fp32 scores and the raw product."""
        size = rows * cols
        scores = self.scores[:size].view(rows, cols)
        product = None if self.product is None else self.product[:size].view(rows, cols)
        return scores, product


@dataclass(frozen=True)
class TopK:
    """Running top-k scores and global indices of a block's rows, `(P, c)` each."""

    scores: torch.Tensor
    indices: torch.Tensor

    @classmethod
    def empty(cls, rows: int, c: int, device: torch.device) -> TopK:
        """No candidates yet: scores `-inf`, indices `-1`."""
        return cls(
            torch.full((rows, c), _NEG_INF, device=device),
            torch.full((rows, c), -1, dtype=torch.int64, device=device),
        )

    def rows(self, start: int, stop: int) -> TopK:
        """A view of rows `start:stop`; merging into it updates this list."""
        return TopK(self.scores[start:stop], self.indices[start:stop])

    def merge(self, other: TopK) -> None:
        """Keep, per row, the best of both lists."""
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
    return -(-n // GROUP) * GROUP


def search_pair(
    rows: Block,
    rows_best: TopK,
    cols: Block | None,
    cols_best: TopK | None,
    settings: SearchSettings,
    scratch: Scratch,
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
    # int8 products are exact int32 scores in one scale: the filter reads them as they are
    # (a widening pass costs more than the product). bf16 ones, and euclidean scores, which
    # subtract fp32 norms, are widened to fp32 first.
    widen = settings.scoring_dtype != torch.int8 or settings.euclidean
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
        scores, raw = scratch.tile(r1 - r0, c1 - c0)
        product = _tile_product(
            rows.points[r0:r1], other.points[c0:c1], out=scores, raw=raw, widen=widen
        )
        lowest = _lowest(product.dtype)
        if same and i == j:
            product.fill_diagonal_(lowest)
        # Padding rows are never candidates (their own top-k is dropped at the end).
        product[max(0, rows.valid - r0) :, :] = lowest
        product[:, max(0, other.valid - c0) :] = lowest
        # Rows of the tile as queries, its columns as candidates.
        if other.half_sq_norms is not None:
            product.sub_(other.half_sq_norms[c0:c1])
        row_groups = _update(rows_best.scores, rows_best.indices, product, r0, other.offset + c0, k)
        transposed_best = (rows_best if i != j else None) if same else cols_best
        if transposed_best is not None:
            # Columns as queries, the rows as candidates.
            best_scores, best_indices = transposed_best.scores, transposed_best.indices
            if other.half_sq_norms is not None and rows.half_sq_norms is not None:
                # Euclidean scores subtract the rows' norms instead of the columns'.
                product.add_(other.half_sq_norms[c0:c1]).sub_(rows.half_sq_norms[r0:r1, None])
                _update(best_scores, best_indices, product.T, c0, rows.offset + r0, k)
            else:
                _update_columns(
                    best_scores, best_indices, product, row_groups, c0, rows.offset + r0, k
                )
        tick()


def _tile_product(
    rows: torch.Tensor,
    cols: torch.Tensor,
    *,
    out: torch.Tensor,
    raw: torch.Tensor | None,
    widen: bool,
) -> torch.Tensor:
    """The tile's scores: fp32 in `out`, or the raw int32 product when not `widen`."""
    # torch's own GEMM, not NumPy's: NumPy's BLAS is a little faster alone on some CPUs,
    # but its spinning thread pool then slows every torch operation between the products.
    if raw is None:
        return torch.mm(rows, cols.T, out=out)
    if rows.dtype == torch.int8:
        torch._int_mm(rows, cols.T, out=raw)
    else:
        torch.mm(rows, cols.T, out=raw)
    if not widen:
        return raw
    # The filter reads the tile several times: fp32 reductions are ~10x faster on CPU.
    return out.copy_(raw)


def _lowest(dtype: torch.dtype) -> float:
    """A score below every real one: `-inf`, or the smallest int32 for raw int8 products."""
    return float(torch.iinfo(dtype).min) if dtype == torch.int32 else _NEG_INF


def _update(
    best_scores: torch.Tensor,
    best_indices: torch.Tensor,
    scores: torch.Tensor,
    query_start: int,
    cand_start: int,
    k: int,
) -> torch.Tensor:
    """Merge a `(q, c)` score tile (queries x candidates, any strides) into the running top-k.

    Returns the tile's group maxima, `(q, c / G)`.
    """
    n_queries, n_cands = scores.shape
    queries = slice(query_start, query_start + n_queries)
    threshold = best_scores[queries, k - 1]
    groups = _group_max(scores)  # (q, c / G)
    if groups.shape[1] >= k and bool(threshold.isneginf().any()):
        _merge_first_tile(best_scores, best_indices, scores, groups, queries, cand_start, k)
        return groups
    hits = groups > threshold[:, None]
    n_hits = int(hits.sum())
    if n_hits == 0:
        return groups
    if n_hits * GROUP > _DENSE_FRACTION * n_queries * n_cands:
        top_scores, top_cols = torch.topk(scores, min(k, n_cands), dim=1)
        top_scores = top_scores.float()  # (int32 scores of an int8 search)
        _merge_rows(best_scores, best_indices, queries, top_scores, top_cols + cand_start, k)
        return groups
    query_ids, group_ids = hits.nonzero(as_tuple=True)
    group_values = _gather_groups(scores, query_ids, group_ids).float()  # (hits, G)
    _merge_entries(
        best_scores,
        best_indices,
        query_ids,
        group_ids * GROUP + cand_start,
        group_values,
        threshold,
        query_start,
        k,
    )
    return groups


def _update_columns(
    best_scores: torch.Tensor,
    best_indices: torch.Tensor,
    tile: torch.Tensor,
    row_groups: torch.Tensor,
    query_start: int,
    cand_start: int,
    k: int,
) -> None:
    """Merge a contiguous `(r, c)` tile into the top-k of its *columns*, its rows as candidates.

    Reading the tile again for the columns' group maxima would cost as much as the rows'
    pass: instead the rows' group maxima `row_groups` give the maximum of each `G x G`
    block, and only blocks whose maximum beats the lowest threshold of their columns are
    gathered (a few percent once the lists hold near neighbours).
    """
    n_rows, n_cols = tile.shape
    threshold = best_scores[query_start : query_start + n_cols, k - 1]
    if bool(threshold.isneginf().any()):
        _update(best_scores, best_indices, tile.T, query_start, cand_start, k)
        return
    n_row_groups, n_col_groups = n_rows // GROUP, n_cols // GROUP
    block_max = row_groups.view(n_row_groups, GROUP, n_col_groups).amax(1)
    lowest_threshold = threshold.view(n_col_groups, GROUP).amin(1)
    passing = block_max > lowest_threshold
    n_passing = int(passing.sum())
    if n_passing == 0:
        return
    if n_passing > _BLOCK_FRACTION * passing.numel():
        # Thresholds still low (rows in input order, early tiles): gathering that many
        # blocks costs more than a pass over the tile for the columns' own group maxima.
        _update(best_scores, best_indices, tile.T, query_start, cand_start, k)
        return
    row_group_ids, col_group_ids = passing.nonzero(as_tuple=True)
    # (blocks, G rows, G columns), each block's rows read as G contiguous runs.
    members = torch.arange(GROUP, device=tile.device)
    runs = (row_group_ids[:, None] * GROUP + members) * n_col_groups + col_group_ids[:, None]
    blocks = tile.view(n_rows * n_col_groups, GROUP).index_select(0, runs.view(-1))
    blocks = blocks.view(-1, GROUP, GROUP)
    # Second stage: the (block, column) pairs whose column maximum beats the column's threshold.
    columns = col_group_ids[:, None] * GROUP + members  # (blocks, G) local column numbers
    block_ids, member_ids = (blocks.amax(1) > threshold[columns]).nonzero(as_tuple=True)
    if block_ids.numel() == 0:
        return
    query_ids = columns[block_ids, member_ids]
    by_query = torch.argsort(query_ids, stable=True)
    block_ids, member_ids = block_ids[by_query], member_ids[by_query]
    query_ids = query_ids[by_query]
    column_values = blocks[block_ids, :, member_ids].float()  # (hits, G) down the rows
    _merge_entries(
        best_scores,
        best_indices,
        query_ids,
        row_group_ids[block_ids] * GROUP + cand_start,
        column_values,
        threshold,
        query_start,
        k,
    )


def _merge_entries(
    best_scores: torch.Tensor,
    best_indices: torch.Tensor,
    query_ids: torch.Tensor,
    first_candidates: torch.Tensor,
    values: torch.Tensor,
    threshold: torch.Tensor,
    query_start: int,
    k: int,
) -> None:
    """Merge gathered runs of scores into the top-k of their queries.

    Run h holds the scores of query `query_ids[h]` (local, ascending) against the `G`
    consecutive candidates from `first_candidates[h]` (global); only entries above the
    query's `threshold` are kept.
    """
    # On the flat index: two-dimensional advanced indexing is several times slower on CPU.
    entries = (values > threshold[query_ids, None]).view(-1).nonzero().squeeze(1)
    runs = entries.div(GROUP, rounding_mode="floor")
    query_ids = query_ids.index_select(0, runs)
    kept = values.view(-1).index_select(0, entries)
    candidates = first_candidates.index_select(0, runs) + (entries - runs * GROUP)
    counts = torch.bincount(query_ids, minlength=threshold.numel())
    active = counts.nonzero().squeeze(1)
    slot_of_query = torch.cumsum(counts > 0, 0) - 1
    first_hit = torch.cumsum(counts, 0) - counts
    position = torch.arange(query_ids.numel(), device=values.device) - first_hit[query_ids]
    width = int(counts.max())
    padded_values = kept.new_full((active.numel(), width), _NEG_INF)
    padded_cols = torch.zeros((active.numel(), width), dtype=torch.int64, device=values.device)
    slots = slot_of_query[query_ids]
    padded_values[slots, position] = kept
    padded_cols[slots, position] = candidates
    _merge_rows(best_scores, best_indices, active + query_start, padded_values, padded_cols, k)


def _merge_first_tile(
    best_scores: torch.Tensor,
    best_indices: torch.Tensor,
    scores: torch.Tensor,
    groups: torch.Tensor,
    queries: slice,
    cand_start: int,
    k: int,
) -> None:
    """Merge a tile's top-k per query, found among its k groups of largest maximum.

    A query's k best scores in the tile are all at least its k-th largest group maximum (k
    groups hold a score that large), so they lie in those k groups (up to ties): ranking
    `k * G` gathered scores replaces ranking the whole row, which matters on the first tile
    of each row, where there is no threshold to filter with yet.
    """
    n_queries = groups.shape[0]
    top_groups = torch.topk(groups, k, dim=1, sorted=False).indices  # (q, k)
    query_ids = torch.arange(n_queries, device=scores.device).repeat_interleave(k)
    group_ids = top_groups.view(-1)
    values = _gather_groups(scores, query_ids, group_ids).float().view(n_queries, k * GROUP)
    top_scores, position = torch.topk(values, k, dim=1)
    chosen = torch.gather(top_groups, 1, position.div(GROUP, rounding_mode="floor"))
    top_cols = chosen * GROUP + position.remainder(GROUP) + cand_start
    _merge_rows(best_scores, best_indices, queries, top_scores, top_cols, k)


def _gather_groups(
    scores: torch.Tensor, query_ids: torch.Tensor, group_ids: torch.Tensor
) -> torch.Tensor:
    """Row h: the scores of group `group_ids[h]` for query `query_ids[h]`, no tile copy."""
    n_queries, n_cands = scores.shape
    n_groups = n_cands // GROUP
    if scores.stride(1) == 1:
        # index_select on the groups as rows: ~4x faster than advanced indexing on CPU.
        flat = scores.view(n_queries * n_groups, GROUP)
        return flat.index_select(0, query_ids * n_groups + group_ids)
    grouped = scores.T.view(n_groups, GROUP, n_queries)
    return grouped[group_ids, :, query_ids]


def _group_max(scores: torch.Tensor) -> torch.Tensor:
    n_queries, n_cands = scores.shape
    if scores.stride(1) == 1:
        return scores.view(n_queries, n_cands // GROUP, GROUP).amax(2)
    # A transposed tile: group along the contiguous dimension without copying it.
    return scores.T.view(n_cands // GROUP, GROUP, n_queries).amax(1).T


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


def finish(
    source: RowSource,
    first_row: int,
    scores: torch.Tensor,
    candidates: torch.Tensor,
    *,
    k: int,
    metric: Metric,
    settings: SearchSettings,
) -> Neighbors:
    """Turn the running top-k of rows `first_row:first_row + len(scores)` into neighbours."""
    if settings.scoring_dtype == torch.float32 and metric != "euclidean":
        # fp32 scores are already the exact products; euclidean is re-scored to avoid the
        # cancellation in |x|^2 + |y|^2 - 2<x, y> for near-duplicates.
        return _sorted_neighbors(1.0 - scores, candidates, k, metric)
    return rescore_rows(source, first_row, candidates, k, metric)


def rescore_rows(
    source: RowSource,
    first_row: int,
    candidates: torch.Tensor,
    k: int,
    metric: Metric,
    *,
    progress: bool = False,
) -> Neighbors:
    """`rescore` for rows `first_row:first_row + len(candidates)` of any row source."""
    if bool((candidates < 0).any()):
        raise RuntimeError("exact_knn: a point received fewer than k candidates (a bug)")
    rows_per_chunk = max(
        1, _rescore_chunk_bytes(source.device) // (4 * candidates.shape[1] * source.dim)
    )
    distances = torch.empty(candidates.shape, dtype=torch.float32, device=candidates.device)
    starts = range(0, candidates.shape[0], rows_per_chunk)
    bar = progress_bar(
        starts, total=len(starts), progress=progress, desc="re-scoring", unit="block"
    )
    for start in bar:
        stop = min(candidates.shape[0], start + rows_per_chunk)
        query = source.block(first_row + start, first_row + stop)[:, None, :]
        neighbor = source.take(candidates[start:stop])
        if metric == "euclidean":
            distances[start:stop] = (neighbor - query).norm(dim=2)
        else:
            products = torch.bmm(neighbor, query.transpose(1, 2)).squeeze(2)
            distances[start:stop] = 1.0 - products
    return _sorted_neighbors(distances, candidates, k, metric)


def _rescore_chunk_bytes(device: torch.device) -> int:
    # On CPU the gathered candidate rows should stay in cache: 64 MiB chunks ran 10x slower
    # than 4 MiB ones (page faults on every fresh buffer). A GPU wants fewer, larger launches.
    return 4 * 2**20 if device.type == "cpu" else 64 * 2**20


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
