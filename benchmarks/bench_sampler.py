"""Drawing indices: InverseDensitySampler vs torch's WeightedRandomSampler, and budgeted
subset selection: select_subset vs numpy.random.choice(replace=False, p=...).

Run from the repository root:

    python benchmarks/bench_sampler.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from _report import machine, markdown_table, print_table, write_section
from torch.utils.data import WeightedRandomSampler

from katdensity import InverseDensitySampler, select_subset


def timed(run: Callable[..., object], *args: object, **kwargs: object) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        run(*args, **kwargs)
    except RuntimeError as error:
        return float("nan"), str(error).splitlines()[0][:60]
    return time.perf_counter() - start, ""


def drain(sampler: Iterable[int]) -> list[int]:
    return list(sampler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    header = ["task", "N", "draws", "katdensity (s)", "anchor", "anchor (s)", "note"]
    rows = []
    for n in (1_000_000, 2**24 + 1):
        weights = torch.rand(n, generator=generator, dtype=torch.float64)
        draws = 1_000_000
        ours, _ = timed(drain, InverseDensitySampler(weights, num_samples=draws))
        theirs, note = timed(drain, WeightedRandomSampler(weights, num_samples=draws))
        rows.append(
            [
                "draw with replacement",
                f"{n:,}",
                f"{draws:,}",
                f"{ours:.2f}",
                "WeightedRandomSampler",
                f"{theirs:.2f}",
                note or "-",
            ]
        )
    for n, budget in ((100_000, 10_000), (1_000_000, 100_000)):
        weights = torch.rand(n, generator=generator, dtype=torch.float64)
        p = (weights / weights.sum()).numpy()
        ours, _ = timed(select_subset, weights, budget, seed=0)
        rng = np.random.default_rng(0)
        theirs, note = timed(rng.choice, n, size=budget, replace=False, p=p)
        rows.append(
            [
                "subset without replacement",
                f"{n:,}",
                f"{budget:,}",
                f"{ours:.3f}",
                "numpy.random.Generator.choice",
                f"{theirs:.3f}",
                note or "-",
            ]
        )
    print_table(header, rows)
    if not args.no_write:
        body = (
            "## Sampling\n\n"
            f"`python benchmarks/bench_sampler.py` on {machine()}. Draws are materialised as a "
            "Python list of ints, as a DataLoader consumes them.\n\n" + markdown_table(header, rows)
        )
        write_section("sampler", body)


if __name__ == "__main__":
    main()
