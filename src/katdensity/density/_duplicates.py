"""Exact duplicate rows: found once, so the density treats them as one point of weight m."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DistinctRows", "distinct_rows", "fingerprint", "group_by_fingerprint"]


@dataclass(frozen=True)
class DistinctRows:
    """`points[first]` are the distinct rows; input row `i` equals distinct row `inverse[i]`."""

    first: torch.Tensor  # (M,) int64: the first input row holding each distinct value
    inverse: torch.Tensor  # (N,) int64
    counts: torch.Tensor  # (M,) int64: copies of each distinct value


def fingerprint(rows: torch.Tensor) -> torch.Tensor:
    """An int64 hash of each float32 row's bits: equal rows hash equally, others almost never.

    Integer arithmetic wraps around exactly whatever the order of the sum, so a row's hash
    never depends on where it sits (a float projection through BLAS can: its summation
    order varies with the row's position in a block).
    """
    bits = rows.to(device="cpu", dtype=torch.float32).contiguous().view(torch.int32)
    coefficients = torch.randint(
        -(2**62), 2**62, (rows.shape[1],), generator=torch.Generator().manual_seed(0)
    )
    return (bits.to(torch.int64) * coefficients).sum(1)


def group_by_fingerprint(fingerprints: torch.Tensor) -> DistinctRows | None:
    """Group rows by fingerprint; `None` when all differ. Callers confirm the rows are equal."""
    _, inverse, counts = torch.unique(fingerprints, return_inverse=True, return_counts=True)
    if counts.numel() == fingerprints.numel():
        return None
    return DistinctRows(
        first=_first_occurrence(inverse, counts.numel()), inverse=inverse, counts=counts
    )


def distinct_rows(points: torch.Tensor) -> DistinctRows | None:
    """Group identical rows of `points`; `None` when every row is distinct (the common case)."""
    groups = group_by_fingerprint(fingerprint(points))
    if groups is None:
        return None
    cpu_points = points.cpu()
    if not torch.equal(cpu_points, cpu_points[groups.first[groups.inverse]]):
        # Two different rows projected equally: fall back to the exact (slower) row sort.
        _, inverse, counts = torch.unique(
            cpu_points, dim=0, return_inverse=True, return_counts=True
        )
        groups = DistinctRows(
            first=_first_occurrence(inverse, counts.numel()), inverse=inverse, counts=counts
        )
    return groups


def _first_occurrence(inverse: torch.Tensor, n_groups: int) -> torch.Tensor:
    rows = torch.arange(inverse.numel())
    first = torch.full((n_groups,), inverse.numel(), dtype=torch.int64)
    return first.scatter_reduce(0, inverse, rows, reduce="amin")
