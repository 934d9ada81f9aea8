"""What a density estimator returns, and the protocol every estimator implements."""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from katdensity._validate import as_groups
from katdensity.errors import InvalidInputError
from katdensity.knn.neighbors import Neighbors

__all__ = ["DensityEstimator", "DensityResult"]


@dataclass(frozen=True)
class DensityResult:
    """Per-point log-density of an embedded set, with the neighbour graph it came from.

    Attributes:
        log_density: `(N,)` float64 natural-log density of each point, row-aligned with the
            embeddings. Only differences between points matter to the weighting; the log scale
            keeps `exp(-beta * log_density)` from overflowing in any dimension.
        neighbors: the k-nearest-neighbour graph the density was computed from.
        intrinsic_dim: the dimension `d` used in the `r^-d` volume law (estimated or given).
        multiplicity: `(N,)` int64 number of rows identical to each row (1 when unique);
            built from `distinct_index` when not given.
        distinct_index: `(N,)` int64: the distinct prompt each row is a copy of, numbered in
            order of first appearance (rows with equal embeddings share a number); every row
            distinct (`arange(N)`) when not given. Weights, ESS and subsets count the copies
            of a prompt together through it.
    """

    log_density: torch.Tensor
    neighbors: Neighbors
    intrinsic_dim: float
    # Given as None (the default), both are filled in with every row distinct, so a result
    # always carries them: nothing downstream needs a fallback.
    multiplicity: torch.Tensor = None  # type: ignore[assignment]
    distinct_index: torch.Tensor = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.log_density.ndim != 1 or self.log_density.dtype != torch.float64:
            raise InvalidInputError(
                "log_density should be a 1-D float64 tensor, but got "
                f"shape {tuple(self.log_density.shape)} and dtype {self.log_density.dtype}"
            )
        n = self.log_density.shape[0]
        if n != len(self.neighbors):
            raise InvalidInputError(
                f"log_density has {n} entries but neighbors has "
                f"{len(self.neighbors)} rows; they should describe the same points"
            )
        if self.distinct_index is None:
            object.__setattr__(self, "distinct_index", torch.arange(n))
        else:
            labels, _ = as_groups(self.distinct_index, n, name="distinct_index")
            object.__setattr__(self, "distinct_index", labels)
        if self.multiplicity is None:
            copies = torch.bincount(self.distinct_index)[self.distinct_index]
            object.__setattr__(self, "multiplicity", copies)

    def __len__(self) -> int:
        return int(self.log_density.shape[0])

    def report(self, weights: torch.Tensor | np.ndarray, **options: Any) -> Any:
        """Deprecated: use [`weight_report`][katdensity.report.weight_report]`(result, weights)`.

        Args:
            weights: `(N,)` sampling weights, row-aligned with this result.
            **options: passed on (`beta`, `beta_used`, `min_ess_ratio`, `modes`, `top`).

        Returns:
            The [`WeightReport`][katdensity.report.WeightReport].
        """
        warnings.warn(
            "DensityResult.report(weights) is deprecated; use "
            "katdensity.report.weight_report(result, weights)",
            DeprecationWarning,
            stacklevel=2,
        )
        # Looked up at call time: the density layer does not depend on the report built on it.
        report = importlib.import_module("katdensity.report")
        return report.weight_report(self, weights, **options)


@runtime_checkable
class DensityEstimator(Protocol):
    """Turns a set of embeddings into a per-point density.

    Contract: `estimate(embeddings)` takes an `(N, D)` torch tensor or numpy array and returns
    a [`DensityResult`][katdensity.DensityResult] whose row `i` describes embedding row `i`.
    It must raise [`InvalidInputError`][katdensity.errors.InvalidInputError] on NaN/inf rows,
    an empty set, or too few points for its `k`, and must not modify its input.
    """

    def estimate(self, embeddings: torch.Tensor | np.ndarray) -> DensityResult:
        """Estimate the density at every row of `embeddings` (shape `(N, D)`)."""
        ...
