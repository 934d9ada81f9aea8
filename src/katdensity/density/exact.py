"""Density from the exact k-nearest-neighbour graph."""

from __future__ import annotations

from typing import Literal

import torch

from katdensity._validate import check_choice, check_int
from katdensity.density.estimator import KNNDensityEstimator
from katdensity.density.formula import DEFAULT_K, DEFAULT_SMOOTHING
from katdensity.knn._rows import RowSource, as_source
from katdensity.knn.exact import (
    DEFAULT_MEMORY_BUDGET_BYTES,
    PRECISIONS,
    Precision,
    search_rows,
)
from katdensity.knn.neighbors import Metric, Neighbors

__all__ = ["ExactKNNDensity"]


class ExactKNNDensity(KNNDensityEstimator):
    """kNN density over exact neighbours, found with tiled matrix products and a top-k.

    Memory stays bounded for any `N`: the score matrix is processed in tiles of about
    `memory_budget_bytes`, never as `N x N`. Runs on CPU or CUDA.

    Args:
        k: neighbours per point, `1 <= k < N`.
        metric: `"cosine"` (default), `"euclidean"` or `"ip"`.
        device: where to search (`"cuda"`, `"cpu"`, a `torch.device`); `None` uses the
            device the embeddings are on.
        intrinsic_dim: exponent of the volume law; `None` estimates it (Levina-Bickel).
        center: subtract the mean embedding first; `"auto"` does so for anisotropic sets
            (see [`KNNDensityEstimator`][katdensity.density.estimator.KNNDensityEstimator]).
        smoothing: log-density smoothing steps over the neighbour graph (default 0, the
            plain k-NN estimate).
        precision: `"float32"`, `"bfloat16"` or `"int8"` (bf16 or int8 candidates
            re-scored in fp32), or `"auto"` (bf16 on CUDA; on CPU bf16 or int8 only where it
            is measured faster, see [`exact_knn`][katdensity.exact_knn]).
        memory_budget_bytes: bytes for one score tile and its scratch space.
        progress: progress bar; `None` shows it on a terminal for long searches.
        distributed: share the search among the `torch.distributed` processes (every
            process must then call `estimate` with the same embeddings); `None` does so
            when a group of several processes is initialised, `False` searches alone.
            See [`exact_knn`][katdensity.exact_knn].

    Example:
        >>> import torch
        >>> from katdensity import ExactKNNDensity
        >>> result = ExactKNNDensity(k=5).estimate(torch.randn(100, 16))
        >>> result.log_density.shape
        torch.Size([100])
    """

    def __init__(
        self,
        k: int = DEFAULT_K,
        metric: Metric = "cosine",
        *,
        device: str | torch.device | None = None,
        intrinsic_dim: float | None = None,
        center: bool | Literal["auto"] = "auto",
        smoothing: int = DEFAULT_SMOOTHING,
        precision: Precision = "auto",
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
        progress: bool | None = None,
        distributed: bool | None = None,
    ) -> None:
        super().__init__(k, metric, intrinsic_dim=intrinsic_dim, center=center, smoothing=smoothing)
        self.device = None if device is None else torch.device(device)
        self.precision: Precision = check_choice(  # type: ignore[assignment]
            "precision", precision, PRECISIONS
        )
        self.memory_budget_bytes = check_int("memory_budget_bytes", memory_budget_bytes, low=1)
        self.progress = progress
        self.distributed = distributed

    def _neighbors(self, points: torch.Tensor | RowSource) -> Neighbors:
        neighbors = search_rows(
            as_source(points, normalize=self.metric == "cosine", device=self.device),
            self.k,
            metric=self.metric,
            precision=self.precision,
            memory_budget_bytes=self.memory_budget_bytes,
            progress=self.progress,
            distributed=self.distributed,
        )
        return Neighbors(
            distances=neighbors.distances.cpu(), indices=neighbors.indices.cpu(), metric=self.metric
        )
