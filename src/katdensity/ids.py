"""Matching prompt ids between two sources: the one rule every entry point follows.

A weights or embeddings file names its rows by id; a dataset names its rows by id too.
[`match_ids`][katdensity.ids.match_ids] finds, for each id a caller needs, the row of the
source that holds it. The rules, the same in the CLI, the view, TRL and verl:

- an id that appears twice in either source is an error naming the id and both rows:
  no row is ever silently dropped or picked over another;
- every needed id must be in the source;
- the source may hold ids that are not needed only when the caller says so
  (`extra="allow"`: a weights file written before verl filtered some rows out); with
  `extra="refuse"` the two must hold the same ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from katdensity.errors import InvalidInputError

__all__ = ["ExtraIds", "check_unique_ids", "match_ids"]

ExtraIds = Literal["allow", "refuse"]
_SHOWN = 3  # ids quoted in an error message


def check_unique_ids(ids: Sequence[Any], *, source: str, fix: str = "") -> dict[str, int]:
    """The row of each id of `source`, which must hold each id once.

    Args:
        ids: one id per row (compared as text, so `7` and `"7"` are one id).
        source: how the messages name the source, e.g. `"--data prompts.jsonl"`.
        fix: a sentence telling the user how to fix a problem, appended to each message.

    Returns:
        `{id: row}` for every id.

    Raises:
        InvalidInputError: an id held by two rows, naming it and both rows.
    """
    rows: dict[str, int] = {}
    for row, identifier in enumerate(ids):
        key = str(identifier)
        first = rows.setdefault(key, row)
        if first != row:
            raise InvalidInputError(
                f"{source} should hold each id once, but id {key!r} is in rows {first} and "
                f"{row}{_sentence(fix)}"
            )
    return rows


def match_ids(
    wanted: Sequence[Any],
    available: Sequence[Any],
    *,
    wanted_from: str,
    available_from: str,
    extra: ExtraIds,
    fix: str = "",
) -> torch.Tensor:
    """The row of `available` holding each id of `wanted`.

    Args:
        wanted: the ids a caller needs, in the order it needs them.
        available: the ids of the source, one per row.
        wanted_from: how the messages name where `wanted` comes from.
        available_from: how the messages name the source.
        extra: `"allow"` lets the source hold ids that are not wanted; `"refuse"` asks for
            the same ids on both sides.
        fix: a sentence telling the user how to fix a mismatch, appended to each message.

    Returns:
        `(len(wanted),)` int64: `available[rows[i]] == wanted[i]` (as text).

    Raises:
        InvalidInputError: an id repeated on either side (naming it and both rows), a
            wanted id the source lacks, or (with `extra="refuse"`) a source id not wanted.

    Example:
        >>> from katdensity.ids import match_ids
        >>> match_ids(["b", "a"], ["a", "b", "c"], wanted_from="the dataset",
        ...           available_from="w.pt", extra="allow").tolist()
        [1, 0]
    """
    if extra not in ("allow", "refuse"):
        raise InvalidInputError(f"extra should be 'allow' or 'refuse', but got {extra!r}")
    needed = check_unique_ids(wanted, source=wanted_from, fix=fix)
    row_of = check_unique_ids(available, source=available_from, fix=fix)
    missing = [identifier for identifier in needed if identifier not in row_of]
    if missing:
        raise InvalidInputError(
            f"{available_from} should hold every id of {wanted_from}, but {len(missing)} of "
            f"{len(needed)} are not in it, e.g. {missing[:_SHOWN]}{_sentence(fix)}"
        )
    if extra == "refuse" and len(row_of) > len(needed):
        unwanted = [identifier for identifier in row_of if identifier not in needed]
        raise InvalidInputError(
            f"{available_from} should hold exactly the ids of {wanted_from}, but {len(unwanted)} "
            f"of its ids are not there, e.g. {unwanted[:_SHOWN]}{_sentence(fix)}"
        )
    return torch.tensor([row_of[identifier] for identifier in needed], dtype=torch.int64)


def _sentence(fix: str) -> str:
    return f"; {fix}" if fix else ""
