"""Peak memory of pooled-logit embeddings: LogitEmbedder vs the brute-force masked mean.

The research sampler computed `model(ids).logits`, a `[B, T, V]` tensor, and averaged it
over real tokens. LogitEmbedder pools the final hidden states and applies the output head
once per text. Each method runs in a fresh subprocess on one batch (B=16 texts of T=256
tokens, V=50,304, a 2-layer GPT-2-shaped model built from a config, no download); the table
gives the peak resident memory above the loaded model, the time, and the largest difference
between the two results. Run from the repository root:

    python benchmarks/bench_embed.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from _report import machine, markdown_table, print_table, write_section

METHODS = ("brute force [B, T, V]", "LogitEmbedder", "LogitEmbedder, projection_dim=256")


class WordTokenizer:
    """Word ids by CRC-32: deterministic and dependency-free."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def encode(self, text: str) -> list[int]:
        return [zlib.crc32(word.encode()) % self.vocab for word in text.split()]


def texts(batch: int, length: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(f"w{int(w)}" for w in rng.integers(0, 10**6, length)) for _ in range(batch)]


def model(vocab: int, length: int) -> torch.nn.Module:
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=vocab, n_positions=length, n_embd=64, n_layer=2, n_head=2
    )
    return transformers.GPT2LMHeadModel(config).eval()


def run(method: str, batch: int, length: int, vocab: int, out: Path) -> dict[str, float]:
    from katdensity import LogitEmbedder

    lm, tokenizer, prompts = model(vocab, length), WordTokenizer(vocab), texts(batch, length)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if method.startswith("brute"):
        ids = torch.tensor([tokenizer.encode(t) for t in prompts])
        with torch.inference_mode():
            logits = lm(input_ids=ids).logits  # (B, T, V)
            result = torch.nn.functional.normalize(logits.mean(dim=1), dim=1)
    else:
        projection = 256 if "projection" in method else None
        embedder = LogitEmbedder(
            lm, tokenizer, batch_size=batch, max_length=length, projection_dim=projection
        )
        result = embedder.embed(prompts)
    seconds = time.perf_counter() - start
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    np.save(out, result.numpy())
    return {"seconds": seconds, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=50_304)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    if args.worker is not None:
        print(
            json.dumps(
                run(METHODS[args.worker], args.batch, args.length, args.vocab, Path(args.out))
            )
        )
        return
    results, vectors = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, method in enumerate(METHODS):
            out = Path(tmp) / f"{index}.npy"
            command = [sys.executable, __file__, "--worker", str(index), "--out", str(out)]
            command += [
                "--batch",
                str(args.batch),
                "--length",
                str(args.length),
                "--vocab",
                str(args.vocab),
            ]
            completed = subprocess.run(command, capture_output=True, text=True, check=True)
            results[method] = json.loads(completed.stdout.strip().splitlines()[-1])
            vectors[method] = np.load(out)
    brute = METHODS[0]
    header = ["method", "peak extra RSS (MiB)", "vs brute force", "time (s)", "max abs difference"]
    rows = []
    for method in METHODS:
        peak = results[method]["peak_mib"]
        same_space = vectors[method].shape == vectors[brute].shape
        difference = (
            f"{np.abs(vectors[method] - vectors[brute]).max():.1e}" if same_space else "(projected)"
        )
        rows.append(
            [
                method,
                f"{peak:.0f}",
                f"{results[brute]['peak_mib'] / max(peak, 1):.0f}x lower"
                if method != brute
                else "-",
                f"{results[method]['seconds']:.2f}",
                difference,
            ]
        )
    print_table(header, rows)
    if not args.no_write:
        body = (
            f"## Pooled-logit embeddings (B={args.batch}, T={args.length}, V={args.vocab:,})\n\n"
            f"`python benchmarks/bench_embed.py` on {machine()}.\n\n" + markdown_table(header, rows)
        )
        write_section("embed", body)


if __name__ == "__main__":
    main()
