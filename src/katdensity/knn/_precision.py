"""Which product dtype the exact search should use here: `precision="auto"`.

On CUDA bf16 products are several times faster than fp32 and the search re-scores its
candidates in fp32, so `"auto"` uses bf16 there. CPUs differ: where the cores have bf16
dot-product units (AVX512-BF16, AMX) a bf16 product can beat fp32, elsewhere it runs up to
10x slower, and the capability flags torch reports do not say which. So on CPU `"auto"`
times one search-sized tile product in each dtype, once per process and width, and picks
bf16 only when it wins by a margin large enough to pay for the extra candidates it keeps and
their fp32 re-scoring.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Literal

import torch

__all__ = ["auto_precision"]

logger = logging.getLogger(__name__)

# A bf16 search keeps three times the candidates (k + 2k) and re-scores them in fp32: below
# this product speed-up it is not faster end to end.
MIN_BF16_SPEEDUP = 1.5
# Searches smaller than this many rows take well under a second: not worth a calibration.
MIN_ROWS_TO_CALIBRATE = 20_000
_SIDE = 1024
_REPEATS = 3


def auto_precision(device: torch.device, n: int, dim: int) -> Literal["float32", "bfloat16"]:
    """The scoring dtype `"auto"` stands for: bf16 on CUDA; on CPU bf16 only where it is
    measured to multiply at least `MIN_BF16_SPEEDUP` times faster than fp32."""
    if device.type == "cuda":
        return "bfloat16"
    if device.type != "cpu" or n < MIN_ROWS_TO_CALIBRATE:
        return "float32"
    speedup = bf16_speedup(-(-dim // 64) * 64, torch.get_num_threads())
    return "bfloat16" if speedup >= MIN_BF16_SPEEDUP else "float32"


@functools.cache
def bf16_speedup(dim: int, threads: int) -> float:
    """fp32 time over bf16 time of a `(1024 x dim) @ (dim x 1024)` CPU product (best of 3).

    `threads` is part of the cache key only: the ratio depends on how many cores share it.
    """
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(_SIDE, dim, generator=generator)
    right = torch.randn(_SIDE, dim, generator=generator)
    out = torch.empty(_SIDE, _SIDE)
    fp32 = _best_time(lambda: torch.mm(left, right.T, out=out))
    left_bf16, right_bf16 = left.bfloat16(), right.bfloat16()
    out_bf16 = torch.empty(_SIDE, _SIDE, dtype=torch.bfloat16)
    bf16 = _best_time(lambda: torch.mm(left_bf16, right_bf16.T, out=out_bf16))
    speedup = fp32 / bf16
    logger.info(
        "precision auto: bf16 products %.2fx the speed of fp32 here (D=%d, %d threads)",
        speedup,
        dim,
        threads,
    )
    return speedup


def _best_time(product: Callable[[], object]) -> float:
    product()  # warm-up: thread pool, packing buffers
    best = float("inf")
    for _ in range(_REPEATS):
        start = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - start)
    return best
