"""Embeddings from a language model's pooled output logits, without the `(B, T, V)` tensor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from katdensity._validate import check_choice, check_int
from katdensity.embedders._language_model import (
    HiddenStatesFn,
    LanguageModelEmbedder,
    accepts_position_ids,
    is_hf_model,
    positions,
)
from katdensity.embedders._precision import EmbedPrecision
from katdensity.embedders.hidden_state import pool, token_index
from katdensity.errors import InvalidInputError

__all__ = ["LogitEmbedder", "LogitPooling"]

LogitPooling = Literal["mean", "last"]

# Largest (B, positions, V) block of logits held at once on the non-linear-head path.
_LOGIT_CHUNK_ELEMENTS = 2**24


class LogitEmbedder(LanguageModelEmbedder):
    """The masked mean (or last-token value) of a language model's per-token logit vectors.

    A naive pooled-logit embedding holds `[B, T, V]` logits per batch and stores `V` floats
    per prompt (50,304 for a GPT-2-sized vocabulary). Here, when the output head is
    linear (`logits = W h + b`), the mean of the logits is the head applied to the mean of
    the final hidden states, so only `(B, H)` and then `(B, V)` exist; with a non-linear head
    (e.g. Gemma's logit soft-cap) the logits are computed in chunks of positions and summed.
    With `projection_dim=P` the `(B, V)` rows are multiplied on the fly by a fixed Gaussian
    matrix `R` of shape `(V, P)` scaled by `1/sqrt(P)` (Johnson-Lindenstrauss: distances
    are kept up to small relative error), so `(N, V)` is never stored either.

    Where the head comes from: for Hugging Face causal LMs, the final hidden states are
    `model.base_model(...).last_hidden_state` and the head is `model.get_output_embeddings()`
    with the config's `logit_scale` and `final_logit_softcapping` applied; for
    nanoGPT-style models, `hidden_states[-1]` and `model.lm_head`. Any other model: pass
    `forward=` (returning hidden states, the last of which feeds the head) and `head=`. On the
    first batch the result is checked against the model's own logits for one short row, so
    a head that does not reproduce them raises instead of returning wrong embeddings.

    Args:
        model: the causal language model.
        tokenizer: a Hugging Face tokenizer or an object with `encode(str) -> list[int]`.
        pooling: `"mean"` over real tokens or `"last"` real token.
        projection_dim: project to this many dimensions; `None` keeps the vocabulary size.
        seed: seed of the projection matrix.
        head: function from final hidden states `(..., H)` to logits `(..., V)`.
        linear_head: whether `head` is affine; `None` decides from the model's config
            (a soft-capped head is not).
        normalize: L2-normalise the rows.
        batch_size: most texts per forward pass.
        tokens_per_batch: most padded tokens (rows x longest text) per forward pass: texts
            are sorted by length over the whole call, so long texts go in smaller batches.
        max_length: tokens kept per text.
        device: where the model runs; `None` uses the device of its parameters.
        pad_token_id: id used for padding (masked, so its value does not matter).
        forward: adapter `(input_ids, attention_mask) -> hidden states per layer`.
        precision: `"float32"` runs the model as it is; `"bfloat16"` under bf16 autocast
            (the model's weights are not changed); `"auto"` is bf16 on CUDA and on CPUs
            measured to multiply bf16 at least 1.5x faster than fp32, else as it is.
        progress: progress bar over batches.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        pooling: LogitPooling = "mean",
        projection_dim: int | None = None,
        seed: int = 0,
        head: Callable[[torch.Tensor], torch.Tensor] | None = None,
        linear_head: bool | None = None,
        normalize: bool = True,
        batch_size: int = 16,
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
        self.pooling: LogitPooling = check_choice("pooling", pooling, ("mean", "last"))  # type: ignore[assignment]
        self.projection_dim = (
            None if projection_dim is None else check_int("projection_dim", projection_dim, low=1)
        )
        self.seed = check_int("seed", seed)
        self.head = head if head is not None else _default_head(model)
        self.linear_head = linear_head if linear_head is not None else _is_linear(model)
        self._projection: torch.Tensor | None = None
        self._checked = False

    def projection_matrix(self, vocab_size: int) -> torch.Tensor:
        """The fixed `(V, P)` projection for `vocab_size` (the same seed gives the same matrix)."""
        if self.projection_dim is None:
            raise InvalidInputError("projection_matrix needs projection_dim, but it is None")
        if self._projection is None or self._projection.shape[0] != vocab_size:
            generator = torch.Generator().manual_seed(self.seed)
            matrix = torch.randn(vocab_size, self.projection_dim, generator=generator)
            self._projection = matrix / self.projection_dim**0.5
        return self._projection

    def _final_hidden(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.forward is None and is_hf_model(self.model):
            base = self.model.base_model
            kwargs = {"input_ids": input_ids, "attention_mask": mask}
            if accepts_position_ids(base):
                kwargs["position_ids"] = positions(mask)
            return base(**kwargs).last_hidden_state  # type: ignore[no-any-return]
        return self._hidden_states(input_ids, mask)[-1]

    def _embed_batch(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self._checked:
            self._check_head(input_ids[:1], mask[:1])
        hidden = self._final_hidden(input_ids, mask)
        mask = mask.to(hidden.device)
        if self.pooling == "last":
            last = hidden[
                torch.arange(hidden.shape[0], device=hidden.device), token_index(mask, "last")
            ]
            logits = self.head(last)
        elif self.linear_head:
            logits = self.head(pool(hidden, mask, "mean"))
        else:
            logits = self._chunked_mean(hidden, mask)
        logits = logits.float()
        if self.projection_dim is not None:
            logits = logits @ self.projection_matrix(logits.shape[1]).to(logits.device)
        return logits

    def _chunked_mean(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked mean of `head(hidden)` over positions, a few positions at a time."""
        batch, length = mask.shape
        real = mask.bool()
        vocab = self.head(hidden[:1, :1]).shape[-1]
        step = max(1, _LOGIT_CHUNK_ELEMENTS // (batch * vocab))
        total = torch.zeros(batch, vocab, device=hidden.device)
        for start in range(0, length, step):
            logits = self.head(hidden[:, start : start + step]).float()  # (B, step, V)
            total += logits.masked_fill(~real[:, start : start + step, None], 0.0).sum(dim=1)
        return total / real.sum(dim=1, keepdim=True).clamp_min(1)

    def _check_head(self, input_ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Compare `head(final hidden)` with the model's own logits on one short row."""
        self._checked = True
        if self.forward is not None:
            return  # an adapter model: the caller vouches for head
        ids = input_ids[0][mask[0].bool()][:8].view(1, -1)
        ones = torch.ones_like(ids)
        # In fp32 whatever the precision: the check is about the head, not bf16 rounding.
        with torch.autocast(ids.device.type, enabled=False):
            ours = self.head(self._final_hidden(ids, ones)).float()
            if is_hf_model(self.model):
                theirs = self.model(input_ids=ids, attention_mask=ones).logits
            else:
                out = self.model(ids)
                theirs = out["logits"] if isinstance(out, dict) else out
        theirs = theirs.float()
        span = theirs.shape[1]  # nanoGPT returns only the last position at inference
        if not torch.allclose(ours[:, -span:], theirs, atol=1e-3, rtol=1e-3):
            raise InvalidInputError(
                "head(final hidden states) does not reproduce the model's logits; "
                "pass the model's output function as head= (and linear_head=False if it "
                "is not affine)"
            )

    def __repr__(self) -> str:
        return (
            f"LogitEmbedder({type(self.model).__name__}, pooling={self.pooling!r}, "
            f"projection_dim={self.projection_dim}, linear_head={self.linear_head})"
        )


def _default_head(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    if is_hf_model(model):
        head = model.get_output_embeddings()
        config = model.config
        scale = getattr(config, "logit_scale", None)
        cap = getattr(config, "final_logit_softcapping", None)

        def hf_head(hidden: torch.Tensor) -> torch.Tensor:
            logits = head(hidden)
            if scale is not None:
                logits = logits * scale
            if cap is not None:
                logits = torch.tanh(logits / cap) * cap
            return logits  # type: ignore[no-any-return]

        return hf_head
    lm_head = getattr(model, "lm_head", None)
    if not callable(lm_head):
        raise InvalidInputError(
            f"cannot find the output head of {type(model).__name__}: pass head= "
            "(final hidden states -> logits)"
        )
    return lm_head  # type: ignore[no-any-return]


def _is_linear(model: Any) -> bool:
    config = getattr(model, "config", None)
    return getattr(config, "final_logit_softcapping", None) is None
