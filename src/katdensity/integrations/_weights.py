"""What the trainer integrations share: weights matched to a dataset, prompt texts, and one
value on every rank. Nothing here imports a third-party trainer."""

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

__all__ = ["from_rank_zero", "prompt_texts", "row_weights", "weights_for_ids"]

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
