"""Pick the exact or the approximate search from the size of the set and the device."""

from __future__ import annotations

import logging
from typing import Literal

import torch

from katdensity._distributed import process_group
from katdensity.density.approx import ApproxKNNDensity
from katdensity.density.estimator import KNNDensityEstimator
from katdensity.density.exact import ExactKNNDensity
from katdensity.density.formula import DEFAULT_K, DEFAULT_SMOOTHING
from katdensity.knn._rows import RowSource
from katdensity.knn.exact import DEFAULT_MEMORY_BUDGET_BYTES, Precision
from katdensity.knn.neighbors import Metric, Neighbors

__all__ = ["AutoKNNDensity", "choose_search"]

logger = logging.getLogger(__name__)

# Work N^2 * D up to which the exact search is preferred: on 2 CPU cores N=100k at D=384
# takes about a minute exactly, when NN-descent needs ~40 s of JIT compilation alone (see
# benchmarks/RESULTS.md); a GPU multiplies three orders of magnitude faster.
_EXACT_WORK_CPU = 100_000**2 * 384
_EXACT_WORK_CUDA = 3_000_000**2 * 768


def choose_search(n: int, dim: int, device: torch.device) -> Literal["exact", "approx"]:
    """`"exact"` while `N^2 * D` is below the device's budget, else `"approx"`.

    Under `torch.distributed` the exact search is shared, so the budget grows with the
    number of processes.
    """
    budget = _EXACT_WORK_CUDA if device.type == "cuda" else _EXACT_WORK_CPU
    budget *= process_group()[0]
    return "exact" if n * n * dim <= budget else "approx"


class AutoKNNDensity(KNNDensityEstimator):
    """Exact kNN density for sets small enough to search exactly, approximate beyond.

    It holds an [`ExactKNNDensity`][katdensity.ExactKNNDensity] (`exact`) and an
    [`ApproxKNNDensity`][katdensity.ApproxKNNDensity] (`approx`) built from its options, and
    searches with one of them. The choice (logged at INFO) is made per call from the number
    of distinct points `N`, `D` and the device by
    [`choose_search`][katdensity.density.auto.choose_search]: on CPU exact up to about
    100,000 points at D=384, on CUDA up to about 3 million at D=768.

    Args:
        k: neighbours per point.
        metric: `"cosine"` (default), `"euclidean"` or `"ip"`.
        device: device of the exact search; `None` uses CUDA when available.
        seed: random state of the approximate search.
        intrinsic_dim: exponent of the volume law; `None` estimates it.
        center: subtract the mean embedding first; `"auto"` for anisotropic sets.
        smoothing: log-density smoothing steps over the neighbour graph (default 0, the
            plain k-NN estimate).
        progress: progress bar of the exact search, or pynndescent's progress lines for
            the approximate one; `None` shows them on a terminal for long searches.
        distributed: share the exact search among the `torch.distributed` processes, as
            in [`ExactKNNDensity`][katdensity.ExactKNNDensity]; `False` searches alone.
        precision: arithmetic of the exact search (`"auto"`, `"float32"`, `"bfloat16"`,
            `"int8"`), as in [`ExactKNNDensity`][katdensity.ExactKNNDensity].
        memory_budget_bytes: bytes for one score tile of the exact search and its scratch.
        n_neighbors: NN-descent graph width of the approximate search; `None` derives it
            from `N` and `k` as in [`ApproxKNNDensity`][katdensity.ApproxKNNDensity].
        n_jobs: pynndescent threads of the approximate search (`-1` all cores).

    Attributes:
        exact: the exact estimator searched with up to the budget.
        approx: the approximate estimator searched with beyond it.
    """

    def __init__(
        self,
        k: int = DEFAULT_K,
        metric: Metric = "cosine",
        *,
        device: str | torch.device | None = None,
        seed: int = 0,
        intrinsic_dim: float | None = None,
        center: bool | Literal["auto"] = "auto",
        smoothing: int = DEFAULT_SMOOTHING,
        progress: bool | None = None,
        distributed: bool | None = None,
        precision: Precision = "auto",
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
        n_neighbors: int | None = None,
        n_jobs: int | None = -1,
    ) -> None:
        super().__init__(k, metric, intrinsic_dim=intrinsic_dim, center=center, smoothing=smoothing)
        self.progress = progress
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        # NOTE [ Two searches, one density ]: each held estimator gets every option it takes,
        # so it is this estimator with its search fixed; `estimate` uses only its search,
        # while centring, duplicates and the formula run here once, whichever is chosen.
        self.exact = ExactKNNDensity(
            k,
            metric,
            device=self.device,
            intrinsic_dim=intrinsic_dim,
            center=center,
            smoothing=smoothing,
            precision=precision,
            memory_budget_bytes=memory_budget_bytes,
            progress=progress,
            distributed=distributed,
        )
        self.approx = ApproxKNNDensity(
            k,
            metric,
            n_neighbors=n_neighbors,
            seed=seed,
            n_jobs=n_jobs,
            intrinsic_dim=intrinsic_dim,
            center=center,
            smoothing=smoothing,
            progress=progress,
        )

    def _neighbors(self, points: torch.Tensor | RowSource) -> Neighbors:
        n, dim = (points.n, points.dim) if isinstance(points, RowSource) else points.shape
        search = choose_search(n, dim, self.device)
        logger.info("auto: %s kNN for N=%d, D=%d on %s", search, n, dim, self.device)
        if search == "exact":
            return self.exact._neighbors(points)
        if isinstance(points, RowSource):
            logger.warning(
                "auto: the approximate search reads all %d rows into memory; for a file "
                "bigger than memory use the streamed exact search (ExactKNNDensity, "
                "--estimator exact)",
                n,
            )
        return self.approx._neighbors(points)
