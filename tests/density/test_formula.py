from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from katdensity import ExactKNNDensity, InvalidInputError, Neighbors, inverse_density_weights
from katdensity.density import (
    DEFAULT_SMOOTHING,
    knn_log_density,
    levina_bickel_dim,
    neighbor_radii,
    smooth_over_neighbors,
)


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
    """m identical rows together get exactly the density-weight one copy would get (beta=1)."""
    others = torch.randn(200, 4, generator=generator)
    single = torch.cat([torch.ones(1, 4), others])
    copies = torch.cat([torch.ones(30, 4), others])
    estimator = ExactKNNDensity(k=5, metric="euclidean", smoothing=0)
    one, many = estimator.estimate(single), estimator.estimate(copies)
    assert bool(torch.isfinite(many.log_density).all())
    assert many.multiplicity is not None and many.multiplicity[:30].eq(30).all()
    # log p(copy) = log p(one copy there) + log 30, with N = 230 rows instead of 201.
    expected = one.log_density[0] + math.log(30) + math.log(201 / 230)
    torch.testing.assert_close(many.log_density[:30], expected.expand(30))
    # Copies are searched once: their neighbours are other prompts, never another copy.
    assert bool((many.neighbors.indices[:30] >= 30).all())
    assert bool((many.neighbors.distances[:30] > 0).all())
    # A prompt none of whose neighbours is the repeated one keeps its density.
    far = (one.neighbors.indices[1:] != 0).all(dim=1)
    torch.testing.assert_close(
        many.log_density[30:][far], one.log_density[1:][far] + math.log(201 / 230)
    )
    # One that has it among its neighbours now counts its 30 rows: it is denser.
    near = ~far
    assert bool(near.any())
    assert bool(
        (many.log_density[30:][near] > one.log_density[1:][near] + math.log(201 / 230)).all()
    )


def test_neighbours_count_by_their_copies() -> None:
    # Point 0's neighbours hold 5, 1 and 1 rows: with k=3 the first one already holds 3, so
    # the density is 5 rows within radius 1 (not 3 within radius 3).
    distances = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    indices = torch.tensor([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    neighbors = Neighbors(distances, indices, "euclidean")
    mass = torch.tensor([1, 5, 1, 1])
    log_density, _ = knn_log_density(neighbors, intrinsic_dim=2.0, mass=mass)
    unit_disc = math.log(math.pi)  # V_2 = pi
    n = 8  # rows in all
    assert float(log_density[0]) == pytest.approx(math.log(5) - math.log(n) - unit_disc)
    # Point 1 (the repeated one) does not count itself: 1 + 1 + 1 rows by radius 3.
    assert float(log_density[1]) == pytest.approx(
        math.log(3) - math.log(n) - unit_disc - 2 * math.log(3)
    )
    plain, _ = knn_log_density(neighbors, intrinsic_dim=2.0)
    assert float(plain[0]) == pytest.approx(math.log(3) - math.log(4) - unit_disc - 2 * math.log(3))


def test_k_counts_distinct_rows() -> None:
    points = torch.cat([torch.ones(10, 3), torch.zeros(3, 3)])
    with pytest.raises(InvalidInputError, match=r"distinct points \(2 of 13 rows\), but got k=2"):
        ExactKNNDensity(k=2).estimate(points)


def test_dense_points_get_lower_weight(generator: torch.Generator) -> None:
    """The research-script trap (weight = 1/mean distance favours dense regions) must not recur."""
    dense = 0.05 * torch.randn(500, 3, generator=generator)
    sparse = 3.0 + 1.0 * torch.randn(100, 3, generator=generator)
    result = ExactKNNDensity(k=10, metric="euclidean").estimate(torch.cat([dense, sparse]))
    weights = inverse_density_weights(result.log_density, max_weight_ratio=None, min_ess_ratio=None)
    assert float(weights[:500].mean()) < float(weights[500:].mean()) / 100
    assert float(result.log_density[:500].median()) > float(result.log_density[500:].median())
    # Weights fall with density point by point.
    order = torch.argsort(result.log_density)
    assert bool((weights[order].diff() <= 0).all())


def test_equal_volume_topics_get_equal_shares() -> None:
    from katdensity.synthetic import prompt_mixture

    data = prompt_mixture(n_topics=4, topic_size=800, dim=32, n_modes=0, seed=5)
    result = ExactKNNDensity(k=10).estimate(data.embeddings)
    weights = inverse_density_weights(result.log_density)
    shares = torch.stack([weights[data.topic == t].sum() for t in range(4)])
    # Topic sizes run 800:400:266:200, but their volumes are equal.
    assert float(shares.min()) > 0.15 and float(shares.max()) < 0.35


def test_smoothing_averages_each_point_with_its_nearest_neighbours() -> None:
    # Three points, each with its two others as neighbours, and a fourth pointing at point 0.
    neighbors = Neighbors(
        distances=torch.ones(4, 2),
        indices=torch.tensor([[1, 2], [0, 2], [0, 1], [0, 1]]),
        metric="euclidean",
    )
    values = torch.tensor([3.0, 0.0, 0.0, 9.0], dtype=torch.float64)
    once = smooth_over_neighbors(values, neighbors, steps=1, width=2)
    torch.testing.assert_close(once, torch.tensor([1.0, 1.0, 1.0, 4.0], dtype=torch.float64))
    twice = smooth_over_neighbors(values, neighbors, steps=2, width=2)
    torch.testing.assert_close(twice, torch.tensor([1.0, 1.0, 1.0, 2.0], dtype=torch.float64))
    # width 1 uses the nearest neighbour only; steps 0 changes nothing.
    torch.testing.assert_close(
        smooth_over_neighbors(values, neighbors, steps=1, width=1),
        torch.tensor([1.5, 1.5, 1.5, 6.0], dtype=torch.float64),
    )
    assert torch.equal(smooth_over_neighbors(values, neighbors, steps=0), values)


def test_smoothing_zero_is_the_plain_knn_estimate(generator: torch.Generator) -> None:
    points = torch.randn(300, 6, generator=generator)
    result = ExactKNNDensity(k=8, metric="euclidean", smoothing=0).estimate(points)
    plain, _ = knn_log_density(result.neighbors)
    torch.testing.assert_close(result.log_density, plain)
    smoothed = ExactKNNDensity(k=8, metric="euclidean").estimate(points)
    expected = smooth_over_neighbors(plain, result.neighbors, steps=DEFAULT_SMOOTHING)
    torch.testing.assert_close(smoothed.log_density, expected)


def test_a_straggler_of_a_near_duplicate_family_shares_its_density() -> None:
    """A rewrite whose own 10th neighbour is as far as an ordinary prompt's, but whose nearest
    neighbours are its family, is weighted like the family once smoothed (seeds 0-9 give
    0.92-0.95 of the median weight unsmoothed and 0.02-0.04 smoothed)."""
    generator = torch.Generator().manual_seed(0)
    background = torch.rand(400, 4, generator=generator)
    kth = float(torch.cdist(background, background).topk(11, largest=False).values[:, 10].median())
    centre, away = torch.full((1, 4), 2.0), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    core = centre + 0.005 * torch.randn(30, 4, generator=generator)
    bridge = centre + 0.3 * kth * away + 0.005 * torch.randn(5, 4, generator=generator)
    straggler = centre + kth * away  # its 10th neighbour lies at kth, in the core
    points = torch.cat([background, core, bridge, straggler])

    def straggler_weight_over_median(smoothing: int) -> float:
        result = ExactKNNDensity(k=10, metric="euclidean", smoothing=smoothing).estimate(points)
        weights = inverse_density_weights(result.log_density, min_ess_ratio=None)
        return float(weights[-1] / weights[:400].median())

    assert straggler_weight_over_median(0) > 0.8
    assert straggler_weight_over_median(1) < 0.1


def test_negative_smoothing_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="smoothing"):
        ExactKNNDensity(smoothing=-1)
