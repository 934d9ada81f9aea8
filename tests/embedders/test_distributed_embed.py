"""embed_distributed with gloo: two CPU processes give every process the one-process result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from katdensity import HashingEmbedder, embed_distributed

TEXTS = [f"prompt number {i} about {'cats' if i % 3 else 'tax law'}" for i in range(11)]


def _worker(rank: int, world: int, folder: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world
    )
    try:
        embedder = HashingEmbedder(dim=64)
        result = {
            "all": embed_distributed(embedder, TEXTS),
            "fewer texts than processes": embed_distributed(embedder, TEXTS[:2]),
        }
        torch.save(result, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [3])
def test_every_process_gets_all_rows_in_text_order(tmp_path: Path, world: int) -> None:
    mp.spawn(_worker, args=(world, str(tmp_path)), nprocs=world, join=True)
    embedder = HashingEmbedder(dim=64)
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.equal(got["all"], embedder.embed(TEXTS))
        assert torch.equal(got["fewer texts than processes"], embedder.embed(TEXTS[:2]))


def test_without_a_process_group_it_is_embed() -> None:
    embedder = HashingEmbedder(dim=16)
    assert torch.equal(embed_distributed(embedder, TEXTS), embedder.embed(TEXTS))
