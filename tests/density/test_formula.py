from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from katdensity import ExactKNNDensity, InvalidInputError, Neighbors, inverse_density_weights
from katdensity.density import knn_log_density, levina_bickel_dim, neighbor_radii


@pytest.mark.parametrize("true_dim", [2, 5, 10])
def test_levina_bickel_recovers_subspace_dimension(
    true_dim: int, generator: torch.Generator
) -> None:
    # A Gaussian in a true_dim-dimensional subspace of 40 dimensions.
    basis = torch.linalg.qr(torch.randn(40, true_dim, generator=generator)).Q
    points = torch.randn(4000, true_dim, generator=generator) @ basis.T
    result = ExactKNNDensity(k=20, metric="euclidean").estimate(points)
    # The MLE's known downward bias at finite N stays within 10% up to d = 10.
    assert result.intrinsic_dim == pytest.approx(true_dim, rel=0.10)


def test_log_density_is_the_knn_formula() -> None:
    distances = torch.tensor([[0.5, 1.0], [1.0, 2.0], [0.25, 0.5]], dtype=torch.float32)
    neighbors = Neighbors(distances, torch.zeros(3, 2, dtype=torch.int64), "euclidean")
    log_density, d = knn_log_density(neighbors, intrinsic_dim=3.0)
    unit_ball = 4.0 / 3.0 * math.pi
    expected = [math.log(2 / (3 * unit_ball * r**3)) for r in (1.0, 2.0, 0.5)]
    np.testing.assert_allclose(log_density.numpy(), expected, rtol=1e-12)
    assert d == 3.0 and log_density.dtype == torch.float64


def test_cosine_distances_become_chord_lengths() -> None:
    distances = torch.tensor([[0.02, 0.08]])  # 1 - cos
    neighbors = Neighbors(distances, torch.zeros(1, 2, dtype=torch.int64), "cosine")
    np.testing.assert_allclose(neighbor_radii(neighbors).numpy(), [[0.2, 0.4]], rtol=1e-6)


def test_levina_bickel_on_known_radii() -> None:
    # log(r_k / r_j) = log 2 for the single j < k: 1/m = log 2, so d = 1 / log 2.
    radii = torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64)
    assert levina_bickel_dim(radii) == pytest.approx(1 / math.log(2))


def test_exact_duplicates_weigh_as_one_prompt(generator: torch.Generator) -> None:
    """m identical rows together get exactly the weight one copy would get (beta=1)."""
    others = torch.randn(200, 4, generator=generator)
    single = torch.cat([torch.ones(1, 4), others])
    copies = torch.cat([torch.ones(30, 4), others])
    estimator = ExactKNNDensity(k=5, metric="euclidean")
    one, many = estimator.estimate(single), estimator.estimate(copies)
    assert bool(torch.isfinite(many.log_density).all())
    assert many.multiplicity is not None and many.multiplicity[:30].eq(30).all()
    w_one = inverse_density_weights(one.log_density, max_weight_ratio=None)
    w_many = inverse_density_weights(many.log_density, max_weight_ratio=None)
    torch.testing.assert_close(w_many[:30].sum(), w_one[0])
    torch.testing.assert_close(w_many[30:], w_one[1:])
    # Copies are searched once: their neighbours are other prompts, never another copy.
    assert bool((many.neighbors.indices[:30] >= 30).all())
    assert bool((many.neighbors.distances[:30] > 0).all())


def test_k_counts_distinct_rows() -> None:
    points = torch.cat([torch.ones(10, 3), torch.zeros(3, 3)])
    with pytest.raises(InvalidInputError, match=r"distinct points \(2 of 13 rows\), but got k=2"):
        ExactKNNDensity(k=2).estimate(points)


def test_dense_points_get_lower_weight(generator: torch.Generator) -> None:
    """The research-script trap (weight = 1/mean distance favours dense regions) must not recur."""
    dense = 0.05 * torch.randn(500, 3, generator=generator)
    sparse = 3.0 + 1.0 * torch.randn(100, 3, generator=generator)
    result = ExactKNNDensity(k=10, metric="euclidean").estimate(torch.cat([dense, sparse]))
    weights = inverse_density_weights(result.log_density, max_weight_ratio=None)
    assert float(weights[:500].mean()) < float(weights[500:].mean()) / 100
    assert float(result.log_density[:500].median()) > float(result.log_density[500:].median())
    # Weights fall with density point by point.
    spearman = np.corrcoef(
        np.argsort(np.argsort(result.log_density.numpy())), np.argsort(np.argsort(weights.numpy()))
    )[0, 1]
    assert spearman == pytest.approx(-1.0)


def test_equal_volume_topics_get_equal_shares() -> None:
    from katdensity.synthetic import prompt_mixture

    data = prompt_mixture(n_topics=4, topic_size=800, dim=32, n_modes=0, seed=5)
    result = ExactKNNDensity(k=10).estimate(data.embeddings)
    weights = inverse_density_weights(result.log_density)
    shares = torch.stack([weights[data.topic == t].sum() for t in range(4)])
    # Topic sizes run 800:400:266:200, but their volumes are equal.
    assert float(shares.min()) > 0.15 and float(shares.max()) < 0.35
