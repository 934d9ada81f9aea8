"""What each `katdensity` subcommand does, built only on the library's public API."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from katdensity import _tables
from katdensity._atomic import atomic_path
from katdensity.density.result import DensityEstimator
from katdensity.embedders.base import Embedder
from katdensity.errors import InvalidInputError
from katdensity.ids import check_unique_ids, match_ids
from katdensity.io import (
    Prompt,
    load_embeddings,
    load_weights,
    read_prompts,
    read_rewards,
    save_embeddings,
)
from katdensity.learnability import LearnabilityTracker, LearnabilityWeighting
from katdensity.registry import get_embedder, get_estimator
from katdensity.report import learnability_summary, weight_report
from katdensity.subset import select_subset
from katdensity.weights import InverseDensityWeighting, weigh

__all__ = [
    "embedded_prompts",
    "estimator_for",
    "run_demo",
    "run_embed",
    "run_prompts",
    "run_sample",
    "run_weights",
]


def embedder_for(spec: str, options: dict[str, Any], *, quiet: bool) -> Embedder:
    """The named embedder; `--quiet` turns off its progress bar.

    Raises:
        InvalidInputError: an unknown name, or options the embedder's signature does not take
            (such as ones recorded in a damaged embeddings file); see
            [`get_embedder`][katdensity.get_embedder]. Errors raised while building it pass
            unchanged.
    """
    if quiet:
        options = {**options, "progress": False}
    return get_embedder(spec, **options)


def estimator_for(
    name: str, *, k: int, quiet: bool, smoothing: int | None = None
) -> DensityEstimator:
    """The named estimator; `--quiet` turns off the search's progress display, and
    `--smoothing` is passed on only when given (a plug-in need not take it)."""
    options: dict[str, Any] = {"k": k}
    if smoothing is not None:
        options["smoothing"] = smoothing
    if quiet and name in ("exact", "approx", "auto"):
        options["progress"] = False
    return get_estimator(name, **options)


def embedded_prompts(ids: list[str], emb: str, prompts: list[Prompt], data: str) -> list[Prompt]:
    """The prompt of each row of the embeddings file `emb` (ids `ids`), found by id in
    `prompts`, read from `--data`, which may hold more prompts but each id once."""
    rows = match_ids(
        ids,
        [prompt.id for prompt in prompts],
        wanted_from=emb,
        available_from=f"--data {data}",
        extra="allow",
        fix="pass the prompt file that was embedded",
    )
    return [prompts[row] for row in rows.tolist()]


def run_demo(args: argparse.Namespace) -> None:
    from katdensity.demo import run_demo as demo

    result = demo(args.out, seed=args.seed, k=args.k, beta=args.beta, sample_size=args.sample_size)
    print(result.report)
    print("wrote " + ", ".join(str(path) for path in result.files))


def run_prompts(args: argparse.Namespace) -> None:
    prompts = read_prompts(args.data, field=args.field, dedupe=args.dedupe)
    with atomic_path(args.out) as temporary, temporary.open("w", encoding="utf-8") as out:
        for prompt in prompts:
            out.write(
                json.dumps({"id": prompt.id, "prompt": prompt.text}, ensure_ascii=False) + "\n"
            )
    print(f"wrote {len(prompts)} prompts to {args.out}")


def run_embed(args: argparse.Namespace) -> None:
    prompts = read_prompts(args.data, field=args.field)
    check_unique_ids(
        [p.id for p in prompts],
        source=f"--data {args.data}",
        fix="fix the ids or drop them to get derived ones",
    )
    options: dict[str, Any] = {} if args.batch_size is None else {"batch_size": args.batch_size}
    embedder = embedder_for(args.embedder, options, quiet=args.quiet)
    embeddings = embedder.embed([p.text for p in prompts])
    save_embeddings(
        args.out,
        [p.id for p in prompts],
        embeddings,
        embedder={"spec": args.embedder, **options},
        progress=False if args.quiet else None,
    )
    print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.out}")


def run_weights(args: argparse.Namespace) -> None:
    if args.write_column is not None:
        _check_column_target(args.data, args.write_column)
    stored = load_embeddings(args.emb)
    # The prompts are read and matched first, so a bad --data fails before the search.
    texts = None
    prompts = None if args.data is None else read_prompts(args.data, field=args.field)
    if prompts is not None:
        texts = [p.text for p in embedded_prompts(stored.ids, args.emb, prompts, args.data)]
    rewards = None if args.rewards is None else _rewarded_rows(args, stored.ids)
    estimator = estimator_for(args.estimator, k=args.k, quiet=args.quiet, smoothing=args.smoothing)
    result = estimator.estimate(stored.embeddings)
    density = InverseDensityWeighting(
        args.beta,
        max_weight_ratio=args.max_weight_ratio,
        uniform_mix=args.uniform_mix,
        min_ess_ratio=args.min_ess,
        mode_cap=args.mode_cap,
    )
    learned = ""
    settings: dict[str, Any] = {}
    if rewards is None:
        weighted = density.weigh(result)
        weights = weighted.probabilities
    else:
        tracker = LearnabilityTracker(
            len(stored.ids), density=result, reward_range=tuple(args.reward_range)
        )
        tracker.update(*rewards)
        learnability = LearnabilityWeighting(tracker, density=density)
        weights = learnability(result)
        weighted = learnability.base(result)
        learned = learnability_summary(tracker, weights, group_size=args.group_size)
        settings = {
            "rewards": args.rewards,
            "strength": learnability.strength,
            "strength_used": learnability.strength_used_,
            "explore": learnability.explore,
        }
    report = weight_report(
        result,
        weights,
        beta=weighted.beta,
        beta_used=weighted.beta_used,
        min_ess_ratio=weighted.min_ess_ratio,
        modes=weighted.modes,
    )
    record = {
        "ids": stored.ids,
        "log_density": result.log_density,
        "weights": weights,
        "distinct_index": result.distinct_index,
        "ess": report.ess_rows,
        "distinct_ess": report.ess_prompts,
        "intrinsic_dim": result.intrinsic_dim,
        "settings": {
            "k": args.k,
            "smoothing": getattr(estimator, "smoothing", args.smoothing),
            "estimator": args.estimator,
            **weighted.settings(),
            **settings,
        },
    }
    column = None
    if prompts is not None and args.write_column is not None:
        column = _weight_column(prompts, stored.ids, weights, args.emb, args.data)
    with atomic_path(args.out) as temporary:
        torch.save(record, temporary)
    if column is not None:
        _tables.write_with_column(
            Path(args.data), Path(args.write_column), column, progress=not args.quiet
        )
    print(f"prompts              {len(weights)} rows, {report.n_prompts} distinct")
    print(f"intrinsic dimension  {result.intrinsic_dim:.2f}")
    print(report.format(texts, stored.ids))
    if learned:
        print(learned)
    print(f"wrote weights to {args.out}")
    if column is not None:
        print(f"wrote {args.data} with a {_tables.WEIGHT_COLUMN} column to {args.write_column}")


def _rewarded_rows(args: argparse.Namespace, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings' row and the reward of each completion of `--rewards`, checked before
    the search (ids, numbers and range), so a bad file fails fast."""
    if args.group_size < 1:
        raise InvalidInputError(f"--group-size should be at least 1, but got {args.group_size}")
    reward_ids, rewards = read_rewards(args.rewards)
    row_of = check_unique_ids(ids, source=args.emb)
    missing = next((i for i in reward_ids if i not in row_of), None)
    if missing is not None:
        raise InvalidInputError(
            f"--rewards {args.rewards} should name prompts of {args.emb}, but id {missing!r} is "
            "not there; write the rewards with the ids the prompts were embedded with"
        )
    rows = torch.tensor([row_of[i] for i in reward_ids], dtype=torch.int64)
    LearnabilityTracker(len(ids), reward_range=tuple(args.reward_range)).update(rows, rewards)
    return rows, rewards


def _check_column_target(data: str | None, target: str) -> None:
    """Refuse a `--write-column` that cannot be written, before any work is done."""
    if data is None:
        raise InvalidInputError(
            "--write-column needs --data, the parquet file or saved dataset folder to copy"
        )
    source, out = Path(data), Path(target)
    if not source.is_dir() and source.suffix.lower() != ".parquet":
        raise InvalidInputError(
            f"--write-column copies a parquet file or a folder written by Dataset.save_to_disk, "
            f"but --data {data} is neither; the weights file holds the weights by id"
        )
    # A folder replaced at `out` must not be, or hold, the input.
    if source.resolve().is_relative_to(out.resolve()) or (
        out.exists() and source.exists() and os.path.samefile(out, source)
    ):
        raise InvalidInputError(
            f"--write-column should be a new path, but {target} is --data itself or holds it; "
            "the input is never overwritten"
        )
    if source.is_dir():
        if out.exists() and not _tables.is_saved_dataset(out):
            raise InvalidInputError(
                f"--write-column {target} exists and is not a saved dataset folder; choose a "
                "new path (a saved dataset there would be replaced)"
            )
    elif out.suffix.lower() != ".parquet" or out.is_dir():
        raise InvalidInputError(
            f"--write-column should be a .parquet file for a parquet --data, but got {target}"
        )


def _weight_column(
    prompts: list[Prompt], ids: list[str], weights: torch.Tensor, emb: str, data: str
) -> list[float]:
    """The weight of each row of `data`, matched by id; the ids must match one to one."""
    rows = match_ids(
        [prompt.id for prompt in prompts],
        ids,
        wanted_from=f"--data {data}",
        available_from=emb,
        extra="refuse",
        fix="embed this data with `katdensity embed`",
    )
    return weights.double()[rows].tolist()


def run_sample(args: argparse.Namespace) -> None:
    if (args.emb is None) == (args.weights is None):
        raise InvalidInputError("give exactly one of --emb and --weights")
    if args.weights is not None:
        stored_weights = load_weights(args.weights)
        ids, weights, groups = stored_weights.ids, stored_weights.weights, stored_weights.groups
    else:
        stored = load_embeddings(args.emb)
        weighted = weigh(estimator_for("auto", k=10, quiet=args.quiet).estimate(stored.embeddings))
        ids, weights, groups = stored.ids, weighted.probabilities, weighted.distinct_index
    # Exact copies of a prompt are one prompt: each is chosen at most once.
    chosen = select_subset(weights, args.budget, seed=args.seed, groups=groups)
    with atomic_path(args.out) as temporary:
        temporary.write_text("".join(f"{ids[i]}\n" for i in chosen.tolist()), encoding="utf-8")
    print(f"wrote {chosen.numel()} ids to {args.out}")
