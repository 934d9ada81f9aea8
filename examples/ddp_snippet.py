"""Use katdensity in your own trainer: a plain PyTorch DDP loop.

Run on two CPU processes with `torchrun --nproc-per-node 2 examples/ddp_snippet.py`
(tests/examples/test_ddp.py runs it the same way, with gloo).
"""

import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from katdensity import ExactKNNDensity, InverseDensitySampler, inverse_density_weights
from katdensity.synthetic import prompt_mixture


def train(epochs: int = 2, batch_size: int = 16) -> tuple[list[int], torch.Tensor]:
    """Train a toy model; return the rows this rank trained on, in order, and the weights."""
    embeddings = prompt_mixture(n_topics=4, topic_size=200, seed=0).embeddings  # your prompts
    # Inside a process group the exact kNN search is split over the ranks: every rank calls
    # it and gets the same graph. Broadcasting rank 0's weights then makes them bit-identical.
    result = ExactKNNDensity(k=10).estimate(embeddings)
    weights = inverse_density_weights(result.log_density)
    dist.broadcast(weights, src=0)

    # Rank r of R gets positions r, r + R, ... of one global draw: disjoint, equal shards.
    sampler = InverseDensitySampler(weights, num_samples=256, seed=0)
    dataset = TensorDataset(torch.arange(len(embeddings)), embeddings)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler)
    model = DistributedDataParallel(torch.nn.Linear(embeddings.shape[1], 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # a fresh draw each epoch, the same on every rank
        for rows, x in loader:
            loss = model(x).square().mean()  # your loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += rows.tolist()
    return seen, weights


def shutdown() -> None:
    """Leave the process group and exit at once, without tearing the interpreter down.

    NOTE [ DDP and gloo at exit ]: PyTorch's DDP keeps a C++ reference to the gloo process
    group after the model is gone, so `destroy_process_group` cannot join gloo's worker
    threads. A worker thread may still be releasing the last gradient all-reduce when the
    interpreter shuts down; that release needs the GIL, CPython ends the thread instead, and
    the forced unwind calls `std::terminate`: "terminate called without an active
    exception", SIGABRT, in about 1 exit in 5 on a busy 2-core machine. Skipping the
    teardown once everything is written avoids it.
    """
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    dist.init_process_group("gloo")  # "nccl" on GPUs
    rows, _ = train()
    print(f"rank {dist.get_rank()}: {len(rows)} rows, {len(set(rows))} distinct")
    shutdown()
