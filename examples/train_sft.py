"""Supervised fine-tuning: train the minimal GPT on (prompt, chosen response) pairs, from
scratch, so that there is a base policy for the reward model and for GRPO.

Each sequence is `<bos> prompt \\n chosen <eos>` in bytes (examples/tokenizer.py); the loss
is next-token cross-entropy over every real token, prompt included: the model is both
pretrained on the prompt language and taught to answer, and its view of the prompts is what
the density-aware sampler later embeds. Padding is masked out of the loss.

Run (about two minutes on two CPU cores at the default size):

    python -m examples.train_sft --out-dir runs/sft

then `python -m examples.train_rm --sft runs/sft/sft.pt`. `--preset large --device cuda`
trains nanoGPT's Shakespeare-sized model instead.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from examples.common import (
    add_common_args,
    apply_preset,
    pad_batch,
    pick_device,
    save_checkpoint,
)
from examples.data import add_data_arguments, load_stage_data
from examples.gpt import GPT, PRESETS, save_model
from examples.tokenizer import ByteTokenizer

# Defaults per size preset; any flag given on the command line wins.
TRAINING = {
    "tiny": dict(max_steps=20, batch_size=16, lr=3e-3, topic_size=60),
    "small": dict(max_steps=1500, batch_size=32, lr=5e-3, topic_size=300),
    "medium": dict(max_steps=2000, batch_size=64, lr=1e-3, topic_size=300),
    "large": dict(max_steps=4000, batch_size=64, lr=6e-4, topic_size=300),
}


def learning_rate(step: int, max_steps: int, lr: float) -> float:
    """Linear warm-up over the first 5% of steps, then cosine decay to lr / 10 (nanoGPT)."""
    warmup = max(1, max_steps // 20)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, max_steps - warmup)
    return lr / 10 + (lr - lr / 10) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lm_loss(model: GPT, idx: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Mean next-token cross-entropy over the real (non-padding) targets of `idx` `(B, T)`."""
    logits = model(idx[:, :-1])  # (B, T-1, V)
    targets = idx[:, 1:].masked_fill(idx[:, 1:] == pad_id, -100)  # -100: ignored
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(parser, TRAINING)
    parser.add_argument("--out-dir", default="runs/sft", help="where sft.pt is written")
    add_data_arguments(parser, "training")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per step")
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate")
    parser.add_argument("--log-every", type=int, default=50, help="steps between log lines")
    args = parser.parse_args(argv)
    apply_preset(args, TRAINING)
    device = pick_device(args.device)
    tokenizer = ByteTokenizer()

    train, _ = load_stage_data(args)
    train = [e for e in train if e.chosen]  # plain prompt files have no responses to learn
    half = PRESETS[args.preset].block_size // 2  # long prompts and responses get cut to fit
    pairs = [
        (tokenizer.encode_prompt(e.prompt, half), tokenizer.encode_response(e.chosen, half))
        for e in train
    ]
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(pairs), generator=generator).tolist()
    n_val = max(1, len(pairs) // 20)
    val, fit = [pairs[i] for i in order[:n_val]], [pairs[i] for i in order[n_val:]]

    model = GPT(PRESETS[args.preset], seed=args.seed).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    print(f"SFT: {model.num_params() / 1e6:.2f}M parameters, {len(fit)} training sequences")

    def batch(rows: list[tuple[list[int], list[int]]]) -> torch.Tensor:
        idx, _ = pad_batch([p for p, _ in rows], [r for _, r in rows], tokenizer.pad_token_id)
        return idx.to(device)

    start = time.time()
    for step in range(1, args.max_steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step - 1, args.max_steps, args.lr)
        rows = torch.randint(len(fit), (args.batch_size,), generator=generator).tolist()
        loss = lm_loss(model, batch([fit[i] for i in rows]), tokenizer.pad_token_id)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.log_every == 0 or step == args.max_steps:
            model.eval()
            with torch.no_grad():
                val_loss = lm_loss(model, batch(val[:256]), tokenizer.pad_token_id)
            model.train()
            print(
                f"step {step:5d} | loss {loss.item():.3f} | val {val_loss.item():.3f} | "
                f"{time.time() - start:.0f}s"
            )

    model.eval()
    sample_generator = torch.Generator(device=device).manual_seed(args.seed)
    prompts = [train[i].prompt for i in range(3)]
    completions = model.generate(
        [tokenizer.encode_prompt(p) for p in prompts],
        64,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        generator=sample_generator,
    )
    for prompt, completion in zip(prompts, completions, strict=True):
        print(f"  {prompt!r} -> {tokenizer.decode(completion)!r}")
    path = Path(args.out_dir) / "sft.pt"
    save_checkpoint({**save_model(model.cpu()), "args": vars(args)}, path)
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    main()
