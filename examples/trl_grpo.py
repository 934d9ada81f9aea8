"""GRPO with Hugging Face TRL, prompts drawn inversely to their density by katdensity.

`katdensity.integrations.trl.DensityGRPOTrainer` is TRL's `GRPOTrainer` with one change:
its sampler keeps TRL's structure (every rank the same order, each prompt
`num_generations` times in a row, each chunk of prompts repeated for the optimisation
steps that reuse its generations) but draws the prompts with katdensity's weights. Here
the weights come from the policy itself, computed before training (embed the prompts with
its hidden states, estimate their density, weight inversely), and `--refresh-every N`
recomputes them from the current policy every N steps; or pass `--weights weights.pt`, a
`katdensity weights` file whose ids match the data's: `ex0`, `ex1`, ... as
`python -m examples.data --topic-size 60` (`--preset tiny`) or `300` (`small`) writes them,
with the same `--seed`.

The model is a tiny randomly initialised GPT-2 built from a config, with a byte-level
tokenizer built in code, so nothing is downloaded; the reward is the bundled data's ground
truth (on topic, not repetitive). Replace both with your own. See docs/trl.md.

    pip install "katdensity[examples]"        # trl
    python -m examples.trl_grpo --max-steps 4 --output-dir runs/trl
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from examples.data import add_phrasing_arguments, load_data
from examples.data import topic_reward as reward
from katdensity import ExactKNNDensity, InverseDensityWeighting
from katdensity.integrations.trl import DensityGRPOTrainer, DensityRefreshCallback

try:
    from trl import GRPOConfig
except ImportError as error:  # a recipe, not part of the package: say what to install
    raise ImportError('this example needs TRL: pip install "katdensity[examples]"') from error


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
    """TRL's reward-function form of `examples.data.topic_reward`."""
    return [reward(text, name) for text, name in zip(completions, topic, strict=True)]


def main(argv: list[str] | None = None) -> DensityGRPOTrainer:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=("tiny", "small"), default="tiny",
                        help="bundled data size: tiny (smoke test) or small")  # fmt: skip
    parser.add_argument("--weights", default="policy",
                        help="'policy', or a katdensity weights file matched by id")  # fmt: skip
    parser.add_argument("--refresh-every", type=int, default=0,
                        help="recompute the weights every N steps (0: never)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--max-steps", type=int, default=4, help="optimiser steps")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--num-generations", type=int, default=4, help="G per prompt")
    parser.add_argument("--beta", type=float, default=1.0, help="weights = density ** -beta")
    parser.add_argument("--output-dir", default="runs/trl", help="TRL's output_dir")
    add_phrasing_arguments(parser)
    args = parser.parse_args(argv)
    from datasets import Dataset

    topic_size = 60 if args.preset == "tiny" else 300
    train, _ = load_data(
        None,
        topic_size=topic_size,
        seed=args.seed,
        templates=args.templates,
        modifiers=args.modifiers,
    )
    dataset = Dataset.from_dict({"id": [f"ex{i}" for i in range(len(train))],
                                 "prompt": [e.prompt for e in train],
                                 "topic": [e.topic for e in train]})  # fmt: skip
    tokenizer = byte_tokenizer()
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
    # --8<-- [start:trainer]
    trainer = DensityGRPOTrainer(
        model=tiny_model(tokenizer, args.seed),
        reward_funcs=topic_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        density_weights=args.weights,  # "policy", or "weights.pt" matched by the "id" column
        density_estimator=ExactKNNDensity(k=10, center=True),
        density_weighting=InverseDensityWeighting(beta=args.beta),
        callbacks=[DensityRefreshCallback(args.refresh_every)] if args.refresh_every else None,
    )
    trainer.train()
    # --8<-- [end:trainer]
    return trainer


if __name__ == "__main__":
    main()
