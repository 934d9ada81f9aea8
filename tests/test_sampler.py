from __future__ import annotations

import io
from itertools import islice

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from torch.utils.data import DataLoader, Sampler

from katdensity import (
    ExactKNNDensity,
    InvalidInputError,
    InverseDensitySampler,
    InverseDensityWeighting,
)


def _weights(n: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) + 0.05


def test_is_a_torch_sampler() -> None:
    sampler = InverseDensitySampler(_weights())
    assert isinstance(sampler, Sampler)
    assert len(sampler) == 20 and len(list(sampler)) == 20


def test_draw_frequencies_follow_weights() -> None:
    weights = _weights(20).double()
    sampler = InverseDensitySampler(weights, num_samples=40_000, seed=11)
    counts = np.bincount(list(sampler), minlength=20)
    expected = (weights / weights.sum()).numpy() * 40_000
    assert chisquare(counts, expected).pvalue > 1e-3


def test_zero_weight_items_are_never_drawn() -> None:
    weights = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0])
    drawn = set(InverseDensitySampler(weights, num_samples=5_000).__iter__())
    assert drawn == {1, 3}


def test_exact_above_two_to_the_24_items() -> None:
    # torch.multinomial (and so WeightedRandomSampler) refuses more than 2^24 categories.
    n = 2**24 + 16
    weights = torch.zeros(n, dtype=torch.float64)
    weights[0] = 1.0
    weights[-8:] = 1.0  # eight items beyond index 2^24
    draws = np.array(list(InverseDensitySampler(weights, num_samples=9_000, seed=2)))
    counts = np.bincount(draws, minlength=n)[np.r_[0, n - 8 : n]]
    assert counts.sum() == 9_000
    assert chisquare(counts, np.full(9, 1_000.0)).pvalue > 1e-3


def test_same_seed_same_sequence_and_epochs_differ() -> None:
    first = InverseDensitySampler(_weights(), seed=5)
    second = InverseDensitySampler(_weights(), seed=5)
    assert list(first) == list(second)
    # Without set_epoch the sampler moves on by itself, reproducibly.
    assert list(first) == list(second)
    epoch0 = InverseDensitySampler(_weights(), seed=5)
    assert list(first) != list(epoch0)


def test_set_epoch_seeds_with_seed_plus_epoch() -> None:
    sampler = InverseDensitySampler(_weights(), seed=5)
    sampler.set_epoch(3)
    assert list(sampler) == list(InverseDensitySampler(_weights(), seed=8))
    assert list(sampler) == list(sampler), (
        "an explicit epoch is kept until set_epoch is called again"
    )


@pytest.mark.parametrize("replicas", [2, 3])
def test_shards_are_disjoint_complete_and_equal(replicas: int) -> None:
    weights = _weights(30)
    whole = list(InverseDensitySampler(weights, num_samples=25, replacement=False, seed=1))
    shards = [
        list(
            InverseDensitySampler(
                weights, num_samples=25, replacement=False, seed=1, num_replicas=replicas, rank=r
            )
        )
        for r in range(replicas)
    ]
    assert len({len(shard) for shard in shards}) == 1
    padded = -(-25 // replicas) * replicas
    assert sum(len(shard) for shard in shards) == padded
    assert set().union(*shards) == set(whole)
    # Disjoint apart from DistributedSampler-style padding, which repeats the start of the draw.
    flat = [i for shard in shards for i in shard]
    assert len(flat) - len(set(flat)) == padded - 25


def test_shards_interleave_the_global_draw() -> None:
    weights = _weights(50)
    whole = list(InverseDensitySampler(weights, num_samples=60, seed=9))
    shards = [
        list(InverseDensitySampler(weights, num_samples=60, seed=9, num_replicas=3, rank=r))
        for r in range(3)
    ]
    for rank in range(3):
        assert shards[rank] == whole[rank::3]


def test_replicate_mode_gives_every_rank_the_same_sequence() -> None:
    weights = _weights()
    sequences = [
        list(
            InverseDensitySampler(weights, seed=4, num_replicas=4, rank=r, distributed="replicate")
        )
        for r in range(4)
    ]
    assert all(seq == sequences[0] for seq in sequences)
    assert sequences[0] == list(InverseDensitySampler(weights, seed=4))


def test_group_size_repeats_each_draw_in_a_row() -> None:
    weights = _weights()
    base = list(InverseDensitySampler(weights, num_samples=12, seed=3, num_replicas=2, rank=1))
    grouped = InverseDensitySampler(
        weights, num_samples=12, seed=3, num_replicas=2, rank=1, group_size=4
    )
    assert len(grouped) == 24
    assert list(grouped) == [i for i in base for _ in range(4)]


def test_without_replacement_draws_distinct_items() -> None:
    drawn = list(InverseDensitySampler(_weights(100), num_samples=100, replacement=False))
    assert sorted(drawn) == list(range(100))


def _resume(
    sampler_args: dict[str, object], stop_after: int, update: torch.Tensor | None
) -> tuple[list[int], list[int]]:
    """Run 2 epochs uninterrupted, and the same run stopped and restored mid-epoch 1."""
    reference = InverseDensitySampler(**sampler_args)  # type: ignore[arg-type]
    uninterrupted = list(reference)
    if update is not None:
        reference.update_weights(update)
    uninterrupted += list(reference)

    first = InverseDensitySampler(**sampler_args)  # type: ignore[arg-type]
    resumed = list(first)
    if update is not None:
        first.update_weights(update)
    resumed += list(islice(iter(first), stop_after))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    second = InverseDensitySampler(**sampler_args)  # type: ignore[arg-type]
    second.load_state_dict(state)
    resumed += list(second)
    return uninterrupted, resumed


@pytest.mark.parametrize("stop_after", [0, 7, 29])
def test_resume_mid_epoch_equals_uninterrupted_run(stop_after: int) -> None:
    args = {"weights": _weights(), "num_samples": 30, "seed": 2, "group_size": 2}
    uninterrupted, resumed = _resume(args, stop_after, None)
    assert resumed == uninterrupted


def test_resume_after_update_weights() -> None:
    args = {"weights": _weights(), "num_samples": 30, "seed": 2}
    uninterrupted, resumed = _resume(args, 11, _weights(seed=99))
    assert resumed == uninterrupted


def test_update_weights_applies_from_next_epoch() -> None:
    sampler = InverseDensitySampler(torch.tensor([1.0, 0.0]), num_samples=10)
    iterator = iter(sampler)
    assert next(iterator) == 0
    sampler.update_weights(torch.tensor([0.0, 1.0]))
    assert set(iterator) == {0}, "the running epoch keeps its draw"
    assert set(sampler) == {1}
    with pytest.raises(InvalidInputError, match="dataset's length"):
        sampler.update_weights(torch.ones(3))


def test_load_state_dict_checks_origin() -> None:
    state = InverseDensitySampler(_weights(), seed=1).state_dict()
    with pytest.raises(InvalidInputError, match="seed=1, but this sampler has seed=2"):
        InverseDensitySampler(_weights(), seed=2).load_state_dict(state)
    with pytest.raises(InvalidInputError, match="version"):
        InverseDensitySampler(_weights()).load_state_dict({"epoch": 0})


def test_works_in_a_dataloader() -> None:
    dataset = torch.arange(20) * 10
    sampler = InverseDensitySampler(_weights(), seed=0)
    batches = list(DataLoader(dataset, sampler=sampler, batch_size=4))  # type: ignore[arg-type]
    flat = torch.cat(batches)
    assert flat.numel() == 20
    sampler.set_epoch(0)
    assert flat.tolist() == [10 * i for i in sampler]


def test_from_embeddings_keeps_rows_aligned(generator: torch.Generator) -> None:
    dense = 0.01 * torch.randn(90, 4, generator=generator)
    sparse = 5.0 * torch.randn(10, 4, generator=generator)
    embeddings = torch.cat([dense, sparse])
    sampler = InverseDensitySampler.from_embeddings(
        embeddings,
        ExactKNNDensity(k=5, metric="euclidean"),
        InverseDensityWeighting(max_weight_ratio=None, min_ess_ratio=None),
        num_samples=2_000,
    )
    assert sampler.density is not None and len(sampler.density) == 100
    drawn = np.array(list(sampler))
    assert (drawn >= 90).mean() > 0.9, "the 10 sparse rows must dominate the draws"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": torch.tensor([1.0, -0.5])}, r"weights\[1\]=-0.5"),
        ({"weights": torch.zeros(4)}, "positive sum"),
        ({"weights": torch.ones(2, 2)}, "1-D"),
        (
            {"weights": torch.ones(3), "rank": 2, "num_replicas": 2},
            "rank should be an integer >= 0 and smaller than 2",
        ),
        (
            {"weights": torch.tensor([1.0, 0.0]), "num_samples": 2, "replacement": False},
            r"positive weight \(1\)",
        ),
        ({"weights": torch.ones(3), "group_size": 0}, "group_size"),
        ({"weights": torch.ones(3), "distributed": "all"}, "distributed should be one of"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        InverseDensitySampler(**kwargs)  # type: ignore[arg-type]


def test_a_few_repeated_prompts_do_not_take_the_draws() -> None:
    # 60 rows of 3 prompts repeated, 40 distinct ones: the repeated rows once took 99.9%.
    from katdensity import HashingEmbedder, effective_sample_size

    texts = [f"How do I cook rice number {i % 3}?" for i in range(60)]
    texts += [f"unique prompt about topic {i} {'x' * i}" for i in range(40)]
    sampler = InverseDensitySampler.from_texts(
        texts, HashingEmbedder(), ExactKNNDensity(k=5), num_samples=5000, seed=0
    )
    draws = np.array(list(sampler))
    assert (draws < 60).mean() < 0.6  # their share of the rows is 0.6
    assert sampler.density is not None and sampler.density.distinct_index is not None
    assert effective_sample_size(sampler.weights, sampler.density.distinct_index) >= 0.6 * 43
