from __future__ import annotations

import io
from typing import Any

import pytest
import torch

from katdensity import ExactKNNDensity, InvalidInputError, LearnabilityTracker


def _beta_learnability(alpha: float, beta: float) -> float:
    return alpha * beta / ((alpha + beta) * (alpha + beta + 1))


def test_the_posterior_matches_the_beta_oracle_and_copies_share_it() -> None:
    tracker = LearnabilityTracker(5, groups=[0, 0, 1, 2, 3], prior=(2.0, 1.0))
    # Rows 0 and 1 are copies: their evidence adds up in one posterior.
    tracker.update([0, 0, 1, 1, 2, 2, 2], [1, 1, 0, 1, 0, 0, 0])
    rates, learn = tracker.pass_rate(), tracker.learnability()
    expected = [(2 + 3, 1 + 1), (2 + 3, 1 + 1), (2, 1 + 3), (2, 1), (2, 1)]
    for row, (alpha, beta) in enumerate(expected):
        assert float(rates[row]) == pytest.approx(alpha / (alpha + beta))
        assert float(learn[row]) == pytest.approx(_beta_learnability(alpha, beta))
    assert tracker.evidence().tolist() == [4.0, 4.0, 3.0, 0.0, 0.0]
    assert tracker.num_distinct == 4


def test_continuous_rewards_map_through_reward_range() -> None:
    tracker = LearnabilityTracker(2, reward_range=(-1.0, 1.0))
    tracker.update([0, 0, 1], [1.0, 0.0, -1.0])  # 1 and 0.5 successes; 0
    alpha, beta = 1 + 1.5, 1 + 0.5
    assert float(tracker.pass_rate()[0]) == pytest.approx(alpha / (alpha + beta))
    assert float(tracker.pass_rate()[1]) == pytest.approx(1 / 3)


def test_half_life_fades_old_evidence() -> None:
    tracker = LearnabilityTracker(2, half_life=3)
    tracker.update([0] * 10, [1.0] * 10)
    for _ in range(3):
        tracker.update([1], [0.0])
    assert float(tracker.evidence()[0]) == pytest.approx(5.0)
    # Many more updates rescale the stored evidence without losing it.
    for _ in range(2000):
        tracker.update([1], [1.0])
    assert float(tracker.evidence()[0]) == pytest.approx(10 * 0.5 ** (2003 / 3), rel=1e-9, abs=0)
    assert float(tracker.evidence()[1]) == pytest.approx(1 / (1 - 0.5 ** (1 / 3)), rel=1e-6)


def test_zero_variance_probability_is_the_beta_moment() -> None:
    tracker = LearnabilityTracker(2)
    tracker.update([1] * 3, [1, 1, 0])  # Beta(3, 2)
    chance = tracker.zero_variance_probability(2)
    assert float(chance[0]) == pytest.approx(2 / 3)  # Beta(1, 1): E[p^2 + (1-p)^2]
    expected = (3 * 4 + 2 * 3) / (5 * 6)
    assert float(chance[1]) == pytest.approx(expected)


def test_unseen_near_duplicates_borrow_the_evidence_of_a_rolled_out_prompt() -> None:
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(300, 16, generator=generator)
    family = points[0] + 0.002 * torch.randn(6, 16, generator=generator)
    points[1:7] = family  # six rewrites of prompt 0
    result = ExactKNNDensity(k=10).estimate(points)
    tracker = LearnabilityTracker(300, density=result)
    tracker.update([0] * 16, [1.0] * 15 + [0.0])  # prompt 0: nearly always solved
    learn, rates = tracker.learnability(), tracker.pass_rate()
    # The rewrites, never rolled out, are predicted close to prompt 0 ...
    assert torch.all((learn[1:7] - learn[0]).abs() < 0.03)
    assert torch.all(rates[1:7] > 0.8)
    # ... the other prompts that list it as a neighbour lean the same way, less (an ordinary
    # neighbour lends less than a rewrite), and every other prompt keeps the prior's 1/6.
    lists_zero = (result.neighbors.indices == 0).any(dim=1)  # they borrow from prompt 0
    lists_zero[:7] = False
    others = torch.nonzero(lists_zero)[:, 0]
    assert others.numel() > 0
    assert torch.all((rates[others] > 0.5) & (rates[others] < rates[1:7].min()))
    apart = torch.ones(300, dtype=torch.bool)
    apart[:7] = False
    apart[others] = False
    expected = torch.full((int(apart.sum()),), 1 / 6, dtype=torch.float64)
    assert torch.equal(learn[apart], expected)
    # A rewrite's own outcomes win once they outweigh what it may borrow (32 completions).
    tracker.update([1] * 64, [0.0] * 64)
    assert float(tracker.pass_rate()[1]) < 0.25


def _state(tracker: LearnabilityTracker) -> dict[str, Any]:
    return {
        key: value.clone() if isinstance(value, torch.Tensor) else value
        for key, value in tracker.state_dict().items()
    }


@pytest.mark.parametrize(
    ("indices", "rewards", "message"),
    [
        ([0, 1], [1.0], "one entry per completion each, but got 2 indices and 1 rewards"),
        ([0, 5], [1.0, 0.0], r"dataset rows in \[0, 4\), but got 0 to 5"),
        ([0, -1], [1.0, 0.0], r"dataset rows in \[0, 4\)"),
        ([0.5, 1], [1.0, 0.0], "integer dataset rows"),
        ([0, 1], [1.0, float("nan")], "finite numbers"),
        ([0, 1], [1.0, 2.0], r"reward_range \[0.0, 1.0\]"),
        ([[0, 1]], [[1.0, 0.0]], "should be 1-D"),
        (["a", "b"], [1.0, 0.0], "numbers"),
    ],
)
def test_bad_input_is_refused_and_leaves_the_tracker_as_it_was(
    indices: Any, rewards: Any, message: str
) -> None:
    tracker = LearnabilityTracker(4, half_life=2)
    tracker.update([0, 1, 1], [1.0, 0.0, 1.0])
    before = _state(tracker)
    with pytest.raises(InvalidInputError, match=message):
        tracker.update(indices, rewards)
    after = tracker.state_dict()
    assert after["updates"] == before["updates"]
    assert torch.equal(after["own"], before["own"])


def test_state_round_trips_through_weights_only_and_refuses_another_set() -> None:
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(50, 6, generator=generator)
    points[3] = points[2]
    result = ExactKNNDensity(k=5).estimate(points)
    tracker = LearnabilityTracker(50, density=result, half_life=10)
    tracker.update([2, 2, 7, 9], [1.0, 0.0, 1.0, 1.0])
    buffer = io.BytesIO()
    torch.save(tracker.state_dict(), buffer)
    buffer.seek(0)
    restored = LearnabilityTracker(50, density=result, half_life=10)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(restored.learnability(), tracker.learnability())
    tracker.update([1], [1.0])
    restored.update([1], [1.0])
    assert torch.allclose(restored.learnability(), tracker.learnability(), rtol=1e-12)

    state = tracker.state_dict()
    with pytest.raises(InvalidInputError, match="set of 50 prompts, but this tracker has 49"):
        LearnabilityTracker(49).load_state_dict(state)
    with pytest.raises(InvalidInputError, match="copies differ"):
        LearnabilityTracker(50).load_state_dict(state)
    with pytest.raises(
        InvalidInputError, match=r"half_life=10\.0, but this tracker has half_life=None"
    ):
        LearnabilityTracker(50, density=result).load_state_dict(state)
    with pytest.raises(InvalidInputError, match="version"):
        tracker.load_state_dict({"version": 99})


def test_bad_options_are_named() -> None:
    with pytest.raises(InvalidInputError, match=r"prior\[0\] should be a finite number > 0"):
        LearnabilityTracker(3, prior=(0.0, 1.0))
    with pytest.raises(InvalidInputError, match="low < high"):
        LearnabilityTracker(3, reward_range=(1.0, 1.0))
    with pytest.raises(InvalidInputError, match="density should describe the 3 prompts"):
        LearnabilityTracker(3, density=ExactKNNDensity(k=2).estimate(torch.randn(5, 2)))
