"""Diversity metrics against hand-computed values and brute-force oracles."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from katdensity.errors import InvalidInputError
from katdensity.metrics import (
    distinct_n,
    diversity_report,
    em_dash_rate,
    gini,
    self_bleu,
    token_gini,
    tokens,
    type_token_ratio,
    vendi_score,
)


def _pairwise_gini(values: np.ndarray) -> float:
    x = np.asarray(values, dtype=np.float64)
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean()))


@pytest.mark.parametrize("values", [[3] * 5, [0.1] * 7, [1e-300] * 3, [2**60] * 4])
def test_gini_is_exactly_zero_on_a_uniform_distribution(values: list[float]) -> None:
    assert gini(values) == 0.0


def test_gini_matches_hand_values_and_the_pairwise_definition() -> None:
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25, abs=1e-15)
    assert gini([0, 0, 0, 1]) == pytest.approx(0.75, abs=1e-15)  # (n - 1) / n
    values = np.random.default_rng(0).exponential(size=101)
    assert gini(values) == pytest.approx(_pairwise_gini(values), rel=1e-12)


@pytest.mark.parametrize("values", [[], [0, 0], [1, -1], [1, float("nan")]])
def test_gini_refuses_bad_values(values: list[float]) -> None:
    with pytest.raises(InvalidInputError, match="non-negative"):
        gini(values)


def test_token_gini_is_zero_when_every_token_occurs_equally() -> None:
    assert token_gini(["a b c", "c b a"]) == 0.0
    assert token_gini(["a a a b"]) == pytest.approx(_pairwise_gini(np.array([3, 1])))


def test_distinct_n_and_type_token_ratio_by_hand() -> None:
    texts = ["the cat sat", "the cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # (the cat) twice
    assert distinct_n(texts, 3) == pytest.approx(2 / 2)
    assert distinct_n(["one"], 2) == 0.0
    assert type_token_ratio(["go go go go", "a b"]) == pytest.approx((1 / 4 + 1) / 2)
    with pytest.raises(InvalidInputError, match="n should be an integer >= 1"):
        distinct_n(texts, 0)
    with pytest.raises(InvalidInputError, match="sequence of strings"):
        distinct_n("a string is not a list of texts", 1)


def test_em_dash_rate_counts_per_thousand_words() -> None:
    assert em_dash_rate(["fast \u2014 and cheap", "no dash here"]) == pytest.approx(1000 / 6)
    assert em_dash_rate(["- – are not em-dashes"]) == 0.0


def _brute_self_bleu(texts: list[str], max_n: int = 4) -> float:
    """Textbook self-BLEU: every other text as a reference, NLTK's method-1 smoothing."""
    tokenised = [tokens(text) for text in texts]
    scores = []
    for i, hypothesis in enumerate(tokenised):
        if not hypothesis:
            continue
        references = [words for j, words in enumerate(tokenised) if j != i and words]
        logs = []
        for n in range(1, max_n + 1):
            grams = Counter(tuple(hypothesis[k : k + n]) for k in range(len(hypothesis) - n + 1))
            total = sum(grams.values())
            if total == 0:
                continue
            clipped = 0
            for gram, count in grams.items():
                most = max(
                    Counter(tuple(r[k : k + n]) for k in range(len(r) - n + 1))[gram]
                    for r in references
                )
                clipped += min(count, most)
            logs.append(math.log(clipped / total if clipped else 0.1 / total))
        c = len(hypothesis)
        r = min((len(ref) for ref in references), key=lambda length: (abs(length - c), length))
        brevity = 0.0 if c >= r else 1 - r / c
        scores.append(math.exp(brevity + sum(logs) / len(logs)))
    return float(np.mean(scores))


def test_self_bleu_by_hand() -> None:
    assert self_bleu(["a b c", "a b c", "a b c"]) == 1.0
    # precisions 3/4, 2/3, 1/2 and 0 smoothed to 0.1/1; equal lengths, so no brevity penalty
    assert self_bleu(["a b c d", "a b c e"]) == pytest.approx((0.75 * 2 / 3 * 0.5 * 0.1) ** 0.25)
    # "a b" against "a b c d": perfect unigrams and bigrams, brevity penalty exp(1 - 4/2)
    short = math.exp(-1.0)
    long = (0.5 * (1 / 3) * (0.1 / 2) * 0.1) ** 0.25
    assert self_bleu(["a b", "a b c d"]) == pytest.approx((short + long) / 2)


def test_self_bleu_matches_the_quadratic_oracle_on_random_texts() -> None:
    rng = random.Random(0)
    vocabulary = ["a", "b", "c", "d", "e", "f"]
    texts = [" ".join(rng.choices(vocabulary, k=rng.randint(0, 12))) for _ in range(40)]
    texts += ["a b c d e f"] * 3
    assert self_bleu(texts) == pytest.approx(_brute_self_bleu(texts), rel=1e-12)


def test_self_bleu_needs_two_texts_with_tokens() -> None:
    with pytest.raises(InvalidInputError, match="at least two texts"):
        self_bleu(["only one", "   "])


def test_vendi_score_of_identical_orthogonal_and_two_item_sets() -> None:
    assert vendi_score(torch.ones(5, 3)) == pytest.approx(1.0, abs=1e-9)
    assert vendi_score(torch.eye(7)) == pytest.approx(7.0, abs=1e-9)
    assert vendi_score(3.0 * torch.eye(4, 10)) == pytest.approx(4.0, abs=1e-9)
    # cosine 0.5: eigenvalues of K/2 are 0.75 and 0.25
    pair = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert vendi_score(pair) == pytest.approx(math.exp(entropy), abs=1e-6)


def test_vendi_score_is_the_same_through_either_gram_matrix() -> None:
    wide = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))
    tall = torch.cat([wide, wide[:2]])  # 8 rows, 40 columns: the (n, n) route
    narrow = wide[:, :4]  # 6 rows, 4 columns: the (D, D) route
    k = torch.nn.functional.normalize(narrow.double(), dim=1)
    eigenvalues = torch.linalg.eigvalsh(k @ k.T / 6).clamp_min(0)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    expected = math.exp(-float((eigenvalues * eigenvalues.log()).sum()))
    assert vendi_score(narrow) == pytest.approx(expected, rel=1e-6)
    assert 1.0 < vendi_score(tall) < 8.0
    with pytest.raises(InvalidInputError, match="all-zero rows"):
        vendi_score(torch.zeros(2, 3))


def test_diversity_report_lists_every_metric_and_checks_alignment() -> None:
    texts = ["the cat sat \u2014 happily", "a dog ran", "the cat sat"]
    report = diversity_report(texts, torch.eye(3))
    assert report["vendi"] == pytest.approx(3.0)
    assert report["distinct_2"] == pytest.approx(distinct_n(texts, 2))
    assert report["self_bleu"] == pytest.approx(self_bleu(texts))
    assert set(report) == {
        "texts",
        "mean_tokens",
        "distinct_1",
        "distinct_2",
        "distinct_3",
        "type_token_ratio",
        "token_gini",
        "self_bleu",
        "em_dash_per_1k_words",
        "vendi",
    }
    with pytest.raises(InvalidInputError, match="one row per text"):
        diversity_report(texts, torch.eye(2))
