from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from katdensity import InvalidInputError, Neighbors, exact_knn
from katdensity.knn import METRICS


def _sklearn_knn(points: torch.Tensor, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    sk_metric = "cosine" if metric == "ip" else metric
    search = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=sk_metric)
    distances, indices = search.fit(points.double().numpy()).kneighbors()
    return distances, indices  # kneighbors() without X leaves each point out


def _recall(found: torch.Tensor, truth: np.ndarray) -> float:
    pairs = zip(found.numpy(), truth, strict=True)
    hits = [len(set(a.tolist()) & set(b.tolist())) for a, b in pairs]
    return sum(hits) / truth.size


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    ("n", "dim", "k", "budget"),
    [
        (300, 8, 5, 2**20),  # one tile
        (1003, 16, 10, 40_000),  # many tiles, padding rows, filter path
        (64, 3, 63, 10**6),  # k = N - 1
    ],
)
def test_matches_sklearn_brute_force(
    metric: str, n: int, dim: int, k: int, budget: int, generator: torch.Generator
) -> None:
    points = torch.randn(n, dim, generator=generator)
    if metric == "ip":
        points = torch.nn.functional.normalize(points, dim=1)
    found = exact_knn(points, k, metric=metric, memory_budget_bytes=budget)  # type: ignore[arg-type]
    distances, indices = _sklearn_knn(points, k, metric)
    # Continuous random data has no ties: neighbour sets must agree exactly.
    assert _recall(found.indices, indices) == 1.0
    np.testing.assert_allclose(found.distances.numpy(), distances, atol=2e-6)
    assert found.metric == metric


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_clustered_rows_searched_in_locality_order_match_sklearn(
    metric: str, precision: str, generator: torch.Generator
) -> None:
    # Clusters (shuffled) over several tiles: the search reorders the rows so each cluster
    # shares tiles, lists fill in their first tile and later tiles are mostly pruned (the
    # columns' update then reads only the few blocks that can still improve them).
    centres = torch.randn(12, 16, generator=generator) * 2.0
    labels = torch.randint(0, 12, (2500,), generator=generator)
    points = centres[labels] + torch.randn(2500, 16, generator=generator)
    if metric == "ip":
        points = torch.nn.functional.normalize(points, dim=1)
    found = exact_knn(points, 10, metric=metric, precision=precision, memory_budget_bytes=5_000_000)  # type: ignore[arg-type]
    distances, indices = _sklearn_knn(points, 10, metric)
    # fp32 ranks exactly (a euclidean near-tie may swap: the k-th distance still matches);
    # int8 re-scores k extra candidates.
    assert _recall(found.indices, indices) >= (0.9999 if precision == "float32" else 0.999)
    if precision == "float32":
        np.testing.assert_allclose(found.distances[:, -1].numpy(), distances[:, -1], atol=2e-5)
    same = torch.from_numpy(indices) == found.indices
    np.testing.assert_allclose(found.distances[same].numpy(), distances[same.numpy()], atol=2e-5)
    # Indices come back in the input's numbering: each row's distances match its own rows.
    rows = torch.arange(2500)[:, None]
    if metric == "euclidean":
        direct = (points[found.indices] - points[rows]).norm(dim=2)
    else:
        unit = torch.nn.functional.normalize(points, dim=1) if metric == "cosine" else points
        direct = 1.0 - (unit[found.indices] * unit[rows]).sum(2)
    torch.testing.assert_close(found.distances, direct.clamp_min(0.0), atol=2e-5, rtol=0)


def test_result_contract(generator: torch.Generator) -> None:
    points = torch.randn(500, 12, generator=generator)
    found = exact_knn(points, 7, memory_budget_bytes=20_000)
    assert isinstance(found, Neighbors)
    assert found.distances.dtype == torch.float32 and found.indices.dtype == torch.int64
    assert found.distances.shape == (500, 7) and found.k == 7 and len(found) == 500
    assert bool((found.distances[:, 1:] >= found.distances[:, :-1]).all())
    assert not bool((found.indices == torch.arange(500)[:, None]).any()), "self must be excluded"


def test_duplicates_are_neighbours_at_distance_zero_but_self_is_not() -> None:
    points = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    found = exact_knn(points, 2, metric="euclidean")
    assert found.indices[0].tolist() == [1, 2]
    assert found.indices[1].tolist() == [0, 2]
    assert found.distances[:3].abs().max() == 0.0


def test_bfloat16_candidates_rescored_exactly(generator: torch.Generator) -> None:
    points = torch.randn(2000, 32, generator=generator)
    found = exact_knn(points, 10, precision="bfloat16", memory_budget_bytes=100_000)
    distances, indices = _sklearn_knn(points, 10, "cosine")
    # 2k extra candidates re-scored in fp32: recall 1.0 on seeds 0-4 of this set.
    assert _recall(found.indices, indices) >= 0.999
    # Distances are fp32 re-scored, not bf16-rounded.
    same = torch.from_numpy(indices) == found.indices
    np.testing.assert_allclose(found.distances[same].numpy(), distances[same.numpy()], atol=2e-6)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dim", [32, 13])  # 13: padded to a width divisible by 8
def test_int8_candidates_rescored_exactly(
    metric: str, dim: int, generator: torch.Generator
) -> None:
    points = torch.randn(2000, dim, generator=generator) * 3.0 + 0.5
    if metric == "ip":
        points = torch.nn.functional.normalize(points, dim=1)
    found = exact_knn(points, 10, metric=metric, precision="int8", memory_budget_bytes=100_000)  # type: ignore[arg-type]
    distances, indices = _sklearn_knn(points, 10, metric)
    # One scale for every row, 2k extra candidates re-scored in fp32: recall 1.0 on this set.
    assert _recall(found.indices, indices) >= 0.999
    same = torch.from_numpy(indices) == found.indices
    np.testing.assert_allclose(found.distances[same].numpy(), distances[same.numpy()], atol=2e-5)


def test_int8_keeps_every_point_when_k_is_n_minus_1(generator: torch.Generator) -> None:
    # Padding and the diagonal sit at the lowest int32 score: no real candidate loses to them.
    points = torch.randn(70, 5, generator=generator)
    found = exact_knn(points, 69, precision="int8")
    assert found.indices.sort(dim=1).values.tolist() == [
        [j for j in range(70) if j != i] for i in range(70)
    ]


def test_int8_streams_a_memmap_like_memory(generator: torch.Generator, tmp_path: Path) -> None:
    points = torch.randn(1500, 24, generator=generator)
    np.save(tmp_path / "rows.npy", points.numpy())
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    # A small budget: several panels, each quantised with the scale of the whole file.
    streamed = exact_knn(mapped, 8, precision="int8", memory_budget_bytes=60_000)
    in_memory = exact_knn(points, 8, precision="int8", memory_budget_bytes=60_000)
    assert torch.equal(streamed.indices, in_memory.indices)


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_streamed_clustered_rows_match_sklearn(
    precision: str, generator: torch.Generator, tmp_path: Path
) -> None:
    # Several panels: rows are reordered only within each panel (each read as one range).
    centres = torch.randn(12, 16, generator=generator) * 2.0
    labels = torch.randint(0, 12, (2000,), generator=generator)
    points = centres[labels] + torch.randn(2000, 16, generator=generator)
    np.save(tmp_path / "rows.npy", points.numpy())
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    found = exact_knn(mapped, 10, precision=precision, memory_budget_bytes=200_000)  # type: ignore[arg-type]
    distances, indices = _sklearn_knn(points, 10, "cosine")
    assert _recall(found.indices, indices) >= (0.9999 if precision == "float32" else 0.999)
    np.testing.assert_allclose(found.distances[:, -1].numpy(), distances[:, -1], atol=2e-5)


def test_same_input_same_output(generator: torch.Generator) -> None:
    points = torch.randn(800, 8, generator=generator)
    first = exact_knn(points, 5, memory_budget_bytes=30_000)
    second = exact_knn(points, 5, memory_budget_bytes=30_000)
    assert torch.equal(first.indices, second.indices)
    assert torch.equal(first.distances, second.distances)


def test_rejects_k_out_of_range() -> None:
    with pytest.raises(InvalidInputError, match=r"k should be .* but got k=5"):
        exact_knn(torch.randn(5, 3), 5)
    with pytest.raises(InvalidInputError, match="metric"):
        exact_knn(torch.randn(5, 3), 2, metric="manhattan")  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(generator: torch.Generator) -> None:
    points = torch.randn(3000, 64, generator=generator)
    cpu = exact_knn(points, 10, precision="float32")
    gpu = exact_knn(points.cuda(), 10, precision="float32")
    assert _recall(gpu.indices.cpu(), cpu.indices.numpy()) >= 0.999


def test_auto_precision_follows_the_measured_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU "auto" means the fastest of bf16 and int8 only where its product is measured
    at least 1.5x as fast as fp32, and never calibrates a small search."""
    from katdensity.knn import _precision

    cpu = torch.device("cpu")
    measured: list[int] = []

    def speedups(bf16: float, int8: float) -> Callable[[int, int], dict[str, float]]:
        def fake(dim: int, threads: int) -> dict[str, float]:
            measured.append(dim)
            return {"bfloat16": bf16, "int8": int8}

        return fake

    monkeypatch.setattr(_precision, "product_speedups", speedups(2.0, 0.05))
    assert _precision.auto_precision(cpu, 50_000, 384) == "bfloat16"
    assert measured == [384]
    assert _precision.auto_precision(cpu, 50_000, 100) == "bfloat16" and measured[-1] == 128
    monkeypatch.setattr(_precision, "product_speedups", speedups(2.0, 7.5))
    assert _precision.auto_precision(cpu, 50_000, 384) == "int8"
    monkeypatch.setattr(_precision, "product_speedups", speedups(1.2, 1.4))
    assert _precision.auto_precision(cpu, 50_000, 384) == "float32"
    measured.clear()
    assert _precision.auto_precision(cpu, 1_000, 384) == "float32" and measured == []
    assert _precision.auto_precision(torch.device("cuda"), 10, 8) == "bfloat16"


def test_product_speedups_are_measured_once_per_width() -> None:
    from katdensity.knn._precision import product_speedups

    product_speedups.cache_clear()
    first = product_speedups(64, torch.get_num_threads())
    assert set(first) == {"bfloat16", "int8"} and min(first.values()) > 0
    assert product_speedups(64, torch.get_num_threads()) == first
    assert product_speedups.cache_info().hits == 1
