"""Exact duplicate rows: found once, so the density treats them as one point of weight m."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DistinctRows", "distinct_rows"]


@dataclass(frozen=True)
class DistinctRows:
    """`points[first]` are the distinct rows; input row `i` equals distinct row `inverse[i]`."""

    first: torch.Tensor  # (M,) int64: the first input row holding each distinct value
    inverse: torch.Tensor  # (N,) int64
    counts: torch.Tensor  # (M,) int64: copies of each distinct value


def distinct_rows(points: torch.Tensor) -> DistinctRows | None:
    """Group identical rows of `points`; `None` when every row is distinct (the common case)."""
    n = points.shape[0]
    # A random projection in float64 separates distinct rows; equal rows project equally.
    direction = torch.randn(
        points.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    fingerprint = points.to(device="cpu", dtype=torch.float64) @ direction
    _, inverse, counts = torch.unique(fingerprint, return_inverse=True, return_counts=True)
    if counts.numel() == n:
        return None
    cpu_points = points.cpu()
    first = _first_occurrence(inverse, counts.numel())
    if not torch.equal(cpu_points, cpu_points[first[inverse]]):
        # Two different rows projected equally: fall back to the exact (slower) row sort.
        _, inverse, counts = torch.unique(
            cpu_points, dim=0, return_inverse=True, return_counts=True
        )
        first = _first_occurrence(inverse, counts.numel())
    return DistinctRows(first=first, inverse=inverse, counts=counts)


def _first_occurrence(inverse: torch.Tensor, n_groups: int) -> torch.Tensor:
    rows = torch.arange(inverse.numel())
    first = torch.full((n_groups,), inverse.numel(), dtype=torch.int64)
    return first.scatter_reduce(0, inverse, rows, reduce="amin")
