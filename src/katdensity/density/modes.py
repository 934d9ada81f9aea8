"""Modes of a prompt set: exact copies and near-duplicates, found on the neighbour graph.

A mode is a set of rows that are one prompt in all but wording: exact copies, and prompts
joined by near-duplicate edges. An edge joins two prompts when each is among the other's
nearest neighbours and they lie closer than `radius_fraction` times the median distance
from a prompt to its nearest neighbour. Requiring both directions and a distance well
below the typical nearest-neighbour distance keeps ordinary prompts of one topic apart, so
chains of merely similar prompts do not join into one mode.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch
from scipy.sparse.csgraph import connected_components

from katdensity._validate import check_real
from katdensity.density._duplicates import first_occurrence, regroup
from katdensity.density.formula import neighbor_radii
from katdensity.density.result import DensityResult

__all__ = ["DEFAULT_RADIUS_FRACTION", "find_modes"]

DEFAULT_RADIUS_FRACTION = 0.7


def find_modes(
    result: DensityResult, *, radius_fraction: float = DEFAULT_RADIUS_FRACTION
) -> torch.Tensor:
    """The mode of every row: its exact copies and mutual near-duplicates share a label.

    Args:
        result: a density estimate; its neighbour graph is used, no new search is made.
        radius_fraction: near-duplicates lie closer than this times the median
            nearest-neighbour distance (default 0.7); smaller is stricter.

    Returns:
        `(N,)` int64 labels, numbered in order of first appearance; a row that is a prompt
            of its own has a label no other row has.

    Example:
        >>> import torch
        >>> from katdensity import ExactKNNDensity
        >>> from katdensity.density.modes import find_modes
        >>> points = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
        >>> points[1] = points[0] + 1e-3  # a near-duplicate of row 0
        >>> points[2] = points[0]  # an exact copy
        >>> labels = find_modes(ExactKNNDensity(k=5).estimate(points))
        >>> labels[:4].tolist(), int(labels.max()) + 1
        ([0, 0, 0, 1], 58)
    """
    fraction = check_real("radius_fraction", radius_fraction, low=0.0, low_open=True)
    n = len(result)
    distinct = torch.arange(n) if result.distinct_index is None else result.distinct_index
    n_distinct = int(distinct.max()) + 1
    # One row per distinct prompt: its first row holds that prompt's neighbours.
    first = first_occurrence(distinct, n_distinct)
    radii = neighbor_radii(result.neighbors)[first]
    neighbour = distinct[result.neighbors.indices.to("cpu")[first]]
    positive = radii[:, 0][radii[:, 0] > 0]
    threshold = fraction * (float(positive.median()) if positive.numel() else 0.0)
    rows, columns = torch.nonzero(radii < threshold, as_tuple=True)
    targets = neighbour[rows, columns]
    edges = scipy.sparse.coo_matrix(
        (np.ones(rows.numel()), (rows.numpy(), targets.numpy())), shape=(n_distinct, n_distinct)
    ).tocsr()
    mutual = edges.multiply(edges.T)
    _, components = connected_components(mutual, directed=False)
    labels = torch.from_numpy(components.astype(np.int64))[distinct]
    return regroup(labels).inverse
