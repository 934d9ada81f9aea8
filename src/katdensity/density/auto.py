"""Pick the exact or the approximate search from the size of the set and the device."""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.distributed as dist

from katdensity._validate import check_int
from katdensity.density.estimator import KNNDensityEstimator
from katdensity.density.formula import DEFAULT_SMOOTHING
from katdensity.knn._rows import RowSource, as_source, in_memory
from katdensity.knn.approx import approx_knn
from katdensity.knn.exact import search_rows
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
    if dist.is_available() and dist.is_initialized():
        budget *= dist.get_world_size()
    return "exact" if n * n * dim <= budget else "approx"


class AutoKNNDensity(KNNDensityEstimator):
    """Exact kNN density for sets small enough to search exactly, approximate beyond.

    The choice (logged at INFO) is made per call from `N`, `D` and the device by
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
    """

    def __init__(
        self,
        k: int = 10,
        metric: Metric = "cosine",
        *,
        device: str | torch.device | None = None,
        seed: int = 0,
        intrinsic_dim: float | None = None,
        center: bool | Literal["auto"] = "auto",
        smoothing: int = DEFAULT_SMOOTHING,
        progress: bool | None = None,
        distributed: bool | None = None,
    ) -> None:
        super().__init__(k, metric, intrinsic_dim=intrinsic_dim, center=center, smoothing=smoothing)
        self.progress = progress
        self.distributed = distributed
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.seed = check_int("seed", seed)

    def _neighbors(self, points: torch.Tensor | RowSource) -> Neighbors:
        n, dim = (points.n, points.dim) if isinstance(points, RowSource) else points.shape
        search = choose_search(n, dim, self.device)
        logger.info("auto: %s kNN for N=%d, D=%d on %s", search, n, dim, self.device)
        if search == "exact":
            found = search_rows(
                as_source(points, normalize=self.metric == "cosine", device=self.device),
                self.k,
                metric=self.metric,
                precision="auto",
                memory_budget_bytes=256 * 2**20,
                progress=self.progress,
                distributed=self.distributed,
            )
            return Neighbors(found.distances.cpu(), found.indices.cpu(), self.metric)
        if isinstance(points, RowSource):
            logger.warning(
                "auto: the approximate search reads all %d rows into memory; for a file "
                "bigger than memory use the streamed exact search (ExactKNNDensity, "
                "--estimator exact)",
                n,
            )
        return approx_knn(
            in_memory(points, progress=self.progress),
            self.k,
            metric=self.metric,
            seed=self.seed,
            progress=self.progress,
        )
