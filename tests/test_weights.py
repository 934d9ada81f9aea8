from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from katdensity import (
    DensityResult,
    ExactKNNDensity,
    InvalidInputError,
    InverseDensityWeighting,
    Neighbors,
    Weighting,
    effective_sample_size,
    inverse_density_weights,
)
from katdensity.density.modes import find_modes
from katdensity.weights import DEFAULT_MIN_ESS_RATIO, weigh, weights_with_floor


def test_proportional_to_density_power() -> None:
    log_density = torch.tensor([0.0, math.log(2.0), math.log(4.0)], dtype=torch.float64)
    weights = inverse_density_weights(log_density, beta=1.0, max_weight_ratio=None)
    np.testing.assert_allclose(weights.numpy(), np.array([4.0, 2.0, 1.0]) / 7.0, rtol=1e-12)
    half = inverse_density_weights(log_density, beta=0.5, max_weight_ratio=None)
    np.testing.assert_allclose(
        half.numpy(), np.array([2.0, math.sqrt(2), 1.0]) / (3 + math.sqrt(2))
    )
    assert weights.dtype == torch.float64


def test_beta_zero_is_uniform() -> None:
    weights = inverse_density_weights(
        torch.randn(50, generator=torch.Generator().manual_seed(0)), beta=0.0
    )
    np.testing.assert_allclose(weights.numpy(), np.full(50, 1 / 50))


def test_no_overflow_with_extreme_log_densities() -> None:
    weights = inverse_density_weights(
        torch.tensor([-5000.0, 0.0, 5000.0]), max_weight_ratio=None, min_ess_ratio=None
    )
    np.testing.assert_allclose(weights.numpy(), [1.0, 0.0, 0.0])


def test_cap_water_fills() -> None:
    # Raw probabilities 0.7, 0.2, 0.05, 0.05; cap 1.5 / 4 = 0.375.
    log_density = -torch.log(torch.tensor([0.7, 0.2, 0.05, 0.05], dtype=torch.float64))
    weights = inverse_density_weights(log_density, max_weight_ratio=1.5)
    # Capping only the first would give the second 0.625 * 0.2 / 0.3 > 0.375, so both are
    # capped and the remaining 0.25 is split 0.05 : 0.05.
    np.testing.assert_allclose(weights.numpy(), [0.375, 0.375, 0.125, 0.125])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-30, 30), min_size=2, max_size=60),
    st.floats(1.0, 10.0),
    st.floats(0.0, 1.0),
)
def test_weight_properties(log_density: list[float], ratio: float, mix: float) -> None:
    values = torch.tensor(log_density, dtype=torch.float64)
    weights = inverse_density_weights(values, max_weight_ratio=ratio, uniform_mix=mix)
    n = len(log_density)
    assert float(weights.sum()) == pytest.approx(1.0)
    assert float(weights.max()) <= ratio / n * (1 + 1e-9)
    assert float(weights.min()) >= mix / n * (1 - 1e-9)
    # Never favours the denser of two points.
    denser = values[:, None] > values[None, :]
    assert bool((weights[:, None] <= weights[None, :] * (1 + 1e-9) + 1e-15)[denser].all())


def test_uniform_mix_is_a_floor() -> None:
    weights = inverse_density_weights(
        torch.tensor([0.0, 100.0]), max_weight_ratio=None, uniform_mix=0.2, min_ess_ratio=None
    )
    np.testing.assert_allclose(weights.numpy(), [0.9, 0.1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": -1.0}, "beta should be a finite number >= 0.0, but got beta=-1.0"),
        ({"max_weight_ratio": 0.5}, "max_weight_ratio"),
        ({"uniform_mix": 1.5}, "uniform_mix"),
    ],
)
def test_bad_options(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        inverse_density_weights(torch.zeros(3), **kwargs)


def test_bad_log_density() -> None:
    with pytest.raises(InvalidInputError, match=r"log_density\[1\]=nan"):
        inverse_density_weights(torch.tensor([0.0, float("nan")]))
    with pytest.raises(InvalidInputError, match="1-D"):
        inverse_density_weights(torch.zeros(2, 2))


def test_effective_sample_size() -> None:
    assert effective_sample_size(torch.ones(10)) == pytest.approx(10.0)
    assert effective_sample_size(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert effective_sample_size(np.array([3.0, 1.0])) == pytest.approx(16 / 10)
    with pytest.raises(InvalidInputError, match=r"weights\[0\]=-1.0"):
        effective_sample_size(torch.tensor([-1.0, 2.0]))
    with pytest.raises(InvalidInputError, match="positive sum"):
        effective_sample_size(torch.zeros(3))


def test_weighting_protocol(generator: torch.Generator) -> None:
    weighting = InverseDensityWeighting(beta=0.5, max_weight_ratio=None)
    assert isinstance(weighting, Weighting)
    result = ExactKNNDensity(k=3).estimate(torch.randn(40, 4, generator=generator))
    assert isinstance(result, DensityResult)
    expected = inverse_density_weights(
        result.log_density, beta=0.5, max_weight_ratio=None, modes=find_modes(result)
    )
    torch.testing.assert_close(weighting(result), expected)
    plain = InverseDensityWeighting(beta=0.5, max_weight_ratio=None, mode_cap=False)
    torch.testing.assert_close(
        plain(result),
        inverse_density_weights(result.log_density, beta=0.5, max_weight_ratio=None),
    )


def test_a_mode_weighs_at_most_one_median_prompt() -> None:
    # Prompts 0-3 form one mode; on their own densities they would hold 4 prompts' weight.
    log_density = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0])
    modes = torch.tensor([0, 0, 0, 0, 1, 2, 3, 4])
    weights = inverse_density_weights(
        log_density, max_weight_ratio=None, min_ess_ratio=None, modes=modes
    )
    # The median prompt (log-density 0) has weight 1 before normalising; the mode as a
    # whole gets that, shared equally by its four equal members.
    raw = torch.tensor([0.25, 0.25, 0.25, 0.25, math.exp(-1.0), 1.0, math.e, 1.0])
    torch.testing.assert_close(weights, (raw / raw.sum()).double())
    # A mode already lighter than the median prompt keeps its weights.
    sparse = torch.tensor([3.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    two = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])
    torch.testing.assert_close(
        inverse_density_weights(sparse, max_weight_ratio=None, min_ess_ratio=None, modes=two),
        inverse_density_weights(sparse, max_weight_ratio=None, min_ess_ratio=None),
    )


def test_a_capped_mode_is_shared_equally_by_its_prompts_and_their_copies() -> None:
    # Prompts 0 and 1 are one mode, their densities unequal; prompt 1 has two copies.
    log_density = torch.tensor([2.0, -1.0, -1.0, 0.0, 0.0, 1.0])
    groups = torch.tensor([0, 1, 1, 2, 3, 4])
    modes = torch.tensor([0, 1, 1, 2, 3, 4])
    modes[:3] = 0
    weights = inverse_density_weights(
        log_density, groups=groups, max_weight_ratio=None, min_ess_ratio=None, modes=modes
    )
    # Own log-densities: prompt 0 -> 2, prompt 1 -> -1 - log 2, the others 0, 0, 1; the
    # median is 0, so the mode weighs 1, half per prompt, prompt 1's half split by copies.
    raw = torch.tensor([0.5, 0.25, 0.25, 1.0, 1.0, math.exp(-1.0)], dtype=torch.float64)
    torch.testing.assert_close(weights, raw / raw.sum())


def test_modes_too_large_for_the_floor_are_tempered_to_meet_it() -> None:
    # 30 of 40 prompts are one mode: as one prompt the set's distinct ESS would be about 11.
    log_density = torch.zeros(40)
    modes = torch.cat([torch.zeros(30, dtype=torch.int64), torch.arange(1, 11)])
    capped = inverse_density_weights(log_density, min_ess_ratio=None, modes=modes)
    assert effective_sample_size(capped) == pytest.approx(121 / (1 / 30 + 10), rel=1e-9)
    floored = inverse_density_weights(log_density, min_ess_ratio=0.65, modes=modes)
    assert effective_sample_size(floored) == pytest.approx(0.65 * 40, rel=1e-2)
    assert effective_sample_size(floored) >= 0.65 * 40
    # The mode still weighs less than its 30 prompts' uniform share, but more than one.
    assert 1 / 11 < float(floored[:30].sum()) < 30 / 40
    torch.testing.assert_close(floored[:30], floored[:30].mean().expand(30))


def test_modes_must_keep_copies_together() -> None:
    with pytest.raises(InvalidInputError, match="every copy of a prompt the label"):
        inverse_density_weights(
            torch.zeros(3), groups=torch.tensor([0, 0, 1]), modes=torch.tensor([0, 1, 2])
        )
    with pytest.raises(InvalidInputError, match="mode_cap should be True or False"):
        InverseDensityWeighting(mode_cap="yes")  # type: ignore[arg-type]


def test_copies_of_a_prompt_share_one_cap() -> None:
    # Rows 0-149: 4 prompts with 37-38 copies each, all far sparser than the 150 distinct
    # prompts; per row, each copy would fit under the cap, but together they must not.
    groups = torch.cat([torch.arange(150) % 4, torch.arange(4, 154)])
    log_density = torch.cat([torch.full((150,), -30.0), torch.zeros(150)]).double()
    weights = inverse_density_weights(
        log_density, max_weight_ratio=20.0, groups=groups, min_ess_ratio=None
    )
    mass = torch.zeros(154, dtype=torch.float64).index_add_(0, groups, weights)
    torch.testing.assert_close(mass[:4], torch.full((4,), 20.0 / 154, dtype=torch.float64))
    # The rest is shared evenly by the 150 equally dense distinct prompts ...
    torch.testing.assert_close(mass[4:], torch.full((150,), (1 - 80 / 154) / 150).double())
    # ... and copies split their prompt's share equally.
    for group in range(4):
        rows = weights[:150][groups[:150] == group]
        torch.testing.assert_close(rows, torch.full_like(rows, float(mass[group]) / rows.numel()))


def test_uniform_mix_is_per_distinct_prompt() -> None:
    groups = torch.tensor([0, 0, 0, 1])
    weights = inverse_density_weights(
        torch.tensor([50.0, 50.0, 50.0, 0.0]), max_weight_ratio=None, uniform_mix=0.5, groups=groups
    )
    # The copies' own weight underflows to nothing; the uniform half gives them 1/2 of 1/2.
    torch.testing.assert_close(
        weights, torch.tensor([1 / 12, 1 / 12, 1 / 12, 3 / 4], dtype=torch.float64)
    )


def test_distinct_ess_counts_copies_as_one_prompt() -> None:
    weights = torch.rand(300, generator=torch.Generator().manual_seed(2)).double() + 0.1
    groups = torch.arange(300) % 40  # 40 prompts, 7-8 copies each
    mass = torch.zeros(40, dtype=torch.float64).index_add_(0, groups, weights / weights.sum())
    assert effective_sample_size(weights, groups) == pytest.approx(1 / float((mass**2).sum()))
    assert effective_sample_size(torch.ones(300), groups) == pytest.approx(
        1 / (20 * (8 / 300) ** 2 + 20 * (7 / 300) ** 2)
    )
    assert effective_sample_size(torch.ones(300), torch.arange(300)) == pytest.approx(300)
    with pytest.raises(InvalidInputError, match=r"groups should hold one label per row \(300\)"):
        effective_sample_size(weights, groups[:5])


def test_the_default_weighting_caps_copies_together() -> None:
    rows = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    rows = torch.cat([rows[:3].repeat(20, 1), rows[3:]])  # 3 prompts x 20 copies + 57 distinct
    result = ExactKNNDensity(k=5).estimate(rows)
    assert result.distinct_index is not None
    assert result.distinct_index[:60].tolist() == [i % 3 for i in range(60)]
    assert result.distinct_index[60:].tolist() == list(range(3, 60))
    weights = InverseDensityWeighting(max_weight_ratio=2.0)(result)
    mass = torch.zeros(60, dtype=torch.float64).index_add_(0, result.distinct_index, weights)
    assert float(mass.max()) <= 2.0 / 60 + 1e-12


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    spread=st.floats(0.1, 200.0),
    seed=st.integers(0, 2**16),
    floor=st.sampled_from([0.3, 0.6, 0.9]),
)
def test_the_floor_holds_on_any_densities(spread: float, seed: int, floor: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    log_density = spread * torch.randn(300, generator=generator, dtype=torch.float64)
    groups = torch.randint(0, 120, (300,), generator=generator)  # prompts with 0-8 copies
    weights, used = weights_with_floor(
        log_density,
        beta=1.0,
        max_weight_ratio=20.0,
        uniform_mix=0.0,
        groups=groups,
        min_ess_ratio=floor,
    )
    n_prompts = int(torch.unique(groups).numel())
    assert effective_sample_size(weights, groups) >= floor * n_prompts * (1 - 1e-9)
    assert 0.0 <= used <= 1.0
    if used < 1.0:  # tempered no more than needed: a little more strength breaks the floor
        stronger, _ = weights_with_floor(
            log_density,
            beta=min(1.0, used + 2e-3),
            max_weight_ratio=20.0,
            uniform_mix=0.0,
            groups=groups,
            min_ess_ratio=None,
        )
        assert effective_sample_size(stronger, groups) < floor * n_prompts


def test_the_floor_tempers_only_when_needed_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mild = torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64)
    weighting = InverseDensityWeighting()
    result = DensityResult(
        log_density=mild,
        neighbors=Neighbors(torch.zeros(4, 1), torch.zeros(4, 1, dtype=torch.int64), "cosine"),
        intrinsic_dim=1.0,
    )
    torch.testing.assert_close(weighting(result), inverse_density_weights(mild, min_ess_ratio=None))
    assert weighting.beta_used_ == 1.0
    steep = DensityResult(log_density=mild * 100, neighbors=result.neighbors, intrinsic_dim=1.0)
    with caplog.at_level("INFO", logger="katdensity.weights"):
        weights = weighting(steep)
    assert weighting.beta_used_ is not None and weighting.beta_used_ < 0.1
    assert effective_sample_size(weights) >= 0.65 * 4
    assert "strength beta 1 -> 0.0" in caplog.text and "ESS/N >= 0.65" in caplog.text
    with pytest.raises(InvalidInputError, match=r"min_ess_ratio should be a finite number > 0"):
        InverseDensityWeighting(min_ess_ratio=0.0)


def test_copies_weigh_one_prompt_at_any_strength() -> None:
    # Prompt 0 has 10 copies (its log-density raised by log 10, as estimators report it).
    groups = torch.tensor([0] * 10 + [1, 2])
    log_density = torch.tensor([1.0 + math.log(10)] * 10 + [1.0, 1.0], dtype=torch.float64)
    for beta in (0.0, 0.3, 1.0):
        weights = inverse_density_weights(
            log_density, beta=beta, groups=groups, max_weight_ratio=None, min_ess_ratio=None
        )
        torch.testing.assert_close(weights[:10].sum(), torch.tensor(1 / 3, dtype=torch.float64))


def test_weigh_is_the_default_weighting_with_what_a_report_needs() -> None:
    generator = torch.Generator().manual_seed(3)
    points = torch.randn(120, 8, generator=generator)
    points[:15] = points[0] + 1e-4 * torch.randn(15, 8, generator=generator)  # a family
    points[20:25] = points[20]  # one prompt, five times
    estimator = ExactKNNDensity(k=5)
    result = estimator.estimate(points)
    weighted = weigh(points, estimator=estimator, beta=0.8, uniform_mix=0.1)
    modes = find_modes(result)
    oracle, used = weights_with_floor(
        result.log_density,
        beta=0.8,
        max_weight_ratio=20.0,
        uniform_mix=0.1,
        groups=result.distinct_index,
        min_ess_ratio=DEFAULT_MIN_ESS_RATIO,
        modes=modes,
    )
    torch.testing.assert_close(weighted.probabilities, oracle, rtol=0, atol=1e-15)
    assert weighted.beta_used == used and weighted.beta == 0.8
    assert torch.equal(weighted.modes, modes)
    assert torch.equal(weighted.distinct_index, result.distinct_index)
    assert weighted.distinct_ess == pytest.approx(
        effective_sample_size(oracle, result.distinct_index)
    )
    # The Weighting, given the estimate, computes the same through the same function.
    weighting = InverseDensityWeighting(0.8, uniform_mix=0.1)
    torch.testing.assert_close(weighting(result), oracle, rtol=0, atol=1e-15)
    assert weighting.beta_used_ == used
    uncapped = weigh(result, mode_cap=False)
    assert uncapped.settings()["mode_cap"] is False
    torch.testing.assert_close(
        uncapped.probabilities,
        inverse_density_weights(result.log_density, groups=result.distinct_index),
    )
    with pytest.raises(InvalidInputError, match="estimator is used only for embeddings"):
        weigh(result, estimator=estimator)
