"""Exact kNN split over `torch.distributed` processes: a ring of shards, half the products.

Process `r` of `W` owns the contiguous shard `r` of the rows (`ceil(N / W)` rows, padded).
Shards travel around the ring: at step `t = 1 .. W // 2` process `r` holds shard
`r - t` and multiplies its own shard with it once, updating the top-k of its own rows and,
transposed, a partial top-k that travels with the visiting shard. (For even `W` the last
step pairs each shard with the one opposite, which both processes hold: there each
updates only its own rows.) The partial top-k lists then go straight back to their
owners and are merged, and one all-gather of the `(N, k)` result gives every process the
same graph. What crosses the network: `W // 2` shards of embeddings and `(N / W, k)`
partial top-k per process, never a score matrix.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from katdensity.knn._rows import RowSource
from katdensity.knn._search import (
    Block,
    Scratch,
    SearchSettings,
    TopK,
    finish,
    padded,
    search_pair,
)
from katdensity.knn.neighbors import Metric, Neighbors

__all__ = ["ring_search"]


def ring_search(
    source: RowSource, settings: SearchSettings, *, k: int, metric: Metric
) -> Neighbors:
    """The exact kNN graph of all rows of `source`, computed by every process together."""
    world, rank = dist.get_world_size(), dist.get_rank()
    n, device = source.n, source.device
    shard = padded(-(-n // world))

    def rows_of(owner: int) -> tuple[int, int]:
        start = owner * shard
        return start, max(0, min(shard, n - start))

    start, valid = rows_of(rank)
    own = Block.read(source, start, shard, settings)
    best = TopK.empty(shard, settings.n_candidates, device)
    scratch = Scratch.of(min(settings.tile, shard), settings, device)
    search_pair(own, best, None, None, settings, scratch, lambda: None)

    # The visitor carries its fp32 half-norms so euclidean scores match a single process.
    visitor = own
    partial = TopK.empty(shard, settings.n_candidates, device)
    steps = world // 2
    for step in range(1, steps + 1):
        visitor, partial = _pass_on(visitor, partial, rank, world)
        owner = (rank - step) % world
        visitor = Block(visitor.points, rows_of(owner)[1], owner * shard, visitor.half_sq_norms)
        opposite = world % 2 == 0 and step == steps
        search_pair(
            own, best, visitor, None if opposite else partial, settings, scratch, lambda: None
        )
    if world > 2:  # with two processes the only visit is the opposite one: nothing to return
        best.merge(_return_partial(partial, rank, world, steps))

    mine = finish(
        source,
        start,
        best.scores[:valid],
        best.indices[:valid],
        k=k,
        metric=metric,
        settings=settings,
    )
    return _all_gather_rows(mine, shard, world, n)


def _as_wire(tensor: torch.Tensor) -> torch.Tensor:
    # gloo has no bfloat16: send its bits as int16.
    return tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor


def _exchange(tensors: list[torch.Tensor], to: int, source: int) -> list[torch.Tensor]:
    """Send `tensors` to process `to` while receiving the same shapes from `source`."""
    received = [torch.empty_like(_as_wire(t)) for t in tensors]
    # One batch of matched sends and receives: NCCL would deadlock on separate ones.
    operations = [dist.P2POp(dist.isend, _as_wire(t).contiguous(), to) for t in tensors]
    operations += [dist.P2POp(dist.irecv, buffer, source) for buffer in received]
    for request in dist.batch_isend_irecv(operations):
        request.wait()
    return [
        buffer.view(torch.bfloat16) if t.dtype == torch.bfloat16 else buffer
        for buffer, t in zip(received, tensors, strict=True)
    ]


def _pass_on(visitor: Block, partial: TopK, rank: int, world: int) -> tuple[Block, TopK]:
    """One step of the ring: hand the visiting shard and its partial top-k to the next process."""
    tensors = [visitor.points, partial.scores, partial.indices]
    if visitor.half_sq_norms is not None:
        tensors.append(visitor.half_sq_norms)
    received = _exchange(tensors, (rank + 1) % world, (rank - 1) % world)
    half = received[3] if len(received) == 4 else None
    return Block(received[0], 0, 0, half), TopK(received[1], received[2])


def _return_partial(partial: TopK, rank: int, world: int, steps: int) -> TopK:
    """Send the visiting shard's partial top-k home; receive this process's own."""
    scores, indices = _exchange(
        [partial.scores, partial.indices], (rank - steps) % world, (rank + steps) % world
    )
    return TopK(scores, indices)


def _all_gather_rows(mine: Neighbors, shard: int, world: int, n: int) -> Neighbors:
    """Every process's rows, padded to `shard`, gathered in rank order and trimmed to `n`."""
    parts = []
    for tensor in (mine.distances, mine.indices):
        full = tensor.new_zeros(shard, tensor.shape[1])
        full[: tensor.shape[0]] = tensor
        gathered = [torch.empty_like(full) for _ in range(world)]
        dist.all_gather(gathered, full)
        parts.append(torch.cat(gathered)[:n])
    return Neighbors(distances=parts[0], indices=parts[1], metric=mine.metric)
