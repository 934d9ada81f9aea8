"""GRPO with density-aware prompt sampling: RL fine-tuning of the SFT policy against the
reward model, drawing training prompts from katdensity's InverseDensitySampler.

One step:

1. The sampler, in GRPO group mode (`group_size=G`), yields P prompts, each G times in a
   row; `--sampler density` draws them with probability falling with their density in
   the base model's view of prompt space, `--sampler uniform` with equal probability.
2. The policy samples one completion per row: a group of G completions per prompt.
3. Each (prompt, completion) is scored: by default with the verifiable topic reward
   (`examples.data.topic_reward`: 1 for an on-topic line minus the share of repeated
   words), with `--reward model --rm rm.pt` by the learned reward model. Advantages are
   normalised within each group, A = (r - mean) / (std + eps).
4. The loss (examples/grpo.py) is the clipped surrogate minus beta times the k3 KL to the
   frozen SFT model, averaged over each completion's tokens and then over completions.
   With `--updates-per-batch mu > 1` the batch is reused mu times and the clipping acts.

The density comes from the SFT model itself: its mean-pooled final hidden states
(`--embedder hidden`, katdensity's HiddenStateEmbedder) or pooled logits (`logits`,
LogitEmbedder), centred, exact kNN (`--k`), weights `density ** -beta` (`--beta`), with
`beta` tempered to keep the weights' distinct ESS/N at `--min-ess` (default 0.65) or more.
`--refresh-every N` re-embeds the prompts with the current policy every N steps and hands
the new weights to `sampler.update_weights`; a refresh ends the sampler's epoch, so they
apply from the next step.

The checkpoint (`<out-dir>/ckpt.pt`, read with `weights_only=True`) holds the policy, the
optimiser, the sampler's `state_dict()`, the sampling generator and the prompts drawn so
far; `--resume` continues the same prompt sequence and, on the same machine, the same
weights as an uninterrupted run.

Run (a minute or two on two CPU cores at the default size), after train_sft and train_rm:

    python -m examples.train_grpo --sft runs/sft/sft.pt --sampler density
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from examples.common import (
    add_common_args,
    apply_preset,
    load_checkpoint,
    pad_batch,
    pick_device,
    save_checkpoint,
)
from examples.data import (
    Example,
    add_data_arguments,
    check_same_data,
    load_stage_data,
    topic_reward,
)
from examples.gpt import GPT, load_model, save_model
from examples.grpo import group_advantages, grpo_loss, token_logprobs
from examples.tokenizer import ByteTokenizer
from examples.train_rm import load_reward_model
from katdensity import (
    ExactKNNDensity,
    HiddenStateEmbedder,
    InverseDensitySampler,
    InverseDensityWeighting,
    LogitEmbedder,
    effective_sample_size,
)
from katdensity.weights import DEFAULT_MIN_ESS_RATIO

TRAINING = {
    "tiny": dict(max_steps=4, prompts_per_step=2, group_size=4, max_new_tokens=24, lr=1e-4,
                 topic_size=60),
    "small": dict(max_steps=100, prompts_per_step=8, group_size=8, max_new_tokens=64, lr=1e-4,
                  topic_size=300),
    "medium": dict(max_steps=500, prompts_per_step=16, group_size=8, max_new_tokens=64,
                   lr=5e-5, topic_size=300),
    "large": dict(max_steps=1000, prompts_per_step=32, group_size=16, max_new_tokens=96,
                  lr=2e-5, topic_size=300),
}  # fmt: skip


# --8<-- [start:density]
def density_weights(
    model: GPT, tokenizer: ByteTokenizer, prompts: list[str], args: argparse.Namespace
) -> torch.Tensor:
    """Inverse-density probabilities `(N,)` of the prompts, as `model` represents them."""
    if args.embedder == "hidden":
        embedder: Any = HiddenStateEmbedder(model, tokenizer, pooling="mean", batch_size=64)
    else:
        embedder = LogitEmbedder(model, tokenizer, pooling="mean", batch_size=64)
    embeddings = embedder.embed(prompts)
    # center=True: pooled states of a causal LM share one dominant direction (docs/embedders.md)
    result = ExactKNNDensity(k=args.k, center=True).estimate(embeddings)
    return InverseDensityWeighting(beta=args.beta, min_ess_ratio=args.min_ess)(result)


# --8<-- [end:density]


# (dataset rows, prompt token ids, completion token ids) -> rewards (B,)
Reward = Callable[[list[int], list[list[int]], list[list[int]]], torch.Tensor]


def reward_function(args: argparse.Namespace, train: list[Example], device: torch.device) -> Reward:
    """The verifiable topic reward (`--reward rule`) or the learned reward model (`model`)."""
    tokenizer = ByteTokenizer()
    if args.reward == "rule":

        def rule(
            indices: list[int], prompts: list[list[int]], completions: list[list[int]]
        ) -> torch.Tensor:
            texts = [tokenizer.decode(c) for c in completions]
            scores = [topic_reward(t, train[i].topic) for t, i in zip(texts, indices, strict=True)]
            return torch.tensor(scores, device=device)

        return rule
    reward_model = load_reward_model(load_checkpoint(args.rm), device).eval()
    reward_model.requires_grad_(False)

    def learned(
        indices: list[int], prompts: list[list[int]], completions: list[list[int]]
    ) -> torch.Tensor:
        return reward_model.score(prompts, completions, tokenizer.pad_token_id)

    return learned


def grpo_step(
    policy: GPT,
    reference: GPT,
    reward: Reward,
    optimizer: torch.optim.Optimizer,
    indices: list[int],
    prompts: list[list[int]],
    args: argparse.Namespace,
    generator: torch.Generator,
) -> dict[str, float]:
    """Sample a group per prompt, score it, and take `updates_per_batch` optimiser steps."""
    tokenizer = ByteTokenizer()
    pad = tokenizer.pad_token_id
    device = policy.lm_head.weight.device
    policy.eval()
    completions = policy.generate(
        prompts,
        args.max_new_tokens,
        eos_id=tokenizer.eos_token_id,
        pad_id=pad,
        temperature=args.temperature,
        top_k=args.top_k,
        generator=generator,
    )
    rewards = reward(indices, prompts, completions)  # (B,), no gradient needed
    advantages = group_advantages(rewards, args.group_size)
    idx, response_mask = pad_batch(prompts, completions, pad)
    idx, response_mask = idx.to(device), response_mask.to(device)
    inputs, targets, mask = idx[:, :-1], idx[:, 1:], response_mask[:, 1:]  # (B, T-1) each
    with torch.no_grad():
        ref_logprobs = token_logprobs(reference(inputs), targets)
        old_logprobs = (
            token_logprobs(policy(inputs), targets) if args.updates_per_batch > 1 else None
        )
    policy.train()
    for _ in range(args.updates_per_batch):
        logprobs = token_logprobs(policy(inputs), targets)  # (B, T-1), with gradient
        loss, stats = grpo_loss(
            logprobs,
            logprobs.detach() if old_logprobs is None else old_logprobs,
            ref_logprobs,
            advantages,
            mask,
            clip_eps=args.clip_eps,
            beta=args.kl_coef,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
    lengths = [len(c) for c in completions]
    return {
        "loss": loss.item(),
        "reward": float(rewards.mean()),
        "length": sum(lengths) / len(lengths),
        **stats,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, TRAINING)
    parser.add_argument(
        "--sft", required=True, help="SFT checkpoint: the policy's start and pi_ref"
    )
    parser.add_argument(
        "--reward", choices=("rule", "model"), default="rule",
        help="the verifiable topic reward (default) or the learned reward model (--rm)",
    )  # fmt: skip
    parser.add_argument("--rm", default=None, help="reward model checkpoint (--reward model)")
    parser.add_argument("--out-dir", default="runs/grpo", help="where ckpt.pt is written")
    parser.add_argument("--resume", default=None, help="checkpoint to continue from")
    add_data_arguments(parser, "prompt")
    parser.add_argument(
        "--sampler", choices=("uniform", "density"), default="density",
        help="prompt sampling: uniform, or inverse to the density (default)",
    )  # fmt: skip
    parser.add_argument(
        "--embedder", choices=("hidden", "logits"), default="hidden",
        help="how the policy embeds prompts: mean-pooled hidden states or pooled logits",
    )  # fmt: skip
    parser.add_argument("--k", type=int, default=10, help="neighbours of the kNN density")
    parser.add_argument("--beta", type=float, default=1.0, help="weights = density ** -beta")
    parser.add_argument(
        "--min-ess", type=float, default=DEFAULT_MIN_ESS_RATIO,
        help="lowest distinct ESS/N of the weights; beta is tempered to keep it (default 0.65)",
    )  # fmt: skip
    parser.add_argument(
        "--refresh-every", type=int, default=0,
        help="re-embed with the current policy every N steps (0: never; density sampler only)",
    )  # fmt: skip
    parser.add_argument("--prompts-per-step", type=int, default=None, help="P prompts per step")
    parser.add_argument("--group-size", type=int, default=None, help="G completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="completion length cap")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--top-k", type=int, default=None, help="sample from the top k tokens")
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate")
    parser.add_argument("--kl-coef", type=float, default=0.04, help="beta of the KL penalty")
    parser.add_argument("--clip-eps", type=float, default=0.2, help="PPO clipping range")
    parser.add_argument(
        "--updates-per-batch", type=int, default=1,
        help="optimiser steps per generated batch (GRPO's mu; >1 makes the clipping act)",
    )  # fmt: skip
    parser.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps")
    parser.add_argument("--log-every", type=int, default=10, help="steps between log lines")
    args = parser.parse_args(argv)
    apply_preset(args, TRAINING)
    if args.refresh_every and args.sampler != "density":
        parser.error("--refresh-every needs --sampler density")
    if args.reward == "model" and args.rm is None:
        parser.error("--reward model needs --rm")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    device = pick_device(args.device)
    tokenizer = ByteTokenizer()
    train, _ = load_stage_data(args)
    prompts = [e.prompt for e in train]
    sft = load_checkpoint(args.sft)
    budget = sft["config"]["block_size"] - args.max_new_tokens  # prompt tokens that fit
    prompt_ids = [tokenizer.encode_prompt(p, max_tokens=budget) for p in prompts]

    reference = load_model(sft, device).eval().requires_grad_(False)
    policy = load_model(sft, device)
    reward = reward_function(args, train, device)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=0.0)
    generator = torch.Generator(device=device).manual_seed(args.seed)

    if args.sampler == "density":
        weights = density_weights(reference, tokenizer, prompts, args)
    else:
        weights = torch.ones(len(prompts), dtype=torch.float64)
    # The same sampler class for both arms: they differ only in the weights.
    sampler = InverseDensitySampler(weights, seed=args.seed, group_size=args.group_size)
    loader = DataLoader(
        range(len(prompts)), batch_size=args.prompts_per_step * args.group_size, sampler=sampler
    )
    # ESS over distinct prompts / their number: 1 for uniform weights over distinct prompts.
    distinct = {text: number for number, text in enumerate(dict.fromkeys(prompts))}
    groups = torch.tensor([distinct[p] for p in prompts])
    weights_ess = effective_sample_size(sampler.weights, groups) / len(distinct)
    share: Counter[str] = Counter()
    for example, w in zip(train, sampler.weights.tolist(), strict=True):
        share[example.group] += w
    print(
        f"{args.sampler} sampler, distinct ESS/N {weights_ess:.3f}, probability per prompt group: "
        + ", ".join(f"{g} {s:.3f}" for g, s in sorted(share.items()))
    )

    step, epoch, draws, history = 0, 0, [], []
    if args.resume is not None:
        checkpoint = load_checkpoint(args.resume)
        try:
            check_same_data(checkpoint["args"], args)
        except ValueError as error:
            raise SystemExit(f"--resume {args.resume}: {error}") from None
        policy.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        sampler.load_state_dict(checkpoint["sampler"])
        generator.set_state(checkpoint["generator"])
        step, epoch = checkpoint["step"], checkpoint["epoch"]
        draws, history = checkpoint["draws"], checkpoint["history"]
        print(f"resumed from {args.resume} at step {step}")
    path = Path(args.out_dir) / "ckpt.pt"

    def save() -> None:
        save_checkpoint(
            {
                **save_model(policy),
                "optimizer": optimizer.state_dict(),
                "sampler": sampler.state_dict(),
                "generator": generator.get_state(),
                "step": step,
                "epoch": epoch,
                "draws": draws,
                "history": history,
                "weights_ess": weights_ess,
                "args": vars(args),
            },
            path,
        )

    # The sampler's epoch is set explicitly, except when resuming into the middle of one:
    # set_epoch would restart it, load_state_dict has put the sampler where it stopped.
    resuming = args.resume is not None
    start = time.time()
    while step < args.max_steps:
        if not resuming:
            sampler.set_epoch(epoch)
        resuming = False
        for batch in loader:
            indices = batch.tolist()  # P prompts, each G times in a row
            group_prompts = [prompt_ids[i] for i in indices]
            stats = grpo_step(
                policy, reference, reward, optimizer, indices, group_prompts, args, generator
            )
            step += 1
            draws.extend(indices[:: args.group_size])
            history.append({"step": step, **stats})
            refresh = args.refresh_every > 0 and step % args.refresh_every == 0
            if refresh:
                sampler.update_weights(density_weights(policy, tokenizer, prompts, args))
                epoch += 1
                sampler.set_epoch(epoch)  # the new weights apply from the next batch
            if step % args.log_every == 0 or step == args.max_steps:
                print(
                    f"step {step:4d} | reward {stats['reward']:+.3f} | kl {stats['kl']:.4f} | "
                    f"loss {stats['loss']:+.4f} | clipped {stats['clip_fraction']:.3f} | "
                    f"length {stats['length']:.1f} | {time.time() - start:.0f}s"
                )
            if args.save_every and step % args.save_every == 0:
                save()
            if refresh or step >= args.max_steps:
                break
        else:  # the epoch ran to its end
            epoch += 1
    save()
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    main()
