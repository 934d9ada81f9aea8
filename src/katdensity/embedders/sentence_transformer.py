"""A sentence-transformers model run at the hardware's rate: length-sorted token batches, bf16."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from katdensity._validate import check_choice, check_int
from katdensity.embedders._precision import (
    EMBED_PRECISIONS,
    EmbedPrecision,
    int8_copy,
    resolve_precision,
    running_in,
)
from katdensity.embedders.base import (
    batches_by_tokens,
    check_texts,
    embed_batches,
    finish_embeddings,
)
from katdensity.embedders.external import known_dim
from katdensity.errors import InvalidInputError

__all__ = ["SentenceTransformerEmbedder"]

# Characters per token where the model has no tokenizer to count with (English prose).
_CHARS_PER_TOKEN = 4


class SentenceTransformerEmbedder:
    """Embeds with a sentence-transformers model, ordered and batched for speed.

    What `SentenceTransformer.encode` leaves on the table on a CPU, this does: the texts of
    the whole call are sorted by token count (the output keeps the input order), each batch
    holds up to `tokens_per_batch` padded tokens (many short texts, or a few long ones), and
    the model runs under bf16 autocast where the CPU multiplies bf16 faster
    (`precision="auto"`). Each batch goes through the model's own `encode`, so its
    tokenizer, prompts and pooling apply unchanged.

    Args:
        model: a `sentence_transformers.SentenceTransformer`.
        precision: `"float32"` runs the model as loaded; `"bfloat16"` under bf16 autocast
            (the model's weights are not changed); `"int8"` a copy with int8 linear layers
            (dynamic quantisation, CPU only: faster on CPUs with VNNI, but embeddings move
            much further than with bf16); `"auto"` is bf16 on CUDA and on CPUs measured to
            multiply bf16 at least 1.5x faster than fp32, else `"float32"`.
        tokens_per_batch: most padded tokens (rows x longest text) per forward pass.
        batch_size: most texts per forward pass.
        normalize: L2-normalise the rows.
        progress: progress bar over batches; `None` shows one on a terminal for long runs.

    Raises:
        InvalidInputError: `model` has no `encode` method, or a bad argument.
    """

    def __init__(
        self,
        model: Any,
        *,
        precision: EmbedPrecision = "auto",
        tokens_per_batch: int = 8192,
        batch_size: int = 256,
        normalize: bool = True,
        progress: bool | None = None,
    ) -> None:
        if not callable(getattr(model, "encode", None)):
            raise InvalidInputError(
                "model should be a sentence_transformers.SentenceTransformer, "
                f"but got {type(model).__name__} (no encode method)"
            )
        self.model = model
        self.precision: EmbedPrecision = check_choice(  # type: ignore[assignment]
            "precision", precision, EMBED_PRECISIONS
        )
        self.tokens_per_batch = check_int("tokens_per_batch", tokens_per_batch, low=1)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.normalize = normalize
        self.progress = progress
        self._dim: int | None = known_dim(model)
        self._int8_model: Any = None

    @property
    def dim(self) -> int | None:
        """The embedding width (sentence-transformers reports it upfront)."""
        return self._dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed `texts`; returns `(N, D)` float32 on the CPU, row `i` for `texts[i]`."""
        texts = check_texts(texts)
        device = torch.device(getattr(self.model, "device", "cpu"))
        precision = resolve_precision(self.precision, device, self._dim or 384)
        model = self._int8() if precision == "int8" else self.model
        batches = list(
            batches_by_tokens(self._token_counts(texts), self.tokens_per_batch, self.batch_size)
        )

        def embed_batch(batch: list[int]) -> torch.Tensor:
            rows = model.encode(
                [texts[i] for i in batch],
                batch_size=len(batch),
                convert_to_tensor=True,
                show_progress_bar=False,
            )
            return torch.as_tensor(rows).float().cpu()

        with running_in(precision, device):
            output = embed_batches(
                batches, len(texts), embed_batch, progress=self.progress, source=repr(self)
            )
        self._dim = int(output.shape[1])
        return finish_embeddings(output, len(texts), normalize=self.normalize, source=repr(self))

    def _token_counts(self, texts: list[str]) -> list[int]:
        tokenizer = getattr(self.model, "tokenizer", None)
        if not callable(tokenizer):
            return [max(1, len(text) // _CHARS_PER_TOKEN) for text in texts]
        limit = getattr(self.model, "max_seq_length", None)
        encoded = tokenizer(
            texts,
            truncation=isinstance(limit, int),
            max_length=limit if isinstance(limit, int) else None,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def _int8(self) -> Any:
        if self._int8_model is None:
            self._int8_model = int8_copy(self.model)
        return self._int8_model

    def __repr__(self) -> str:
        return (
            f"SentenceTransformerEmbedder({type(self.model).__name__}, "
            f"precision={self.precision!r}, normalize={self.normalize})"
        )
