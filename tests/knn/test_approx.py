from __future__ import annotations

import logging

import pytest
import torch

from katdensity import (
    ApproxKNNDensity,
    AutoKNNDensity,
    DensityEstimator,
    ExactKNNDensity,
    InvalidInputError,
    Neighbors,
    approx_knn,
    exact_knn,
    get_estimator,
    knn_recall,
)
from katdensity.density import choose_search
from katdensity.knn import sampled_recall


@pytest.fixture(scope="module")
def points() -> torch.Tensor:
    from katdensity.synthetic import prompt_mixture

    return prompt_mixture(
        n_topics=6, topic_size=1200, dim=48, n_modes=2, mode_size=60, seed=2
    ).embeddings


def test_recall_against_exact_and_exact_distances(points: torch.Tensor) -> None:
    approx = approx_knn(points, 10, seed=0)
    exact = exact_knn(points, 10)
    assert knn_recall(approx, exact) >= 0.98
    assert not bool((approx.indices == torch.arange(len(points))[:, None]).any()), "self removed"
    # Distances are recomputed exactly: where a neighbour agrees, so does its distance.
    same = approx.indices == exact.indices
    torch.testing.assert_close(approx.distances[same], exact.distances[same])


def test_same_seed_same_graph(points: torch.Tensor) -> None:
    first = approx_knn(points[:1000], 5, seed=3)
    second = approx_knn(points[:1000], 5, seed=3)
    assert torch.equal(first.indices, second.indices)


def test_estimator_shares_the_density_formula(points: torch.Tensor) -> None:
    approx = ApproxKNNDensity(k=10).estimate(points)
    exact = ExactKNNDensity(k=10).estimate(points)
    assert isinstance(ApproxKNNDensity(), DensityEstimator)
    rows = (approx.neighbors.indices == exact.neighbors.indices).all(dim=1)
    # Rows whose neighbours agree get the same density up to the (shared) dimension estimate.
    shift = approx.intrinsic_dim - exact.intrinsic_dim
    assert abs(shift) < 0.2
    fixed = ApproxKNNDensity(k=10, intrinsic_dim=exact.intrinsic_dim).estimate(points)
    # Up to the fp32 rounding of 1 - cos for the tightest (near-duplicate) neighbours.
    torch.testing.assert_close(fixed.log_density[rows], exact.log_density[rows], atol=2e-3, rtol=0)


def test_duplicates_are_merged_before_the_search() -> None:
    generator = torch.Generator().manual_seed(0)
    points = torch.cat([torch.ones(40, 8), torch.randn(300, 8, generator=generator)])
    result = ApproxKNNDensity(k=5).estimate(points)
    assert result.multiplicity is not None and int(result.multiplicity[0]) == 40
    assert bool((result.neighbors.indices[:40] >= 40).all())


def test_knn_recall_by_hand() -> None:
    exact = Neighbors(torch.zeros(2, 2), torch.tensor([[1, 2], [0, 2]]), "cosine")
    approx = Neighbors(torch.zeros(2, 2), torch.tensor([[2, 3], [2, 0]]), "cosine")
    assert knn_recall(approx, exact) == pytest.approx(0.75)
    with pytest.raises(InvalidInputError, match="same shape"):
        knn_recall(
            approx, Neighbors(torch.zeros(2, 1), torch.zeros(2, 1, dtype=torch.int64), "cosine")
        )


def test_sampled_recall_matches_full_recall(points: torch.Tensor) -> None:
    subset = points[:800]
    approx = approx_knn(subset, 10, n_neighbors=12, seed=0)
    full = knn_recall(approx, exact_knn(subset, 10))
    assert sampled_recall(approx, subset, n_queries=800) == pytest.approx(full)
    assert abs(sampled_recall(approx, subset, n_queries=300, seed=1) - full) < 0.05


def test_auto_picks_by_work_and_logs(
    caplog: pytest.LogCaptureFixture, points: torch.Tensor
) -> None:
    cpu = torch.device("cpu")
    assert choose_search(50_000, 384, cpu) == "exact"
    assert choose_search(1_000_000, 384, cpu) == "approx"
    assert choose_search(1_000_000, 768, torch.device("cuda")) == "exact"
    with caplog.at_level(logging.INFO, logger="katdensity"):
        result = get_estimator("auto", k=10).estimate(points)
    assert "auto: exact kNN for N=" in caplog.text
    expected = ExactKNNDensity(k=10).estimate(points)
    torch.testing.assert_close(result.log_density, expected.log_density)
    assert isinstance(AutoKNNDensity(), DensityEstimator)


def test_default_width_grows_with_the_set() -> None:
    from katdensity.knn.approx import default_width

    assert default_width(50_000, 10) == default_width(100_000, 10) == 31
    assert default_width(1_000_000, 10) == 46  # 31 + 15 per tenfold growth beyond 100,000
    assert default_width(200_000, 10) == 31 + 5  # ceil(15 * log10(2))
    assert default_width(20, 10) == 20  # never wider than the set
    assert default_width(50_000, 20) == 61


def test_progress_lines_go_to_stderr_and_leave_stdout_clean(
    points: torch.Tensor, capfd: pytest.CaptureFixture[str]
) -> None:
    # pynndescent prints partly from compiled code (file descriptor 1): a command's stdout
    # (a report, a pipe of ids) must stay clean while its progress shows on stderr.
    shown = approx_knn(points[:2000], 5, seed=0, progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert "NN descent for" in err and "re-scoring: 100%" in err
    silent = approx_knn(points[:2000], 5, seed=0, progress=False)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert torch.equal(shown.indices, silent.indices)
    print("stdout works again")
    assert capfd.readouterr().out == "stdout works again\n"
