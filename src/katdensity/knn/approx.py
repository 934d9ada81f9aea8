"""Approximate k-nearest-neighbour graph with pynndescent (imported on first use)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch

from katdensity._optional import require
from katdensity._validate import as_embeddings, check_choice, check_int
from katdensity.errors import InvalidInputError
from katdensity.knn.exact import rescore
from katdensity.knn.neighbors import METRICS, Metric, Neighbors

__all__ = ["approx_knn", "default_width"]

logger = logging.getLogger(__name__)

_PYNNDESCENT_METRIC = {"cosine": "cosine", "euclidean": "euclidean", "ip": "dot"}
# With progress=None, pynndescent's progress lines are shown (on a terminal) from this size.
_AUTO_PROGRESS_ROWS = 20_000


def default_width(n: int, k: int) -> int:
    """The NN-descent graph width `approx_knn` builds by default for `n` points.

    `max(3k + 1, 30)` up to 100,000 points, then 15 more per tenfold growth of `n`: recall@10
    falls with N at a fixed width (0.991 at 200,000 and 0.977 at 1,000,000 points with width
    31, D=128), and width 45 brings it to 0.995 at 1,000,000 (0.999 at width 60;
    `benchmarks/bench_knn.py`).
    """
    width = max(3 * k + 1, 30)
    if n > 100_000:
        width += math.ceil(15 * math.log10(n / 100_000))
    return min(n, width)


def approx_knn(
    embeddings: torch.Tensor | np.ndarray,
    k: int,
    *,
    metric: Metric = "cosine",
    n_neighbors: int | None = None,
    seed: int = 0,
    n_jobs: int | None = -1,
    progress: bool | None = None,
) -> Neighbors:
    """Approximate k nearest neighbours of every row among the others (NN-descent).

    The graph is built with `n_neighbors` per point, more than `k`: NN-descent built with only
    `k + 1` loses about a sixth of the true neighbours on sentence embeddings, while building
    wider and keeping the nearest `k` recovers nearly all of them. Each point's own row is
    removed (and missing `-1` entries dropped), and the kept distances are recomputed exactly
    in fp32, so they match [`exact_knn`][katdensity.exact_knn] wherever the neighbours do.

    pynndescent compiles its kernels with numba on first use in every process, which takes
    tens of seconds. katdensity keeps the compiled NN-descent kernels in a disk cache
    (`~/.cache/katdensity/numba`, or under `$XDG_CACHE_HOME`), keyed on the Python, numba
    and pynndescent versions, so only the first call in an environment compiles; a new
    process after that loads them in a second or two. `KATDENSITY_NUMBA_CACHE=0` turns the
    cache off.

    Args:
        embeddings: `(N, D)` finite tensor or array.
        k: neighbours per point, `1 <= k < N`.
        metric: `"cosine"`, `"euclidean"` or `"ip"`.
        n_neighbors: width of the NN-descent graph; default
            `katdensity.knn.approx.default_width(N, k)`, which widens the
            graph as N grows so recall@10 stays above 0.99.
        seed: random state of NN-descent (same seed, same graph).
        n_jobs: threads for pynndescent (`-1`: all cores).
        progress: show pynndescent's progress lines (forest built, each NN-descent
            iteration) and a bar over the re-scoring on stderr; `None` shows them on a
            terminal for 20,000 rows or more. While pynndescent's lines are shown, what the
            process writes to stdout goes to stderr.

    Raises:
        MissingDependencyError: pynndescent is not installed.
        InvalidInputError: bad arguments, or a point left with fewer than `k` neighbours.
    """
    points = as_embeddings(embeddings, min_rows=2).cpu()
    n = points.shape[0]
    check_int("k", k, low=1, high=n)
    check_choice("metric", metric, METRICS)
    width = (
        default_width(n, k)
        if n_neighbors is None
        else min(n, check_int("n_neighbors", n_neighbors, low=k + 1))
    )
    # A core dependency, imported here because it is slow to import and may have been removed.
    pynndescent = require("pynndescent", extra=None, purpose="approximate kNN")
    from katdensity.knn._pynndescent_cache import enable_pynndescent_cache

    enable_pynndescent_cache()
    if metric == "cosine" and not _unit_rows(points):
        points = torch.nn.functional.normalize(points, dim=1)
    start = time.perf_counter()
    logger.info(
        "building the NN-descent graph (n_neighbors=%d); the first call in an environment "
        "JIT-compiles pynndescent (tens of seconds)",
        width,
    )
    verbose = progress if progress is not None else n >= _AUTO_PROGRESS_ROWS and _on_terminal()
    with _stdout_to_stderr() if verbose else contextlib.nullcontext():
        index = pynndescent.NNDescent(
            points.numpy(),
            metric=_PYNNDESCENT_METRIC[metric],
            n_neighbors=width,
            random_state=check_int("seed", seed),
            n_jobs=n_jobs,
            verbose=verbose,
        )
    found, _ = index.neighbor_graph
    logger.info("NN-descent graph of %d points in %.1f s", n, time.perf_counter() - start)
    candidates = torch.from_numpy(np.asarray(found, dtype=np.int64))
    rows = torch.arange(n)[:, None]
    usable = (candidates != rows) & (candidates >= 0)
    short = int((usable.sum(dim=1) < k).sum())
    if short:
        raise InvalidInputError(
            f"NN-descent found fewer than k={k} neighbours for {short} point(s); "
            f"raise n_neighbors (now {width}) or use the exact estimator"
        )
    # Move usable candidates to the front of each row (stable), then keep the first k + slack.
    order = torch.sort((~usable).to(torch.int8), dim=1, stable=True).indices
    candidates = torch.gather(candidates, 1, order)[:, : int(usable.sum(dim=1).min())]
    return rescore(points, candidates, k, metric, progress=verbose)


def _unit_rows(points: torch.Tensor) -> bool:
    """Whether every row already has unit norm (as the estimators hand them over): a
    normalised copy of a million wide rows would cost gigabytes for nothing."""
    norms = torch.linalg.vector_norm(points, dim=1)
    return bool(((norms - 1.0).abs() <= 1e-6).all())


def _on_terminal() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send stdout to stderr: pynndescent prints its progress, partly from numba's compiled
    code (C `printf`, which writes to file descriptor 1 whatever `sys.stdout` is), and a
    command's stdout may be a report or a pipe."""
    sys.stdout.flush()
    try:
        stdout, stderr = sys.stdout.fileno(), sys.stderr.fileno()
        libc = ctypes.CDLL(None)
    except (AttributeError, OSError, ValueError):  # no file descriptors, or no C library
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    saved = os.dup(stdout)
    os.dup2(stderr, stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        libc.fflush(None)  # C-buffered lines belong to stderr too
        os.dup2(saved, stdout)
        os.close(saved)
