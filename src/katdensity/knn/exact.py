"""Exact k-nearest-neighbour graph of a point set, in memory, streamed, or distributed.

The search itself (tiles, the symmetric half, the group-max filter) is in
`katdensity.knn._search`; this module decides how the rows are read: one block in memory,
panels streamed from a memory-mapped file, or shards spread over `torch.distributed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist

from katdensity._distributed import group_initialised, process_group
from katdensity._progress import progress_counter
from katdensity._validate import as_embeddings, check_choice, check_int
from katdensity.errors import InvalidInputError
from katdensity.knn._order import locality_order
from katdensity.knn._precision import auto_precision
from katdensity.knn._rows import (
    MappedRows,
    PermutedRows,
    RowSource,
    TensorRows,
    largest_magnitude,
    on_device,
)
from katdensity.knn._search import (
    GROUP,
    Block,
    Scratch,
    SearchSettings,
    TopK,
    finish,
    padded,
    rescore_rows,
    search_pair,
)
from katdensity.knn.neighbors import METRICS, Metric, Neighbors

__all__ = ["DEFAULT_MEMORY_BUDGET_BYTES", "PRECISIONS", "Precision", "exact_knn", "rescore"]

Precision = Literal["auto", "float32", "bfloat16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("auto", "float32", "bfloat16", "int8")
# Bytes for one score tile and its scratch space, unless the caller sets them.
DEFAULT_MEMORY_BUDGET_BYTES = 256 * 2**20


def exact_knn(
    embeddings: torch.Tensor | np.ndarray,
    k: int,
    *,
    metric: Metric = "cosine",
    precision: Precision = "auto",
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    progress: bool | None = None,
    distributed: bool | None = None,
) -> Neighbors:
    """Find the exact k nearest neighbours of every row of `embeddings` among the others.

    The work runs on the device `embeddings` lives on. Peak extra memory is about
    `memory_budget_bytes` for the score tile plus `N * c * 12` bytes for the running top-k
    (`c = k` candidates per row, `k + max(8, 2k)` with bf16, `k + max(8, k)` with int8)
    plus, in memory, one padded copy of the rows: no `N x N` matrix is ever formed.

    A `numpy.memmap` (e.g. `np.load("emb.npy", mmap_mode="r")`) is streamed instead of
    loaded: blocks of rows ("panels" of at most `memory_budget_bytes / 2`, two held at a
    time) are read, searched against each other and dropped, so peak memory stays near
    `2 * memory_budget_bytes + N * c * 12` bytes whatever the file size.

    Note: Distributed
        When `torch.distributed` is initialised with more than one process (NCCL on GPUs,
        gloo on CPUs) and `distributed` is not `False`, **every process must call this with
        the same embeddings**: each searches a contiguous shard of `N / world_size` rows
        (a memmap reads its own shard's rows for the products, and candidate rows when it
        re-scores), the shards travel around a ring so each pair of shards is multiplied
        once, partial top-k lists go back to the shard they belong to, and a final
        all-gather gives every process the same complete graph. Under NCCL, CPU inputs
        are searched on the current CUDA device. Pass `distributed=False` to search alone
        inside a process group (e.g. on rank 0 only). No progress bar is shown.

    Args:
        embeddings: `(N, D)` tensor or array of finite values, on any device, or a
            memory-mapped array.
        k: neighbours per point, `1 <= k < N`.
        metric: `"cosine"`, `"euclidean"` or `"ip"` (see [`Neighbors`][katdensity.Neighbors]).
        precision: `"float32"` ranks with fp32 products. `"bfloat16"` ranks candidates with
            bf16 products (fast on GPUs and CPUs with bf16 units), keeping a margin of extra
            candidates that are then re-scored in fp32; ties within bf16 rounding can differ
            from the fp32 result. `"int8"` does the same with int8 products (every row
            scaled by one factor, 127 over the largest absolute value; `k + max(8, k)`
            candidates): up to several times the bf16 rate on CPUs with VNNI or AMX, and far
            slower on those without.
            `"auto"` picks `"bfloat16"` on CUDA; on a CPU it times one tile product in each
            dtype (once per process, for searches of 20,000 rows or more) and picks the
            fastest of int8 and bf16 only where it is at least 1.5x faster than fp32 (fp32
            when the search is distributed over CPU processes).
        memory_budget_bytes: bytes allowed for the score tile and its scratch space.
        progress: show a progress bar; `None` shows one on a terminal for long runs.
        distributed: split the search over the `torch.distributed` processes; `None` (the
            default) does so when a process group with more than one process is initialised.

    Returns:
        The neighbour graph, distances ascending, ties broken by the smaller index.

    Raises:
        InvalidInputError: fewer than 2 rows, NaN/inf values, `k` out of range, an unknown
            metric or precision, or `distributed=True` without a process group.
    """
    return search_rows(
        as_row_source(embeddings, metric),
        k,
        metric=metric,
        precision=precision,
        memory_budget_bytes=memory_budget_bytes,
        progress=progress,
        distributed=distributed,
    )


def search_rows(
    source: RowSource,
    k: int,
    *,
    metric: Metric,
    precision: Precision,
    memory_budget_bytes: int,
    progress: bool | None,
    distributed: bool | None,
) -> Neighbors:
    """`exact_knn` over a row source (what the estimators pass for memory-mapped files)."""
    n = source.n
    if n < 2:
        raise InvalidInputError(f"embeddings should have at least 2 rows, but got {n}")
    check_int("k", k, low=1, high=n)
    check_choice("metric", metric, METRICS)
    check_choice("precision", precision, PRECISIONS)
    check_int("memory_budget_bytes", memory_budget_bytes, low=1)
    use_distributed = _use_distributed(distributed)
    result_device = source.device
    if use_distributed and dist.get_backend() == "nccl" and source.device.type == "cpu":
        source = on_device(source, torch.device("cuda", torch.cuda.current_device()))
    if precision == "auto":
        # Processes must agree on the candidates they keep: a timed choice could differ
        # between ranks, so a distributed CPU search stays with fp32.
        cpu_group = use_distributed and source.device.type == "cpu"
        precision = "float32" if cpu_group else auto_precision(source.device, n, source.dim)
    tile = _tile_size(memory_budget_bytes, precision=precision)
    panel = n if isinstance(source, TensorRows) else (memory_budget_bytes // 2) // (4 * source.dim)
    if panel < tile:  # wide rows: keep a panel within half the budget
        tile = max(GROUP, panel // GROUP * GROUP)
    search = SearchSettings(
        # Reduced-precision scores are coarse: keep extra candidates for the fp32 re-scoring
        # to reorder. On 50,000 sentence-like vectors (benchmarks/bench_knn.py) bf16 needs 2k
        # extra for recall@10 0.9994 (k extra: 0.992); int8, finer there (one scale, 8 bits
        # where bf16 keeps 8 of mantissa), reaches 0.99995 with k extra (2k: 1.0).
        n_candidates=min(n - 1, k + _EXTRA_CANDIDATES[precision](k)),
        scoring_dtype=_SCORING_DTYPES[precision],
        euclidean=metric == "euclidean",
        tile=tile,
        progress=progress,
        int8_scale=127.0 / max(largest_magnitude(source), 1e-30) if precision == "int8" else 1.0,
    )
    if use_distributed:
        from katdensity.knn.distributed import ring_search

        found = ring_search(source, search, k=k, metric=metric)
    else:
        panel = _panel_rows(n, panel, tile)
        order = None
        if n > tile:
            # Several tiles: search the rows in an order that puts neighbours in the same or
            # nearby tiles, where the group filter prunes sooner. Rows move only within their
            # panel, so a streamed file is still read one contiguous range at a time.
            order = locality_order(
                source,
                n_clusters=_clusters_for(-(-n // tile)),
                spherical=metric != "euclidean",
                run=panel,
            )
        searched = source if order is None else PermutedRows(source, order)
        scores, candidates = _panel_search(searched, search, panel_rows=panel)
        if order is not None:
            scores, candidates = _in_input_order(scores, candidates, order)
        found = finish(source, 0, scores, candidates, k=k, metric=metric, settings=search)
    if found.indices.device != result_device:
        found = Neighbors(
            found.distances.to(result_device), found.indices.to(result_device), found.metric
        )
    return found


def as_row_source(embeddings: torch.Tensor | np.ndarray, metric: Metric) -> RowSource:
    """Wrap the input of a search: memmaps are read lazily, anything else is checked whole."""
    if isinstance(embeddings, np.memmap):
        if embeddings.ndim != 2 or embeddings.shape[1] == 0:
            raise InvalidInputError(
                f"embeddings should be a 2-D (N, D) array, but got shape {embeddings.shape}"
            )
        return MappedRows(embeddings, normalize=metric == "cosine")
    return TensorRows(as_embeddings(embeddings, min_rows=2), normalize=metric == "cosine")


def _use_distributed(requested: bool | None) -> bool:
    if requested is None:
        return process_group()[0] > 1
    if requested and not group_initialised():
        raise InvalidInputError(
            "distributed=True needs torch.distributed.init_process_group(...) first"
        )
    return requested


_SCORING_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.int8}
_EXTRA_CANDIDATES: dict[str, Callable[[int], int]] = {
    "float32": lambda k: 0,
    "bfloat16": lambda k: max(8, 2 * k),
    "int8": lambda k: max(8, k),
}


def _tile_size(memory_budget_bytes: int, *, precision: Precision) -> int:
    # A tile holds the fp32 scores plus about as much again of scratch (group maxima,
    # masks, gathered candidates), and with bf16 (int8) the raw bf16 (int32) product too.
    bytes_per_score = {"float32": 8, "bfloat16": 10, "int8": 12}[precision]
    side = int(math.sqrt(memory_budget_bytes / bytes_per_score))
    return max(GROUP, side // GROUP * GROUP)


def _panel_search(
    source: RowSource, settings: SearchSettings, *, panel_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Search all pairs of panels of `panel_rows` rows (see `_panel_rows`)."""
    n = source.n
    starts = list(range(0, n, panel_rows))
    best = TopK.empty(padded(n), settings.n_candidates, source.device)
    sizes = [min(panel_rows, padded(n) - start) for start in starts]
    tiles = [-(-size // settings.tile) for size in sizes]
    total = sum(t * (t + 1) // 2 for t in tiles)
    total += sum(tiles[p] * tiles[q] for p in range(len(starts)) for q in range(p + 1, len(starts)))
    with progress_counter(
        total=total, progress=settings.progress, desc="exact kNN", unit="tile"
    ) as bar:
        scratch = Scratch.of(min(settings.tile, padded(n)), settings, source.device)
        for p, start in enumerate(starts):
            rows = Block.read(source, start, sizes[p], settings)
            rows_best = best.rows(start, start + sizes[p])
            search_pair(rows, rows_best, None, None, settings, scratch, bar.update)
            for q in range(p + 1, len(starts)):
                cols = Block.read(source, starts[q], sizes[q], settings)
                cols_best = best.rows(starts[q], starts[q] + sizes[q])
                search_pair(rows, rows_best, cols, cols_best, settings, scratch, bar.update)
    return best.scores[:n], best.indices[:n]


def _panel_rows(n: int, most: int, tile: int) -> int:
    """Rows a panel holds: all of them (padded) when they fit in `most`, else a multiple of
    the tile side."""
    return padded(n) if most >= n else max(tile, most // tile * tile)


def _clusters_for(tiles: int) -> int:
    # About four clusters a tile; 16 at least (a handful of clusters orders little), 256 at
    # most (assigning every row to a centre costs N x clusters products).
    return min(256, max(16, 4 * tiles))


def _in_input_order(
    scores: torch.Tensor, candidates: torch.Tensor, order: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k lists found in `order` (rows and candidate numbers), back in the input's order."""
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    candidates = candidates[inverse]
    # -1 marks a missing candidate (a bug `finish` reports): keep it as it is.
    return scores[inverse], torch.where(candidates >= 0, order[candidates.clamp_min(0)], candidates)


def rescore(
    points: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    metric: Metric,
    *,
    progress: bool = False,
) -> Neighbors:
    """Exact fp32 distances from each row of `points` to its `(N, c)` candidate rows.

    Keeps the k nearest (`k <= c`), ascending, ties broken by the smaller index.
    `points` must already be L2-normalised for `"cosine"`. `progress` shows a bar over
    blocks of rows.
    """
    source = TensorRows(points, normalize=False)
    return rescore_rows(source, 0, candidates, k, metric, progress=progress)
