"""The `katdensity` command line (also `python -m katdensity`).

Every subcommand prints one line on stderr and exits with status 2 on bad input (no
traceback; `--debug` shows it), and writes its outputs atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys

from katdensity import __version__
from katdensity.cli import commands, tools
from katdensity.demo import DEFAULT_SAMPLE_SIZE
from katdensity.density.formula import DEFAULT_K, DEFAULT_SMOOTHING, SMOOTHING_WIDTH
from katdensity.errors import KatDensityError
from katdensity.viz import DEFAULT_MAX_POINTS
from katdensity.weights import DEFAULT_BETA, DEFAULT_MAX_WEIGHT_RATIO, DEFAULT_MIN_ESS_RATIO

__all__ = ["main"]


def _add_smoothing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoothing",
        type=int,
        help=f"times the log-density is averaged over each prompt's {SMOOTHING_WIDTH} nearest "
        f"neighbours (default {DEFAULT_SMOOTHING}, the plain k-NN estimate; more to suppress "
        "near-duplicate families further)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="katdensity",
        description="Inverse-density prompt sampling for RL fine-tuning.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="pipeline: katdensity prompts -> embed -> weights -> sample\n"
        "inspect:  katdensity neighbors | diversity | viz",
    )
    parser.add_argument("--version", action="version", version=f"katdensity {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log messages")
    # The same two switches after the subcommand; SUPPRESS keeps a value given before it.
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="tracebacks"
    )
    shared.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no bars")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=f"example:\n  {example}",
            parents=[shared],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    demo = command(
        "demo",
        "compare uniform and inverse-density sampling on bundled generated prompts",
        "katdensity demo --out katdensity-demo --beta 0.5",
    )
    demo.add_argument(
        "--out",
        default="katdensity-demo",
        help="folder for prompts.jsonl, report.md, view.json, view.html (default katdensity-demo)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the prompts (default 0)")
    demo.add_argument(
        "--k", type=int, default=DEFAULT_K, help="neighbours for the density (default %(default)s)"
    )
    demo.add_argument(
        "--beta", type=float, default=DEFAULT_BETA, help="weighting strength (default %(default)s)"
    )
    demo.add_argument(
        "--sample-size",
        type=int,
        default=DEFAULT_SAMPLE_SIZE,
        help="prompts per sample (default %(default)s)",
    )
    demo.set_defaults(run=commands.run_demo)

    prompts = command(
        "prompts",
        "extract one {id, prompt} line per record from a prompt or preference-pair set",
        "katdensity prompts --data pairs.jsonl --out prompts.jsonl --dedupe",
    )
    prompts.add_argument(
        "--data",
        required=True,
        help="input JSONL (prompt, chat prefix or HH pairs), parquet or saved dataset folder",
    )
    prompts.add_argument("--out", required=True, help="output JSONL")
    prompts.add_argument("--field", help="key holding the prompt, if not detected")
    prompts.add_argument("--dedupe", action="store_true", help="drop exact duplicate prompts")
    prompts.set_defaults(run=commands.run_prompts)

    embed = command(
        "embed",
        "embed the prompts of a prompt set into an embeddings file (.pt or .npy)",
        "katdensity embed --data prompts.jsonl --out emb.pt --embedder st:/models/minilm",
    )
    embed.add_argument(
        "--data", required=True, help="prompts: JSONL, parquet or a saved dataset folder"
    )
    embed.add_argument("--out", required=True, help="embeddings file, .pt or .npy")
    embed.add_argument(
        "--embedder",
        default="hashing",
        help="hashing (default), st:PATH, hf-hidden:PATH, hf-logits:PATH or a plug-in name",
    )
    embed.add_argument("--field", help="key holding the prompt, if not detected")
    embed.add_argument("--batch-size", type=int, help="texts per batch (model embedders)")
    embed.set_defaults(run=commands.run_embed)

    weights = command(
        "weights",
        "estimate densities and inverse-density weights for an embeddings file",
        "katdensity weights --emb emb.pt --out weights.pt --k 10 --beta 1",
    )
    weights.add_argument("--emb", required=True, help="embeddings file")
    weights.add_argument("--out", required=True, help="weights file (.pt)")
    weights.add_argument(
        "--data", help="the prompts (JSONL, parquet or saved dataset), to show texts in the report"
    )
    weights.add_argument("--field", help="key holding the prompt, if not detected")
    weights.add_argument(
        "--write-column",
        metavar="PATH",
        help="write a copy of --data (parquet or saved dataset) with a katdensity_weight column",
    )
    weights.add_argument(
        "--k", type=int, default=DEFAULT_K, help="neighbours (default %(default)s)"
    )
    _add_smoothing(weights)
    weights.add_argument(
        "--beta", type=float, default=DEFAULT_BETA, help="strength (default %(default)s)"
    )
    weights.add_argument(
        "--estimator", default="auto", help="exact, approx or auto (default; picks by size)"
    )
    weights.add_argument(
        "--max-weight-ratio",
        type=float,
        default=DEFAULT_MAX_WEIGHT_RATIO,
        help="cap on weight x N (default %(default)s)",
    )
    weights.add_argument(
        "--uniform-mix", type=float, default=0.0, help="share of uniform mixed in (default 0)"
    )
    weights.add_argument(
        "--min-ess",
        type=float,
        default=DEFAULT_MIN_ESS_RATIO,
        help="lowest distinct ESS/N; beta is tempered to keep it (default %(default)s; "
        "1 = uniform)",
    )
    weights.add_argument(
        "--no-mode-cap",
        dest="mode_cap",
        action="store_false",
        help="leave near-duplicate families to the density (default: each weighs at most one "
        "median prompt)",
    )
    weights.add_argument(
        "--rewards",
        metavar="FILE",
        help='rewards of an earlier run, JSONL {"id", "reward"} per completion: weigh by '
        "inverse density times learnability (LearnabilityWeighting)",
    )
    weights.add_argument(
        "--reward-range",
        nargs=2,
        type=float,
        default=(0.0, 1.0),
        metavar=("LOW", "HIGH"),
        help="range of --rewards' rewards (default 0 1)",
    )
    weights.add_argument(
        "--group-size",
        type=int,
        default=8,
        help="completions per prompt, for the expected zero-variance share (default %(default)s)",
    )
    weights.set_defaults(run=commands.run_weights)

    sample = command(
        "sample",
        "select a budgeted subset without replacement, one id per line",
        "katdensity sample --weights weights.pt --budget 1000 --out ids.txt --seed 0",
    )
    source = sample.add_mutually_exclusive_group(required=True)
    source.add_argument("--emb", help="embeddings file (default density and weights)")
    source.add_argument("--weights", help="weights file from `katdensity weights`")
    sample.add_argument("--budget", type=int, required=True, help="number of prompts to select")
    sample.add_argument("--out", required=True, help="output text file of ids")
    sample.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    sample.set_defaults(run=commands.run_sample)

    neighbors = command(
        "neighbors",
        "the stored prompts most similar (cosine) to a query text or to a stored prompt",
        'katdensity neighbors --emb emb.pt --data prompts.jsonl --query "sort a list" -k 5',
    )
    neighbors.add_argument("--emb", required=True, help="embeddings file")
    neighbors.add_argument(
        "--data", help="the prompts (JSONL, parquet or saved dataset), to show the texts"
    )
    neighbors.add_argument("--field", help="key holding the prompt, if not detected")
    target = neighbors.add_mutually_exclusive_group(required=True)
    target.add_argument("--query", help="a text, embedded with the file's recorded embedder")
    target.add_argument("--id", help="the id of a stored prompt")
    neighbors.add_argument("-k", type=int, default=5, help="neighbours to show (default 5)")
    neighbors.set_defaults(run=tools.run_neighbors)

    diversity = command(
        "diversity",
        "a mode-collapse report on generations: distinct-n, TTR, Gini, self-BLEU, Vendi",
        "katdensity diversity --data after.jsonl --compare before.jsonl --json report.json",
    )
    diversity.add_argument("--data", required=True, help="JSONL of generations")
    diversity.add_argument("--field", default="text", help="key holding the text (default text)")
    diversity.add_argument(
        "--compare", help="a baseline JSONL, shown first; each delta is --data minus --compare"
    )
    diversity.add_argument("--json", help="also write the report as JSON here")
    diversity.add_argument(
        "--embedder",
        default="hashing",
        help="embedder for the Vendi score (default hashing; `none` skips it)",
    )
    diversity.set_defaults(run=tools.run_diversity)

    viz = command(
        "viz",
        "a self-contained 3D HTML view of prompt space, sized by inverse density",
        "katdensity viz --emb emb.pt --data prompts.jsonl --label src --out view.html",
    )
    viz.add_argument("--emb", required=True, help="embeddings file")
    viz.add_argument("--out", required=True, help="output HTML file")
    viz.add_argument(
        "--data", help="the prompts (JSONL, parquet or saved dataset), for texts and labels"
    )
    viz.add_argument("--field", help="key holding the prompt, if not detected")
    viz.add_argument("--json", help="also write the points as JSON here")
    viz.add_argument("--label", help="record field or column that colours the points (e.g. src)")
    viz.add_argument("--projection", default="pca", help="pca (default) or umap")
    viz.add_argument(
        "--k", type=int, default=DEFAULT_K, help="neighbours for the density (default %(default)s)"
    )
    _add_smoothing(viz)
    viz.add_argument("--estimator", default="auto", help="exact, approx or auto (default)")
    viz.add_argument(
        "--max-points",
        type=int,
        default=DEFAULT_MAX_POINTS,
        help="points drawn at most (default %(default)s)",
    )
    viz.add_argument("--seed", type=int, default=0, help="seed of the subsample (default 0)")
    viz.set_defaults(run=tools.run_viz)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 on bad input)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        args.run(args)
    except (KatDensityError, OSError) as error:
        if args.debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"katdensity: error: {message}", file=sys.stderr)
        return 2
    return 0
