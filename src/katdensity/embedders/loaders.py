"""Build embedders from a model path or name, importing optional dependencies lazily."""

from __future__ import annotations

from typing import Any

import torch

from katdensity._optional import require
from katdensity.embedders.hidden_state import HiddenStateEmbedder
from katdensity.embedders.logits import LogitEmbedder
from katdensity.embedders.sentence_transformer import SentenceTransformerEmbedder

__all__ = ["hf_hidden_state_embedder", "hf_logit_embedder", "sentence_transformer_embedder"]


def sentence_transformer_embedder(
    model: str, *, device: str | None = None, **kwargs: Any
) -> SentenceTransformerEmbedder:
    """A [`SentenceTransformerEmbedder`][katdensity.SentenceTransformerEmbedder] of a model.

    Args:
        model: a local folder, or a hub name already in the cache, for `SentenceTransformer`.
        device: where the model runs; `None` lets sentence-transformers choose.
        **kwargs: passed to `SentenceTransformerEmbedder` (`precision`, `tokens_per_batch`,
            `batch_size`, `normalize`, `progress`).

    Raises:
        MissingDependencyError: sentence-transformers is not installed (extra `st`).
    """
    sentence_transformers = require(
        "sentence_transformers",
        extra="st",
        purpose="the sentence-transformers embedder",
        package="sentence-transformers",
    )
    return SentenceTransformerEmbedder(
        sentence_transformers.SentenceTransformer(model, device=device), **kwargs
    )


def _load_hf(model: str, auto_class: str, device: str | torch.device | None) -> tuple[Any, Any]:
    transformers = require(
        "transformers", extra="hf", purpose="the hf-hidden and hf-logits embedders"
    )
    loaded = getattr(transformers, auto_class).from_pretrained(model)
    if device is not None:
        loaded = loaded.to(device)
    return loaded, transformers.AutoTokenizer.from_pretrained(model)


def hf_hidden_state_embedder(
    model: str, *, device: str | torch.device | None = None, **kwargs: Any
) -> HiddenStateEmbedder:
    """A [`HiddenStateEmbedder`][katdensity.embedders.HiddenStateEmbedder] over `transformers`.

    `AutoModel` and `AutoTokenizer` are loaded from `model`.

    Args:
        model: a local folder written by `save_pretrained`, or a hub name already in the cache.
        device: where the model runs; `None` leaves it where `from_pretrained` put it.
        **kwargs: passed to `HiddenStateEmbedder` (`layer`, `pooling`, `batch_size`, ...).

    Raises:
        MissingDependencyError: transformers is not installed (extra `hf`).
    """
    return HiddenStateEmbedder(*_load_hf(model, "AutoModel", device), **kwargs)


def hf_logit_embedder(
    model: str, *, device: str | torch.device | None = None, **kwargs: Any
) -> LogitEmbedder:
    """A [`LogitEmbedder`][katdensity.embedders.LogitEmbedder] over a `transformers` causal LM.

    `AutoModelForCausalLM` and `AutoTokenizer` are loaded from `model`.

    Args:
        model: a local folder written by `save_pretrained`, or a hub name already in the cache.
        device: where the model runs; `None` leaves it where `from_pretrained` put it.
        **kwargs: passed to `LogitEmbedder` (`pooling`, `projection_dim`, ...).

    Raises:
        MissingDependencyError: transformers is not installed (extra `hf`).
    """
    return LogitEmbedder(*_load_hf(model, "AutoModelForCausalLM", device), **kwargs)
