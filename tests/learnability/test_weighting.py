from __future__ import annotations

import pytest
import torch

from katdensity import (
    ExactKNNDensity,
    InvalidInputError,
    LearnabilityTracker,
    LearnabilityWeighting,
    Weighting,
    effective_sample_size,
    weigh,
)
from katdensity.learnability import LEARNABILITY_MIN_ESS_RATIO
from katdensity.learnability.weighting import _BISECTION_STEPS, _Mixture


@pytest.fixture(scope="module")
def result() -> object:
    generator = torch.Generator().manual_seed(2)
    points = torch.randn(200, 8, generator=generator)
    points[:12] = points[0] + 0.005 * torch.randn(12, 8, generator=generator)  # a family
    points[20:23] = points[20]  # one prompt, three times
    return ExactKNNDensity(k=10).estimate(points)


def test_is_a_weighting_and_strength_zero_gives_the_density_weights(result: object) -> None:
    tracker = LearnabilityTracker(200, density=result)
    tracker.update(list(range(30, 60)) * 4, [1.0] * 120)
    weighting = LearnabilityWeighting(tracker, strength=0.0)
    assert isinstance(weighting, Weighting)
    torch.testing.assert_close(weighting(result), weigh(result).probabilities)


def test_weights_follow_learnability_and_never_starve_a_prompt(result: object) -> None:
    tracker = LearnabilityTracker(200, density=result)
    solved, hopeless, learnable = [40] * 16, [41] * 16, [42] * 16
    tracker.update(solved + hopeless + learnable, [1.0] * 16 + [0.0] * 16 + [1.0, 0.0] * 8)
    weighting = LearnabilityWeighting(tracker, explore=0.1)
    weights = weighting(result)
    density = weigh(result).probabilities
    # The learnable prompt gains against its density weight; solved and hopeless ones lose...
    ratio = weights / density
    assert float(ratio[42]) > 1.0 > float(ratio[40]) and float(ratio[41]) < 1.0
    # ... but keep at least the explore share of their density weight.
    assert torch.all(weights >= 0.1 * density * (1 - 1e-12))
    assert float(weights.sum()) == pytest.approx(1.0)
    # Copies share one posterior and split one prompt's weight.
    assert float(weights[20]) == float(weights[21]) == float(weights[22])


def test_a_mode_whose_members_fare_differently_weighs_as_more_than_one_prompt(
    result: object,
) -> None:
    quiet = LearnabilityTracker(200, groups=result.distinct_index)  # no borrowing
    same = LearnabilityTracker(200, groups=result.distinct_index)
    split = LearnabilityTracker(200, groups=result.distinct_index)
    rows = [row for _ in range(8) for row in range(12)]
    repeat = [t for t in range(8) for _ in range(12)]
    same.update(rows, [float(t % 2) for t in repeat])  # every member passes half the time
    # Rows 0-5 always pass (solved), rows 6-11 half the time (learnable).
    split.update(
        rows, [1.0 if row < 6 else float(t % 2) for row, t in zip(rows, repeat, strict=True)]
    )
    share = {
        name: float(LearnabilityWeighting(t, strength=0.0)(result)[:12].sum())
        for name, t in (("quiet", quiet), ("same", same), ("split", split))
    }
    assert share["same"] == pytest.approx(share["quiet"])
    assert share["split"] > 1.8 * share["quiet"]


def test_the_ess_floor_holds_by_lowering_the_strength(result: object) -> None:
    # All hopeless but one, which lends to none (borrow_limit=0).
    tracker = LearnabilityTracker(200, density=result, prior=(0.05, 50.0), borrow_limit=0.0)
    tracker.update([100] * 8, [1.0, 0.0] * 4)  # one learnable prompt
    m = int(result.distinct_index.max()) + 1
    for floor in (LEARNABILITY_MIN_ESS_RATIO, 0.8):
        weighting = LearnabilityWeighting(tracker, strength=3.0, explore=0.0, min_ess_ratio=floor)
        weights = weighting(result)
        assert weighting.strength_used_ is not None and weighting.strength_used_ < 3.0
        ess = effective_sample_size(weights, result.distinct_index)
        assert ess >= floor * m * (1 - 1e-9)
        assert ess < (floor + 0.01) * m  # tempered no more than needed
    unfloored = LearnabilityWeighting(tracker, strength=3.0, explore=0.0, min_ess_ratio=None)
    assert unfloored(result)[100] > 0.5 and LEARNABILITY_MIN_ESS_RATIO == 0.5


def test_bad_arguments_are_named(result: object) -> None:
    tracker = LearnabilityTracker(200)
    with pytest.raises(InvalidInputError, match="tracker should be a LearnabilityTracker"):
        LearnabilityWeighting("tracker")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="explore should be"):
        LearnabilityWeighting(tracker, explore=1.5)
    other = ExactKNNDensity(k=3).estimate(torch.randn(20, 3))
    with pytest.raises(InvalidInputError, match="tracker's 200 prompts, but has 20"):
        LearnabilityWeighting(tracker)(other)


@pytest.mark.parametrize("seed", range(5))
def test_the_binned_floor_search_finds_the_exact_bisections_strength(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    seen = torch.rand(20_000, generator=generator, dtype=torch.float64)
    seen *= 0.7 / seen.sum()
    factor = torch.rand(20_000, generator=generator, dtype=torch.float64) ** 3
    factor[:50] = 0.0  # surely solved or failed
    mix = _Mixture(seen, factor, 0.3, 0.3**2 / 5_000, 2 / 3, 0.1)
    floor = 0.9 * mix.ess(0.0)
    assert mix.ess(4.0) < floor
    low, high = 0.0, 4.0  # the plain bisection on exact ESS values
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if mix.ess(middle) >= floor else (low, middle)
    found = mix.strength_for(floor, high=4.0)
    assert mix.ess(found) >= floor
    assert abs(found - low) <= 4.0 / 2**_BISECTION_STEPS + 1e-12
