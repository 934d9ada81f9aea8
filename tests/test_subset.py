from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from katdensity import InvalidInputError, select_subset


def test_distinct_and_skips_zero_weights() -> None:
    weights = torch.tensor([1.0, 0.0, 2.0, 3.0, 0.0, 1.0])
    chosen = select_subset(weights, 4, seed=3)
    assert sorted(chosen.tolist()) == [0, 2, 3, 5]
    assert chosen.dtype == torch.int64


def test_deterministic_per_seed() -> None:
    weights = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(select_subset(weights, 50, seed=7), select_subset(weights, 50, seed=7))
    assert not torch.equal(select_subset(weights, 50, seed=7), select_subset(weights, 50, seed=8))


def test_first_draw_follows_weights() -> None:
    """The first selected item is one weighted draw: its frequency must follow the weights."""
    weights = np.array([1.0, 2.0, 3.0, 4.0])
    counts = np.zeros(4)
    for seed in range(4000):
        counts[int(select_subset(weights, 2, seed=seed)[0])] += 1
    assert chisquare(counts, weights / weights.sum() * counts.sum()).pvalue > 1e-3


def test_inclusion_matches_sequential_sampling() -> None:
    """Inclusion frequencies of a 2-of-3 subset equal those of numpy's sequential sampler."""
    weights = np.array([0.6, 0.3, 0.1])
    # P(i included) = 1 - P(i never drawn) computed by hand for sequential draws of 2.
    p = weights
    excluded = [
        sum(p[j] * p[m] / (1 - p[j]) for j in range(3) for m in range(3) if len({i, j, m}) == 3)
        for i in range(3)
    ]
    expected = 1 - np.array(excluded)
    included = np.zeros(3)
    for seed in range(6000):
        included[select_subset(weights, 2, seed=seed).numpy()] += 1
    np.testing.assert_allclose(included / 6000, expected, atol=0.02)


def test_budget_checks() -> None:
    with pytest.raises(
        InvalidInputError,
        match=r"at most the number of items with positive weight \(2\), but got budget=3",
    ):
        select_subset(torch.tensor([1.0, 0.0, 1.0]), 3)
    with pytest.raises(InvalidInputError, match="budget should be an integer"):
        select_subset(torch.ones(3), 1.5)  # type: ignore[arg-type]
    assert select_subset(torch.ones(3), 0).numel() == 0


def test_copies_are_one_item_returned_once_as_their_first_row() -> None:
    groups = torch.tensor([0, 1, 0, 0, 2, 1, 3])
    weights = torch.tensor([1.0, 2.0, 1.0, 1.0, 1.0, 2.0, 1.0])
    for seed in range(50):
        chosen = select_subset(weights, 4, seed=seed, groups=groups)
        assert sorted(chosen.tolist()) == [0, 1, 4, 6]
    with pytest.raises(InvalidInputError, match=r"number of distinct prompts .* \(4\)"):
        select_subset(weights, 5, groups=groups)
    assert select_subset(weights, 7, groups=groups, copies=True).numel() == 7


def test_a_prompts_copies_are_drawn_with_their_weight_together() -> None:
    # Prompt 0 has 3 copies of weight 1, prompt 1 one row of weight 3: equally likely first.
    groups = torch.tensor([0, 0, 0, 1])
    weights = torch.tensor([1.0, 1.0, 1.0, 3.0])
    firsts = [int(select_subset(weights, 1, seed=s, groups=groups)[0]) for s in range(4000)]
    counts = np.bincount(firsts, minlength=4)
    assert counts[1] == counts[2] == 0
    assert chisquare([counts[0], counts[3]]).pvalue > 1e-3
