"""Embedding a prompt set with every `torch.distributed` process: each embeds a shard."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from katdensity._distributed import process_group
from katdensity.embedders.base import Embedder, check_texts
from katdensity.errors import InvalidInputError

__all__ = ["embed_distributed"]


def embed_distributed(embedder: Embedder, texts: Sequence[str]) -> torch.Tensor:
    """Embed `texts` across the processes of `torch.distributed`; every process gets all rows.

    Process `r` of `W` embeds the contiguous shard `r` of `ceil(N / W)` texts, then an
    all-gather assembles the `(N, D)` result in text order on every process, so it can go
    straight into a density estimate (which the processes then share in the same way, see
    [`exact_knn`][katdensity.exact_knn]). Every process must pass the same `texts` and an
    equivalent embedder (same model and settings). Without an initialised process group,
    or with one process, it is `embedder.embed(texts)`.

    Args:
        embedder: any [`Embedder`][katdensity.Embedder].
        texts: the full list of texts, identical on every process.

    Returns:
        `(N, D)` float32 on the CPU, row `i` embedding `texts[i]`.
    """
    texts = check_texts(texts)
    world, rank = process_group()
    if world == 1:
        return embedder.embed(texts)
    shard = -(-len(texts) // world)
    mine = texts[rank * shard : (rank + 1) * shard]
    # Every process learns D, even one whose shard is empty (more processes than texts).
    local = embedder.embed(mine) if mine else None
    device = torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")
    dims = torch.tensor([-1 if local is None else local.shape[1]], device=device)
    gathered_dims = [torch.empty_like(dims) for _ in range(world)]
    dist.all_gather(gathered_dims, dims)
    known = {int(d) for d in gathered_dims if int(d) >= 0}
    if len(known) != 1:
        raise InvalidInputError(
            f"every process should embed into the same dimension, but got {sorted(known)}; "
            "build the same embedder on every process"
        )
    dim = known.pop()
    block = torch.zeros(shard, dim, device=device)
    if local is not None:
        block[: local.shape[0]] = local.to(device)
    blocks = [torch.empty_like(block) for _ in range(world)]
    dist.all_gather(blocks, block)
    return torch.cat(blocks)[: len(texts)].cpu()


def _nccl() -> bool:
    return str(dist.get_backend()) == "nccl"
