"""Rows in groups: the copies of one prompt, or the prompts of one mode, share a label.

The bottom layer of the package: every layer that counts a prompt and its copies as one
(the density, the weights, the subset, the report) uses these, and they use only torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DistinctRows", "first_occurrence", "group_sums", "in_file_order", "regroup"]


@dataclass(frozen=True)
class DistinctRows:
    """`points[first]` are the distinct rows; input row `i` equals distinct row `inverse[i]`."""

    first: torch.Tensor  # (M,) int64: the first input row holding each distinct value
    inverse: torch.Tensor  # (N,) int64
    counts: torch.Tensor  # (M,) int64: copies of each distinct value


def regroup(labels: torch.Tensor) -> DistinctRows:
    """Groups of rows with equal integer labels, numbered in order of first appearance."""
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return in_file_order(inverse, counts)


def in_file_order(inverse: torch.Tensor, counts: torch.Tensor) -> DistinctRows:
    """Groups numbered by their first row, given any numbering `inverse` and its `counts`."""
    # torch.unique numbers groups by sorted key (a hash); renumber them by first row so the
    # distinct rows keep the input's order (sequential reads, ties broken by input index).
    first = first_occurrence(inverse, counts.numel())
    order = torch.argsort(first)
    renumber = torch.empty_like(order)
    renumber[order] = torch.arange(order.numel())
    return DistinctRows(first=first[order], inverse=renumber[inverse], counts=counts[order])


def first_occurrence(inverse: torch.Tensor, n_groups: int) -> torch.Tensor:
    """The first row of each of `n_groups` groups, given each row's group `inverse`."""
    rows = torch.arange(inverse.numel())
    first = torch.full((n_groups,), inverse.numel(), dtype=torch.int64)
    return first.scatter_reduce(0, inverse, rows, reduce="amin")


def group_sums(values: torch.Tensor, labels: torch.Tensor, n_groups: int) -> torch.Tensor:
    """`(n_groups,)` float64: the sum of `values` over the rows of each group."""
    return torch.zeros(n_groups, dtype=torch.float64).index_add_(0, labels, values.double())
