"""The k-nearest-neighbour graph that every density estimator produces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from katdensity.errors import InvalidInputError

__all__ = ["METRICS", "Metric", "Neighbors"]

Metric = Literal["cosine", "euclidean", "ip"]
METRICS: tuple[Metric, ...] = ("cosine", "euclidean", "ip")


@dataclass(frozen=True)
class Neighbors:
    """The k nearest neighbours of every point of a set, the point itself excluded.

    Distances by metric: `"cosine"` is `1 - cos(x, y)` (as in scikit-learn), `"euclidean"`
    is `||x - y||`, and `"ip"` is `1 - <x, y>` (the cosine distance for rows the caller has
    already L2-normalised). An exact duplicate of a point is a neighbour at distance 0; only
    the point's own row is excluded.

    Attributes:
        distances: `(N, k)` float32, each row ascending.
        indices: `(N, k)` int64 row numbers into the embedded set; `indices[i, 0]` is the
            nearest neighbour of point `i` and never `i` itself.
        metric: the metric the distances were measured in.
    """

    distances: torch.Tensor
    indices: torch.Tensor
    metric: Metric

    def __post_init__(self) -> None:
        if self.distances.ndim != 2 or self.distances.shape != self.indices.shape:
            raise InvalidInputError(
                "distances and indices should both have shape (N, k), but got "
                f"{tuple(self.distances.shape)} and {tuple(self.indices.shape)}"
            )
        if self.distances.dtype != torch.float32 or self.indices.dtype != torch.int64:
            raise InvalidInputError(
                "distances should be float32 and indices int64, but got "
                f"{self.distances.dtype} and {self.indices.dtype}"
            )
        if self.metric not in METRICS:
            raise InvalidInputError(
                f"metric should be one of {METRICS}, but got metric={self.metric!r}"
            )

    @property
    def k(self) -> int:
        """The number of neighbours per point."""
        return int(self.distances.shape[1])

    def __len__(self) -> int:
        return int(self.distances.shape[0])
