"""Budgeted subset selection: weighted sampling without replacement, offline."""

from __future__ import annotations

import numpy as np
import torch

from katdensity._draws import draw_without_replacement
from katdensity._groups import first_occurrence, group_sums
from katdensity._validate import as_groups, as_probabilities, check_int
from katdensity.errors import InvalidInputError

__all__ = ["select_subset"]


def select_subset(
    weights: torch.Tensor | np.ndarray,
    budget: int,
    *,
    seed: int = 0,
    groups: torch.Tensor | np.ndarray | None = None,
    copies: bool = False,
) -> torch.Tensor:
    """Choose `budget` distinct prompts, each draw with probability proportional to its weight.

    This is sequential weighted sampling without replacement (what
    `numpy.random.choice(N, budget, replace=False, p=weights)` does), computed in one pass
    with Gumbel top-k keys in O(N log budget) and exact for any `N`.

    With `groups`, a prompt and its exact copies are one item, drawn with their weights
    together and returned once (as its first row): a budget spent on 30 copies of one
    prompt would be wasted. `copies=True` draws rows instead, copies included.

    Args:
        weights: `(N,)` non-negative weights (need not sum to 1), e.g. from
            [`inverse_density_weights`][katdensity.inverse_density_weights].
        budget: how many prompts to select, at most the number with positive weight.
        seed: the same seed gives the same subset.
        groups: `(N,)` integer labels, equal for the copies of one prompt (e.g.
            `DensityResult.distinct_index`); `None` treats every row as its own prompt.
        copies: with `groups`, draw rows (copies may then be chosen several times).

    Returns:
        `(budget,)` int64 row indices in draw order: every prefix is itself a valid sample of
            that size. Sort it for row order.

    Raises:
        InvalidInputError: bad weights or groups, or a budget above the number of prompts
            with positive weight.

    Example:
        >>> import torch
        >>> from katdensity import select_subset
        >>> weights = torch.tensor([1.0, 1.0, 1.0, 1.0])  # rows 0-2: one prompt, three times
        >>> sorted(select_subset(weights, 2, groups=[0, 0, 0, 1]).tolist())
        [0, 3]
    """
    probabilities = as_probabilities(weights)
    budget = check_int("budget", budget, low=0)
    check_int("seed", seed)
    if not isinstance(copies, bool):
        raise InvalidInputError(f"copies should be a bool, but got copies={copies!r}")
    first_rows = None
    if groups is not None and not copies:
        labels, n_prompts = as_groups(groups, probabilities.shape[0])
        first_rows = first_occurrence(labels, n_prompts)
        probabilities = group_sums(probabilities, labels, n_prompts)
    available = int((probabilities > 0).sum())
    if budget > available:
        what = "items" if first_rows is None else "distinct prompts"
        raise InvalidInputError(
            f"budget should be at most the number of {what} with positive weight "
            f"({available}), but got budget={budget}"
        )
    generator = torch.Generator().manual_seed(seed)
    chosen = draw_without_replacement(probabilities, budget, generator)
    return chosen if first_rows is None else first_rows[chosen]
