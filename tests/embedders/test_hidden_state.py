from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from katdensity import InvalidInputError
from katdensity.embedders import Embedder, HiddenStateEmbedder, pool

TEXTS = [
    "A short one.",
    "A considerably longer prompt that needs many more tokens than the others do.",
    "Medium length prompt here.",
    "x",
]


def test_pool_ignores_padding_even_when_it_is_nan() -> None:
    hidden = torch.tensor([[[1.0], [3.0], [float("nan")]], [[float("nan")], [2.0], [6.0]]])
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0], [4.0]]
    assert pool(hidden, mask, "last").tolist() == [[3.0], [6.0]]
    assert pool(hidden, mask, "first").tolist() == [[1.0], [2.0]]


class ByteTokenizer:
    """Bytes as token ids, offset by one so that 0 can pad."""

    def encode(self, text: str) -> list[int]:
        return [b + 1 for b in text.encode()]


class TinyCausalLM(nn.Module):
    """A nanoGPT-shaped model: forward(idx, return_hidden_states=True) -> dict."""

    def __init__(self, vocab: int = 257, width: int = 16, layers: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Embedding(512, width)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, 2, 32, dropout=0.1, batch_first=True)
            for _ in range(layers)
        )
        self.head = nn.Linear(width, vocab)

    def forward(self, idx: torch.Tensor, return_hidden_states: bool = False) -> Any:
        t = idx.shape[1]
        x = self.embed(idx) + self.position(torch.arange(t))
        causal = nn.Transformer.generate_square_subsequent_mask(t)
        states = [x]
        for block in self.blocks:
            x = block(x, src_mask=causal, is_causal=True)
            states.append(x)
        logits = self.head(x)
        return {"logits": logits, "hidden_states": states} if return_hidden_states else logits


@pytest.mark.parametrize("pooling", ["mean", "last", "first"])
@pytest.mark.parametrize("layer", [-1, 1])
def test_nanogpt_style_batch_equals_one_by_one(pooling: str, layer: int) -> None:
    model = TinyCausalLM()
    embedder = HiddenStateEmbedder(
        model, ByteTokenizer(), pooling=pooling, layer=layer, batch_size=4
    )  # type: ignore[arg-type]
    batched = embedder.embed(TEXTS)
    single = torch.cat([embedder.embed([text]) for text in TEXTS])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    assert isinstance(embedder, Embedder) and embedder.dim == 16
    assert model.training, "the model's train mode is restored"


def test_adapter_forward() -> None:
    def forward(input_ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        return [input_ids[..., None].float().expand(-1, -1, 2)]

    embedder = HiddenStateEmbedder(None, ByteTokenizer(), forward=forward, normalize=False)
    # Mean of the byte ids (+1) of "ab" = (98 + 99) / 2.
    assert embedder.embed(["ab"]).tolist() == [[98.5, 98.5]]


def test_bad_layer_is_named() -> None:
    embedder = HiddenStateEmbedder(TinyCausalLM(), ByteTokenizer(), layer=7)
    with pytest.raises(InvalidInputError, match=r"3 hidden states \(-3 to 2\), but got layer=7"):
        embedder.embed(["hello"])
