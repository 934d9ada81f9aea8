"""What the language-model embedders share: tokenising, padding, batching, running the model."""

from __future__ import annotations

import abc
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from katdensity._validate import check_choice, check_int
from katdensity.embedders._precision import EmbedPrecision, resolve_precision, running_in
from katdensity.embedders.base import (
    batches_by_tokens,
    check_texts,
    embed_batches,
    finish_embeddings,
)
from katdensity.errors import InvalidInputError

__all__ = [
    "LM_PRECISIONS",
    "HiddenStatesFn",
    "LanguageModelEmbedder",
    "accepts_position_ids",
    "is_hf_model",
    "positions",
    "tokenize",
]

# int8 needs a quantised copy of the model, which these embedders (often given the policy
# being trained) do not make: only SentenceTransformerEmbedder offers it.
LM_PRECISIONS: tuple[EmbedPrecision, ...] = ("auto", "float32", "bfloat16")

HiddenStatesFn = Callable[[torch.Tensor, torch.Tensor], Sequence[torch.Tensor]]
"""`forward(input_ids, attention_mask) -> per-layer hidden states`, each `(B, T, H)`."""


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, unpadded, at most `max_length` long.

    Hugging Face tokenizers are called (special tokens added, truncated); any other
    tokenizer needs `encode(str) -> list[int]`.
    """
    if _is_hf_tokenizer(tokenizer):
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
        return [list(ids) for ids in encoded["input_ids"]]
    encode = getattr(tokenizer, "encode", None)
    if not callable(encode):
        raise InvalidInputError(
            "tokenizer should be a Hugging Face tokenizer or have encode(str) -> list[int], "
            f"but got {type(tokenizer).__name__}"
        )
    return [list(encode(text))[:max_length] for text in texts]


def is_hf_model(model: Any) -> bool:
    """Whether `model` is a Hugging Face `transformers` model (without importing transformers)."""
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


class LanguageModelEmbedder(abc.ABC):
    """Runs a tokenizer and a model over texts in length-sorted, padded batches.

    Subclasses turn one padded batch into one row per text in `_embed_batch`; this class
    handles validation, batching by length and tokens (output in input order), padding,
    devices, eval mode (restored afterwards), `torch.inference_mode()`, bf16 autocast and
    progress.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        normalize: bool,
        batch_size: int,
        tokens_per_batch: int,
        max_length: int,
        device: str | torch.device | None,
        pad_token_id: int | None,
        forward: HiddenStatesFn | None,
        precision: EmbedPrecision,
        progress: bool | None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.normalize = normalize
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.tokens_per_batch = check_int("tokens_per_batch", tokens_per_batch, low=1)
        self.precision: EmbedPrecision = check_choice(  # type: ignore[assignment]
            "precision", precision, LM_PRECISIONS
        )
        self.max_length = check_int("max_length", max_length, low=1)
        self.device = None if device is None else torch.device(device)
        self.pad_token_id = pad_token_id if pad_token_id is not None else _pad_id(tokenizer)
        self.forward = forward
        self.progress = progress
        self._dim: int | None = None

    @property
    def dim(self) -> int | None:
        """The embedding dimension, known after the first call."""
        return self._dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed `texts`; returns `(N, D)` float32 on the CPU, row `i` for `texts[i]`."""
        texts = check_texts(texts)
        token_ids = tokenize(self.tokenizer, texts, self.max_length)
        empty = [i for i, ids in enumerate(token_ids) if not ids]
        if empty:
            raise InvalidInputError(f"texts[{empty[0]}] produced no tokens; drop or fix it")
        device = self._device()
        # nanoGPT-style models take no mask, so they get right padding (which a causal model's
        # real tokens never attend to); the others follow the tokenizer.
        left = getattr(self.tokenizer, "padding_side", "right") == "left" and (
            self.forward is not None or is_hf_model(self.model)
        )
        lengths = [len(ids) for ids in token_ids]
        batches = list(batches_by_tokens(lengths, self.tokens_per_batch, self.batch_size))
        precision = resolve_precision(self.precision, device, _width(self.model))
        was_training = bool(getattr(self.model, "training", False))

        def embed_batch(batch: list[int]) -> torch.Tensor:
            input_ids, mask = _pad([token_ids[i] for i in batch], self.pad_token_id, left)
            return self._embed_batch(input_ids.to(device), mask.to(device)).float().cpu()

        if was_training:
            self.model.eval()
        try:
            with running_in(precision, device):
                output = embed_batches(
                    batches, len(texts), embed_batch, progress=self.progress, source=repr(self)
                )
        finally:
            if was_training:
                self.model.train()
        self._dim = int(output.shape[1])
        return finish_embeddings(output, len(texts), normalize=self.normalize, source=repr(self))

    @abc.abstractmethod
    def _embed_batch(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`(B, T)` padded ids and mask (1 = real token) to `(B, D)` rows."""

    def _hidden_states(self, input_ids: torch.Tensor, mask: torch.Tensor) -> Sequence[torch.Tensor]:
        """Per-layer hidden states from the adapter, a HF model, or a nanoGPT-style model."""
        if self.forward is not None:
            return self.forward(input_ids, mask)
        if is_hf_model(self.model):
            kwargs = {"input_ids": input_ids, "attention_mask": mask}
            if accepts_position_ids(self.model):
                kwargs["position_ids"] = positions(mask)
            return tuple(self.model(**kwargs, output_hidden_states=True).hidden_states)
        out = self.model(input_ids, return_hidden_states=True)
        states = out.get("hidden_states") if isinstance(out, dict) else None
        if states is None:
            raise InvalidInputError(
                "model(idx, return_hidden_states=True) should return a dict with "
                "'hidden_states'; wrap other models with forward="
            )
        return [states] if isinstance(states, torch.Tensor) else tuple(states)

    def _device(self) -> torch.device:
        if self.device is not None:
            return self.device
        parameters = getattr(self.model, "parameters", None)
        if callable(parameters):
            for parameter in parameters():
                return torch.device(parameter.device)
        return torch.device("cpu")


def _width(model: Any) -> int:
    """The model's hidden width, for the bf16 timing of `precision="auto"`."""
    config = getattr(model, "config", None)
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return 512


def accepts_position_ids(model: Any) -> bool:
    """Whether `model.forward` takes `position_ids` (needed to make left padding harmless)."""
    return "position_ids" in inspect.signature(model.forward).parameters


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token, whatever the padding side."""
    return (mask.long().cumsum(dim=1) - 1).clamp_min(0)


def _is_hf_tokenizer(tokenizer: Any) -> bool:
    return callable(tokenizer) and hasattr(tokenizer, "padding_side")


def _pad_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0


def _pad(sequences: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        span = slice(width - len(ids), width) if left else slice(0, len(ids))
        input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
        mask[row, span] = 1
    return input_ids, mask
