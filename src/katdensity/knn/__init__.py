"""Nearest-neighbour graphs: the `Neighbors` container, the searches, and recall checks."""

from katdensity.knn.approx import approx_knn
from katdensity.knn.exact import exact_knn
from katdensity.knn.neighbors import METRICS, Metric, Neighbors
from katdensity.knn.recall import knn_recall, sampled_recall

__all__ = [
    "METRICS",
    "Metric",
    "Neighbors",
    "approx_knn",
    "exact_knn",
    "knn_recall",
    "sampled_recall",
]
