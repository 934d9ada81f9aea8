"""Reward model: a GPT backbone with a linear head on the last real token, trained with the
Bradley-Terry loss on (prompt, chosen, rejected) triples.

The model reads `<bos> prompt \\n response <eos>` and returns one scalar, the head applied
to the final hidden state (after `ln_f`) of the sequence's last real token; sequences are
right-padded, so that token sits at `length - 1` and never sees the padding. The
Bradley-Terry model says P(chosen preferred) = sigmoid(r_chosen - r_rejected), so the loss
is

    loss = -log sigmoid(r(x, y_chosen) - r(x, y_rejected)),   averaged over pairs.

The backbone starts from the SFT checkpoint when `--sft` is given (as in InstructGPT), from
scratch otherwise. A held-out tenth of the pairs gives the pairwise accuracy: the share
of pairs whose chosen response scores higher.

Run (under a minute on two CPU cores at the default size):

    python -m examples.train_rm --sft runs/sft/sft.pt --out-dir runs/rm
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from examples.common import (
    add_common_args,
    apply_preset,
    load_checkpoint,
    pad_batch,
    pick_device,
    save_checkpoint,
)
from examples.data import Example, add_data_arguments, load_stage_data
from examples.gpt import GPT, PRESETS, GPTConfig, load_model, save_model
from examples.tokenizer import ByteTokenizer

TRAINING = {
    "tiny": dict(max_steps=20, batch_size=16, lr=1e-3, topic_size=60),
    "small": dict(max_steps=200, batch_size=32, lr=1e-3, topic_size=300),
    "medium": dict(max_steps=1000, batch_size=64, lr=5e-4, topic_size=300),
    "large": dict(max_steps=2000, batch_size=64, lr=3e-4, topic_size=300),
}


class RewardModel(nn.Module):
    """`GPT` backbone + `Linear(n_embd, 1)` on the last real token of each sequence."""

    def __init__(self, backbone: GPT) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)  # every response scores 0 before training
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores `(B,)` of right-padded sequences `idx` `(B, T)` with `lengths` real tokens."""
        hidden = self.backbone(idx, return_hidden_states=True)["hidden_states"][-1]  # (B, T, C)
        last = hidden[torch.arange(idx.size(0), device=idx.device), lengths - 1]  # (B, C)
        return self.head(last).squeeze(-1)

    @torch.no_grad()
    def score(
        self, prompts: list[list[int]], responses: list[list[int]], pad_id: int
    ) -> torch.Tensor:
        """Scores `(B,)` of token-id prompts and responses, on the model's device."""
        device = self.head.weight.device
        idx, _ = pad_batch(prompts, responses, pad_id)
        lengths = torch.tensor([len(p) + len(r) for p, r in zip(prompts, responses, strict=True)])
        return self(idx.to(device), lengths.to(device))


def save_reward_model(model: RewardModel) -> dict[str, Any]:
    return {**save_model(model.backbone), "head": model.head.state_dict()}


def load_reward_model(entry: dict[str, Any], device: str | torch.device = "cpu") -> RewardModel:
    model = RewardModel(load_model(entry))
    model.head.load_state_dict(entry["head"])
    return model.to(device)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """`-log sigmoid(r_chosen - r_rejected)`, averaged over the pairs."""
    return -F.logsigmoid(chosen - rejected).mean()


def pair_scores(
    model: RewardModel, examples: list[Example], tokenizer: ByteTokenizer, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of the chosen and of the rejected responses, in one forward pass."""
    half = model.backbone.config.block_size // 2  # long prompts and responses get cut to fit
    prompts = [tokenizer.encode_prompt(e.prompt, half) for e in examples]
    responses = [tokenizer.encode_response(e.chosen, half) for e in examples] + [
        tokenizer.encode_response(e.rejected, half) for e in examples
    ]
    idx, _ = pad_batch(prompts + prompts, responses, tokenizer.pad_token_id)
    lengths = torch.tensor(
        [len(p) + len(r) for p, r in zip(prompts + prompts, responses, strict=True)]
    )
    scores = model(idx.to(device), lengths.to(device))
    return scores[: len(examples)], scores[len(examples) :]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, TRAINING)
    parser.add_argument("--sft", default=None, help="SFT checkpoint to start the backbone from")
    parser.add_argument("--out-dir", default="runs/rm", help="where rm.pt is written")
    add_data_arguments(parser, "preference")
    parser.add_argument("--batch-size", type=int, default=None, help="pairs per step")
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate")
    parser.add_argument("--log-every", type=int, default=50, help="steps between log lines")
    args = parser.parse_args(argv)
    apply_preset(args, TRAINING)
    device = pick_device(args.device)
    tokenizer = ByteTokenizer()

    examples, _ = load_stage_data(args)
    examples = [e for e in examples if e.chosen and e.rejected]
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(examples), generator=generator).tolist()
    n_val = max(1, len(examples) // 10)
    val, fit = [examples[i] for i in order[:n_val]], [examples[i] for i in order[n_val:]]

    if args.sft is not None:
        backbone = load_model(load_checkpoint(args.sft))
    else:
        config: GPTConfig = PRESETS[args.preset]
        backbone = GPT(config, seed=args.seed)
    model = RewardModel(backbone).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    print(f"reward model: {len(fit)} training pairs, {len(val)} held out")

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            chosen, rejected = pair_scores(model, val, tokenizer, device)
        model.train()
        return float((chosen > rejected).float().mean())

    start = time.time()
    for step in range(1, args.max_steps + 1):
        rows = torch.randint(len(fit), (args.batch_size,), generator=generator).tolist()
        chosen, rejected = pair_scores(model, [fit[i] for i in rows], tokenizer, device)
        loss = bradley_terry_loss(chosen, rejected)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.log_every == 0 or step == args.max_steps:
            print(
                f"step {step:5d} | loss {loss.item():.3f} | held-out accuracy {accuracy():.3f} "
                f"| {time.time() - start:.0f}s"
            )

    held_out_accuracy = accuracy()
    path = Path(args.out_dir) / "rm.pt"
    save_checkpoint(
        {**save_reward_model(model.cpu()), "args": vars(args), "accuracy": held_out_accuracy},
        path,
    )
    print(f"held-out pairwise accuracy {held_out_accuracy:.3f}; saved {path}")
    return path


if __name__ == "__main__":
    main()
