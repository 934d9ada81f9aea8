"""Exact duplicate rows: found once, so the density treats them as one point of weight m."""

from __future__ import annotations

import torch

from katdensity._groups import DistinctRows, in_file_order

__all__ = ["distinct_rows", "fingerprint", "group_by_fingerprint"]


def fingerprint(rows: torch.Tensor) -> torch.Tensor:
    """An int64 hash of each float32 row's bits: equal rows hash equally, others almost never.

    Integer arithmetic wraps around exactly whatever the order of the sum, so a row's hash
    never depends on where it sits (a float projection through BLAS can: its summation
    order varies with the row's position in a block).
    """
    # Adding +0.0 turns -0.0 into +0.0, so the two zeros (equal as floats) hash alike.
    bits = (rows.to(device="cpu", dtype=torch.float32) + 0.0).contiguous().view(torch.int32)
    coefficients = torch.randint(
        -(2**62), 2**62, (rows.shape[1],), generator=torch.Generator().manual_seed(0)
    )
    return (bits.to(torch.int64) * coefficients).sum(1)


def group_by_fingerprint(fingerprints: torch.Tensor) -> DistinctRows | None:
    """Group rows by fingerprint; `None` when all differ. Callers confirm the rows are equal."""
    _, inverse, counts = torch.unique(fingerprints, return_inverse=True, return_counts=True)
    if counts.numel() == fingerprints.numel():
        return None
    return in_file_order(inverse, counts)


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
        groups = in_file_order(inverse, counts)
    return groups
