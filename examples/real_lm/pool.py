"""Pool batches of `python -m examples.real_lm` run in separate sittings into one report.

A CPU batch holds two seeds; each seed pairs the arms (the same TRL seed), so batches of
other seeds are independent draws of the same comparison. Pooled, their seed pairs give
one estimate per comparison with the standard error from the spread over all seeds and
the same two-sided 5% t test a batch report applies (`examples.real_lm.report`). Each
batch's numbers are read from the JSON its run wrote beside its report; batches of
different settings are refused, as is a seed that two batches both hold.

    python -m examples.real_lm.pool examples/results/real_lm/RESULTS-seeds*.json \\
        --out examples/results/real_lm/RESULTS.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from examples.real_lm.report import Batch, load_batch, merge, write_report


def main(argv: list[str] | None = None) -> Batch:
    parser = argparse.ArgumentParser(
        prog="python -m examples.real_lm.pool",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "batches", nargs="+", type=Path, help="the .json files written beside batch reports"
    )
    parser.add_argument("--out", type=Path, required=True, help="the pooled report (Markdown)")
    args = parser.parse_args(argv)
    if len(set(map(Path.resolve, args.batches))) != len(args.batches):
        parser.error("a batch is given twice: its seeds would count twice")
    try:
        pooled = merge([load_batch(path) for path in args.batches])
    except ValueError as error:
        parser.error(str(error))
    note = f": {len(args.batches)} batches pooled by `examples.real_lm.pool`"
    write_report(args.out, pooled, title_note=note)
    print(f"wrote {args.out}: {len(pooled.seeds)} seeds from {len(args.batches)} batches")
    return pooled


if __name__ == "__main__":
    main()
