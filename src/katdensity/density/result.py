"""What a density estimator returns, and the protocol every estimator implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from katdensity.errors import InvalidInputError
from katdensity.knn.neighbors import Neighbors

if TYPE_CHECKING:
    from katdensity.report import WeightReport

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
            `None` when the estimator does not track duplicates.
        distinct_index: `(N,)` int64: the distinct prompt each row is a copy of, numbered in
            order of first appearance (rows with equal embeddings share a number); `None`
            when the estimator does not track duplicates. Weights, ESS and subsets count
            the copies of a prompt together through it.
    """

    log_density: torch.Tensor
    neighbors: Neighbors
    intrinsic_dim: float
    multiplicity: torch.Tensor | None = None
    distinct_index: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.log_density.ndim != 1 or self.log_density.dtype != torch.float64:
            raise InvalidInputError(
                "log_density should be a 1-D float64 tensor, but got "
                f"shape {tuple(self.log_density.shape)} and dtype {self.log_density.dtype}"
            )
        if self.log_density.shape[0] != len(self.neighbors):
            raise InvalidInputError(
                f"log_density has {self.log_density.shape[0]} entries but neighbors has "
                f"{len(self.neighbors)} rows; they should describe the same points"
            )

    def __len__(self) -> int:
        return int(self.log_density.shape[0])

    def report(self, weights: torch.Tensor | np.ndarray, **options: Any) -> WeightReport:
        """What `weights` do to these prompts: [`weight_report`][katdensity.report.weight_report].

        Args:
            weights: `(N,)` sampling weights, row-aligned with this result.
            **options: passed on (`beta`, `beta_used`, `min_ess_ratio`, `modes`, `top`).

        Returns:
            The report; `report.format(texts)` renders it.
        """
        from katdensity.report import weight_report

        return weight_report(self, weights, **options)


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
