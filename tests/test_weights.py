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
    Weighting,
    effective_sample_size,
    inverse_density_weights,
)


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
    weights = inverse_density_weights(torch.tensor([-5000.0, 0.0, 5000.0]), max_weight_ratio=None)
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
        torch.tensor([0.0, 100.0]), max_weight_ratio=None, uniform_mix=0.2
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
    expected = inverse_density_weights(result.log_density, beta=0.5, max_weight_ratio=None)
    torch.testing.assert_close(weighting(result), expected)
