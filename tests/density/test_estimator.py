from __future__ import annotations

import numpy as np
import pytest
import torch

from katdensity import DensityEstimator, DensityResult, ExactKNNDensity, InvalidInputError


def test_implements_protocol() -> None:
    assert isinstance(ExactKNNDensity(), DensityEstimator)


def test_result_is_row_aligned_and_accepts_numpy(generator: torch.Generator) -> None:
    points = torch.randn(200, 6, generator=generator)
    from_torch = ExactKNNDensity(k=4).estimate(points)
    from_numpy = ExactKNNDensity(k=4).estimate(points.numpy().astype(np.float64))
    assert isinstance(from_torch, DensityResult) and len(from_torch) == 200
    torch.testing.assert_close(from_torch.log_density, from_numpy.log_density)
    # Permuting the rows permutes the densities: row i always describes embedding i.
    order = torch.randperm(200, generator=generator)
    permuted = ExactKNNDensity(k=4).estimate(points[order])
    torch.testing.assert_close(
        permuted.log_density, from_torch.log_density[order], rtol=1e-5, atol=1e-5
    )


def test_does_not_modify_input(generator: torch.Generator) -> None:
    points = torch.randn(100, 5, generator=generator)
    copy = points.clone()
    ExactKNNDensity(k=3, center=True).estimate(points)
    assert torch.equal(points, copy)


@pytest.mark.parametrize(
    ("embeddings", "message"),
    [
        (torch.tensor([[0.0, 1.0], [float("nan"), 1.0], [1.0, 1.0]]), "row 1 holds NaN or inf"),
        (torch.tensor([[0.0, 1.0], [float("inf"), 1.0], [1.0, 1.0]]), "row 1 holds NaN or inf"),
        (torch.zeros(0, 4), "at least 1 row"),
        (torch.zeros(10), "2-D"),
        (torch.randn(5, 3), r"smaller than the number of points \(N=5\), but got k=10"),
        ([[1.0, 2.0]], "torch.Tensor or numpy.ndarray"),
    ],
)
def test_bad_input_names_the_problem(embeddings: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ExactKNNDensity(k=10 if message.startswith("smaller") else 1).estimate(embeddings)  # type: ignore[arg-type]


def test_a_bad_row_past_the_first_block_is_named() -> None:
    # The finite check runs by blocks of 65,536 rows: the row number must stay global.
    points = torch.zeros(70_000, 2)
    points[66_001, 1] = float("nan")
    points[69_000, 0] = float("inf")
    with pytest.raises(InvalidInputError, match=r"row 66001 holds NaN or inf \(2 bad row"):
        ExactKNNDensity(k=1).estimate(points)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k should be an integer >= 1, but got k=0"),
        ({"metric": "l1"}, "metric should be one of"),
        ({"intrinsic_dim": -1.0}, "intrinsic_dim"),
        ({"precision": "fp8"}, "precision"),
    ],
)
def test_bad_options_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ExactKNNDensity(**kwargs)  # type: ignore[arg-type]


def test_given_intrinsic_dim_is_used(generator: torch.Generator) -> None:
    result = ExactKNNDensity(k=5, intrinsic_dim=2.5).estimate(
        torch.randn(50, 4, generator=generator)
    )
    assert result.intrinsic_dim == 2.5


def test_containers_reject_mismatched_shapes() -> None:
    from katdensity import Neighbors

    with pytest.raises(InvalidInputError, match=r"\(N, k\), but got \(4, 3\) and \(4, 2\)"):
        Neighbors(torch.zeros(4, 3), torch.zeros(4, 2, dtype=torch.int64), "cosine")
    neighbors = Neighbors(torch.zeros(4, 2), torch.zeros(4, 2, dtype=torch.int64), "cosine")
    with pytest.raises(
        InvalidInputError, match="log_density has 3 entries but neighbors has 4 rows"
    ):
        DensityResult(torch.zeros(3, dtype=torch.float64), neighbors, 2.0)


def _recall(found: torch.Tensor, truth: torch.Tensor) -> float:
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist(), strict=True))
    return hits / truth.numel()


@pytest.mark.parametrize("center", [True, "auto"])
def test_centering_undoes_a_common_offset(center: object, generator: torch.Generator) -> None:
    """Anisotropy oracle: a large shared offset hides the cosine graph; centring restores it."""
    spread = torch.randn(2000, 32, generator=generator)
    spread -= spread.mean(dim=0)
    truth = ExactKNNDensity(k=10, center=False).estimate(spread).neighbors.indices
    offset = 20.0 * torch.nn.functional.normalize(torch.randn(32, generator=generator), dim=0)
    shifted = spread + offset  # pairwise cosine now about 0.997
    centred = ExactKNNDensity(k=10, center=center).estimate(shifted)  # type: ignore[arg-type]
    assert _recall(centred.neighbors.indices, truth) >= 0.99
    raw = ExactKNNDensity(k=10, center=False).estimate(shifted)
    assert _recall(raw.neighbors.indices, truth) < 0.9


def test_auto_leaves_isotropic_sets_alone(generator: torch.Generator) -> None:
    points = torch.randn(500, 16, generator=generator) + 0.1
    auto = ExactKNNDensity(k=5).estimate(points)
    plain = ExactKNNDensity(k=5, center=False).estimate(points)
    assert torch.equal(auto.neighbors.indices, plain.neighbors.indices)


def test_centred_ip_rows_are_renormalised(generator: torch.Generator) -> None:
    spread = torch.randn(1500, 32, generator=generator)
    spread -= spread.mean(dim=0)
    offset = 20.0 * torch.nn.functional.normalize(torch.randn(32, generator=generator), dim=0)
    unit = torch.nn.functional.normalize(spread + offset, dim=1)
    as_ip = ExactKNNDensity(k=10, metric="ip").estimate(unit)
    as_cosine = ExactKNNDensity(k=10, metric="cosine").estimate(unit)
    assert torch.equal(as_ip.neighbors.indices, as_cosine.neighbors.indices)
    assert as_ip.intrinsic_dim == pytest.approx(as_cosine.intrinsic_dim, rel=1e-3)
