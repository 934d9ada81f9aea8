"""Density from an approximate k-nearest-neighbour graph (pynndescent)."""

from __future__ import annotations

from typing import Literal

import torch

from katdensity._validate import check_int
from katdensity.density.estimator import KNNDensityEstimator
from katdensity.density.formula import DEFAULT_K, DEFAULT_SMOOTHING
from katdensity.knn._rows import RowSource, in_memory
from katdensity.knn.approx import approx_knn
from katdensity.knn.neighbors import Metric, Neighbors

__all__ = ["ApproxKNNDensity"]


class ApproxKNNDensity(KNNDensityEstimator):
    """kNN density over an approximate neighbour graph built with NN-descent (pynndescent).

    Same density formula, duplicate handling and centring as
    [`ExactKNNDensity`][katdensity.ExactKNNDensity]; only the neighbour search differs. Use it
    for sets too large for the exact search; check its recall on a subsample with
    [`sampled_recall`][katdensity.knn.sampled_recall]. pynndescent is imported on first use and
    JIT-compiles for tens of seconds once per process.

    Args:
        k: neighbours per point.
        metric: `"cosine"` (default), `"euclidean"` or `"ip"`.
        n_neighbors: NN-descent graph width; the default, `max(3k + 1, 30)` up to 100,000
            points and 15 more per tenfold growth beyond, is over-built and then truncated to
            the nearest `k` (see [`approx_knn`][katdensity.approx_knn]).
        seed: random state; the same seed gives the same graph.
        n_jobs: pynndescent threads (`-1` all cores).
        intrinsic_dim: exponent of the volume law; `None` estimates it.
        center: subtract the mean embedding first; `"auto"` for anisotropic sets.
        smoothing: log-density smoothing steps over the neighbour graph (default 0, the
            plain k-NN estimate).
        progress: show pynndescent's progress lines on stderr; `None` shows them on a
            terminal for 20,000 points or more (see [`approx_knn`][katdensity.approx_knn]).
    """

    def __init__(
        self,
        k: int = DEFAULT_K,
        metric: Metric = "cosine",
        *,
        n_neighbors: int | None = None,
        seed: int = 0,
        n_jobs: int | None = -1,
        intrinsic_dim: float | None = None,
        center: bool | Literal["auto"] = "auto",
        smoothing: int = DEFAULT_SMOOTHING,
        progress: bool | None = None,
    ) -> None:
        super().__init__(k, metric, intrinsic_dim=intrinsic_dim, center=center, smoothing=smoothing)
        self.n_neighbors = (
            None if n_neighbors is None else check_int("n_neighbors", n_neighbors, low=k + 1)
        )
        self.seed = check_int("seed", seed)
        self.n_jobs = n_jobs
        self.progress = progress

    def _neighbors(self, points: torch.Tensor | RowSource) -> Neighbors:
        return approx_knn(
            in_memory(points, progress=self.progress),
            self.k,
            metric=self.metric,
            n_neighbors=self.n_neighbors,
            seed=self.seed,
            n_jobs=self.n_jobs,
            progress=self.progress,
        )
