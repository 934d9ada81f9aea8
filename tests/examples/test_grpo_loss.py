from __future__ import annotations

import math

import pytest
import torch

from examples.gpt import GPT, PRESETS
from examples.grpo import group_advantages, grpo_loss, k3_kl, token_logprobs


def test_group_advantages_are_normalised_within_each_group() -> None:
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0])
    advantages = group_advantages(rewards, group_size=4, eps=0.0 + 1e-4)
    std = math.sqrt(((1.5**2 + 0.5**2) * 2) / 3)  # unbiased std of 1, 2, 3, 4
    expected = [(r - 2.5) / (std + 1e-4) for r in (1.0, 2.0, 3.0, 4.0)] + [0.0] * 4
    torch.testing.assert_close(advantages, torch.tensor(expected))
    with pytest.raises(ValueError, match="multiple of group_size=3"):
        group_advantages(rewards, group_size=3)


def test_k3_is_zero_at_equality_and_positive_otherwise() -> None:
    logprobs = torch.tensor([-1.0, -1.0, -1.0])
    kl = k3_kl(logprobs, torch.tensor([-1.0, -0.5, -3.0]))
    assert kl[0] == 0 and bool((kl[1:] > 0).all())
    assert math.isclose(float(kl[1]), math.exp(0.5) - 0.5 - 1, rel_tol=1e-6)


def test_loss_matches_a_hand_computed_value() -> None:
    logprobs = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -1.5, -1.0]])
    ref = torch.tensor([[-1.5, -2.0, 0.0], [-0.5, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    advantages = torch.tensor([1.0, -0.5])
    loss, stats = grpo_loss(logprobs, logprobs, ref, advantages, mask, beta=0.1)
    # ratio = 1 everywhere; per token -(A - 0.1 * KL), KL = exp(d) - d - 1 with d = ref - logp
    kl_a = math.exp(-0.5) + 0.5 - 1  # row 0, token 0
    kl_b = math.exp(0.5) - 0.5 - 1  # row 1, token 1
    row0 = (-(1.0 - 0.1 * kl_a) - 1.0) / 2  # the third token is masked out
    row1 = (0.5 + (0.5 + 0.1 * kl_b) + 0.5) / 3
    assert math.isclose(float(loss), (row0 + row1) / 2, rel_tol=1e-6)
    assert math.isclose(stats["kl"], (kl_a + kl_b) / 5, rel_tol=1e-6)
    assert stats["clip_fraction"] == 0.0 and stats["ratio"] == 1.0


def test_advantage_term_carries_gradient_minus_a_over_length() -> None:
    # beta = 0: only the advantage-weighted term is left, and it must still train.
    logprobs = torch.tensor([[-1.0, -2.0, -0.3], [-0.5, -1.5, -1.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    advantages = torch.tensor([1.0, -0.5])
    loss, _ = grpo_loss(logprobs, logprobs.detach(), logprobs.detach(), advantages, mask, beta=0)
    loss.backward()
    batch = 2
    expected = torch.tensor(
        [[-1.0 / 2 / batch, -1.0 / 2 / batch, 0.0], [0.5 / 3 / batch] * 3]
    )  # -A_i / (|o_i| B) on real tokens, 0 on padding
    torch.testing.assert_close(logprobs.grad, expected)


def test_clipping_stops_the_gradient_only_where_the_ratio_left_the_trust_region() -> None:
    logprobs = torch.tensor([[-1.0], [-1.0]], requires_grad=True)
    old = logprobs.detach() - 0.5  # ratio e^0.5 = 1.65 > 1 + 0.2
    advantages = torch.tensor([1.0, -1.0])
    loss, stats = grpo_loss(logprobs, old, logprobs.detach(), advantages, torch.ones(2, 1), beta=0)
    loss.backward()
    # A > 0: the clipped branch (1.2 A) is the minimum and is constant, so no gradient.
    # A < 0: the unclipped ratio * A is the minimum and keeps its gradient -A * ratio / B.
    assert logprobs.grad is not None
    assert float(logprobs.grad[0, 0]) == 0.0
    assert math.isclose(float(logprobs.grad[1, 0]), math.exp(0.5) / 2, rel_tol=1e-6)
    assert stats["clip_fraction"] == 0.5


def test_gradient_reaches_the_model_through_the_advantage_term() -> None:
    model = GPT(PRESETS["tiny"], seed=0)
    idx = torch.randint(0, 256, (4, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(4, 11)
    mask[:, :4] = 0  # the prompt
    logprobs = token_logprobs(model(idx[:, :-1]), idx[:, 1:])
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.5, 2.0]), group_size=4)
    loss, _ = grpo_loss(logprobs, logprobs.detach(), logprobs.detach(), advantages, mask, beta=0)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
