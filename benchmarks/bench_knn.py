"""Self-kNN graph: katdensity exact/approx vs faiss-cpu, scikit-learn, pynndescent, hnswlib.

Each method runs in a fresh subprocess on the same seeded data (a Zipf-sized Gaussian
mixture on the unit sphere, written once to an .npy file), so peak memory is that process's
own. Recall@k is measured on 2,000 seeded query rows against a brute-force fp32 search.
Run from the repository root:

    python benchmarks/bench_knn.py                      # N=50,000, D=384, k=10, all methods
    python benchmarks/bench_knn.py --n 200000 --dim 768 --methods katdensity faiss
    python benchmarks/bench_knn.py --n 1000000 --methods katdensity-approx pynndescent hnswlib

`katdensity-memmap` is the exact search streaming the .npy file from disk (out-of-core).
Approximate methods (katdensity-approx, raw pynndescent) run a warm-up call on 2,000 rows
first, whose time is reported as the first-call JIT cost of each run (each run is a fresh
process; for katdensity-approx the call goes through `approx_knn` and its disk cache of
pynndescent's compiled kernels, so only a run with an empty cache compiles), then the timed
build of the whole graph;
hnswlib's index is built once (M=16, ef_construction=200) and queried at widths ef=50, 100
and 200, each row's time its build plus that query of every point, so it can be compared at
equal recall.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import machine, markdown_table, print_table, write_section

METHODS = (
    "katdensity",
    "katdensity-fp32",
    "katdensity-memmap",
    "katdensity-bf16",
    "katdensity-int8",
    "faiss",
    "sklearn",
    "katdensity-approx",
    "pynndescent",
    "hnswlib",
)
_RECALL_QUERIES = 2000
# hnswlib is built once (M=16, ef_construction=200) and queried at each of these widths, so
# it can be compared with the other methods at equal recall.
HNSW_EFS = (50, 100, 200)
# Approximate methods JIT-compile on first use in every process: timed apart, on a warm-up.
_JIT = ("katdensity-approx", "pynndescent")


def make_data(n: int, dim: int, seed: int = 0) -> np.ndarray:
    from katdensity.synthetic import prompt_mixture

    # 200 topics of Zipf sizes summing to a little over n (harmonic number H_200 ~ 5.878;
    # rounding each size down loses up to 200 points).
    data = prompt_mixture(
        n_topics=200, topic_size=int((n + 250) / 5.8), dim=dim, topic_dim=32, n_modes=0, seed=seed
    )
    if data.embeddings.shape[0] < n:
        raise SystemExit(f"generated {data.embeddings.shape[0]} points, fewer than {n}")
    return data.embeddings[:n].numpy()


def run_method(method: str, data: Path, k: int, out: Path) -> list[dict[str, float | str]]:
    """Time `method` on the points in `data`; one result per row of the table (hnswlib
    gives one per query width), its neighbours saved next to `out`."""
    points = np.load(data, mmap_mode="r" if method == "katdensity-memmap" else None)
    dim = points.shape[1]
    jit_seconds = float("nan")
    if method in _JIT:
        start = time.perf_counter()
        if method == "katdensity-approx":
            # Through katdensity: its disk cache of pynndescent's kernels included.
            import torch

            from katdensity import approx_knn

            approx_knn(torch.from_numpy(np.array(points[:2000])), k, seed=0)
        else:
            import pynndescent

            pynndescent.NNDescent(points[:2000], metric="cosine", n_neighbors=11, random_state=0)
        jit_seconds = time.perf_counter() - start
    rss_before = _reset_peak_rss()
    start = time.perf_counter()
    if method == "katdensity-memmap":
        from katdensity import exact_knn

        indices = exact_knn(points, k).indices.numpy()
    elif method in ("katdensity", "katdensity-fp32", "katdensity-bf16", "katdensity-int8"):
        import torch

        from katdensity import exact_knn

        # "katdensity" is the default, precision="auto": what this machine's calibration picks.
        precision = {
            "katdensity": "auto",
            "katdensity-fp32": "float32",
            "katdensity-bf16": "bfloat16",
            "katdensity-int8": "int8",
        }[method]
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
    elif method == "hnswlib":
        return _hnswlib_sweep(points, k, out, start, rss_before)
    elif method == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        search = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="cosine").fit(points)
        indices = search.kneighbors(return_distance=False)
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - start
    peak_mib = (_status_kib("VmHWM") - rss_before) / 1024
    np.save(out, indices)
    row = {"label": method, "seconds": seconds, "peak_mib": peak_mib, "jit_seconds": jit_seconds}
    return [row | {"file": str(out)}]


def _hnswlib_sweep(
    points: np.ndarray, k: int, out: Path, start: float, rss_before: int
) -> list[dict[str, float | str]]:
    """One hnswlib index, queried at each width of `HNSW_EFS`: build time plus that query."""
    import hnswlib

    n, dim = points.shape
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=n, M=16, ef_construction=200, random_seed=0)
    index.add_items(points, np.arange(n))
    build = time.perf_counter() - start
    rows: list[dict[str, float | str]] = []
    for ef in HNSW_EFS:
        index.set_ef(ef)
        query_start = time.perf_counter()
        found, _ = index.knn_query(points, k=k + 1)
        query = time.perf_counter() - query_start
        file = out.with_name(f"{out.stem}-ef{ef}.npy")
        np.save(file, _drop_self(found.astype(np.int64), k))
        peak_mib = (_status_kib("VmHWM") - rss_before) / 1024
        label = f"hnswlib (ef={ef})"
        rows.append({"label": label, "seconds": build + query, "peak_mib": peak_mib})
        rows[-1] |= {"jit_seconds": float("nan"), "file": str(file)}
    return rows


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset this process's peak RSS to its current RSS; return that (KiB).

    `ru_maxrss` would not do: Linux carries it over from the parent across fork and exec,
    so a worker started by a large parent reports the parent's peak.
    """
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def _drop_self(found: np.ndarray, k: int) -> np.ndarray:
    rows = np.arange(found.shape[0])[:, None]
    keep = found != rows
    # Rows whose own index is not among the k+1 (ties with duplicates) keep the first k.
    return np.array([row[mask][:k] for row, mask in zip(found, keep, strict=True)])


def brute_force_truth(points: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The exact fp32 neighbours of `rows` (self excluded), one query block at a time."""
    truth = []
    for start in range(0, rows.size, 250):
        block = rows[start : start + 250]
        scores = points[block] @ points.T
        scores[np.arange(block.size), block] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        truth.append(np.take_along_axis(top, order, 1))
    return np.concatenate(truth)


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
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per method; the fastest is reported"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    if args.worker:
        result = run_method(args.worker, Path(args.data), args.k, Path(args.out))
        print(json.dumps(result))
        return

    results: dict[str, dict[str, float | str]] = {}
    jit_runs: dict[str, list[float]] = {}
    found: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npy"
        points = make_data(args.n, args.dim)
        np.save(data, points)
        queries = np.sort(
            np.random.default_rng(0).choice(args.n, min(args.n, _RECALL_QUERIES), replace=False)
        )
        truth = brute_force_truth(points, queries, args.k)
        del points
        for method in args.methods:
            out = Path(tmp) / f"{method}.npy"
            command = [sys.executable, __file__, "--worker", method, "--out", str(out)]
            command += ["--data", str(data), "--k", str(args.k)]
            for _ in range(args.repeats):
                completed = subprocess.run(command, capture_output=True, text=True, check=False)
                if completed.returncode != 0:  # e.g. hnswlib not installed: leave its row out
                    print(f"{method} failed:\n{completed.stderr[-1500:]}", file=sys.stderr)
                    break
                for row in json.loads(completed.stdout.strip().splitlines()[-1]):
                    label = str(row["label"])
                    print(f"{label}: {row['seconds']:.1f} s", file=sys.stderr)
                    jit_runs.setdefault(label, []).append(float(row["jit_seconds"]))
                    if label not in results or row["seconds"] < results[label]["seconds"]:
                        results[label] = row
                        found[label] = np.load(str(row["file"]))[queries]
    header = [
        "method",
        "time (s)",
        "speed vs faiss",
        "peak extra RSS (MiB)",
        f"recall@{args.k}",
        "first-call JIT (s), each run",
    ]
    rows = []
    for method, result in results.items():
        seconds = float(result["seconds"])
        ratio = float(results["faiss"]["seconds"]) / seconds if "faiss" in results else float("nan")
        rows.append(
            [
                method,
                f"{seconds:.2f}",
                f"{ratio:.2f}x" if "faiss" in results else "-",
                f"{float(result['peak_mib']):.0f}",
                f"{recall(found[method], truth):.5f}",
                " / ".join(f"{t:.1f}" for t in jit_runs[method]) if method in _JIT else "-",
            ]
        )
    print_table(header, rows)
    if not args.no_write:
        methods = " ".join(args.methods)
        command = (
            f"python benchmarks/bench_knn.py --n {args.n} --dim {args.dim} --k {args.k} "
            f"--methods {methods}" + (f" --repeats {args.repeats}" if args.repeats > 1 else "")
        )
        body = (
            f"## Self-kNN graph (N={args.n:,}, D={args.dim}, k={args.k}, cosine)\n\n"
            f"`{command}` on {machine()}. Recall on {min(args.n, _RECALL_QUERIES):,} "
            "seeded query rows against brute-force fp32"
            + (f"; each time the fastest of {args.repeats} runs" if args.repeats > 1 else "")
            + ".\n\n"
            + markdown_table(header, rows)
        )
        name = "knn" if (args.n, args.dim) == (50_000, 384) else f"knn-{args.n}-{args.dim}"
        write_section(name, body)


if __name__ == "__main__":
    main()
