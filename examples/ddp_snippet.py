"""Use katdensity in your own trainer: a plain PyTorch DDP loop.

Run on two CPU processes with `torchrun --nproc-per-node 2 examples/ddp_snippet.py`
(tests/examples/test_ddp.py runs it the same way, with gloo).
"""

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


if __name__ == "__main__":
    dist.init_process_group("gloo")  # "nccl" on GPUs
    rows, _ = train()
    print(f"rank {dist.get_rank()}: {len(rows)} rows, {len(set(rows))} distinct")
    dist.destroy_process_group()
