"""AutoKNNDensity holds an exact and an approximate estimator and searches with one of them."""

from __future__ import annotations

import pytest
import torch

import katdensity.density.auto as auto
from katdensity import ApproxKNNDensity, AutoKNNDensity, ExactKNNDensity


@pytest.fixture
def points() -> torch.Tensor:
    rows = torch.randn(300, 12, generator=torch.Generator().manual_seed(5))
    rows[7] = rows[8]  # one prompt twice
    return rows


def test_every_option_reaches_the_estimator_that_takes_it() -> None:
    estimator = AutoKNNDensity(
        k=6,
        metric="euclidean",
        device="cpu",
        seed=4,
        intrinsic_dim=3.0,
        center=False,
        smoothing=2,
        progress=False,
        distributed=False,
        precision="float32",
        memory_budget_bytes=2**20,
        n_neighbors=20,
        n_jobs=1,
    )
    exact, approx = estimator.exact, estimator.approx
    for held in (exact, approx):
        assert (held.k, held.metric, held.intrinsic_dim, held.center, held.smoothing) == (
            6,
            "euclidean",
            3.0,
            False,
            2,
        )
        assert held.progress is False
    assert exact.device == torch.device("cpu") and exact.distributed is False
    assert (exact.precision, exact.memory_budget_bytes) == ("float32", 2**20)
    assert (approx.seed, approx.n_neighbors, approx.n_jobs) == (4, 20, 1)


def test_below_the_budget_it_is_the_exact_estimator(points: torch.Tensor) -> None:
    options = {"k": 5, "device": "cpu", "precision": "float32", "memory_budget_bytes": 2**16}
    result = AutoKNNDensity(**options).estimate(points)  # type: ignore[arg-type]
    expected = ExactKNNDensity(**options).estimate(points)  # type: ignore[arg-type]
    assert torch.equal(result.log_density, expected.log_density)
    assert torch.equal(result.neighbors.indices, expected.neighbors.indices)


def test_above_the_budget_it_is_the_approximate_estimator(
    points: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auto, "_EXACT_WORK_CPU", 0)
    options = {"k": 5, "seed": 2, "n_neighbors": 16, "n_jobs": 1}
    result = AutoKNNDensity(device="cpu", **options).estimate(points)  # type: ignore[arg-type]
    expected = ApproxKNNDensity(**options).estimate(points)  # type: ignore[arg-type]
    assert torch.equal(result.log_density, expected.log_density)
    assert torch.equal(result.neighbors.indices, expected.neighbors.indices)
