"""Exact kNN over torch.distributed (gloo, CPU processes spawned here) equals one process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from katdensity import ExactKNNDensity, exact_knn
from katdensity.errors import InvalidInputError

# Small tiles so every shard spans several tiles and the ring crosses tile boundaries.
BUDGET = 8 * 64 * 64


def _cases(data: Path) -> dict[str, object]:
    points = torch.from_numpy(np.load(data))
    mapped = np.load(data, mmap_mode="r")
    duplicated = torch.cat([points[:300], points[:40]])  # 40 rows twice
    return {
        "cosine": exact_knn(points, 7, memory_budget_bytes=BUDGET),
        "euclidean": exact_knn(points, 5, metric="euclidean", memory_budget_bytes=BUDGET),
        "bfloat16": exact_knn(points, 5, precision="bfloat16", memory_budget_bytes=BUDGET),
        "memmap": exact_knn(mapped, 6, memory_budget_bytes=BUDGET),
        "density": ExactKNNDensity(k=4, memory_budget_bytes=BUDGET).estimate(duplicated),
    }


def _worker(rank: int, world: int, folder: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world
    )
    try:
        results = _cases(Path(folder) / "data.npy")
        if rank == 0:  # one process searching alone inside the group must not wait for others
            points = torch.from_numpy(np.load(Path(folder) / "data.npy"))
            results["alone"] = ExactKNNDensity(k=4, distributed=False).estimate(points)
        torch.save(results, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("distributed")
    rows = torch.randn(517, 24, generator=torch.Generator().manual_seed(0)).numpy()
    np.save(folder / "data.npy", rows)
    return folder


@pytest.mark.parametrize("world", [2, 3, 4])
def test_every_process_gets_the_single_process_result(data: Path, world: int) -> None:
    folder = data / f"world{world}"
    folder.mkdir()
    os.link(data / "data.npy", folder / "data.npy")
    mp.spawn(_worker, args=(world, str(folder)), nprocs=world, join=True)
    expected = _cases(folder / "data.npy")
    for rank in range(world):
        got = torch.load(folder / f"rank{rank}.pt", weights_only=False)
        for name in ("cosine", "euclidean", "bfloat16", "memmap"):
            assert torch.equal(got[name].indices, expected[name].indices), (rank, name)
            torch.testing.assert_close(got[name].distances, expected[name].distances)
        density, single = got["density"], expected["density"]
        assert torch.equal(density.neighbors.indices, single.neighbors.indices)
        # Same neighbours; fp32 distances may differ in the last bit between GEMM shapes.
        torch.testing.assert_close(density.log_density, single.log_density, rtol=1e-5, atol=1e-5)
        assert torch.equal(density.multiplicity, single.multiplicity)
    alone = torch.load(folder / "rank0.pt", weights_only=False)["alone"]
    points = torch.from_numpy(np.load(folder / "data.npy"))
    assert torch.equal(alone.log_density, ExactKNNDensity(k=4).estimate(points).log_density)


def test_distributed_true_without_a_process_group_says_what_to_do() -> None:
    with pytest.raises(InvalidInputError, match="init_process_group"):
        exact_knn(torch.randn(10, 3), 2, distributed=True)
