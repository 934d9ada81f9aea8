"""GRPO with Hugging Face TRL, prompts drawn by katdensity's InverseDensitySampler.

TRL's `GRPOTrainer` draws prompts through `_get_train_sampler`, which returns a
`RepeatSampler` with a fixed structure that the rest of the trainer relies on:

- every rank draws the same prompt order (TRL splits each batch across ranks itself);
- each prompt comes `num_generations` (G) times in a row, so one prompt's completions
  are normalised together;
- each chunk of `generation_batch_size / G` prompts is repeated
  `num_iterations * steps_per_generation` times, so generations are reused across the
  optimisation steps that share them (`repeat_count`).

`DensityGRPOTrainer` overrides `_get_train_sampler` to return `DensityRepeatSampler`, the
same structure over an `InverseDensitySampler` in replicate mode with `group_size=G`: only
which prompts are drawn changes. The weights here come from the policy itself (katdensity's
HiddenStateEmbedder over the Hugging Face model), computed once before training; every rank
must hold the same weights, so on several GPUs compute them identically everywhere or on
rank 0 and broadcast them (see docs/examples.md, "Use it in your own trainer").

The model is a tiny randomly initialised GPT-2 built from a config, with a byte-level
tokenizer built in code, so nothing is downloaded; the reward is the bundled data's ground
truth (on topic, not repetitive). Replace both with your own.

    pip install "katdensity[examples]"        # trl
    python -m examples.trl_grpo --max-steps 4 --output-dir runs/trl
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from examples.data import make_dataset, on_topic
from katdensity import (
    ExactKNNDensity,
    HiddenStateEmbedder,
    InverseDensitySampler,
    InverseDensityWeighting,
)

try:
    from trl import GRPOConfig, GRPOTrainer
except ImportError as error:  # a recipe, not part of the package: say what to install
    raise ImportError('this example needs TRL: pip install "katdensity[examples]"') from error


# --8<-- [start:trainer]
class DensityRepeatSampler(Sampler[int]):
    """TRL's `RepeatSampler` structure over an `InverseDensitySampler`.

    Args:
        sampler: built with `group_size=G` (TRL's `mini_repeat_count`) and
            `distributed="replicate"`, so every rank sees the same order.
        batch_size: distinct prompts per generation batch (`generation_batch_size / G`).
        repeat_count: times each chunk of `batch_size` prompts is yielded in a row.
    """

    def __init__(self, sampler: InverseDensitySampler, batch_size: int, repeat_count: int):
        if sampler.distributed != "replicate":
            raise ValueError(
                f"sampler should use distributed='replicate' (TRL splits batches across "
                f"ranks itself), but got distributed={sampler.distributed!r}"
            )
        self.sampler = sampler
        self.batch_size = batch_size
        self.repeat_count = repeat_count

    def __iter__(self) -> Iterator[int]:
        indices = list(self.sampler)  # each drawn prompt G times in a row
        chunk = self.batch_size * self.sampler.group_size
        # Like RepeatSampler, an incomplete last chunk is dropped.
        for start in range(0, len(indices) - chunk + 1, chunk):
            for _ in range(self.repeat_count):
                yield from indices[start : start + chunk]

    def __len__(self) -> int:
        chunks = self.sampler.num_samples // self.batch_size
        return chunks * self.batch_size * self.sampler.group_size * self.repeat_count

    def set_epoch(self, epoch: int) -> None:
        """Passed on, so every epoch draws afresh and reproducibly (`seed + epoch`)."""
        self.sampler.set_epoch(epoch)


class DensityGRPOTrainer(GRPOTrainer):  # type: ignore[misc]
    """`GRPOTrainer` whose prompts are drawn with probabilities `prompt_weights` `(N,)`."""

    def __init__(self, *args: Any, prompt_weights: torch.Tensor, **kwargs: Any) -> None:
        self.prompt_weights = prompt_weights
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, dataset: Any = None) -> Sampler[int]:
        dataset = self.train_dataset if dataset is None else dataset
        sampler = InverseDensitySampler(
            self.prompt_weights,
            num_samples=len(dataset),
            seed=self.args.seed,
            distributed="replicate",
            group_size=self.num_generations,
        )
        return DensityRepeatSampler(
            sampler,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
        )


# --8<-- [end:trainer]


def byte_tokenizer() -> Any:
    """A byte-level Hugging Face tokenizer built in code: 256 bytes, <bos>, <eos>, <pad>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    vocab.update({"<bos>": 256, "<eos>": 257, "<pad>": 258})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def tiny_model(tokenizer: Any, seed: int) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)  # transformers initialises from the global generator
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=256, n_embd=64, n_layer=2, n_head=4,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return GPT2LMHeadModel(config)


def topic_reward(completions: list[str], topic: list[str], **kwargs: Any) -> list[float]:
    """1 for an on-topic completion, minus the share of repeated words."""
    rewards = []
    for text, name in zip(completions, topic, strict=True):
        words = re.findall(r"[a-z]+", text.lower())
        repeated = 1 - len(set(words)) / len(words) if words else 1.0
        rewards.append(float(on_topic(text, name)) - repeated)
    return rewards


def main(argv: list[str] | None = None) -> DensityGRPOTrainer:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=("tiny", "small"), default="tiny",
                        help="bundled data size: tiny (smoke test) or small")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--max-steps", type=int, default=4, help="optimiser steps")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--num-generations", type=int, default=4, help="G per prompt")
    parser.add_argument("--beta", type=float, default=1.0, help="weights = density ** -beta")
    parser.add_argument("--output-dir", default="runs/trl", help="TRL's output_dir")
    args = parser.parse_args(argv)
    from datasets import Dataset

    train, _ = make_dataset(topic_size=60 if args.preset == "tiny" else 300, seed=args.seed)
    dataset = Dataset.from_dict({"prompt": [e.prompt for e in train],
                                 "topic": [e.topic for e in train]})  # fmt: skip
    tokenizer = byte_tokenizer()
    model = tiny_model(tokenizer, args.seed)
    embeddings = HiddenStateEmbedder(model, tokenizer, pooling="mean").embed(dataset["prompt"])
    weights = InverseDensityWeighting(beta=args.beta)(
        ExactKNNDensity(k=10, center=True).estimate(embeddings)
    )
    config = GRPOConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=2 * args.num_generations,
        num_generations=args.num_generations,
        max_completion_length=24,
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        use_cpu=args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available()),
        bf16=False,
    )
    trainer = DensityGRPOTrainer(
        model=model,
        reward_funcs=topic_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        prompt_weights=weights,
    )
    trainer.train()
    return trainer


if __name__ == "__main__":
    main()
