"""Wrap any text encoder: a sentence-transformers model or a plain callable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from katdensity._validate import check_int
from katdensity.embedders.base import (
    batches_by_length,
    check_texts,
    embed_batches,
    finish_embeddings,
)
from katdensity.errors import InvalidInputError

__all__ = ["ExternalEmbedder", "known_dim"]


class ExternalEmbedder:
    """Embeds with an encoder you already have.

    `encoder` is either an object with an `encode(texts)` method (a sentence-transformers
    `SentenceTransformer`, called with `convert_to_numpy=True` and its own progress bar off)
    or any callable `Sequence[str] -> array-like (N, D)`. Whatever it returns is checked: one
    finite row per text, the same width in every batch. The encoder gets the texts in
    batches of similar length (sorted by characters over the whole call, longest first), so
    short texts are not padded to long ones; the rows come back in input order. For a
    sentence-transformers model,
    [`SentenceTransformerEmbedder`][katdensity.SentenceTransformerEmbedder] is faster still.

    Args:
        encoder: the encoder, see above.
        normalize: L2-normalise the rows (after the encoder).
        batch_size: texts per call of the encoder.
        progress: progress bar over batches; `None` shows one on a terminal for long runs.

    Example:
        >>> import numpy as np
        >>> from katdensity.embedders import ExternalEmbedder
        >>> embedder = ExternalEmbedder(lambda texts: np.ones((len(texts), 3)))
        >>> embedder.embed(["a", "b"]).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        encoder: Any,
        *,
        normalize: bool = True,
        batch_size: int = 64,
        progress: bool | None = None,
    ) -> None:
        if not (callable(getattr(encoder, "encode", None)) or callable(encoder)):
            raise InvalidInputError(
                "encoder should have an encode(texts) method or be callable, "
                f"but got {type(encoder).__name__}"
            )
        self.encoder = encoder
        self.normalize = normalize
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.progress = progress
        self._dim: int | None = known_dim(encoder)

    @property
    def dim(self) -> int | None:
        """The encoder's output width, once known (sentence-transformers reports it upfront)."""
        return self._dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed `texts` with the encoder, in batches; returns `(N, D)` float32."""
        texts = check_texts(texts)
        encode = self._encode_function()
        batches = list(batches_by_length([len(text) for text in texts], self.batch_size))

        def embed_batch(batch: list[int]) -> torch.Tensor:
            vectors = encode([texts[i] for i in batch])
            vectors = (
                vectors.detach().cpu() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
            )
            return finish_embeddings(vectors, len(batch), normalize=False, source="the encoder")

        embeddings = embed_batches(
            batches, len(texts), embed_batch, progress=self.progress, source="the encoder"
        )
        self._dim = int(embeddings.shape[1])
        return finish_embeddings(
            embeddings, len(texts), normalize=self.normalize, source="the encoder"
        )

    def _encode_function(self) -> Callable[[list[str]], Any]:
        encode = getattr(self.encoder, "encode", None)
        if callable(encode):
            if _is_sentence_transformer(self.encoder):
                return lambda batch: encode(batch, convert_to_numpy=True, show_progress_bar=False)
            return encode  # type: ignore[no-any-return]
        return self.encoder  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"ExternalEmbedder({type(self.encoder).__name__}, normalize={self.normalize})"


def _is_sentence_transformer(encoder: Any) -> bool:
    return any(cls.__name__ == "SentenceTransformer" for cls in type(encoder).__mro__)


def known_dim(encoder: Any) -> int | None:
    """The width an encoder reports before encoding (sentence-transformers does), else `None`."""
    # sentence-transformers renamed the method in v6; try the new name first.
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        get_dim = getattr(encoder, name, None)
        if callable(get_dim):
            dim = get_dim()
            return int(dim) if dim is not None else None
    return None
