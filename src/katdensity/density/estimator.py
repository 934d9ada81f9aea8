"""The shared machinery of kNN density estimators: input checks, centring, the formula."""

from __future__ import annotations

import abc
import logging
from typing import Literal

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

# center="auto" centres above this norm of the mean unit row (see KNNDensityEstimator).
_ANISOTROPY_THRESHOLD = 0.8


class KNNDensityEstimator(abc.ABC):
    """Base class of the kNN density estimators: subclasses only find the neighbours.

    Validation of the embeddings, the optional centring and the density formula live here,
    once, so every estimator turns the same neighbour graph into the same density.

    Args:
        k: neighbours per point; the density uses the distance to the k-th one.
        metric: `"cosine"`, `"euclidean"` or `"ip"` (see [`Neighbors`][katdensity.Neighbors]).
        intrinsic_dim: the exponent `d` of the volume law `r^d`; `None` (the default)
            estimates it from the neighbour distances (Levina-Bickel).
        center: subtract the mean embedding before searching (cosine and ip re-normalise
            after).
            Pooled hidden states and logits of causal LMs sit in a narrow cone (pairwise
            cosine ~0.99), so cosine neighbours mostly measure the shared direction; centring
            removes it. `"auto"` (the default) centres when the set is anisotropic: when the
            mean of its L2-normalised rows has norm above 0.8 (the average cosine to the common
            direction: about 0.3 for all-MiniLM-L6-v2 sentence embeddings, 0.4-0.6 for a set
            dominated by a few topics, near 1 for causal-LM hidden states). It never centres
            for `"euclidean"`, whose distances do not change under a shift.
    """

    def __init__(
        self,
        k: int = 10,
        metric: Metric = "cosine",
        *,
        intrinsic_dim: float | None = None,
        center: bool | Literal["auto"] = "auto",
    ) -> None:
        self.k = check_int("k", k, low=1)
        self.metric: Metric = check_choice("metric", metric, METRICS)  # type: ignore[assignment]
        if intrinsic_dim is not None:
            check_real("intrinsic_dim", intrinsic_dim, low=0.0, low_open=True)
        self.intrinsic_dim = intrinsic_dim
        if not (isinstance(center, bool) or center == "auto"):
            raise InvalidInputError(
                f"center should be True, False or 'auto', but got center={center!r}"
            )
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
        if self._should_center(points):
            points = points - points.mean(dim=0, keepdim=True)
            if self.metric == "ip":
                # "ip" promises unit rows; the cosine search normalises by itself.
                points = torch.nn.functional.normalize(points, dim=1)
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

    def _should_center(self, points: torch.Tensor) -> bool:
        if self.metric == "euclidean" or self.center is False:
            return False
        if self.center is True:
            return True
        anisotropy = float(torch.nn.functional.normalize(points, dim=1).mean(dim=0).norm())
        logger.info("anisotropy (norm of the mean unit row) %.3f", anisotropy)
        return anisotropy > _ANISOTROPY_THRESHOLD

    @abc.abstractmethod
    def _neighbors(self, points: torch.Tensor) -> Neighbors:
        """The k nearest neighbours of every row of the validated float32 `points`."""

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({args})"
