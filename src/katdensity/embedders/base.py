"""The `Embedder` protocol and the checks every embedder shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from katdensity._progress import progress_bar
from katdensity._validate import as_embeddings
from katdensity.errors import InvalidInputError

__all__ = [
    "Embedder",
    "batches_by_length",
    "batches_by_tokens",
    "check_texts",
    "finish_embeddings",
]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into embeddings: the first stage of the pipeline.

    Contract: `embed(texts)` returns a `(N, D)` float32 CPU tensor whose row `i` embeds
    `texts[i]`, L2-normalised when the embedder was built with `normalize=True` (the
    default), and finite. It raises [`InvalidInputError`][katdensity.errors.InvalidInputError]
    on an empty list, an empty or whitespace-only string, or a non-string item. `dim` is `D`
    where it is known before embedding, else `None`. Batching, devices and progress bars are
    the embedder's job.
    """

    @property
    def dim(self) -> int | None:
        """The embedding dimension `D`, or `None` if only known after the first call."""
        ...

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed `texts`; returns `(len(texts), D)` float32 on the CPU."""
        ...


def check_texts(texts: Any) -> list[str]:
    """Return `texts` as a list after checking it is a non-empty sequence of non-empty strings."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise InvalidInputError(
            f"texts should be a sequence of strings (e.g. a list), but got {type(texts).__name__}"
        )
    if len(texts) == 0:
        raise InvalidInputError("texts should hold at least one text, but got an empty sequence")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] should be a str, but got {type(text).__name__}")
        if not text.strip():
            raise InvalidInputError(
                f"texts[{i}] should be a non-empty string, but got {text!r}; "
                "drop empty prompts first"
            )
    return list(texts)


def finish_embeddings(
    vectors: torch.Tensor | np.ndarray, n_texts: int, *, normalize: bool, source: str
) -> torch.Tensor:
    """Check an encoder's output for `n_texts` texts; return it float32, on CPU, normalised."""
    embeddings = as_embeddings(vectors, name=f"the output of {source}").cpu()
    if embeddings.shape[0] != n_texts:
        raise InvalidInputError(
            f"{source} should return one row per text ({n_texts}), "
            f"but returned {embeddings.shape[0]} rows"
        )
    if normalize:
        embeddings = torch.nn.functional.normalize(embeddings, dim=1)
    return embeddings.contiguous()


def batches_by_length(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Index batches of texts of similar length (longest first), to cut padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def batches_by_tokens(
    lengths: Sequence[int], tokens_per_batch: int, max_rows: int
) -> Iterator[list[int]]:
    """Index batches over the whole set sorted by length (longest first), each padded batch
    holding at most `tokens_per_batch` tokens (rows x its longest text) and `max_rows` rows.

    Short texts then share large batches and long ones small batches, so a forward pass
    costs about the same whatever the lengths; a text longer than the budget goes alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    start = 0
    while start < len(order):
        longest = max(1, lengths[order[start]])
        rows = max(1, min(max_rows, tokens_per_batch // longest))
        yield order[start : start + rows]
        start += rows


def embed_batches(
    batches: Sequence[list[int]],
    n_texts: int,
    embed_batch: Callable[[list[int]], torch.Tensor],
    *,
    progress: bool | None,
    source: str,
) -> torch.Tensor:
    """Run `embed_batch` on each batch of text positions and put the rows back in input order.

    Args:
        batches: lists of positions in the input (together, each position once).
        n_texts: the number of texts.
        embed_batch: positions to their `(len(batch), D)` float32 CPU rows.
        progress: show a progress bar over the batches; `None` shows one on a terminal.
        source: what made the rows, for the error message.

    Returns:
        `(n_texts, D)` float32: row `i` for text `i`.

    Raises:
        InvalidInputError: two batches came back with different widths.
    """
    output: torch.Tensor | None = None
    bar = progress_bar(
        batches, total=len(batches), progress=progress, desc="embedding", unit="batch"
    )
    for batch in bar:
        rows = embed_batch(batch)
        if output is None:
            output = torch.empty(n_texts, rows.shape[1])
        elif rows.shape[1] != output.shape[1]:
            raise InvalidInputError(
                f"{source} returned width {rows.shape[1]} after width {output.shape[1]}; "
                "it should return the same width for every batch"
            )
        output[torch.tensor(batch)] = rows
    if output is None:
        raise InvalidInputError("there were no texts to embed; pass at least one")
    return output
