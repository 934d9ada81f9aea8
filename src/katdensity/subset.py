"""Budgeted subset selection: weighted sampling without replacement, offline."""

from __future__ import annotations

import numpy as np
import torch

from katdensity._draws import draw_without_replacement
from katdensity._validate import as_probabilities, check_int
from katdensity.errors import InvalidInputError

__all__ = ["select_subset"]


def select_subset(
    weights: torch.Tensor | np.ndarray, budget: int, *, seed: int = 0
) -> torch.Tensor:
    """Choose `budget` distinct items, each draw with probability proportional to its weight.

    This is sequential weighted sampling without replacement (what
    `numpy.random.choice(N, budget, replace=False, p=weights)` does), computed in one pass
    with Gumbel top-k keys in O(N log budget) and exact for any `N`.

    Args:
        weights: `(N,)` non-negative weights (need not sum to 1), e.g. from
            [`inverse_density_weights`][katdensity.inverse_density_weights].
        budget: how many items to select, at most the number of positive weights.
        seed: the same seed gives the same subset.

    Returns:
        `(budget,)` int64 indices in draw order: every prefix is itself a valid sample of
            that size. Sort it for row order.

    Raises:
        InvalidInputError: bad weights, or a budget above the number of positive weights.
    """
    probabilities = as_probabilities(weights)
    budget = check_int("budget", budget, low=0)
    available = int((probabilities > 0).sum())
    if budget > available:
        raise InvalidInputError(
            f"budget should be at most the number of items with positive weight ({available}), "
            f"but got budget={budget}"
        )
    check_int("seed", seed)
    generator = torch.Generator().manual_seed(seed)
    return draw_without_replacement(probabilities, budget, generator)
