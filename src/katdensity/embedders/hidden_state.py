"""Embeddings from a language model's hidden states, pooled over real tokens only."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch

from katdensity._progress import progress_bar
from katdensity._validate import check_choice, check_int
from katdensity.embedders.base import batches_by_length, check_texts, finish_embeddings
from katdensity.errors import InvalidInputError

__all__ = ["HiddenStateEmbedder", "HiddenStatesFn", "Pooling", "pool", "tokenize"]

Pooling = Literal["mean", "last", "first"]
POOLINGS: tuple[Pooling, ...] = ("mean", "last", "first")

HiddenStatesFn = Callable[[torch.Tensor, torch.Tensor], Sequence[torch.Tensor]]
"""`forward(input_ids, attention_mask) -> per-layer hidden states`, each `(B, T, H)`."""


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
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    if pooling == "last":
        index = positions.masked_fill(~real, -1).argmax(dim=1)
    else:
        index = positions.masked_fill(~real, mask.shape[1]).argmin(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


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


class HiddenStateEmbedder:
    """Pools one layer of a language model's hidden states into one vector per text.

    Works with (a) Hugging Face `transformers` models and tokenizers (called with
    `output_hidden_states=True` and the attention mask), (b) nanoGPT/nanochat-style models
    whose `forward(idx, return_hidden_states=True)` returns a dict with `hidden_states`,
    tokenised with any `encode(str) -> list[int]` tokenizer, and (c) any other model through
    `forward=`, a function `(input_ids, attention_mask) -> per-layer hidden states`.

    Pooling runs over real tokens only, so an embedding does not depend on which texts share
    its batch or on the padding side: texts are padded on the tokenizer's `padding_side`
    (right for non-HF tokenizers), positions are passed for left padding when the model takes
    `position_ids`, and texts are batched by length to cut padding (the output keeps the input
    order). The model runs under `torch.inference_mode()` in eval mode (its mode is restored).

    Args:
        model: the language model (or anything, when `forward` is given).
        tokenizer: a Hugging Face tokenizer or an object with `encode(str) -> list[int]`.
        layer: which hidden state, Python-indexed (`-1` the last; for HF models `0` is the
            embedding output).
        pooling: `"mean"` over real tokens, `"last"` real token, or `"first"`.
        normalize: L2-normalise the rows.
        batch_size: texts per forward pass.
        max_length: tokens kept per text (longer texts are truncated).
        device: where the model runs; `None` uses the device of its parameters.
        pad_token_id: id used for padding; default the tokenizer's pad (or end-of-text) id,
            else 0. Padded positions are masked, so its value does not change the result.
        forward: optional adapter `(input_ids, attention_mask) -> hidden states per layer`.
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
        max_length: int = 512,
        device: str | torch.device | None = None,
        pad_token_id: int | None = None,
        forward: HiddenStatesFn | None = None,
        progress: bool | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise InvalidInputError(f"layer should be an integer, but got layer={layer!r}")
        self.layer = layer
        self.pooling: Pooling = check_choice("pooling", pooling, POOLINGS)  # type: ignore[assignment]
        self.normalize = normalize
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.max_length = check_int("max_length", max_length, low=1)
        self.device = None if device is None else torch.device(device)
        self.pad_token_id = pad_token_id if pad_token_id is not None else _pad_id(tokenizer)
        self.forward = forward
        self.progress = progress
        self._dim: int | None = None

    @property
    def dim(self) -> int | None:
        """The hidden size, known after the first call."""
        return self._dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed `texts`; returns `(N, H)` float32 on the CPU, row `i` for `texts[i]`."""
        texts = check_texts(texts)
        token_ids = tokenize(self.tokenizer, texts, self.max_length)
        empty = [i for i, ids in enumerate(token_ids) if not ids]
        if empty:
            raise InvalidInputError(f"texts[{empty[0]}] produced no tokens; drop or fix it")
        device = self._device()
        forward = self.forward or self._model_forward()
        # nanoGPT-style models take no mask, so they get right padding (which a causal model's
        # real tokens never attend to); the others follow the tokenizer.
        left = getattr(self.tokenizer, "padding_side", "right") == "left" and (
            self.forward is not None or _is_hf_model(self.model)
        )
        output: torch.Tensor | None = None
        batches = list(batches_by_length([len(ids) for ids in token_ids], self.batch_size))
        was_training = bool(getattr(self.model, "training", False))
        if was_training:
            self.model.eval()
        try:
            with torch.inference_mode():
                bar = progress_bar(
                    batches,
                    total=len(batches),
                    progress=self.progress,
                    desc="embedding",
                    unit="batch",
                )
                for batch in bar:
                    input_ids, mask = _pad([token_ids[i] for i in batch], self.pad_token_id, left)
                    hidden = _select_layer(
                        forward(input_ids.to(device), mask.to(device)), self.layer
                    )
                    pooled = pool(hidden, mask.to(hidden.device), self.pooling).float().cpu()
                    if output is None:
                        output = torch.empty(len(texts), pooled.shape[1])
                    output[torch.tensor(batch)] = pooled
        finally:
            if was_training:
                self.model.train()
        assert output is not None  # texts is non-empty
        self._dim = int(output.shape[1])
        return finish_embeddings(output, len(texts), normalize=self.normalize, source=repr(self))

    def _device(self) -> torch.device:
        if self.device is not None:
            return self.device
        parameters = getattr(self.model, "parameters", None)
        if callable(parameters):
            for parameter in parameters():
                return torch.device(parameter.device)
        return torch.device("cpu")

    def _model_forward(self) -> HiddenStatesFn:
        model = self.model
        if _is_hf_model(model):
            takes_positions = "position_ids" in inspect.signature(model.forward).parameters

            def hf_forward(input_ids: torch.Tensor, mask: torch.Tensor) -> Sequence[torch.Tensor]:
                kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": mask}
                if takes_positions:
                    kwargs["position_ids"] = (mask.long().cumsum(dim=1) - 1).clamp_min(0)
                states = model(**kwargs, output_hidden_states=True).hidden_states
                return tuple(states)

            return hf_forward

        def nanogpt_forward(input_ids: torch.Tensor, mask: torch.Tensor) -> Sequence[torch.Tensor]:
            # Right padding only: a causal model's real tokens never attend to later pads.
            out = model(input_ids, return_hidden_states=True)
            states = out["hidden_states"] if isinstance(out, dict) else None
            if states is None:
                raise InvalidInputError(
                    "model(idx, return_hidden_states=True) should return a dict with "
                    "'hidden_states'; wrap other models with forward="
                )
            return [states] if isinstance(states, torch.Tensor) else tuple(states)

        return nanogpt_forward

    def __repr__(self) -> str:
        return (
            f"HiddenStateEmbedder({type(self.model).__name__}, layer={self.layer}, "
            f"pooling={self.pooling!r}, normalize={self.normalize})"
        )


def _is_hf_model(model: Any) -> bool:
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


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


def _select_layer(states: Sequence[torch.Tensor], layer: int) -> torch.Tensor:
    if not -len(states) <= layer < len(states):
        raise InvalidInputError(
            f"layer should index the model's {len(states)} hidden states "
            f"(-{len(states)} to {len(states) - 1}), but got layer={layer}"
        )
    return states[layer]
