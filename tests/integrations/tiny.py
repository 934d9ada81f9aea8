"""A tiny policy, tokenizer and prompt set for the trainer integrations, built in code so
that nothing is downloaded."""

from __future__ import annotations

from typing import Any

import torch

N_PROMPTS = 24


def byte_tokenizer() -> Any:
    """A byte-level Hugging Face tokenizer: 256 bytes, <bos>, <eos>, <pad>."""
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


def tiny_gpt2(tokenizer: Any, seed: int = 0) -> Any:
    """A randomly initialised one-layer GPT-2, the same for the same seed."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    with torch.random.fork_rng():  # transformers initialises from the global generator
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)


def prompt_rows(n: int = N_PROMPTS) -> dict[str, list[Any]]:
    """`id` and `prompt` columns: three topics, the last twice as dense as the others."""
    topics = ["apples", "rivers", "violins"]
    prompts = [f"tell me about {topics[min(i % 6, 2)]} number {i}" for i in range(n)]
    return {"id": [f"p{i}" for i in range(n)], "prompt": prompts}


def spawn_two_ranks(target: Any, out: str) -> None:
    """Run `target(rank, port, out)` in two processes that form a gloo group on a free port."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = int(free.getsockname()[1])
    mp.spawn(target, args=(port, out), nprocs=2, join=True)
