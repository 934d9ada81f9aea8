"""Density estimation: the result type, the estimator protocol, the formula, the estimators."""

from katdensity.density.approx import ApproxKNNDensity
from katdensity.density.auto import AutoKNNDensity, choose_search
from katdensity.density.estimator import KNNDensityEstimator
from katdensity.density.exact import ExactKNNDensity
from katdensity.density.formula import (
    DEFAULT_K,
    DEFAULT_SMOOTHING,
    knn_log_density,
    levina_bickel_dim,
    neighbor_radii,
    smooth_over_neighbors,
)
from katdensity.density.result import DensityEstimator, DensityResult

__all__ = [
    "DEFAULT_K",
    "DEFAULT_SMOOTHING",
    "ApproxKNNDensity",
    "AutoKNNDensity",
    "DensityEstimator",
    "DensityResult",
    "ExactKNNDensity",
    "KNNDensityEstimator",
    "choose_search",
    "knn_log_density",
    "levina_bickel_dim",
    "neighbor_radii",
    "smooth_over_neighbors",
]
