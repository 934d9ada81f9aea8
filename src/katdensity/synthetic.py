"""Synthetic prompt-space data with a known answer, for the demo, tests and benchmarks.

`prompt_mixture` imitates what the embeddings of a real prompt set look like to a density
estimator: topics of Zipf-distributed sizes, each a Gaussian blob of the same spread on
its own low-dimensional subspace, plus near-duplicate *modes* (many slight rewrites of one
prompt). Topics of equal spread occupy equal volumes, so an ideal inverse-density sampler
gives every topic the same share however many prompts it holds, and a mode next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from katdensity._validate import check_int, check_real

__all__ = ["PromptMixture", "prompt_mixture"]


@dataclass(frozen=True)
class PromptMixture:
    """Embeddings with their ground-truth structure.

    Attributes:
        embeddings: `(N, D)` float32 unit rows, shuffled.
        topic: `(N,)` int64 topic id; `-1` for a near-duplicate.
        mode: `(N,)` int64 near-duplicate group id; `-1` outside the modes.
        mode_prompt: `(n_modes, D)` the prompt each mode rewrites.
    """

    embeddings: torch.Tensor
    topic: torch.Tensor
    mode: torch.Tensor
    mode_prompt: torch.Tensor


def prompt_mixture(
    n_topics: int = 8,
    topic_size: int = 1000,
    *,
    dim: int = 64,
    topic_dim: int = 8,
    zipf_exponent: float = 1.0,
    n_modes: int = 4,
    mode_size: int = 100,
    mode_spread: float = 0.05,
    seed: int = 0,
) -> PromptMixture:
    """Generate a prompt-like point set with topics, near-duplicate modes and unique points.

    Args:
        n_topics: number of topics; topic `t` holds `topic_size / (t + 1) ** zipf_exponent`
            points (at least 2).
        topic_size: size of the largest topic.
        dim: ambient dimension `D`.
        topic_dim: dimension of each topic's subspace (its intrinsic dimension).
        zipf_exponent: how fast topic sizes fall.
        n_modes: number of near-duplicate groups.
        mode_size: points per near-duplicate group.
        mode_spread: noise scale of the rewrites around their prompt.
        seed: the same seed gives the same data.

    Returns:
        The embeddings and their topic and mode labels.
    """
    for name, value, low in (
        ("n_topics", n_topics, 0),
        ("topic_size", topic_size, 2),
        ("dim", dim, 2),
        ("n_modes", n_modes, 0),
        ("mode_size", mode_size, 1),
        ("seed", seed, 0),
    ):
        check_int(name, value, low=low)
    check_int("topic_dim", topic_dim, low=1, high=dim + 1)
    check_real("zipf_exponent", zipf_exponent, low=0.0)
    check_real("mode_spread", mode_spread, low=0.0)
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    parts, topics, modes = [], [], []
    for t in range(n_topics):
        size = max(2, int(topic_size / (t + 1) ** zipf_exponent))
        center = torch.nn.functional.normalize(randn(dim), dim=0)
        basis = torch.linalg.qr(randn(dim, topic_dim)).Q  # (D, topic_dim)
        parts.append(center + 0.3 * randn(size, topic_dim) @ basis.T / topic_dim**0.5)
        topics.append(torch.full((size,), t))
        modes.append(torch.full((size,), -1))
    prompts = torch.nn.functional.normalize(randn(n_modes, dim), dim=1)
    for m in range(n_modes):
        basis = torch.linalg.qr(randn(dim, topic_dim)).Q
        parts.append(
            prompts[m] + mode_spread * randn(mode_size, topic_dim) @ basis.T / topic_dim**0.5
        )
        topics.append(torch.full((mode_size,), -1))
        modes.append(torch.full((mode_size,), m))

    embeddings = torch.nn.functional.normalize(torch.cat(parts), dim=1)
    order = torch.randperm(embeddings.shape[0], generator=generator)
    return PromptMixture(
        embeddings=embeddings[order].contiguous(),
        topic=torch.cat(topics)[order].to(torch.int64),
        mode=torch.cat(modes)[order].to(torch.int64),
        mode_prompt=prompts,
    )
