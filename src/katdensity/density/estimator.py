"""The shared machinery of kNN density estimators: input checks, centring, the formula."""

from __future__ import annotations

import abc
import logging
import os
from typing import Literal

import numpy as np
import torch

from katdensity._groups import DistinctRows, regroup
from katdensity._progress import progress_bar
from katdensity._validate import as_embeddings, check_choice, check_int, check_real
from katdensity.density._duplicates import distinct_rows, fingerprint, group_by_fingerprint
from katdensity.density.formula import (
    DEFAULT_K,
    DEFAULT_SMOOTHING,
    SMOOTHING_WIDTH,
    knn_log_density,
)
from katdensity.density.result import DensityResult
from katdensity.errors import InvalidInputError
from katdensity.knn._rows import MappedRows, RowSource
from katdensity.knn.neighbors import METRICS, Metric, Neighbors

__all__ = ["KNNDensityEstimator"]

logger = logging.getLogger(__name__)

# center="auto" centres above this norm of the mean unit row (see KNNDensityEstimator).
_ANISOTROPY_THRESHOLD = 0.8
# Bytes of float32 rows read at a time by the streamed pass over a memory-mapped file.
_STREAM_BYTES = 64 * 2**20


def open_npy(path: str | os.PathLike[str]) -> np.memmap:
    """Memory-map an `.npy` file of embeddings read-only."""
    if not os.path.isfile(path) or not str(path).endswith(".npy"):
        raise InvalidInputError(
            f"embeddings given as a path should name an existing .npy file, but got {path}"
        )
    try:
        array = np.load(path, mmap_mode="r")
    except ValueError as error:  # e.g. an array of Python objects, which cannot be mapped
        raise InvalidInputError(f"{path} is not a numeric .npy array ({error})") from None
    if not isinstance(array, np.memmap):
        raise InvalidInputError(f"{path} could not be memory-mapped; load it and pass the array")
    return array


def _confirm_copies(array: np.memmap, duplicates: DistinctRows) -> DistinctRows:
    """Check that rows grouped by hash are equal as the search sees them (float32).

    Only rows in groups of two or more are read. Should two different rows ever share a
    hash, those rows are regrouped exactly by value.
    """
    repeated = (duplicates.counts[duplicates.inverse] > 1).nonzero().squeeze(1)
    rows = repeated.numpy()
    values = torch.from_numpy(np.array(array[rows], dtype=np.float32)) + 0.0
    originals = torch.from_numpy(
        np.array(array[duplicates.first[duplicates.inverse[repeated]].numpy()], dtype=np.float32)
    )
    if torch.equal(values, originals + 0.0):
        return duplicates
    _, exact = torch.unique(values, dim=0, return_inverse=True)
    labels = duplicates.inverse.clone()
    labels[repeated] = duplicates.counts.numel() + exact
    return regroup(labels)


class KNNDensityEstimator(abc.ABC):
    """Base class of the kNN density estimators: subclasses only find the neighbours.

    Validation of the embeddings, the optional centring and the density formula live here,
    once, so every estimator turns the same neighbour graph into the same density.

    Args:
        k: neighbours per point; the density uses the distance to the k-th one.
        metric: `"cosine"`, `"euclidean"` or `"ip"` (see [`Neighbors`][katdensity.Neighbors]).
        intrinsic_dim: the exponent `d` of the volume law `r^d`; `None` (the default)
            estimates it from the neighbour distances (Levina-Bickel).
        center: subtract the mean embedding before searching (cosine and ip re-normalise
            after).
            Pooled hidden states and logits of causal LMs sit in a narrow cone (pairwise
            cosine ~0.99), so cosine neighbours mostly measure the shared direction; centring
            removes it. `"auto"` (the default) centres when the set is anisotropic: when the
            mean of its L2-normalised rows has norm above 0.8 (the average cosine to the common
            direction: about 0.3 for all-MiniLM-L6-v2 sentence embeddings, 0.4-0.6 for a set
            dominated by a few topics, near 1 for causal-LM hidden states). It never centres
            for `"euclidean"`, whose distances do not change under a shift.
        smoothing: times the log-density is averaged over each point and its 5 nearest
            neighbours (default 0, the plain k-NN estimate; see
            [`smooth_over_neighbors`][katdensity.density.formula.smooth_over_neighbors]).
            Steps let the stragglers of a near-duplicate family, whose own k-th neighbour
            looks ordinary, share the family's density, but they also even out the
            differences that diversify a sample; the default weighting caps families with
            [`find_modes`][katdensity.density.modes.find_modes] instead.
    """

    # Progress display of the long stages (`None`: on a terminal for long runs); the
    # subclasses take it as an argument.
    progress: bool | None = None

    def __init__(
        self,
        k: int = DEFAULT_K,
        metric: Metric = "cosine",
        *,
        intrinsic_dim: float | None = None,
        center: bool | Literal["auto"] = "auto",
        smoothing: int = DEFAULT_SMOOTHING,
    ) -> None:
        self.k = check_int("k", k, low=1)
        self.metric: Metric = check_choice("metric", metric, METRICS)  # type: ignore[assignment]
        if intrinsic_dim is not None:
            check_real("intrinsic_dim", intrinsic_dim, low=0.0, low_open=True)
        self.intrinsic_dim = intrinsic_dim
        if not (isinstance(center, bool) or center == "auto"):
            raise InvalidInputError(
                f"center should be True, False or 'auto', but got center={center!r}"
            )
        self.center = center
        self.smoothing = check_int("smoothing", smoothing, low=0)

    def estimate(
        self, embeddings: torch.Tensor | np.ndarray | str | os.PathLike[str]
    ) -> DensityResult:
        """Estimate the log-density at every row of `embeddings`.

        Args:
            embeddings: `(N, D)` tensor or array with more than `k` distinct rows; it is
                not modified. A `numpy.memmap` or the path of an `.npy` file is read in
                blocks instead of loaded (out-of-core; the exact search then streams it,
                see [`exact_knn`][katdensity.exact_knn]).

        Returns:
            The density of each row, the neighbour graph, and the dimension used.
            Identical rows are searched once: each copy gets the neighbours of its value
            (never another copy) and a log-density raised by `log(copies)`, and a
            neighbour's copies count as that many neighbours (see
            [`knn_log_density`][katdensity.density.formula.knn_log_density]).

        Raises:
            InvalidInputError: NaN/inf rows, an empty or 1-D input, `k >=` the number
                of distinct rows, or a path that is not a numeric `.npy` file.
        """
        if isinstance(embeddings, (str, os.PathLike)):
            embeddings = open_npy(embeddings)
        search_rows: torch.Tensor | RowSource
        if isinstance(embeddings, np.memmap):
            search_rows, duplicates, n = self._prepare_mapped(embeddings)
        else:
            search_rows, duplicates, n = self._prepare_in_memory(embeddings)
        n_distinct = n if duplicates is None else duplicates.counts.numel()
        if self.k >= n_distinct:
            points_held = (
                f"points (N={n})"
                if duplicates is None
                else f"distinct points ({n_distinct} of {n} rows)"
            )
            raise InvalidInputError(
                f"k should be smaller than the number of {points_held}, but got k={self.k}; "
                "lower k or pass more points"
            )
        neighbors = self._neighbors(search_rows)
        log_density, dim = knn_log_density(
            neighbors,
            intrinsic_dim=self.intrinsic_dim,
            mass=None if duplicates is None else duplicates.counts,
            smoothing=self.smoothing,
        )
        multiplicity = torch.ones(n, dtype=torch.int64)
        distinct_index = torch.arange(n)
        if duplicates is not None:
            distinct_index = duplicates.inverse
            # m identical prompts are one point of mass m: the density there is m times that
            # of a single copy, so together they weigh what one prompt would at beta=1.
            multiplicity = duplicates.counts[duplicates.inverse]
            log_density = log_density[duplicates.inverse] + torch.log(multiplicity.double())
            neighbors = Neighbors(
                distances=neighbors.distances[duplicates.inverse],
                indices=duplicates.first[neighbors.indices[duplicates.inverse]],
                metric=neighbors.metric,
            )
        logger.info(
            "estimated density of %d points (%d distinct, k=%d, intrinsic dimension %.2f, "
            "smoothed %d times over %d neighbours)",
            n,
            n_distinct,
            self.k,
            dim,
            self.smoothing,
            min(SMOOTHING_WIDTH, self.k),
        )
        return DensityResult(
            log_density=log_density,
            neighbors=neighbors,
            intrinsic_dim=dim,
            multiplicity=multiplicity,
            distinct_index=distinct_index,
        )

    def _prepare_in_memory(
        self, embeddings: torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor, DistinctRows | None, int]:
        points = as_embeddings(embeddings)
        # Copies are found in the input itself: centring and normalising could round two
        # equal rows differently (vectorised reductions depend on a row's position).
        duplicates = distinct_rows(points)
        distinct = points if duplicates is None else points[duplicates.first]
        if self._should_center(points):
            distinct = distinct - points.mean(dim=0, keepdim=True)
            if self.metric == "ip":
                # "ip" promises unit rows; the cosine search normalises by itself.
                distinct = torch.nn.functional.normalize(distinct, dim=1)
        return distinct, duplicates, points.shape[0]

    def _prepare_mapped(self, array: np.memmap) -> tuple[MappedRows, DistinctRows | None, int]:
        """One streamed pass (checks, centre, fingerprints); the rows stay on disk."""
        if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
            raise InvalidInputError(
                f"embeddings should be a 2-D (N, D) array, but got shape {array.shape}"
            )
        n, dim = array.shape
        total = torch.zeros(dim, dtype=torch.float64)
        unit_total = torch.zeros(dim, dtype=torch.float64)
        fingerprints = []
        chunk = max(1, _STREAM_BYTES // (4 * dim))
        starts = range(0, n, chunk)
        bar = progress_bar(
            starts, total=len(starts), progress=self.progress, desc="checking rows", unit="block"
        )
        for start in bar:
            rows = MappedRows(array, normalize=False).block(start, min(n, start + chunk))
            total += rows.sum(0, dtype=torch.float64)
            unit_total += torch.nn.functional.normalize(rows, dim=1).sum(0, dtype=torch.float64)
            fingerprints.append(fingerprint(rows))
        center = self._center_decision(float((unit_total / n).norm()))
        duplicates = group_by_fingerprint(torch.cat(fingerprints))
        if duplicates is not None:
            duplicates = _confirm_copies(array, duplicates)
        source = MappedRows(
            array,
            rows=None if duplicates is None else duplicates.first.numpy(),
            shift=(total / n).float() if center else None,
            normalize=self.metric == "cosine" or (center and self.metric == "ip"),
        )
        return source, duplicates, n

    def _should_center(self, points: torch.Tensor) -> bool:
        if self.metric == "euclidean" or self.center != "auto":
            return self._center_decision(0.0)
        unit_mean = torch.nn.functional.normalize(points, dim=1).mean(dim=0)
        return self._center_decision(float(unit_mean.norm()))

    def _center_decision(self, anisotropy: float) -> bool:
        """Centre or not, given the norm of the mean unit row (used only for "auto")."""
        if self.metric == "euclidean" or self.center is False:
            return False
        if self.center is True:
            return True
        logger.info("anisotropy (norm of the mean unit row) %.3f", anisotropy)
        return anisotropy > _ANISOTROPY_THRESHOLD

    @abc.abstractmethod
    def _neighbors(self, points: torch.Tensor | RowSource) -> Neighbors:
        """The k nearest neighbours of every row of the validated float32 `points`.

        A `RowSource` (rows of a memory-mapped file) is streamed by the exact search;
        other searches read it whole with `katdensity.knn._rows.in_memory`.
        """

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({args})"
