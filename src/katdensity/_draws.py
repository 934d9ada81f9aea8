"""Exact weighted draws for any number of categories.

`torch.multinomial` refuses more than 2^24 categories; these work for any `N` that fits in
memory, in float64, and never return an item of zero probability.
"""

from __future__ import annotations

import torch

__all__ = ["draw_with_replacement", "draw_without_replacement"]


def draw_with_replacement(
    probabilities: torch.Tensor, n_draws: int, generator: torch.Generator
) -> torch.Tensor:
    """`n_draws` i.i.d. indices from float64 `probabilities`, by inverting the CDF."""
    cdf = torch.cumsum(probabilities, dim=0)
    uniforms = torch.rand(n_draws, dtype=torch.float64, generator=generator) * cdf[-1]
    indices = torch.searchsorted(cdf, uniforms, right=True)
    # Rounding can put a uniform at the very top; map it to the last item that has mass.
    last_positive = int(torch.nonzero(probabilities)[-1, 0])
    return indices.clamp_(max=last_positive)


def draw_without_replacement(
    probabilities: torch.Tensor, n_draws: int, generator: torch.Generator
) -> torch.Tensor:
    """`n_draws` distinct indices in sequential-draw order (Gumbel top-k, Efraimidis-Spirakis).

    The caller guarantees at least `n_draws` items have positive probability.
    """
    uniforms = torch.rand(probabilities.shape[0], dtype=torch.float64, generator=generator)
    gumbel = -torch.log(-torch.log(uniforms.clamp_min(torch.finfo(torch.float64).tiny)))
    keys = torch.log(probabilities) + gumbel
    return torch.topk(keys, n_draws).indices
