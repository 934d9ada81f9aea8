"""What the trainer integrations share: weights matched to a dataset, prompt texts, and one
value on every rank. Nothing here imports a third-party trainer."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from katdensity._validate import as_probabilities
from katdensity.errors import InvalidInputError
from katdensity.io import load_weights

__all__ = ["from_rank_zero", "prompt_texts", "row_weights", "weights_for_ids"]

T = TypeVar("T")
_SHOWN = 3  # ids quoted in an error message


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
    wanted = [str(value) for value in ids]
    for where, values in ((f"train_dataset[{id_column!r}]", wanted), (str(path), record.ids)):
        repeated = [value for value, count in Counter(values).items() if count > 1]
        if repeated:
            raise InvalidInputError(
                f"{where} should hold each id once, but {len(repeated)} ids repeat, "
                f"e.g. {repeated[:_SHOWN]}"
            )
    row = {identifier: position for position, identifier in enumerate(record.ids)}
    missing = [identifier for identifier in wanted if identifier not in row]
    extra = sorted(set(row) - set(wanted))
    if missing or extra:
        raise InvalidInputError(
            f"the ids of {path} should be those of train_dataset[{id_column!r}], but "
            f"{len(missing)} dataset ids are not in the file (e.g. {missing[:_SHOWN]}) and "
            f"{len(extra)} file ids are not in the dataset (e.g. {extra[:_SHOWN]}); write the "
            "weights for this dataset (katdensity embed, then katdensity weights) or pass "
            "id_column= naming the column that holds the file's ids"
        )
    order = torch.tensor([row[identifier] for identifier in wanted], dtype=torch.long)
    return row_weights(record.weights[order], len(wanted), name=f"the weights of {path}")


def prompt_texts(prompts: Sequence[Any]) -> list[str]:
    """The text to embed for each prompt of a TRL dataset's `prompt` column.

    A standard prompt is its string. A conversational prompt (a list of `{"role",
    "content"}` messages) is its user turns joined by a blank line, as `katdensity.io`
    reads chat records, so the policy route and `katdensity embed` see the same text; a
    content given as parts keeps the text of its `{"type": "text", "text": ...}` parts.

    Raises:
        InvalidInputError: a prompt that is neither a string nor a list of messages.
    """
    texts = []
    for row, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            texts.append(prompt)
        elif isinstance(prompt, list) and all(isinstance(m, Mapping) for m in prompt):
            turns = [_content(m.get("content")) for m in prompt if m.get("role") == "user"]
            texts.append("\n\n".join(turns))
        else:
            raise InvalidInputError(
                f"train_dataset['prompt'][{row}] should be a string or a list of "
                f'{{"role": ..., "content": ...}} messages, but is a {type(prompt).__name__}'
            )
    return texts


def _content(content: Any) -> str:
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return "\n".join(part for part in parts if isinstance(part, str))
    return content if isinstance(content, str) else ""


def from_rank_zero(value: T) -> T:
    """Rank 0's `value` on every rank of `torch.distributed` (unchanged without a group).

    Every process must call it. Tensors travel pickled, so any backend and device work.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[no-any-return]
