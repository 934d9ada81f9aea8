"""Pool the primary endpoint of several `examples.compare` reports over all their base models.

Each report's per-base rows (the `primary` table) are paired estimates of density minus
uniform, one per base model. Reports from different machines, CPU kernels or `--bases`
hold different base models, so their rows are independent draws of the same quantity:
pooled, they give one estimate with the standard error from the spread over all bases and
the same two-sided 5% t test that `compare` applies to one report.

    python -m examples.pool examples/RESULTS.md examples/RESULTS-avx2.md

Only pool reports of distinct base models: the same base seed on the same machine and
kernels trains the same model twice.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from examples.compare import (
    MAX_BASES,
    PRIMARY,
    bases_needed,
    detectable,
    fmt,
    pooled,
    verdict,
)

_START, _END = "<!-- --8<-- [start:primary] -->", "<!-- --8<-- [end:primary] -->"


class ReportError(ValueError):
    """A file that is not a report written by `examples.compare`."""


def per_base_estimates(text: str, name: str = "report") -> list[float]:
    """The `density − uniform` estimate of every base row of a report's primary table."""
    if _START not in text or _END not in text:
        raise ReportError(f"{name}: no primary table; pass a RESULTS.md written by compare")
    table = text.split(_START, 1)[1].split(_END, 1)[0]
    estimates = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].isdigit():
            estimates.append(float(cells[4].split("±")[0]))
    if not estimates:
        raise ReportError(f"{name}: the primary table has no per-base rows")
    return estimates


def main(argv: list[str] | None = None) -> tuple[float, float]:
    parser = argparse.ArgumentParser(
        prog="python -m examples.pool",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reports", nargs="+", type=Path, help="RESULTS.md files of compare")
    args = parser.parse_args(argv)
    if len(set(map(Path.resolve, args.reports))) != len(args.reports):
        parser.error("a report is given twice: its base models would count twice")
    per_report = {}
    for path in args.reports:
        try:
            per_report[path] = per_base_estimates(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, ReportError) as error:
            parser.error(str(error))
    print("| report | bases | density − uniform |\n|---|---|---|")
    for path, estimates in per_report.items():
        print(f"| {path} | {len(estimates)} | {fmt(*pooled(estimates))} |")
    everything = [e for estimates in per_report.values() for e in estimates]
    mean, se = pooled(everything)
    n = len(everything)
    print(f"| pooled | {n} | **{fmt(mean, se)}** |\n")
    needed = bases_needed(mean, se * math.sqrt(n))
    print(
        f"{PRIMARY[1]}: {verdict(mean, se, n, PRIMARY[2])}; minimal detectable "
        f"{detectable(se, n):.3f}; an effect of the observed size needs about "
        f"{needed if needed is not None else f'more than {MAX_BASES}'} base models."
    )
    return mean, se


if __name__ == "__main__":
    main()
