"""katdensity: inverse-density prompt sampling for RL fine-tuning of language models.

Embed every prompt, estimate the local density of prompt space from k nearest neighbours,
and sample training prompts with probability falling with density, so that rare prompts
are seen more and the dense, repetitive regions of a prompt set stop dominating training.

The pipeline flows one way: texts -> [`Embedder`][katdensity.Embedder] -> embeddings ->
[`DensityEstimator`][katdensity.DensityEstimator]
-> [`DensityResult`][katdensity.DensityResult] -> [`Weighting`][katdensity.Weighting] ->
[`InverseDensitySampler`][katdensity.InverseDensitySampler] or
[`select_subset`][katdensity.select_subset].
"""

from katdensity.density import (
    ApproxKNNDensity,
    AutoKNNDensity,
    DensityEstimator,
    DensityResult,
    ExactKNNDensity,
)
from katdensity.embedders import (
    Embedder,
    ExternalEmbedder,
    HashingEmbedder,
    HiddenStateEmbedder,
    LogitEmbedder,
    SentenceTransformerEmbedder,
    embed_distributed,
)
from katdensity.errors import InvalidInputError, KatDensityError, MissingDependencyError
from katdensity.knn import Neighbors, approx_knn, exact_knn, knn_recall
from katdensity.learnability import LearnabilityTracker, LearnabilityWeighting
from katdensity.registry import get_embedder, get_estimator, get_weighting
from katdensity.sampler import InverseDensitySampler
from katdensity.subset import select_subset
from katdensity.weights import (
    InverseDensityWeighting,
    Weighting,
    WeightResult,
    effective_sample_size,
    inverse_density_weights,
    weigh,
)

__version__ = "0.1.0"

__all__ = [
    "ApproxKNNDensity",
    "AutoKNNDensity",
    "DensityEstimator",
    "DensityResult",
    "Embedder",
    "ExactKNNDensity",
    "ExternalEmbedder",
    "HashingEmbedder",
    "HiddenStateEmbedder",
    "InvalidInputError",
    "InverseDensitySampler",
    "InverseDensityWeighting",
    "KatDensityError",
    "LearnabilityTracker",
    "LearnabilityWeighting",
    "LogitEmbedder",
    "MissingDependencyError",
    "Neighbors",
    "SentenceTransformerEmbedder",
    "WeightResult",
    "Weighting",
    "__version__",
    "approx_knn",
    "effective_sample_size",
    "embed_distributed",
    "exact_knn",
    "get_embedder",
    "get_estimator",
    "get_weighting",
    "inverse_density_weights",
    "knn_recall",
    "select_subset",
    "weigh",
]
assert __all__ == sorted(__all__), "keep __all__ sorted"
