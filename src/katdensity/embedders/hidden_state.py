"""Embeddings from a language model's hidden states, pooled over real tokens only."""

from __future__ import annotations

from typing import Any, Literal

import torch

from katdensity._validate import check_choice
from katdensity.embedders._language_model import HiddenStatesFn, LanguageModelEmbedder
from katdensity.embedders._precision import EmbedPrecision
from katdensity.errors import InvalidInputError

__all__ = ["POOLINGS", "HiddenStateEmbedder", "Pooling", "pool"]

Pooling = Literal["mean", "last", "first"]
POOLINGS: tuple[Pooling, ...] = ("mean", "last", "first")


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool `(B, T, H)` hidden states over the real tokens of `mask` `(B, T)` (1 = real).

    Padding never contributes, whichever side it is on: `"mean"` averages the real tokens,
    `"last"` takes the last real one, `"first"` the first. Values at padded positions are
    ignored even if they are NaN (some attention kernels produce NaN for all-padding rows).
    """
    real = mask.bool()
    if pooling == "mean":
        summed = hidden.masked_fill(~real[..., None], 0.0).sum(dim=1)
        return summed / real.sum(dim=1, keepdim=True).clamp_min(1).to(hidden.dtype)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), token_index(mask, pooling)]


def token_index(mask: torch.Tensor, pooling: Literal["last", "first"]) -> torch.Tensor:
    """`(B,)` position of each row's last (or first) real token."""
    real = mask.bool()
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    if pooling == "last":
        return positions.masked_fill(~real, -1).argmax(dim=1)
    return positions.masked_fill(~real, mask.shape[1]).argmin(dim=1)


class HiddenStateEmbedder(LanguageModelEmbedder):
    """Pools one layer of a language model's hidden states into one vector per text.

    Works with (a) Hugging Face `transformers` models and tokenizers (called with
    `output_hidden_states=True` and the attention mask), (b) nanoGPT/nanochat-style models
    whose `forward(idx, return_hidden_states=True)` returns a dict with `hidden_states`,
    tokenised with any `encode(str) -> list[int]` tokenizer, and (c) any other model through
    `forward=`, a function `(input_ids, attention_mask) -> per-layer hidden states`.

    Pooling runs over real tokens only, so an embedding does not depend on which texts share
    its batch or on the padding side: texts are padded on the tokenizer's `padding_side`
    (right for nanoGPT-style models), position ids follow the real tokens when the model
    takes `position_ids`, and texts are batched by length to cut padding (the output keeps
    the input order). The model runs under `torch.inference_mode()` in eval mode (its mode is
    restored afterwards).

    Args:
        model: the language model (anything, when `forward` is given).
        tokenizer: a Hugging Face tokenizer or an object with `encode(str) -> list[int]`.
        layer: which hidden state, Python-indexed (`-1` the last; for HF models `0` is the
            embedding output).
        pooling: `"mean"` over real tokens, `"last"` real token, or `"first"`.
        normalize: L2-normalise the rows.
        batch_size: most texts per forward pass.
        tokens_per_batch: most padded tokens (rows x longest text) per forward pass: texts
            are sorted by length over the whole call, so long texts go in smaller batches.
        max_length: tokens kept per text (longer texts are truncated).
        device: where the model runs; `None` uses the device of its parameters.
        pad_token_id: id used for padding; default the tokenizer's pad (or end-of-text) id,
            else 0. Padded positions are masked, so its value does not change the result.
        forward: optional adapter `(input_ids, attention_mask) -> hidden states per layer`.
        precision: `"float32"` runs the model as it is; `"bfloat16"` under bf16 autocast
            (the model's weights are not changed); `"auto"` is bf16 on CUDA and on CPUs
            measured to multiply bf16 at least 1.5x faster than fp32, else as it is.
        progress: progress bar over batches; `None` shows one on a terminal for long runs.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        layer: int = -1,
        pooling: Pooling = "mean",
        normalize: bool = True,
        batch_size: int = 32,
        tokens_per_batch: int = 8192,
        max_length: int = 512,
        device: str | torch.device | None = None,
        pad_token_id: int | None = None,
        forward: HiddenStatesFn | None = None,
        precision: EmbedPrecision = "float32",
        progress: bool | None = None,
    ) -> None:
        super().__init__(
            model,
            tokenizer,
            normalize=normalize,
            batch_size=batch_size,
            tokens_per_batch=tokens_per_batch,
            max_length=max_length,
            device=device,
            pad_token_id=pad_token_id,
            forward=forward,
            precision=precision,
            progress=progress,
        )
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise InvalidInputError(f"layer should be an integer, but got layer={layer!r}")
        self.layer = layer
        self.pooling: Pooling = check_choice("pooling", pooling, POOLINGS)  # type: ignore[assignment]

    def _embed_batch(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = self._hidden_states(input_ids, mask)
        if not -len(states) <= self.layer < len(states):
            raise InvalidInputError(
                f"layer should index the model's {len(states)} hidden states "
                f"(-{len(states)} to {len(states) - 1}), but got layer={self.layer}"
            )
        hidden = states[self.layer]
        return pool(hidden, mask.to(hidden.device), self.pooling)

    def __repr__(self) -> str:
        return (
            f"HiddenStateEmbedder({type(self.model).__name__}, layer={self.layer}, "
            f"pooling={self.pooling!r}, normalize={self.normalize})"
        )
