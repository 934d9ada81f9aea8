"""The `katdensity` command line (also `python -m katdensity`)."""

from __future__ import annotations

import argparse
import sys

from katdensity import __version__
from katdensity.errors import KatDensityError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="katdensity",
        description="Inverse-density prompt sampling for RL fine-tuning.",
    )
    parser.add_argument("--version", action="version", version=f"katdensity {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="compare uniform and inverse-density sampling on bundled synthetic data",
        description="Build a synthetic prompt space (Zipf-sized topics plus near-duplicate "
        "modes) and print each group's share of a uniform and of an inverse-density sample.",
        epilog="example: katdensity demo --beta 0.5",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    demo.add_argument("--k", type=int, default=10, help="neighbours for the density (default 10)")
    demo.add_argument("--beta", type=float, default=1.0, help="weighting strength (default 1.0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 on bad input)."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from katdensity.demo import demo_report

            print(demo_report(seed=args.seed, k=args.k, beta=args.beta))
    except KatDensityError as error:
        if args.debug:
            raise
        print(f"katdensity: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
