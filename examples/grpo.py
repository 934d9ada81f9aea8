"""The GRPO objective as pure functions of tensors, so it can be checked by hand.

Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, section 4.1; TRL's
`GRPOTrainer`) drops PPO's value network. For each prompt q it samples a group of G
completions o_1..o_G from the policy that generated them (pi_old), scores them with a reward
model, and uses the group itself as the baseline:

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)              for every token of o_i

The per-token objective is PPO's clipped surrogate minus a KL penalty to a frozen reference
policy pi_ref (the SFT model), with the ratio rho_t = pi_theta(o_t) / pi_old(o_t):

    J_t = min(rho_t A_i, clip(rho_t, 1 - eps_clip, 1 + eps_clip) A_i) - beta KL_t
    KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1           (Schulman's k3 estimator)

k3 is unbiased for KL(pi_theta || pi_ref) under samples from pi_theta, and never negative.

NOTE [ Loss aggregation ]
    We follow DeepSeekMath's equation (3): average J_t over the tokens of each completion,
    then over the completions, `loss = -mean_i( sum_t m_it J_it / sum_t m_it )`. Every
    completion then weighs the same whatever its length, so per token a long completion
    counts less; TRL's default ("dapo") instead divides the sum over all tokens of the batch
    by the number of tokens, which weighs tokens equally. With one optimisation step per
    batch (mu = 1), pi_old = pi_theta, rho_t = 1, and the gradient with respect to logp_t
    is -A_i / (|o_i| B) plus the KL term's.
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """`(r - group mean) / (group std + eps)` for rewards `(B,)` laid out group by group
    (`B = n_groups * group_size`, each group's completions contiguous).

    The standard deviation is the unbiased one (`torch.std`), as in TRL. A group whose
    completions all score the same gets advantage 0: it carries no signal.
    """
    if rewards.dim() != 1 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"rewards should be (B,) with B a multiple of group_size={group_size}, "
            f"but got shape {tuple(rewards.shape)}"
        )
    grouped = rewards.view(-1, group_size)  # (n_groups, G)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
    return ((grouped - mean) / (std + eps)).view(-1)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`log p(targets)` `(B, T)` from `logits` `(B, T, V)` (position t predicts targets[t])."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token `exp(ref - logp) - (ref - logp) - 1 >= 0`, an estimate of KL(pi || pi_ref)."""
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1.0


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    beta: float = 0.04,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO loss to minimise, and statistics for logging.

    Args:
        logprobs: `(B, T)` log-probabilities of the sampled tokens under the policy being
            trained (carries gradient).
        old_logprobs: `(B, T)` the same under the policy that sampled them (no gradient).
        ref_logprobs: `(B, T)` the same under the frozen reference (no gradient).
        advantages: `(B,)` one advantage per completion, from `group_advantages`.
        mask: `(B, T)` 1 on completion tokens, 0 on prompt and padding.
        clip_eps: PPO's clipping range for the ratio.
        beta: weight of the k3 KL penalty.

    Returns:
        The scalar loss (see the note on aggregation above) and a dict with the mean KL per
        token, the share of tokens whose clipped branch was taken (no gradient through the
        ratio there), and the mean ratio.
    """
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs.detach())  # (B, T)
    adv = advantages.detach()[:, None]  # (B, 1): the same for every token of a completion
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    kl = k3_kl(logprobs, ref_logprobs.detach())
    per_token = -(torch.minimum(unclipped, clipped) - beta * kl)  # (B, T)
    lengths = mask.sum(dim=1).clamp_min(1.0)  # (B,)
    loss = ((per_token * mask).sum(dim=1) / lengths).mean()
    with torch.no_grad():
        n_tokens = mask.sum().clamp_min(1.0)
        stats = {
            "kl": float((kl * mask).sum() / n_tokens),
            "clip_fraction": float(((clipped < unclipped).to(mask.dtype) * mask).sum() / n_tokens),
            "ratio": float((ratio * mask).sum() / n_tokens),
        }
    return loss, stats
