from __future__ import annotations

import numpy as np
import pytest
import torch

from katdensity import InvalidInputError
from katdensity.embedders import Embedder, ExternalEmbedder, HashingEmbedder


def test_embedders_implement_protocol() -> None:
    assert isinstance(HashingEmbedder(), Embedder)
    assert isinstance(ExternalEmbedder(lambda texts: np.ones((len(texts), 2))), Embedder)


def test_hashing_is_deterministic_across_processes() -> None:
    import subprocess
    import sys

    code = (
        "from katdensity.embedders import HashingEmbedder;"
        "print(HashingEmbedder(dim=64).embed(['Sort a list in Python'])[0, :8].tolist())"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 1, "no dependence on PYTHONHASHSEED"
    expected = HashingEmbedder(dim=64).embed(["Sort a list in Python"])[0, :8].tolist()
    assert runs.pop().strip() == str(expected)


def test_hashing_separates_near_duplicates_from_unrelated_prompts() -> None:
    prompts = [
        "How do I reverse a linked list in Python?",
        "Write a haiku about autumn leaves.",
        "What is the capital of Australia?",
        "Explain how vaccines train the immune system.",
    ]
    rewrites = [
        "how do i reverse a linked list in python",
        "Write a short haiku about autumn leaves!",
        "What's the capital city of Australia?",
        "Explain how vaccines train our immune system",
    ]
    vectors = HashingEmbedder().embed(prompts + rewrites)
    similarity = vectors[:4] @ vectors[4:].T
    # Every prompt is closer to its own rewrite than to any other rewrite.
    assert torch.equal(similarity.argmax(dim=1), torch.arange(4))
    assert float(similarity.diagonal().min()) > 0.5
    off_diagonal = similarity[~torch.eye(4, dtype=torch.bool)]
    assert float(off_diagonal.max()) < 0.3


def test_hashing_output_contract() -> None:
    vectors = HashingEmbedder(dim=32).embed(["a", "bb", "a longer text"])
    assert vectors.shape == (3, 32) and vectors.dtype == torch.float32
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(3))
    raw = HashingEmbedder(dim=32, ngram_range=(1, 1), lowercase=False, normalize=False)
    counts = raw.embed(["aa"])[0]
    assert float(counts.abs().sum()) == 4.0, "' ', 'a', 'a', ' ' each count once"


def test_hashing_normalises_blocks_of_a_large_set_like_the_whole(
    capsys: pytest.CaptureFixture[str],
) -> None:
    texts = [f"prompt number {i} about {i % 7} things" for i in range(2500)]
    raw = HashingEmbedder(dim=64, normalize=False, progress=False).embed(texts)
    vectors = HashingEmbedder(dim=64, progress=True).embed(texts)
    torch.testing.assert_close(vectors, torch.nn.functional.normalize(raw, dim=1))
    assert "embedding: 100%" in capsys.readouterr().err, "a bar over the 3 blocks of texts"


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "at least one text"),
        (["ok", ""], r"texts\[1\] should be a non-empty string"),
        (["ok", "   "], r"texts\[1\] should be a non-empty string"),
        (["ok", 3], r"texts\[1\] should be a str, but got int"),
        ("a string", "sequence of strings"),
    ],
)
def test_bad_texts(texts: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        HashingEmbedder().embed(texts)  # type: ignore[arg-type]


def test_external_batches_and_normalises() -> None:
    calls: list[int] = []

    def encoder(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.array([[len(t), 1.0] for t in texts])

    vectors = ExternalEmbedder(encoder, batch_size=2).embed(["aaa", "b", "cc", "dddd", "e"])
    assert calls == [2, 2, 1]
    expected = torch.nn.functional.normalize(
        torch.tensor([[3.0, 1], [1, 1], [2, 1], [4, 1], [1, 1]]), dim=1
    )
    torch.testing.assert_close(vectors, expected)


def test_external_uses_an_encode_method() -> None:
    class Encoder:
        def encode(self, texts: list[str]) -> torch.Tensor:
            return torch.ones(len(texts), 4)

    assert (
        ExternalEmbedder(Encoder(), normalize=False).embed(["x", "y"]).tolist() == [[1.0] * 4] * 2
    )


@pytest.mark.parametrize(
    ("encoder", "message"),
    [
        (lambda texts: np.ones((len(texts) + 1, 2)), r"one row per text \(2\), but returned 3"),
        (lambda texts: np.full((len(texts), 2), np.nan), "row 0 holds NaN or inf"),
        (lambda texts: np.ones(len(texts)), "2-D"),
    ],
)
def test_external_checks_what_the_encoder_returns(encoder: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ExternalEmbedder(encoder).embed(["x", "y"])


def test_external_rejects_a_width_that_changes_between_batches() -> None:
    def encoder(texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 3 if len(texts) == 2 else 5))

    with pytest.raises(InvalidInputError, match="returned width 5 after width 3"):
        ExternalEmbedder(encoder, batch_size=2).embed(["aaa", "b", "cc"])


def test_external_rejects_non_encoders() -> None:
    with pytest.raises(InvalidInputError, match="encode"):
        ExternalEmbedder(42)
