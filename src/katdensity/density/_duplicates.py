"""Exact duplicate rows: found once, so the density treats them as one point of weight m."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "DistinctRows",
    "distinct_rows",
    "fingerprint",
    "first_occurrence",
    "group_by_fingerprint",
    "group_sums",
    "regroup",
]


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
    return _in_file_order(inverse, counts)


def regroup(labels: torch.Tensor) -> DistinctRows:
    """Groups of rows with equal integer labels, numbered in order of first appearance."""
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return _in_file_order(inverse, counts)


def _in_file_order(inverse: torch.Tensor, counts: torch.Tensor) -> DistinctRows:
    # torch.unique numbers groups by sorted key (a hash); renumber them by first row so the
    # distinct rows keep the input's order (sequential reads, ties broken by input index).
    first = first_occurrence(inverse, counts.numel())
    order = torch.argsort(first)
    renumber = torch.empty_like(order)
    renumber[order] = torch.arange(order.numel())
    return DistinctRows(first=first[order], inverse=renumber[inverse], counts=counts[order])


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
        groups = _in_file_order(inverse, counts)
    return groups


def first_occurrence(inverse: torch.Tensor, n_groups: int) -> torch.Tensor:
    """The first row of each of `n_groups` groups, given each row's group `inverse`."""
    rows = torch.arange(inverse.numel())
    first = torch.full((n_groups,), inverse.numel(), dtype=torch.int64)
    return first.scatter_reduce(0, inverse, rows, reduce="amin")


def group_sums(values: torch.Tensor, labels: torch.Tensor, n_groups: int) -> torch.Tensor:
    """`(n_groups,)` float64: the sum of `values` over the rows of each group."""
    return torch.zeros(n_groups, dtype=torch.float64).index_add_(0, labels, values.double())
