"""What the trainer integrations share: weights matched to a dataset, prompt texts, one value
on every rank, and one step of learnability. Nothing here imports a third-party trainer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from katdensity._distributed import process_group
from katdensity._validate import as_probabilities
from katdensity.errors import InvalidInputError
from katdensity.ids import match_ids
from katdensity.io import load_weights, prompt_text
from katdensity.learnability import PASS_RATE_BANDS, LearnabilityTracker

__all__ = [
    "copy_groups",
    "epoch_half_life",
    "from_rank_zero",
    "learn_from_batch",
    "prompt_texts",
    "row_weights",
    "weights_for_ids",
]

T = TypeVar("T")


def row_weights(weights: Any, rows: int, *, name: str = "density_weights") -> torch.Tensor:
    """`(rows,)` float64 probabilities from weights given one per dataset row.

    Raises:
        InvalidInputError: not a 1-D vector of `rows` finite non-negative numbers with a
            positive sum.
    """
    probabilities = as_probabilities(weights, name=name)
    if probabilities.shape[0] != rows:
        raise InvalidInputError(
            f"{name} should hold one weight per row of train_dataset ({rows}), but holds "
            f"{probabilities.shape[0]}"
        )
    return probabilities


def weights_for_ids(
    path: str | os.PathLike[str], ids: Sequence[Any], *, id_column: str
) -> torch.Tensor:
    """The weights of a `katdensity weights` file, reordered to follow the dataset's ids.

    Args:
        path: the weights file.
        ids: the dataset's id column, one per row (strings or integers; compared as text,
            as `katdensity.io` reads them).
        id_column: the column's name, for the messages.

    Returns:
        `(len(ids),)` float64 probabilities, row `i` for dataset row `i`.

    Raises:
        InvalidInputError: a bad file (see [`load_weights`][katdensity.io.load_weights]),
            ids repeated in the dataset or in the file, dataset ids the file lacks, or file
            ids the dataset lacks.
    """
    record = load_weights(path)
    order = match_ids(
        ids,
        record.ids,
        wanted_from=f"train_dataset[{id_column!r}]",
        available_from=str(path),
        extra="refuse",
        fix="write the weights for this dataset (katdensity embed, then katdensity weights) "
        "or pass id_column= naming the column that holds the file's ids",
    )
    return row_weights(record.weights[order], len(ids), name=f"the weights of {path}")


def prompt_texts(prompts: Sequence[Any]) -> list[str]:
    """The text to embed for each prompt of a TRL dataset's `prompt` column.

    Each prompt follows [`katdensity.io.prompt_text`][katdensity.io.prompt_text], the rule
    `katdensity embed` reads prompt files by, so the policy route and the CLI weigh a
    dataset alike and refuse the same prompts with the same message.

    Raises:
        InvalidInputError: a prompt `prompt_text` refuses (another type, no text).
    """
    return [
        prompt_text(prompt, where=f"train_dataset['prompt'][{row}]")
        for row, prompt in enumerate(prompts)
    ]


def from_rank_zero(value: T) -> T:
    """Rank 0's `value` on every rank of `torch.distributed` (unchanged without a group).

    Every process must call it. Tensors travel pickled, so any backend and device work.
    """
    if process_group()[0] == 1:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[no-any-return]


def copy_groups(prompts: Sequence[Any]) -> torch.Tensor:
    """`(N,)` int64 labels, equal for rows whose prompts are exact copies (any prompt type)."""
    first: dict[str, int] = {}
    return torch.tensor([first.setdefault(repr(prompt), len(first)) for prompt in prompts])


def epoch_half_life(distinct_prompts: int, prompts_per_update: int) -> int:
    """The half-life, in tracker updates, of evidence that halves every epoch: the default of
    the trackers the trainer integrations build (the policy changes within an epoch; older
    outcomes say less about it). `benchmarks/bench_learnability.py` measures this setting."""
    return max(1, -(-distinct_prompts // max(prompts_per_update, 1)))


def learn_from_batch(
    tracker: LearnabilityTracker,
    rows: torch.Tensor,
    rewards: torch.Tensor,
    *,
    group_size: int,
    distinct_rows: torch.Tensor,
) -> dict[str, float]:
    """Feed one generation batch, gathered from every rank, to `tracker`; say what it saw.

    Args:
        tracker: updated once, with every scorable completion of the batch.
        rows: `(B,)` int64 dataset row of each completion, each prompt's `group_size`
            completions in a row.
        rewards: `(B,)` float rewards, NaN for a completion no reward function scored
            (left out of the update).
        group_size: completions per prompt (G).
        distinct_rows: `(M,)` one row of each distinct prompt, for the pass-rate bands.

    Returns:
        Shares in `[0, 1]`: `zero_variance_predicted` (the tracker's chance, before the
        update, that a group of G binary rewards is all equal, averaged over the batch's
        groups), `zero_variance_observed` (the batch's groups whose rewards are all equal),
        `prompts_seen` (distinct prompts with evidence of their own) and, among those,
        `pass_rate_failed` / `pass_rate_learnable` / `pass_rate_solved` (pass rate below,
        between and above [`PASS_RATE_BANDS`][katdensity.learnability.PASS_RATE_BANDS]).

    Raises:
        InvalidInputError: rewards outside the tracker's `reward_range`, naming the fix.
    """
    rewards = rewards.to(torch.float64)
    predicted = tracker.zero_variance_probability(group_size)[rows[::group_size]].mean()
    groups = rewards.view(-1, group_size)
    scorable = ~torch.isnan(groups)
    high = torch.where(scorable, groups, -torch.inf).amax(dim=1)
    low = torch.where(scorable, groups, torch.inf).amin(dim=1)
    flat = (scorable.sum(dim=1) < 2) | (high - low <= 1e-8)
    keep = ~torch.isnan(rewards)
    scored = rewards[keep]
    bottom, top = tracker.reward_range
    if scored.numel() and (float(scored.min()) < bottom or float(scored.max()) > top):
        raise InvalidInputError(
            f"the rewards (each completion's reward functions times reward_weights, summed) "
            f"should lie in the tracker's reward_range [{bottom}, {top}], but range from "
            f"{float(scored.min())} to {float(scored.max())}; pass "
            "learnability=LearnabilityTracker(len(train_dataset), reward_range=(low, high))"
        )
    tracker.update(rows[keep], scored)
    pass_rate = tracker.pass_rate()[distinct_rows]
    seen = tracker.evidence()[distinct_rows] > 0
    failed, solved = PASS_RATE_BANDS
    seen_rates = pass_rate[seen]
    count = max(int(seen.sum()), 1)
    return {
        "zero_variance_predicted": float(predicted),
        "zero_variance_observed": float(flat.double().mean()),
        "prompts_seen": float(seen.double().mean()),
        "pass_rate_failed": int((seen_rates < failed).sum()) / count,
        "pass_rate_learnable": int(((seen_rates >= failed) & (seen_rates <= solved)).sum()) / count,
        "pass_rate_solved": int((seen_rates > solved).sum()) / count,
    }
