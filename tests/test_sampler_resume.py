"""The resume contract: `state_dict()` mid-epoch, a new sampler with the same arguments,
`load_state_dict()`, then `set_epoch(same epoch)` (what DDP loops and the HF Trainer call at
the top of an epoch) continues exactly the uninterrupted sequence."""

from __future__ import annotations

import io
from itertools import islice
from typing import Any

import pytest
import torch

from katdensity import InverseDensitySampler

N = 97


def _weights(seed: int) -> torch.Tensor:
    return torch.rand(N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _through_a_file(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True)
    return loaded


def _epochs(sampler: InverseDensitySampler, epochs: range) -> list[int]:
    drawn: list[int] = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        drawn += list(sampler)
    return drawn


def _interrupted(
    build: Any, *, stop_epoch: int, stop_after: int, epochs: int, update: torch.Tensor | None
) -> list[int]:
    """Train epochs 0.., stop `stop_after` indices into `stop_epoch` (after `update_weights`
    at its start, if given), resume in a new sampler, and finish every epoch."""
    sampler = build()
    drawn = _epochs(sampler, range(stop_epoch))
    sampler.set_epoch(stop_epoch)
    iterator = iter(sampler)
    drawn += list(islice(iterator, stop_after // 2))
    if update is not None:
        sampler.update_weights(update)  # mid-epoch: effective from the next epoch
    drawn += list(islice(iterator, stop_after - stop_after // 2))
    state = _through_a_file(sampler.state_dict())

    resumed = build()
    resumed.load_state_dict(state)
    return drawn + _epochs(resumed, range(stop_epoch, epochs))


def _uninterrupted(
    build: Any, *, stop_epoch: int, stop_after: int, epochs: int, update: Any
) -> list[int]:
    sampler = build()
    drawn: list[int] = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        iterator = iter(sampler)
        if epoch == stop_epoch:
            drawn += list(islice(iterator, stop_after // 2))
            if update is not None:
                sampler.update_weights(update)
        drawn += list(iterator)
    return drawn


@pytest.mark.parametrize("stop_after", [1, 40, 96])
@pytest.mark.parametrize("update", [False, True], ids=["plain", "update_weights mid-epoch"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"group_size": 4},
        {"generator": "seeded"},
        {"replacement": False, "num_samples": 60},
        {"chunk_size": 10, "group_size": 2},
    ],
    ids=["seed", "group_size", "generator", "without replacement", "chunks"],
)
def test_resume_then_set_epoch_continues_the_uninterrupted_sequence(
    stop_after: int, update: bool, options: dict[str, Any]
) -> None:
    def build() -> InverseDensitySampler:
        kwargs = dict(options)
        if kwargs.get("generator") == "seeded":
            kwargs["generator"] = torch.Generator().manual_seed(5)
        else:
            kwargs["seed"] = 3
        return InverseDensitySampler(_weights(0), **kwargs)

    stop_after = min(stop_after, len(build()) - 1)
    plan = {
        "stop_epoch": 1,
        "stop_after": stop_after,
        "epochs": 3,
        "update": _weights(1) if update else None,
    }
    expected = _uninterrupted(build, **plan)
    assert _interrupted(build, **plan) == expected
    assert len(expected) == 3 * len(build())


def test_two_shards_each_resume_their_own_part() -> None:
    def build(rank: int) -> InverseDensitySampler:
        return InverseDensitySampler(
            _weights(0), seed=1, num_replicas=2, rank=rank, group_size=2, chunk_size=12
        )

    plan = {"stop_epoch": 0, "stop_after": 31, "epochs": 2, "update": _weights(2)}
    for rank in (0, 1):
        expected = _uninterrupted(lambda rank=rank: build(rank), **plan)
        assert _interrupted(lambda rank=rank: build(rank), **plan) == expected
    # The shards are still disjoint positions of one draw.
    first, second = (list(build(rank)) for rank in (0, 1))
    assert len(first) == len(second) == 2 * 49


def test_a_trainer_that_replays_the_epoch_takes_the_state_with_nothing_consumed() -> None:
    sampler = InverseDensitySampler(_weights(0), seed=2)
    sampler.set_epoch(4)
    epoch = list(sampler)  # the whole pass drawn up front, as TRL's repeat sampler does
    sampler.update_weights(_weights(1))  # the weights of the passes after it
    state = sampler.state_dict(consumed=0)
    resumed = InverseDensitySampler(_weights(0), seed=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(4)
    assert list(resumed) == epoch  # replayed from its start, from its own weights
    resumed.set_epoch(5)
    fresh = InverseDensitySampler(_weights(1), seed=2)
    fresh.set_epoch(5)
    assert list(resumed) == list(fresh)
    with pytest.raises(ValueError, match=r"consumed should be"):
        sampler.state_dict(consumed=len(sampler) + 1)


def test_set_epoch_still_restarts_an_epoch_that_was_not_restored() -> None:
    sampler = InverseDensitySampler(_weights(0), seed=0)
    sampler.set_epoch(0)
    whole = list(sampler)
    sampler.set_epoch(0)
    assert list(islice(iter(sampler), 10)) == whole[:10]
    sampler.set_epoch(0)  # restarts: it was stopped, not restored
    assert list(sampler) == whole
    # A restored sampler given another epoch starts that one afresh.
    sampler.set_epoch(1)
    list(islice(iter(sampler), 5))
    resumed = InverseDensitySampler(_weights(0), seed=0)
    resumed.load_state_dict(sampler.state_dict())
    resumed.set_epoch(2)
    sampler.set_epoch(2)
    assert list(resumed) == list(sampler)


def test_with_chunks_new_weights_apply_from_the_next_chunk() -> None:
    first, second = torch.zeros(N), torch.zeros(N)
    first[0], second[1] = 1.0, 1.0
    sampler = InverseDensitySampler(first, num_samples=24, chunk_size=8, seed=0)
    iterator = iter(sampler)
    head = list(islice(iterator, 3))
    sampler.update_weights(second)
    assert head + list(iterator) == [0] * 8 + [1] * 16
    # Every rank that updates between the same indices draws the same chunks; each chunk is
    # seeded by (epoch seed, chunk), not by what came before it.
    again = InverseDensitySampler(_weights(0), num_samples=24, chunk_size=8, seed=0)
    plain = InverseDensitySampler(_weights(0), num_samples=24, chunk_size=8, seed=0)
    mixed = list(islice(iter(again), 8))
    again.update_weights(_weights(1))
    again.update_weights(_weights(0))  # back to the same weights: the same chunks
    assert mixed + list(islice(iter(again), 16)) == list(plain)


def test_a_replayed_chunked_epoch_draws_each_chunk_from_its_own_weights() -> None:
    def build() -> InverseDensitySampler:
        return InverseDensitySampler(_weights(0), num_samples=40, chunk_size=10, seed=4)

    sampler = build()
    sampler.set_epoch(2)
    drawn: list[int] = []
    iterator = iter(sampler)
    for chunk in range(4):
        drawn += list(islice(iterator, 10))
        sampler.update_weights(_weights(chunk + 1))  # as a trainer re-weights per chunk
    state = sampler.state_dict(consumed=0)
    resumed = build()
    resumed.load_state_dict(_through_a_file(state))
    resumed.set_epoch(2)
    assert list(resumed) == drawn


def test_a_chunked_state_keeps_only_the_weights_still_to_be_drawn_from() -> None:
    def build() -> InverseDensitySampler:
        return InverseDensitySampler(_weights(0), num_samples=40, chunk_size=10, seed=4)

    sampler, whole = build(), build()
    iterator, uninterrupted = iter(sampler), iter(whole)
    drawn = list(islice(iterator, 25))  # chunks 0 and 1 consumed, chunk 2 half
    for chunk in range(3):
        sampler.update_weights(_weights(chunk + 1))
    expected = list(islice(uninterrupted, 25))
    for chunk in range(3):
        whole.update_weights(_weights(chunk + 1))
    assert drawn == expected
    state = sampler.state_dict()
    # Chunks 0 and 1 are never drawn again: only chunk 2's weights are kept.
    assert state["first_chunk"] == 2 and len(state["chunk_weights"]) == 1
    resumed = build()
    resumed.load_state_dict(_through_a_file(state))
    assert list(resumed) == list(uninterrupted)


def test_chunk_size_is_checked() -> None:
    with pytest.raises(ValueError, match="chunk_size needs replacement=True"):
        InverseDensitySampler(_weights(0), num_samples=10, replacement=False, chunk_size=5)
    with pytest.raises(ValueError, match="multiple of num_replicas"):
        InverseDensitySampler(_weights(0), chunk_size=5, num_replicas=2, rank=0)
    state = InverseDensitySampler(_weights(0), chunk_size=4).state_dict()
    with pytest.raises(ValueError, match="chunk_size=4, but this sampler has chunk_size=None"):
        InverseDensitySampler(_weights(0)).load_state_dict(state)
