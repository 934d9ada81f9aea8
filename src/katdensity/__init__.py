"""katdensity: inverse-density prompt sampling for RL fine-tuning of language models.

Embed every prompt, estimate the local density of prompt space from k nearest neighbours,
and sample training prompts with probability falling with density, so that rare prompts
are seen more and the dense, repetitive regions of a prompt set stop dominating training.

The pipeline flows one way: embeddings -> [`DensityEstimator`][katdensity.DensityEstimator]
-> [`DensityResult`][katdensity.DensityResult] -> [`Weighting`][katdensity.Weighting] ->
[`InverseDensitySampler`][katdensity.InverseDensitySampler] or
[`select_subset`][katdensity.select_subset].
"""

from katdensity.density import DensityEstimator, DensityResult, ExactKNNDensity
from katdensity.errors import InvalidInputError, KatDensityError, MissingDependencyError
from katdensity.knn import Neighbors, exact_knn
from katdensity.sampler import InverseDensitySampler
from katdensity.subset import select_subset
from katdensity.weights import (
    InverseDensityWeighting,
    Weighting,
    effective_sample_size,
    inverse_density_weights,
)

__version__ = "0.1.0"

__all__ = [
    "DensityEstimator",
    "DensityResult",
    "ExactKNNDensity",
    "InvalidInputError",
    "InverseDensitySampler",
    "InverseDensityWeighting",
    "KatDensityError",
    "MissingDependencyError",
    "Neighbors",
    "Weighting",
    "__version__",
    "effective_sample_size",
    "exact_knn",
    "inverse_density_weights",
    "select_subset",
]
assert __all__ == sorted(__all__), "keep __all__ sorted"
