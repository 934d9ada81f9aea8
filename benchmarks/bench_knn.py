"""Exact self-kNN graph: katdensity vs faiss-cpu IndexFlatIP vs scikit-learn brute force.

Each method runs in a fresh subprocess on the same seeded data (a Zipf-sized Gaussian
mixture on the unit sphere), so peak memory is that process's own. Recall@k is measured
against faiss (fp32 exact). Run from the repository root:

    python benchmarks/bench_knn.py            # N=50,000, D=384, k=10
    python benchmarks/bench_knn.py --n 20000 --methods katdensity faiss

Approximate methods (katdensity-approx, raw pynndescent) run a warm-up call first, whose
time is reported as the first-call JIT cost, then the timed build of the whole graph.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import machine, markdown_table, print_table, write_section

METHODS = ("katdensity", "katdensity-bf16", "faiss", "sklearn", "katdensity-approx", "pynndescent")
# Approximate methods JIT-compile on first use in every process: timed apart, on a warm-up.
_JIT = ("katdensity-approx", "pynndescent")


def make_data(n: int, dim: int, seed: int = 0) -> np.ndarray:
    from katdensity.synthetic import prompt_mixture

    # 200 topics of Zipf sizes summing to about n (harmonic number H_200 ~ 5.878).
    data = prompt_mixture(
        n_topics=200, topic_size=int(n / 5.8) + 1, dim=dim, topic_dim=32, n_modes=0, seed=seed
    )
    return data.embeddings[:n].numpy()


def run_method(method: str, n: int, dim: int, k: int, out: Path) -> dict[str, float]:
    points = make_data(n, dim)
    jit_seconds = float("nan")
    if method in _JIT:
        start = time.perf_counter()
        import pynndescent

        pynndescent.NNDescent(points[:2000], metric="cosine", n_neighbors=11, random_state=0)
        jit_seconds = time.perf_counter() - start
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if method.startswith("katdensity"):
        import torch

        from katdensity import exact_knn

        precision = "bfloat16" if method.endswith("bf16") else "float32"
        indices = exact_knn(torch.from_numpy(points), k, precision=precision).indices.numpy()
    elif method == "faiss":
        import faiss

        index = faiss.IndexFlatIP(dim)
        index.add(points)
        _, found = index.search(points, k + 1)
        indices = _drop_self(found, k)
    elif method == "katdensity-approx":
        import torch

        from katdensity import approx_knn

        indices = approx_knn(torch.from_numpy(points), k, seed=0).indices.numpy()
    elif method == "pynndescent":
        import pynndescent

        # What users would write: a graph of k + 1 neighbours, self dropped.
        index = pynndescent.NNDescent(points, metric="cosine", n_neighbors=k + 1, random_state=0)
        indices = _drop_self(index.neighbor_graph[0], k)
    elif method == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        search = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="cosine").fit(points)
        indices = search.kneighbors(return_distance=False)
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - start
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    np.save(out, indices)
    return {"seconds": seconds, "peak_mib": peak_mib, "jit_seconds": jit_seconds}


def _drop_self(found: np.ndarray, k: int) -> np.ndarray:
    rows = np.arange(found.shape[0])[:, None]
    keep = found != rows
    # Rows whose own index is not among the k+1 (ties with duplicates) keep the first k.
    return np.array([row[mask][:k] for row, mask in zip(found, keep, strict=True)])


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist(), strict=True))
    return hits / (truth.shape[0] * k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="points (default 50,000)")
    parser.add_argument("--dim", type=int, default=384, help="dimension (default 384)")
    parser.add_argument("--k", type=int, default=10, help="neighbours (default 10)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_method(args.worker, args.n, args.dim, args.k, Path(args.out))))
        return

    results: dict[str, dict[str, float]] = {}
    found: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            out = Path(tmp) / f"{method}.npy"
            command = [sys.executable, __file__, "--worker", method, "--out", str(out)]
            command += ["--n", str(args.n), "--dim", str(args.dim), "--k", str(args.k)]
            completed = subprocess.run(command, capture_output=True, text=True, check=True)
            results[method] = json.loads(completed.stdout.strip().splitlines()[-1])
            found[method] = np.load(out)
            print(f"{method}: {results[method]['seconds']:.1f} s", file=sys.stderr)
    reference = found.get("faiss")
    header = [
        "method",
        "time (s)",
        "speed vs faiss",
        "peak extra RSS (MiB)",
        f"recall@{args.k}",
        "first-call JIT (s)",
    ]
    rows = []
    for method in args.methods:
        seconds = results[method]["seconds"]
        ratio = results["faiss"]["seconds"] / seconds if "faiss" in results else float("nan")
        rec = recall(found[method], reference) if reference is not None else float("nan")
        rows.append(
            [
                method,
                f"{seconds:.2f}",
                f"{ratio:.2f}x",
                f"{results[method]['peak_mib']:.0f}",
                f"{rec:.5f}",
                f"{results[method]['jit_seconds']:.0f}" if method in _JIT else "-",
            ]
        )
    print_table(header, rows)
    if not args.no_write:
        command = f"python benchmarks/bench_knn.py --n {args.n} --dim {args.dim} --k {args.k}"
        body = (
            f"## Self-kNN graph (N={args.n:,}, D={args.dim}, k={args.k}, cosine)\n\n"
            f"`{command}` on {machine()}.\n\n" + markdown_table(header, rows)
        )
        write_section("knn", body)


if __name__ == "__main__":
    main()
