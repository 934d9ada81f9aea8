"""The shared machinery of kNN density estimators: input checks, centring, the formula."""

from __future__ import annotations

import abc
import logging

import numpy as np
import torch

from katdensity._validate import as_embeddings, check_choice, check_int, check_real
from katdensity.density._duplicates import distinct_rows
from katdensity.density.formula import knn_log_density
from katdensity.density.result import DensityResult
from katdensity.errors import InvalidInputError
from katdensity.knn.neighbors import METRICS, Metric, Neighbors

__all__ = ["KNNDensityEstimator"]

logger = logging.getLogger(__name__)


class KNNDensityEstimator(abc.ABC):
    """Base class of the kNN density estimators: subclasses only find the neighbours.

    Validation of the embeddings, the optional centring and the density formula live here,
    once, so every estimator turns the same neighbour graph into the same density.

    Args:
        k: neighbours per point; the density uses the distance to the k-th one.
        metric: `"cosine"`, `"euclidean"` or `"ip"` (see [`Neighbors`][katdensity.Neighbors]).
        intrinsic_dim: the exponent `d` of the volume law `r^d`; `None` (the default)
            estimates it from the neighbour distances (Levina-Bickel).
        center: subtract the mean embedding before searching (and, for cosine, re-normalise).
            Pooled hidden states of causal LMs share one dominant direction; centring removes
            it so cosine neighbours reflect content rather than that common offset.
    """

    def __init__(
        self,
        k: int = 10,
        metric: Metric = "cosine",
        *,
        intrinsic_dim: float | None = None,
        center: bool = False,
    ) -> None:
        self.k = check_int("k", k, low=1)
        self.metric: Metric = check_choice("metric", metric, METRICS)  # type: ignore[assignment]
        if intrinsic_dim is not None:
            check_real("intrinsic_dim", intrinsic_dim, low=0.0, low_open=True)
        self.intrinsic_dim = intrinsic_dim
        if not isinstance(center, bool):
            raise TypeError(f"center should be a bool, but got center={center!r}")
        self.center = center

    def estimate(self, embeddings: torch.Tensor | np.ndarray) -> DensityResult:
        """Estimate the log-density at every row of `embeddings`.

        Args:
            embeddings: `(N, D)` tensor or array with more than `k` distinct rows; it is
                not modified.

        Returns:
            The density of each row, the neighbour graph, and the dimension used.
            Identical rows are searched once: each copy gets the neighbours of its value
            (never another copy) and a log-density raised by `log(copies)`.

        Raises:
            InvalidInputError: NaN/inf rows, an empty or 1-D input, or `k >=` the number
                of distinct rows.
        """
        points = as_embeddings(embeddings)
        if self.center:
            points = points - points.mean(dim=0, keepdim=True)
        duplicates = distinct_rows(points)
        distinct = points if duplicates is None else points[duplicates.first]
        n, n_distinct = points.shape[0], distinct.shape[0]
        if self.k >= n_distinct:
            points_held = (
                f"points (N={n})"
                if duplicates is None
                else f"distinct points ({n_distinct} of {n} rows)"
            )
            raise InvalidInputError(
                f"k should be smaller than the number of {points_held}, but got k={self.k}; "
                "lower k or pass more points"
            )
        neighbors = self._neighbors(distinct)
        log_density, dim = knn_log_density(neighbors, intrinsic_dim=self.intrinsic_dim)
        multiplicity = torch.ones(n, dtype=torch.int64)
        if duplicates is not None:
            # m identical prompts are one point of mass m: the density there is m times that
            # of a single copy, so together they weigh what one prompt would at beta=1.
            multiplicity = duplicates.counts[duplicates.inverse]
            log_density = log_density[duplicates.inverse] + torch.log(multiplicity.double())
            neighbors = Neighbors(
                distances=neighbors.distances[duplicates.inverse],
                indices=duplicates.first[neighbors.indices[duplicates.inverse]],
                metric=neighbors.metric,
            )
        logger.info(
            "estimated density of %d points (%d distinct, k=%d, intrinsic dimension %.2f)",
            n,
            n_distinct,
            self.k,
            dim,
        )
        return DensityResult(
            log_density=log_density,
            neighbors=neighbors,
            intrinsic_dim=dim,
            multiplicity=multiplicity,
        )

    @abc.abstractmethod
    def _neighbors(self, points: torch.Tensor) -> Neighbors:
        """The k nearest neighbours of every row of the validated float32 `points`."""

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({args})"
