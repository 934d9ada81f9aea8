"""The A/B experiment: does sampling rare prompts more often reduce mode collapse in GRPO?

1. Train one SFT base policy and one reward model on the bundled preference data
   (examples/train_sft.py, examples/train_rm.py), shared by every run below.
2. For each seed, run GRPO twice from that base with everything equal (seed, sampler seed,
   sampling generator, steps) except the prompt sampler: `--sampler uniform` and
   `--sampler density` (examples/train_grpo.py).
3. Sample `--samples` completions per held-out prompt from every policy (and from the base)
   with one fixed evaluation seed, on prompts whose subjects no training prompt mentions,
   the same number per topic.
4. Measure them with katdensity.metrics (distinct-n, token Gini, self-BLEU, Vendi over
   hashed n-gram embeddings), the reward model's score, a Monte Carlo estimate of the
   sequence KL to the base, and the share of completions that are on topic (ground truth
   from the generator, which the reward model only approximates); count how often each
   prompt group was trained on.
5. Write `--results` (Markdown: the table with mean and spread over seeds, the paired
   differences, the group visit counts, the command) and a plot next to it (PNG with
   matplotlib, skipped without it).

The default size (five seeds) takes about 11 minutes on two otherwise idle CPU cores:

    python -m examples.compare

`--preset tiny --max-steps 2 --seeds 0` is the smoke test; `--preset medium --device cuda`
scales it up. The results are what they are: read the spread before the means.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from examples import train_grpo, train_rm, train_sft
from examples.common import load_checkpoint, pad_batch, pick_device
from examples.data import TOPICS, Example, load_data, on_topic
from examples.gpt import GPT, load_model
from examples.grpo import token_logprobs
from examples.tokenizer import ByteTokenizer
from examples.train_rm import RewardModel, load_reward_model
from katdensity import HashingEmbedder
from katdensity.metrics import distinct_n, diversity_report

ARMS = ("uniform", "density")
COMMON, RARE = list(TOPICS)[:4], list(TOPICS)[4:]  # the four largest topics, the four smallest
# (key, label, which direction is more diverse / better) for the tables and the plot
METRICS = (
    ("reward", "reward (RM score)", "higher"),
    ("kl", "KL to base (nats / completion)", "-"),
    ("on_topic", "on topic (ground truth)", "higher"),
    ("distinct_1", "distinct-1", "higher"),
    ("distinct_2", "distinct-2", "higher"),
    ("prompt_distinct_2", "distinct-2 within a prompt's samples", "higher"),
    ("self_bleu", "self-BLEU", "lower"),
    ("token_gini", "token Gini", "lower"),
    ("vendi", "Vendi score (hashed n-grams)", "higher"),
    ("mean_tokens", "mean words per completion", "-"),
)
TIERED = (  # measured apart on the common and on the rare topics
    ("reward", "reward (RM score)"),
    ("on_topic", "on topic (ground truth)"),
    ("distinct_2", "distinct-2"),
    ("prompt_distinct_2", "distinct-2 within a prompt's samples"),
)


@torch.no_grad()
def evaluate(
    policy: GPT,
    reference: GPT,
    reward_model: RewardModel,
    heldout: list[Example],
    *,
    samples: int,
    max_new_tokens: int,
    seed: int,
) -> dict[str, float]:
    """Metrics of `samples` completions per held-out prompt (temperature 1, fixed seed)."""
    tokenizer = ByteTokenizer()
    device = policy.lm_head.weight.device
    policy.eval()
    rows = [e for e in heldout for _ in range(samples)]
    prompts = [tokenizer.encode_prompt(e.prompt) for e in rows]
    generator = torch.Generator(device=device).manual_seed(seed)
    completions = policy.generate(
        prompts,
        max_new_tokens,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        generator=generator,
    )
    texts = [tokenizer.decode(c) for c in completions]
    idx, response_mask = pad_batch(prompts, completions, tokenizer.pad_token_id)
    idx, mask = idx.to(device), response_mask[:, 1:].to(device)
    logprobs = token_logprobs(policy(idx[:, :-1]), idx[:, 1:])
    ref_logprobs = token_logprobs(reference(idx[:, :-1]), idx[:, 1:])
    # KL(pi || pi_ref) of whole completions: E_pi[log pi(o) - log pi_ref(o)], by Monte Carlo
    kl = ((logprobs - ref_logprobs) * mask).sum(dim=1).mean()
    # Vendi needs a non-zero embedding for every text; an empty completion gets a marker.
    embeddings = HashingEmbedder().embed([t if t.strip() else "<empty>" for t in texts])
    rewards = reward_model.score(prompts, completions, tokenizer.pad_token_id).tolist()
    metrics = {**diversity_report(texts, embeddings), "kl": float(kl)}
    # The same few metrics over all held-out prompts and over the common and the rare topics
    # (TOPICS is ordered by training-set size); a prompt's samples are contiguous in `rows`.
    for tier, topics in (("", TOPICS), ("common/", COMMON), ("rare/", RARE)):
        keep = [i for i, e in enumerate(rows) if e.topic in topics]
        metrics[f"{tier}reward"] = statistics.fmean(rewards[i] for i in keep)
        metrics[f"{tier}on_topic"] = statistics.fmean(
            on_topic(texts[i], rows[i].topic) for i in keep
        )
        metrics[f"{tier}distinct_2"] = distinct_n([texts[i] for i in keep], 2)
        metrics[f"{tier}prompt_distinct_2"] = statistics.fmean(
            distinct_n([texts[j] for j in keep[i : i + samples]], 2)
            for i in range(0, len(keep), samples)
        )
    return metrics


def run_arm(argv: list[str], log: str, threads: int, eval_args: dict[str, Any]) -> dict[str, Any]:
    """One GRPO run and its evaluation, in a worker process; its output goes to `log`."""
    torch.set_num_threads(threads)
    with open(log, "w") as f, contextlib.redirect_stdout(f):
        path = train_grpo.main(argv)
    checkpoint = load_checkpoint(path)
    device = pick_device(eval_args["device"])
    policy = load_model(checkpoint, device)
    reference = load_model(load_checkpoint(eval_args["sft"]), device)
    reward_model = load_reward_model(load_checkpoint(eval_args["rm"]), device)
    heldout = eval_args["heldout"]
    metrics = evaluate(policy, reference, reward_model, heldout, **eval_args["evaluation"])
    return {
        "metrics": metrics,
        "draws": checkpoint["draws"],
        "weights": checkpoint["sampler"]["weights"].tolist(),
        "rewards": [h["reward"] for h in checkpoint["history"]],
    }


def mean_sd(values: Sequence[float], spec: str = ".3f") -> str:
    if len(values) == 1:
        return f"{values[0]:{spec}}"
    return f"{statistics.fmean(values):{spec}} ± {statistics.stdev(values):{spec}}"


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of b - a over seeds and its standard error (nan for one seed)."""
    differences = [y - x for x, y in zip(a, b, strict=True)]
    if len(differences) < 2:
        return differences[0], math.nan
    return statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(
        len(differences)
    )


def write_plot(path: Path, base: dict[str, float], runs: dict[str, list[dict[str, Any]]]) -> bool:
    """Per-seed points and means of six metrics, and the training reward; False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = ("reward", "kl", "on_topic", "distinct_2", "prompt_distinct_2", "self_bleu", "vendi")
    labels = {key: label for key, label, _ in METRICS}
    fig, axes = plt.subplots(2, 4, figsize=(14, 6.5))
    for ax, key in zip(axes.flat, keys, strict=False):
        for x, arm in enumerate(ARMS):
            values = [run["metrics"][key] for run in runs[arm]]
            ax.scatter([x] * len(values), values, color=f"C{x}", alpha=0.6)
            ax.hlines(statistics.fmean(values), x - 0.25, x + 0.25, color=f"C{x}", lw=2)
        ax.axhline(base[key], color="grey", ls="--", lw=1, label="base (SFT)")
        ax.set_xticks(range(len(ARMS)), ARMS)
        ax.set_xlim(-0.6, len(ARMS) - 0.4)
        ax.set_title(labels[key], fontsize=10)
    ax = axes.flat[-1]
    for x, arm in enumerate(ARMS):
        curves = [run["rewards"] for run in runs[arm]]
        mean = [statistics.fmean(step) for step in zip(*curves, strict=True)]
        window = max(1, len(mean) // 20)
        smooth = [statistics.fmean(mean[max(0, i - window) : i + 1]) for i in range(len(mean))]
        ax.plot(range(1, len(mean) + 1), smooth, color=f"C{x}", label=arm)
    ax.set_title("training reward (mean over seeds)", fontsize=10)
    ax.set_xlabel("step")
    ax.legend()
    axes.flat[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_results(
    path: Path,
    *,
    command: str,
    base: dict[str, float],
    runs: dict[str, list[dict[str, Any]]],
    train: list[Example],
    seeds: list[int],
    plot: Path | None,
    setup: dict[str, Any],
) -> None:
    lines = [
        "# Uniform vs density-aware prompt sampling in GRPO",
        "",
        "Generated by `examples/compare.py`. Every stage is seeded, so rerunning the command",
        "on the same machine with the same number of CPU threads gives the same numbers;",
        "other machines round differently and train a slightly different base model:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Setup: {setup['summary']}",
        "",
        f"Machine: {setup['machine']}; wall time {setup['minutes']:.1f} minutes.",
        "",
        "## Diversity and reward on held-out prompts",
        "",
        f"Mean ± standard deviation over {len(seeds)} seeds (seeds {seeds}); the last column",
        "is density minus uniform, paired by seed, ± its standard error. A difference smaller",
        "than about two standard errors is not distinguishable from seed noise.",
        "",
        "<!-- --8<-- [start:table] -->",
        "",
        "| metric | better | base (SFT) | uniform | density | density − uniform |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for key, label, better in METRICS:
        uniform = [run["metrics"][key] for run in runs["uniform"]]
        density = [run["metrics"][key] for run in runs["density"]]
        difference, error = paired(uniform, density)
        spread = "" if math.isnan(error) else f" ± {error:.3f}"
        lines.append(
            f"| {label} | {better} | {base[key]:.3f} | {mean_sd(uniform)} | {mean_sd(density)} "
            f"| {difference:+.3f}{spread} |"
        )
        if better != "-" and not math.isnan(error):
            # within two standard errors, or 0.000 at the table's precision
            if abs(difference) <= 2 * error or abs(difference) < 5e-4:
                verdicts.append(f"{label}: no difference beyond seed noise")
            else:
                good = (difference > 0) == (better == "higher")
                verdicts.append(
                    f"{label}: density is {'better' if good else 'worse'} "
                    f"({difference:+.3f} ± {error:.3f})"
                )
    if verdicts:
        lines += ["", "Read off the table (|difference| > 2 standard errors counts):", ""]
        lines += [f"- {verdict}" for verdict in verdicts]
    lines += ["", "<!-- --8<-- [end:table] -->"]
    lines += [
        "",
        "## Common and rare topics",
        "",
        "The same measures on the held-out prompts of the four largest topics",
        f"({', '.join(COMMON)}) and of the four smallest ({', '.join(RARE)}), which uniform",
        "sampling trains on least.",
        "",
        "<!-- --8<-- [start:tiers] -->",
        "",
        "| metric | topics | base (SFT) | uniform | density | density − uniform |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in TIERED:
        for tier in ("common", "rare"):
            uniform = [run["metrics"][f"{tier}/{key}"] for run in runs["uniform"]]
            density = [run["metrics"][f"{tier}/{key}"] for run in runs["density"]]
            difference, error = paired(uniform, density)
            spread = "" if math.isnan(error) else f" ± {error:.3f}"
            lines.append(
                f"| {label} | {tier} | {base[f'{tier}/{key}']:.3f} | {mean_sd(uniform)} "
                f"| {mean_sd(density)} | {difference:+.3f}{spread} |"
            )
    lines += ["", "<!-- --8<-- [end:tiers] -->"]
    if plot is not None:
        lines += ["", f"![metrics per seed and training reward]({plot.name})"]

    group_sizes = Counter(e.group for e in train)
    lines += [
        "",
        "## How often each prompt group was trained on",
        "",
        "Prompts drawn per run (each drawn prompt gets a group of completions), mean ± sd",
        "over seeds, and the share of all draws. `dup:` groups are near-duplicate rewrites of",
        "one prompt. The density arm's weights come from the base model's hidden states.",
        "",
        "<!-- --8<-- [start:visits] -->",
        "",
        "| group | prompts in the set | uniform: draws (share) | density: draws (share) |",
        "|---|---|---|---|",
    ]
    totals = {arm: len(runs[arm][0]["draws"]) for arm in ARMS}
    for group, size in sorted(group_sizes.items(), key=lambda item: -item[1]):
        cells = []
        for arm in ARMS:
            counts = [sum(train[i].group == group for i in run["draws"]) for run in runs[arm]]
            cells.append(f"{mean_sd(counts, '.1f')} ({statistics.fmean(counts) / totals[arm]:.1%})")
        lines.append(f"| {group} | {size} ({size / len(train):.1%}) | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "<!-- --8<-- [end:visits] -->",
        "",
        "## Notes",
        "",
        "- Every run starts from the same SFT policy and is scored by the same reward model;",
        "  within a seed the two arms share the sampler seed and the sampling generator, so",
        "  they differ only in the prompt weights.",
        "- Held-out prompts ask about subjects no training prompt mentions, the same number",
        "  per topic, so rare topics weigh as much as common ones in these metrics.",
        "- The tables make about twenty comparisons: one or two beyond two standard errors",
        "  are expected by chance alone. The seeds vary GRPO only; the base model and the",
        "  reward model are one draw, and another draw can move the differences as much.",
        "- The training-reward curves are measured on each arm's own prompts, which differ",
        "  (the uniform arm sees the easy near-duplicates more often); compare the held-out",
        "  rewards instead.",
        "- Vendi is computed on katdensity's HashingEmbedder (character n-grams) of the",
        "  completions; KL is the mean over completions of the summed log-ratio of the policy",
        "  to the base on the sampled tokens.",
        "- Tiny models, few steps: this is a reference pipeline, not evidence about large",
        "  models. Scale it with `--preset medium --device cuda` and more seeds.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", choices=list(train_grpo.TRAINING), default="small",
        help="size preset of every stage (default: small, about 11 minutes on 2 CPU cores)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, ...")
    parser.add_argument("--max-steps", type=int, default=None, help="GRPO steps per run")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="GRPO seeds, one run per arm"
    )
    parser.add_argument("--beta", type=float, default=1.0, help="density arm: density ** -beta")
    parser.add_argument("--samples", type=int, default=4, help="completions per held-out prompt")
    parser.add_argument(
        "--jobs", type=int, default=2,
        help="GRPO runs in parallel processes, each with its share of the torch threads",
    )  # fmt: skip
    parser.add_argument("--out-dir", default="runs/compare", help="checkpoints and logs")
    parser.add_argument(
        "--results", default="examples/RESULTS.md", help="the report; the plot goes beside it"
    )
    args = parser.parse_args(argv)
    start, load_before = time.time(), os.getloadavg()[0]
    out = Path(args.out_dir)
    common = ["--preset", args.preset, "--device", args.device]

    sft = train_sft.main([*common, "--out-dir", str(out / "sft")])
    rm = train_rm.main([*common, "--sft", str(sft), "--out-dir", str(out / "rm")])

    grpo_defaults = train_grpo.parse_args(["--sft", str(sft), "--rm", str(rm), *common])
    max_steps = args.max_steps or grpo_defaults.max_steps
    train, heldout = load_data(None, topic_size=grpo_defaults.topic_size, seed=0)
    evaluation = dict(samples=args.samples, max_new_tokens=grpo_defaults.max_new_tokens, seed=1234)
    eval_args = dict(device=args.device, sft=sft, rm=rm, heldout=heldout, evaluation=evaluation)
    jobs = []
    for seed in args.seeds:
        for arm in ARMS:
            run_dir = out / f"{arm}-seed{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            argv_grpo = [
                *common, "--sft", str(sft), "--rm", str(rm), "--sampler", arm,
                "--seed", str(seed), "--max-steps", str(max_steps), "--beta", str(args.beta),
                "--out-dir", str(run_dir),
            ]  # fmt: skip
            jobs.append((arm, argv_grpo, str(run_dir / "log.txt")))
    threads = max(1, torch.get_num_threads() // args.jobs)
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [
            (arm, log, pool.submit(run_arm, argv_grpo, log, threads, eval_args))
            for arm, argv_grpo, log in jobs
        ]
        for arm, log, future in futures:
            runs[arm].append(future.result())
            print(f"GRPO {arm}: done, log in {log}")

    device = pick_device(args.device)
    reference = load_model(load_checkpoint(sft), device)
    reward_model = load_reward_model(load_checkpoint(rm), device)
    base = evaluate(reference, reference, reward_model, heldout, **evaluation)

    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    plot = results.with_name(results.stem.lower() + ".png")
    has_plot = write_plot(plot, base, runs)
    command = "python -m examples.compare" + (" " + " ".join(argv) if argv else "")
    if argv is None:
        command = "python -m examples.compare " + " ".join(sys.argv[1:])
    setup = {
        "summary": (
            f"preset `{args.preset}`, {len(train)} training prompts in "
            f"{len(set(e.group for e in train))} groups, {len(heldout)} held-out prompts × "
            f"{args.samples} samples, {max_steps} GRPO steps per run, density weights "
            f"density^-{args.beta}."
        ),
        "machine": (
            f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, device {device}, {args.jobs} parallel run(s), "
            f"load average {load_before:.1f} when it started (other work on the machine)"
        ),
        "minutes": (time.time() - start) / 60,
    }
    write_results(
        results,
        command=command.strip(),
        base=base,
        runs=runs,
        train=train,
        seeds=args.seeds,
        plot=plot if has_plot else None,
        setup=setup,
    )
    print(f"wrote {results}" + (f" and {plot}" if has_plot else " (no matplotlib: no plot)"))
    return results


if __name__ == "__main__":
    main()
