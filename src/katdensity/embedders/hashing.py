"""A dependency-free embedder: hashed character n-grams."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch

from katdensity._progress import progress_bar
from katdensity._validate import check_int
from katdensity.embedders.base import check_texts, finish_embeddings
from katdensity.errors import InvalidInputError

__all__ = ["HashingEmbedder"]

# Texts per progress step.
_BLOCK = 1000


class HashingEmbedder:
    """Signed counts of hashed character n-grams (the feature space DSIR uses).

    Each text is lower-cased (optionally), its whitespace collapsed, and every character
    n-gram for `n` in `ngram_range` is hashed with CRC-32 (stable across processes and
    machines, unlike Python's `hash`) into one of `dim` buckets with a sign from the hash, so
    collisions cancel on average. Near-duplicate prompts share most n-grams and land close;
    unrelated prompts share few. No model and no download: it is the default of the demo and
    of tests that must not need a model.

    Args:
        dim: number of hash buckets, the embedding dimension.
        ngram_range: smallest and largest `n`.
        lowercase: fold case before hashing.
        normalize: L2-normalise the rows.
        progress: progress bar over blocks of texts; `None` shows one on a terminal for
            long runs (more than about 10,000 texts).

    Example:
        >>> from katdensity.embedders import HashingEmbedder
        >>> texts = ["How do I sort a list?", "how to sort a list", "Name a large cat."]
        >>> vectors = HashingEmbedder(dim=256).embed(texts)
        >>> float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
        True
    """

    def __init__(
        self,
        dim: int = 1024,
        *,
        ngram_range: tuple[int, int] = (3, 5),
        lowercase: bool = True,
        normalize: bool = True,
        progress: bool | None = None,
    ) -> None:
        self._dim = check_int("dim", dim, low=1)
        low, high = ngram_range
        check_int("ngram_range[0]", low, low=1)
        if check_int("ngram_range[1]", high, low=1) < low:
            raise InvalidInputError(
                f"ngram_range should be (low, high) with low <= high, but got {ngram_range}"
            )
        self.ngram_range = (low, high)
        self.lowercase = lowercase
        self.normalize = normalize
        self.progress = progress

    @property
    def dim(self) -> int:
        """The embedding dimension (number of hash buckets)."""
        return self._dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed `texts` into `(N, dim)` float32 rows."""
        texts = check_texts(texts)
        vectors = np.zeros((len(texts), self._dim), dtype=np.float32)
        starts = range(0, len(texts), _BLOCK)
        bar = progress_bar(
            starts, total=len(starts), progress=self.progress, desc="embedding", unit="block"
        )
        for start in bar:
            block = vectors[start : start + _BLOCK]
            for row, text in enumerate(texts[start : start + _BLOCK]):
                block[row] = self._vector(text)
            if self.normalize:
                # In place, block by block: a normalised copy would double the peak memory.
                norms = np.sqrt(np.einsum("ij,ij->i", block, block))[:, None]
                np.divide(block, np.maximum(norms, 1e-12), out=block)
        return finish_embeddings(vectors, len(texts), normalize=False, source="HashingEmbedder")

    def _vector(self, text: str) -> np.ndarray:
        text = " ".join(text.split())
        if self.lowercase:
            text = text.lower()
        padded = f" {text} ".encode()
        low, high = self.ngram_range
        hashes = np.fromiter(
            (
                zlib.crc32(padded[i : i + n])
                for n in range(low, high + 1)
                for i in range(len(padded) - n + 1)
            ),
            dtype=np.uint32,
        )
        if hashes.size == 0:  # a text shorter than the smallest n-gram
            hashes = np.array([zlib.crc32(padded)], dtype=np.uint32)
        signs = np.where(hashes >> np.uint32(31), 1.0, -1.0)
        return np.bincount(hashes % np.uint32(self._dim), weights=signs, minlength=self._dim)

    def __repr__(self) -> str:
        return (
            f"HashingEmbedder(dim={self._dim}, ngram_range={self.ngram_range}, "
            f"lowercase={self.lowercase}, normalize={self.normalize}, progress={self.progress})"
        )
