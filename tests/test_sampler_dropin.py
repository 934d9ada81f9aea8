"""`InverseDensitySampler` as a drop-in `WeightedRandomSampler`: the same inputs accepted and
refused, the same length and DataLoader behaviour, and a `generator=` like torch's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from torch.utils.data import DataLoader, WeightedRandomSampler

from katdensity import InvalidInputError, InverseDensitySampler

WEIGHTS = [0.1, 0.9, 0.4]

# (weights, num_samples, replacement), each accepted or refused by WeightedRandomSampler.
CASES: list[tuple[Any, Any, Any]] = [
    (WEIGHTS, 6, True),
    (tuple(WEIGHTS), 6, True),
    ([1, 2, 3], 4, True),
    ([True, False, True], 4, True),
    (np.array(WEIGHTS), 6, True),
    (np.array(WEIGHTS, dtype=np.float32), 6, True),
    (torch.tensor(WEIGHTS), 6, True),
    (WEIGHTS, 3, False),
    (WEIGHTS, 1, True),
    (WEIGHTS, 0, True),
    (WEIGHTS, -2, True),
    (WEIGHTS, True, True),
    (WEIGHTS, 2.0, True),
    (WEIGHTS, "6", True),
    (WEIGHTS, 6, "yes"),
    (WEIGHTS, 6, 1),
    (WEIGHTS, 4, False),  # more draws than items without replacement
    ([[0.1, 0.9], [0.4, 0.2]], 6, True),
    ([0.1, None, 0.4], 6, True),
    (["a", "b"], 6, True),
    ("abc", 6, True),
    ([], 6, True),
    ([0.1, -0.5, 0.4], 6, True),
    ([0.0, 0.0, 0.0], 6, True),
    ([0.1, float("nan"), 0.4], 6, True),
]


def _works(make: Callable[..., Any], case: tuple[Any, Any, Any]) -> bool:
    """Whether building the sampler and drawing one epoch from it succeeds."""
    weights, num_samples, replacement = case
    try:
        list(make(weights, num_samples, replacement))
    except (TypeError, ValueError, RuntimeError):
        return False
    return True


@pytest.mark.parametrize("case", CASES, ids=[repr(c)[:40] for c in CASES])
def test_accepts_and_refuses_what_weighted_random_sampler_does(
    case: tuple[Any, Any, Any],
) -> None:
    expected = _works(WeightedRandomSampler, case)
    assert _works(InverseDensitySampler, case) == expected
    if not expected:  # refused when built, with the library's own error
        with pytest.raises(InvalidInputError):
            InverseDensitySampler(*case)


def test_positional_arguments_mean_the_same() -> None:
    torch_sampler = WeightedRandomSampler(WEIGHTS, 7, False, torch.Generator().manual_seed(0))
    with pytest.raises(InvalidInputError, match="num_samples should be at most"):
        InverseDensitySampler(WEIGHTS, 7, False, torch.Generator().manual_seed(0))
    assert torch_sampler.replacement is False
    ours = InverseDensitySampler(WEIGHTS, 2, False, torch.Generator().manual_seed(0))
    assert ours.num_samples == 2 and ours.replacement is False
    drawn = list(ours)
    assert len(set(drawn)) == 2  # without replacement


@pytest.mark.parametrize("num_samples", [1, 5, 64, 101])
def test_same_length_and_dataloader_batches(num_samples: int) -> None:
    dataset = list(range(3))
    samplers = [
        WeightedRandomSampler(WEIGHTS, num_samples),
        InverseDensitySampler(WEIGHTS, num_samples),
    ]
    assert [len(s) for s in samplers] == [num_samples, num_samples]
    for drop_last in (False, True):
        shapes = [
            [
                len(batch)
                for batch in DataLoader(dataset, batch_size=8, sampler=s, drop_last=drop_last)
            ]
            for s in samplers
        ]
        assert shapes[0] == shapes[1]
        assert len(
            DataLoader(dataset, batch_size=8, sampler=samplers[1], drop_last=drop_last)
        ) == len(shapes[1])


def test_draws_follow_the_sequence_weights_like_torch() -> None:
    # Both samplers draw 30,000 indices; each count must fit the weights (chi-square, p > 1e-3
    # at these fixed seeds; the test fails for draws off by 2% of a weight or more).
    expected = np.array(WEIGHTS) / sum(WEIGHTS) * 30_000
    for sampler in (
        WeightedRandomSampler(WEIGHTS, 30_000, generator=torch.Generator().manual_seed(5)),
        InverseDensitySampler(WEIGHTS, 30_000, generator=torch.Generator().manual_seed(5)),
    ):
        counts = np.bincount(list(sampler), minlength=3)
        assert chisquare(counts, expected).pvalue > 1e-3


def test_a_generator_seeds_each_epoch_and_reproduces() -> None:
    def epochs(generator: torch.Generator) -> list[list[int]]:
        sampler = InverseDensitySampler([1.0] * 50, 20, generator=generator)
        return [list(sampler) for _ in range(3)]

    first = epochs(torch.Generator().manual_seed(3))
    assert first == epochs(torch.Generator().manual_seed(3))
    assert first[0] != first[1] != first[2]  # each epoch draws afresh, as torch's does
    assert first != epochs(torch.Generator().manual_seed(4))


def test_a_generator_resumes_mid_epoch_and_into_the_next() -> None:
    uninterrupted = InverseDensitySampler(
        [1.0] * 50, 20, generator=torch.Generator().manual_seed(8)
    )
    expected = list(uninterrupted) + list(uninterrupted)

    sampler = InverseDensitySampler([1.0] * 50, 20, generator=torch.Generator().manual_seed(8))
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(7)]
    state = sampler.state_dict()
    resumed = InverseDensitySampler([1.0] * 50, 20, generator=torch.Generator().manual_seed(99))
    resumed.load_state_dict(state)
    assert head + list(resumed) + list(resumed) == expected


def test_seed_and_generator_are_exclusive() -> None:
    with pytest.raises(InvalidInputError, match="give seed or generator, not both"):
        InverseDensitySampler(WEIGHTS, 3, generator=torch.Generator(), seed=1)
    with pytest.raises(InvalidInputError, match=r"generator should be a torch\.Generator"):
        InverseDensitySampler(WEIGHTS, 3, generator=7)  # type: ignore[arg-type]
    seeded = InverseDensitySampler(WEIGHTS, 3)
    with pytest.raises(InvalidInputError, match="both use a generator or both a seed"):
        InverseDensitySampler(WEIGHTS, 3, generator=torch.Generator()).load_state_dict(
            seeded.state_dict()
        )
