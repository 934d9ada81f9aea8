"""The one kNN density formula shared by every estimator, and its intrinsic dimension.

For a point whose k-th neighbour lies at radius `r`, among `N` points on a manifold of
intrinsic dimension `d`, the k-NN estimate of the density is

    p = k / (N * V_d * r^d),    V_d = pi^(d/2) / Gamma(d/2 + 1)

(Loftsgaarden & Quesenberry, 1965). When rows repeat, the search sees each distinct value
once and a neighbour held by `m` rows counts `m` times: `r` is the radius at which the
neighbours' rows first add up to `k` and `k` becomes the count `c >= k` inside it,
`p = c / (N * V_d * r^d)`. A prompt whose nearest neighbours are repeated many times (a
small group of repeated prompts) is then dense, as it is, rather than looking past them to
the next group. The exponent `d` is what makes the weights work: raw
distances between sentence embeddings vary by ~10% across a corpus, so `1/r` is almost
uniform, while `r^-d` with the manifold's dimension turns the same spread into the density
differences that are really there. `d` is estimated from the same neighbour distances with
the Levina-Bickel maximum-likelihood estimator, averaged as MacKay & Ghahramani suggest.

Near-duplicate families are loose clouds in a sentence-embedding space: most rewrites of a
prompt lie close together, but a few (a long prefix, a typo in a key word) sit as far from
the rest as ordinary prompts sit from each other, and their own k-th radius looks ordinary.
Their nearest neighbours are still the family's members. Smoothing the log-density over the
graph, each point averaged with its `SMOOTHING_WIDTH` nearest neighbours `smoothing` times,
lets those stragglers inherit the family's density, while between ordinary prompts, whose
neighbours are ordinary too, it evens out the estimate. The default is no smoothing: the
default weighting finds families on the neighbour graph and caps them
(`katdensity.density.modes`), and smoothing would cost the diversity gain on plain text.
"""

from __future__ import annotations

import logging
import math

import torch

from katdensity._validate import check_int
from katdensity.errors import InvalidInputError
from katdensity.knn.neighbors import Neighbors

__all__ = [
    "DEFAULT_K",
    "DEFAULT_SMOOTHING",
    "SMOOTHING_WIDTH",
    "knn_log_density",
    "levina_bickel_dim",
    "neighbor_radii",
    "smooth_over_neighbors",
]

logger = logging.getLogger(__name__)

# A k-th neighbour closer than this fraction of the median radius is treated as lying at it,
# so exact duplicates (radius 0) get a large but finite density.
_MIN_RADIUS_FRACTION = 1e-3
# Each smoothing step averages a point with this many of its nearest neighbours.
SMOOTHING_WIDTH = 5
# Smoothing steps of the default estimators: none, since the mode cap treats families
# (benchmarks/bench_density.py chose it).
DEFAULT_SMOOTHING = 0
# Neighbours per point of the default estimators: the density uses the k-th one's distance.
DEFAULT_K = 10


def neighbor_radii(neighbors: Neighbors) -> torch.Tensor:
    """Neighbour distances as float64 Euclidean lengths, `(N, k)`.

    Cosine and inner-product distances `1 - s` become chord lengths `sqrt(2 (1 - s))`, the
    Euclidean distance between unit vectors, which scales linearly with the angle.
    """
    distances = neighbors.distances.to(device="cpu", dtype=torch.float64)
    if neighbors.metric == "euclidean":
        return distances
    return torch.sqrt(2.0 * distances.clamp_min(0.0))


def levina_bickel_dim(radii: torch.Tensor) -> float:
    """Maximum-likelihood intrinsic dimension from `(N, k)` ascending neighbour radii.

    Points with a zero radius (duplicates) carry no scale information and are left out.
    Falls back to 1.0, with a warning, when no point has k >= 2 distinct positive radii.
    """
    k = radii.shape[1]
    usable = radii[:, 0] > 0
    if k < 2 or not bool(usable.any()):
        logger.warning("cannot estimate the intrinsic dimension (k < 2 or all duplicates); using 1")
        return 1.0
    r = radii[usable]
    # Per point: 1/m = mean_j log(r_k / r_j), j < k.
    inverse_dims = torch.log(r[:, -1:] / r[:, :-1]).mean(dim=1)
    mean_inverse = float(inverse_dims.mean())
    if mean_inverse <= 0.0:
        logger.warning("neighbour radii carry no scale information; using intrinsic dimension 1")
        return 1.0
    return 1.0 / mean_inverse


def knn_log_density(
    neighbors: Neighbors,
    *,
    intrinsic_dim: float | None = None,
    mass: torch.Tensor | None = None,
    smoothing: int = 0,
) -> tuple[torch.Tensor, float]:
    """Natural-log k-NN density of every point, and the dimension used.

    Args:
        neighbors: the neighbour graph of the `M` distinct points.
        intrinsic_dim: the dimension `d` of the volume law; `None` estimates it with
            [`levina_bickel_dim`][katdensity.density.formula.levina_bickel_dim].
        mass: `(M,)` rows held by each point (copies of a prompt); `None` means one each.
            The sample size `N` is then their sum, and neighbours count by their mass.
        smoothing: how many times the log-density is averaged over each point's nearest
            neighbours (see `smooth_over_neighbors`); 0 leaves the k-NN estimate as it is.

    Returns:
        `(log_density, d)`: a `(M,)` float64 tensor and the dimension used.
    """
    radii = neighbor_radii(neighbors)
    n, k = radii.shape
    count = torch.full((n,), float(k), dtype=torch.float64)
    kth = radii[:, -1]
    if mass is not None:
        weight = mass.to(device="cpu", dtype=torch.float64)
        n = int(weight.sum())
        held = weight[neighbors.indices.to("cpu")].cumsum(dim=1)  # (M, k) rows within r_j
        first = (held >= k).to(torch.int8).argmax(dim=1, keepdim=True)  # held[:, -1] >= k
        count = held.gather(1, first).squeeze(1)
        kth = radii.gather(1, first).squeeze(1)
    if intrinsic_dim is None:
        intrinsic_dim = levina_bickel_dim(radii)
    elif not (math.isfinite(intrinsic_dim) and intrinsic_dim > 0):
        raise InvalidInputError(
            "intrinsic_dim should be a positive number or None, "
            f"but got intrinsic_dim={intrinsic_dim}"
        )
    d = float(intrinsic_dim)
    positive = kth[kth > 0]
    scale = float(positive.median()) if positive.numel() else 1.0
    kth = kth.clamp_min(_MIN_RADIUS_FRACTION * scale)
    log_unit_ball = (d / 2) * math.log(math.pi) - math.lgamma(d / 2 + 1)
    log_density = torch.log(count) - math.log(n) - log_unit_ball - d * torch.log(kth)
    return smooth_over_neighbors(log_density, neighbors, steps=smoothing), d


def smooth_over_neighbors(
    values: torch.Tensor, neighbors: Neighbors, *, steps: int, width: int = SMOOTHING_WIDTH
) -> torch.Tensor:
    """Average each point's value with its `width` nearest neighbours', `steps` times.

    Args:
        values: `(M,)` per-point values, e.g. log-densities.
        neighbors: the `(M, k)` neighbour graph of the same points; `min(width, k)`
            neighbours are used.
        steps: how many times to average; 0 returns `values` unchanged.
        width: neighbours per average.

    Returns:
        `(M,)` float64: `v <- (v_i + sum of v_j over i's nearest neighbours) / (width + 1)`,
            applied `steps` times.
    """
    check_int("smoothing", steps, low=0)
    index = neighbors.indices.to("cpu")[:, : min(width, neighbors.k)]
    smoothed = values.to(torch.float64)
    for _ in range(steps):
        smoothed = (smoothed + smoothed[index].sum(dim=1)) / (index.shape[1] + 1)
    return smoothed
