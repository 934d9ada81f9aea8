"""Nearest-neighbour graphs: the `Neighbors` container and the search algorithms."""

from katdensity.knn.exact import exact_knn
from katdensity.knn.neighbors import METRICS, Metric, Neighbors

__all__ = ["METRICS", "Metric", "Neighbors", "exact_knn"]
