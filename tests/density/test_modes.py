from __future__ import annotations

import pytest
import torch

from katdensity import ExactKNNDensity, InvalidInputError
from katdensity.density.modes import find_modes


def _clusters(generator: torch.Generator) -> tuple[torch.Tensor, list[int]]:
    """200 spread points, a tight family of 12 near-duplicates and a row copied 5 times.

    In 64 dimensions the nearest-neighbour distances of Gaussian points concentrate (none of
    these 200 lies within 0.7 of the median), so no spread pair looks like a near-duplicate.
    """
    spread = torch.randn(200, 64, generator=generator)
    centre = torch.randn(1, 64, generator=generator) * 3
    family = centre + 1e-2 * torch.randn(12, 64, generator=generator)
    copies = spread[:1].repeat(5, 1)
    return torch.cat([spread, family, copies]), [200 + i for i in range(12)]


def test_families_and_copies_are_modes_and_spread_points_are_not(
    generator: torch.Generator,
) -> None:
    points, family = _clusters(generator)
    labels = find_modes(ExactKNNDensity(k=10, metric="euclidean").estimate(points))
    assert labels.shape == (217,) and labels.dtype == torch.int64
    assert len(set(labels[family].tolist())) == 1  # the family is one mode
    assert set(labels[212:].tolist()) == {int(labels[0])}  # the copies join row 0's mode
    others = labels[1:200]
    assert others.unique().numel() == 199  # spread points stay prompts of their own
    assert int(labels[family[0]]) not in set(others.tolist())
    # Labels count up in order of first appearance.
    first_seen = list(dict.fromkeys(labels.tolist()))
    assert first_seen == list(range(len(first_seen)))


def test_a_stricter_radius_finds_fewer_near_duplicates(generator: torch.Generator) -> None:
    points, _ = _clusters(generator)
    result = ExactKNNDensity(k=10, metric="euclidean").estimate(points)
    loose = find_modes(result, radius_fraction=1.0).unique().numel()
    strict = find_modes(result, radius_fraction=1e-6, closed_share=1.0).unique().numel()
    assert strict == 200 + 12  # only the exact copies merge
    assert loose <= find_modes(result).unique().numel() <= strict
    # Without cores, the family is still found: its neighbourhoods are closed.
    closed = find_modes(result, radius_fraction=1e-6)
    assert closed.unique().numel() == 201
    with pytest.raises(InvalidInputError, match=r"radius_fraction should be a finite number > 0"):
        find_modes(result, radius_fraction=0.0)


def test_stragglers_whose_neighbours_are_a_family_join_it(generator: torch.Generator) -> None:
    points, family = _clusters(generator)
    centre = points[family].mean(dim=0, keepdim=True)
    # Far from the family's core (farther than spread points lie from each other), but
    # nearer to it than to anything else: all their nearest neighbours are its members.
    stragglers = centre + 1.5 * torch.randn(2, 64, generator=generator)
    result = ExactKNNDensity(k=10, metric="euclidean").estimate(torch.cat([points, stragglers]))
    labels = find_modes(result)
    assert set(labels[217:].tolist()) == {int(labels[family[0]])}
    assert labels[1:200].unique().numel() == 199  # spread points stay prompts of their own
    # All ten neighbours of each straggler are family members: even closure 1.0 joins them.
    strict = find_modes(result, closure=1.0)
    assert set(strict[217:].tolist()) == {int(strict[family[0]])}
    with pytest.raises(InvalidInputError, match=r"closure should be a finite number"):
        find_modes(result, closure=1.01)


def test_a_closed_family_no_tighter_than_its_surroundings_is_one_mode(
    generator: torch.Generator,
) -> None:
    spread = torch.randn(200, 64, generator=generator)
    nearest = torch.cdist(spread, spread).fill_diagonal_(float("inf")).min(dim=1).values
    # Ten rewrites, about the size of k, each pair ~0.75 of a typical nearest-neighbour
    # distance apart: too loose for a core, but they are each other's neighbours.
    spacing = 0.75 * float(nearest.median()) / (2 * 64) ** 0.5
    family = 3 * torch.randn(1, 64, generator=generator) + spacing * torch.randn(
        10, 64, generator=generator
    )
    result = ExactKNNDensity(k=10, metric="euclidean").estimate(torch.cat([spread, family]))
    assert find_modes(result, closed_share=1.0)[200:].unique().numel() > 1  # no core
    labels = find_modes(result)
    assert labels[200:].unique().numel() == 1
    assert labels[:200].unique().numel() == 200 and int(labels[200]) not in labels[:200]
    with pytest.raises(InvalidInputError, match=r"closed_share should be a finite number"):
        find_modes(result, closed_share=0.0)


def test_a_family_does_not_join_a_mode_it_only_sees_from_afar() -> None:
    from katdensity import HashingEmbedder

    # Three prompts, each copied 20 times, and 40 templated prompts: with k=5, each of the
    # three has two near neighbours (the other two) and three orthogonal ones in the template.
    texts = [f"How do I cook rice number {i % 3}?" for i in range(60)]
    texts += [f"unique prompt about topic {i} {'x' * i}" for i in range(40)]
    labels = find_modes(ExactKNNDensity(k=5).estimate(HashingEmbedder().embed(texts)))
    assert not set(labels[:60].tolist()) & set(labels[60:].tolist())
