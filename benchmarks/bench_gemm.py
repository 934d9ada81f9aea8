"""Matrix-product throughput by dtype: what a reduced-precision candidate pass could gain here.

The exact search spends most of its time in tile products. A bf16, fp16 or int8 candidate
pass only pays where the CPU (or GPU) multiplies those types faster than fp32; this script
measures one search-sized tile product, (4096 x D) @ (D x 4096), in each dtype, and the time
the fp32 products of a symmetric self-search alone would take at N=50,000. Run from the
repository root:

    python benchmarks/bench_gemm.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from _report import cpu_kind, machine, markdown_table, print_table, write_section

_SIDE = 4096


def _seconds(product: Callable[[], object], repeats: int) -> float:
    product()  # warm-up: thread pools, packing buffers
    start = time.perf_counter()
    for _ in range(repeats):
        product()
    return (time.perf_counter() - start) / repeats


def _products(dim: int) -> dict[str, Callable[[], object]]:
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(_SIDE, dim, generator=generator)
    right = torch.randn(_SIDE, dim, generator=generator)
    out = torch.empty(_SIDE, _SIDE)
    out_numpy = out.numpy()
    left_bf16, right_bf16 = left.bfloat16(), right.bfloat16()
    left_fp16, right_fp16 = left.half(), right.half()
    left_int8 = (left.clamp(-3, 3) * 42).to(torch.int8)
    right_int8_t = (right.clamp(-3, 3) * 42).to(torch.int8).T.contiguous()  # (D, side)
    # Every product writes into a buffer made once, as the search does: a fresh output per
    # call would time its page faults too (a third of a bf16 product at this size).
    out_bf16 = torch.empty(_SIDE, _SIDE, dtype=torch.bfloat16)
    out_fp16 = torch.empty(_SIDE, _SIDE, dtype=torch.float16)
    out_int32 = torch.empty(_SIDE, _SIDE, dtype=torch.int32)
    return {
        "fp32 torch.mm (the search's)": lambda: torch.mm(left, right.T, out=out),
        "fp32 numpy.matmul": lambda: np.matmul(left.numpy(), right.numpy().T, out=out_numpy),
        "bf16 torch.mm (the search's)": lambda: torch.mm(left_bf16, right_bf16.T, out=out_bf16),
        "fp16 torch.mm": lambda: torch.mm(left_fp16, right_fp16.T, out=out_fp16),
        "int8 torch._int_mm": lambda: torch._int_mm(left_int8, right_int8_t, out=out_int32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=384, help="inner dimension (default 384)")
    parser.add_argument("--n", type=int, default=50_000, help="N for the self-search estimate")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()

    flops = 2 * _SIDE * _SIDE * args.dim
    half_search_flops = args.n * args.n * args.dim  # N^2 / 2 scores, 2 flops per term
    header = ["product", "time (ms)", "GFLOP/s", f"half self-search N={args.n:,} (s)"]
    rows = []
    for name, product in _products(args.dim).items():
        seconds = _seconds(product, repeats=3 if name.startswith("fp32") else 1)
        rate = flops / seconds
        rows.append(
            [name, f"{1e3 * seconds:.0f}", f"{rate / 1e9:.1f}", f"{half_search_flops / rate:.1f}"]
        )
    print_table(header, rows)
    if not args.no_write:
        body = (
            f"## Matrix-product throughput by dtype (tile {_SIDE} x {args.dim} x {_SIDE})\n\n"
            f"`python benchmarks/bench_gemm.py --dim {args.dim} --n {args.n}` on {machine()}. "
            "The last column is the time the products alone of a symmetric self-search "
            "(N^2/2 scores) would take at that rate: no search, exact or with a "
            "reduced-precision candidate pass, can be faster than its products.\n\n"
            + markdown_table(header, rows)
        )
        # One section per kind of CPU: the dtype that wins differs between them.
        write_section(f"gemm-{cpu_kind()}", body)


if __name__ == "__main__":
    main()
