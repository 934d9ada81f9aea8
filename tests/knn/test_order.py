from __future__ import annotations

import torch

from katdensity.knn._order import locality_order
from katdensity.knn._rows import TensorRows


def _blobs(
    centres: torch.Tensor, per_blob: int, spread: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows around each centre, shuffled, and the blob each row came from."""
    labels = torch.arange(centres.shape[0]).repeat_interleave(per_blob)
    points = centres[labels] + spread * torch.randn(
        labels.numel(), centres.shape[1], generator=generator
    )
    shuffle = torch.randperm(labels.numel(), generator=generator)
    return points[shuffle], labels[shuffle]


def _blob_changes(order: torch.Tensor, labels: torch.Tensor) -> int:
    """How often consecutive rows of the order come from different blobs."""
    along = labels[order]
    return int((along[1:] != along[:-1]).sum())


def test_is_a_permutation_that_keeps_each_blob_together(generator: torch.Generator) -> None:
    centres = torch.nn.functional.normalize(torch.randn(6, 16, generator=generator), dim=1)
    points, labels = _blobs(centres, 150, 0.02, generator)
    order = locality_order(TensorRows(points, normalize=True), n_clusters=24, spherical=True)
    assert order.dtype == torch.int64
    assert torch.equal(order.sort().values, torch.arange(points.shape[0]))
    # Six separated blobs: the order enters each blob once (a shuffled order changes ~900 times).
    assert _blob_changes(order, labels) == 5


def test_keeps_the_input_order_within_a_cluster(generator: torch.Generator) -> None:
    centres = torch.nn.functional.normalize(torch.randn(3, 8, generator=generator), dim=1)
    points, _ = _blobs(centres, 100, 0.01, generator)
    order = locality_order(TensorRows(points, normalize=True), n_clusters=3, spherical=True)
    runs = order.view(3, 100)  # three clusters of 100 rows
    assert bool((runs[:, 1:] > runs[:, :-1]).all())


def test_euclidean_separates_what_directions_cannot(generator: torch.Generator) -> None:
    # Blobs along one direction at different distances: one direction, three positions.
    direction = torch.nn.functional.normalize(torch.randn(1, 8, generator=generator), dim=1)
    centres = direction * torch.tensor([[1.0], [4.0], [9.0]])
    points, labels = _blobs(centres, 120, 0.05, generator)
    order = locality_order(TensorRows(points, normalize=False), n_clusters=12, spherical=False)
    assert _blob_changes(order, labels) == 2


def test_same_rows_same_order(generator: torch.Generator) -> None:
    points = torch.randn(700, 12, generator=generator)
    source = TensorRows(points, normalize=True)
    first = locality_order(source, n_clusters=16, spherical=True)
    second = locality_order(source, n_clusters=16, spherical=True)
    assert torch.equal(first, second)


def test_more_clusters_than_rows_is_fine(generator: torch.Generator) -> None:
    points = torch.randn(5, 4, generator=generator)
    order = locality_order(TensorRows(points, normalize=True), n_clusters=64, spherical=True)
    assert torch.equal(order.sort().values, torch.arange(5))


def test_a_run_keeps_rows_in_their_range(generator: torch.Generator) -> None:
    centres = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=1)
    points, labels = _blobs(centres, 100, 0.02, generator)
    order = locality_order(
        TensorRows(points, normalize=True), n_clusters=8, spherical=True, run=150
    )
    # Rows 0-149, 150-299 and 300-399 are each permuted among themselves...
    for start, stop in ((0, 150), (150, 300), (300, 400)):
        assert torch.equal(order[start:stop].sort().values, torch.arange(start, stop))
    # ...and each range lists its blobs one after another, in the same order.
    assert _blob_changes(order[:150], labels) == 3
    blob_order = [
        labels[order[start:stop]].unique_consecutive().tolist()
        for start, stop in ((0, 150), (150, 300))
    ]
    assert blob_order[0] == blob_order[1]
