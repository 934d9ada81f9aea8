"""Which product dtype the exact search should use here: `precision="auto"`.

On CUDA bf16 products are several times faster than fp32 and the search re-scores its
candidates in fp32, so `"auto"` uses bf16 there. CPUs differ: where the cores have bf16
dot-product units (AVX512-BF16, AMX) a bf16 product can beat fp32, and where they have int8
ones (AVX512-VNNI, AVX-VNNI, AMX) an int8 product can beat both; elsewhere either runs up to
100x slower, and the capability flags torch reports do not say which. So on CPU `"auto"`
times one search-sized tile product in each dtype, once per process and width, and picks
the fastest reduced precision only when it beats fp32 by a margin large enough to pay for
the extra candidates it keeps and their fp32 re-scoring.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Literal

import torch

__all__ = ["auto_precision", "product_speedups"]

logger = logging.getLogger(__name__)

ScoringPrecision = Literal["float32", "bfloat16", "int8"]

# A reduced-precision search keeps three times the candidates (k + 2k) and re-scores them in
# fp32: below this product speed-up it is not faster end to end.
MIN_SPEEDUP = 1.5
# Searches smaller than this many rows take well under a second: not worth a calibration.
MIN_ROWS_TO_CALIBRATE = 20_000
_SIDE = 1024
_REPEATS = 3


def auto_precision(device: torch.device, n: int, dim: int) -> ScoringPrecision:
    """The scoring dtype `"auto"` stands for: bf16 on CUDA; on CPU the fastest of bf16 and
    int8 where it is measured to multiply at least `MIN_SPEEDUP` times faster than fp32."""
    if device.type == "cuda":
        return "bfloat16"
    if device.type != "cpu" or n < MIN_ROWS_TO_CALIBRATE:
        return "float32"
    speedups = product_speedups(-(-dim // 64) * 64, torch.get_num_threads())
    fastest = max(speedups, key=speedups.__getitem__)
    return fastest if speedups[fastest] >= MIN_SPEEDUP else "float32"


@functools.cache
def product_speedups(dim: int, threads: int) -> dict[ScoringPrecision, float]:
    """fp32 time over bf16 (int8) time of a `(1024 x dim) @ (dim x 1024)` CPU product.

    Each is the best of 3. `threads` is part of the cache key only: the ratio depends on
    how many cores share it. A dtype this torch build cannot multiply counts as 0.
    """
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(_SIDE, dim, generator=generator)
    right = torch.randn(_SIDE, dim, generator=generator)
    out = torch.empty(_SIDE, _SIDE)
    fp32 = _best_time(lambda: torch.mm(left, right.T, out=out))
    left_bf16, right_bf16 = left.bfloat16(), right.bfloat16()
    out_bf16 = torch.empty(_SIDE, _SIDE, dtype=torch.bfloat16)
    speedups: dict[ScoringPrecision, float] = {
        "bfloat16": fp32 / _best_time(lambda: torch.mm(left_bf16, right_bf16.T, out=out_bf16))
    }
    left_int8, right_int8 = (left * 30).to(torch.int8), (right * 30).to(torch.int8)
    out_int32 = torch.empty(_SIDE, _SIDE, dtype=torch.int32)
    try:
        int8 = _best_time(lambda: torch._int_mm(left_int8, right_int8.T, out=out_int32))
    except RuntimeError:  # no int8 product kernel in this build
        int8 = float("inf")
    speedups["int8"] = fp32 / int8
    logger.info(
        "precision auto: bf16 products %.2fx, int8 products %.2fx the speed of fp32 here "
        "(D=%d, %d threads)",
        speedups["bfloat16"],
        speedups["int8"],
        dim,
        threads,
    )
    return speedups


def _best_time(product: Callable[[], object]) -> float:
    product()  # warm-up: thread pool, packing buffers
    best = float("inf")
    for _ in range(_REPEATS):
        start = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - start)
    return best
