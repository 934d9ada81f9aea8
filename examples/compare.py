"""The A/B experiment: does sampling rare prompts more often reduce mode collapse in GRPO?

The prompt set (examples/data.py) is skewed the way scraped sets are: eight topics of
Zipf-distributed sizes, the four largest ("common") holding 77% of the topic prompts and three
groups of near-duplicate rewrites on top of them, the four smallest ("rare") 23%. The CPU
and GPU presets phrase every topic prompt, training and held-out, with 2 templates and no
ending (`--templates 2 --modifiers 1`), so the large topics repeat their prompts verbatim
and are dense where they are large; `--preset cpu-varied`, the first setup, uses every
phrasing. The reward
is verifiable (`examples.data.topic_reward`: 1 for an on-topic line, minus the share of
repeated words), so it rewards on every topic exactly what the metrics measure.

Primary endpoint, fixed before the run (`PRIMARY`): **collapse onto the common topics on
rare held-out prompts**, the share of completions to a rare topic's held-out prompts that
use a common topic's vocabulary and none of their own. It is judged by the difference
density (the library's default weights) minus uniform, paired by GRPO seed within each
base model, estimated per base and pooled over bases (the mean of the per-base estimates,
± its standard error from their spread over bases, since a rerun on another machine trains
other base models). A two-sided 5% t test of the pooled estimate decides: significantly
below 0 supports the hypothesis, above 0 contradicts it, anything else is no detectable
difference, and the minimal detectable effect (80% power) is stated beside it. Everything
else is secondary.

1. For each base seed, train an SFT policy (examples/train_sft.py) with that seed.
2. From each base, for each GRPO seed, run GRPO once per arm with everything equal (seed,
   sampler seed, sampling generator, steps) except the prompt weights: `uniform`, and the
   density weights at three strengths (`ARMS`): weaker (ESS floor 0.85), the default
   (`beta=1`, floor 0.65) and stronger (`beta=2`, floor 0.4).
3. Sample `--samples` completions per held-out prompt (subjects no training prompt
   mentions, the same number per topic) from every policy and from the bases, with one
   fixed evaluation seed, and measure them: the endpoint, on-topic shares per tier, the
   reward, the KL to the base, and katdensity.metrics' diversity measures.
4. Write `--results` (Markdown: the endpoint first, then the endpoint against the weights'
   ESS/N, the sanity check that uniform GRPO over-trains the dense part, the secondary
   metrics and the draws per prompt group) and a plot beside it.

    python -m examples.compare                  # --preset cpu: 8 bases x 2 seeds x 4 arms
    python -m examples.compare --preset gpu     # larger models, 24 bases x 2 seeds, CUDA
    python -m examples.compare --bases 8 9 10 11 12 13 14 15 --results RESULTS-bases8-15.md
    python -m examples.pool RESULTS-*.md        # every report's base models, pooled

`--preset cpu` (8 bases x 2 seeds x 4 arms, 24 samples per held-out prompt) takes 27
minutes on two cores of an Intel Xeon, 31-33 on an AMD EPYC; `--preset smoke` is the
test's. Many bases with few seeds each beat few bases with many seeds (see `EXPERIMENTS`).
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
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from scipy import stats

from examples import train_grpo, train_sft
from examples.common import load_checkpoint, pad_batch, pick_device
from examples.data import MODIFIERS, TEMPLATES, TOPICS, Example, load_data, on_topic, topic_reward
from examples.gpt import GPT, load_model
from examples.grpo import token_logprobs
from examples.tokenizer import ByteTokenizer
from katdensity import HashingEmbedder
from katdensity.metrics import distinct_n, diversity_report

COMMON, RARE = list(TOPICS)[:4], list(TOPICS)[4:]  # the four largest topics, the four smallest


@dataclass(frozen=True)
class Arm:
    name: str
    sampler: str
    beta: float = 1.0
    min_ess: float = 0.65

    def flags(self) -> list[str]:
        return ["--sampler", self.sampler, "--beta", str(self.beta), "--min-ess", str(self.min_ess)]

    def describe(self) -> str:
        if self.name == "density":
            return "density (the library's default weights)"
        return f"{self.name} (beta {self.beta}, ESS floor {self.min_ess})"


ARMS = (
    Arm("uniform", "uniform"),
    Arm("density-weak", "density", beta=1.0, min_ess=0.85),
    Arm("density", "density", beta=1.0, min_ess=0.65),  # the library's default weights
    Arm("density-strong", "density", beta=2.0, min_ess=0.40),
)
CONTROL, TREATMENT = "uniform", "density"


def arm_named(name: str) -> Arm:
    """The arm of `ARMS` called `name`."""
    return next(a for a in ARMS if a.name == name)


# (key, label, which direction is better); the first is the primary endpoint.
PRIMARY = ("rare/collapse", "collapse onto the common topics on rare held-out prompts", "lower")
SECONDARY = (
    ("rare/on_topic", "on topic, rare topics", "higher"),
    ("common/on_topic", "on topic, common topics", "higher"),
    ("reward", "reward (topic rule)", "higher"),
    ("kl", "KL to base (nats / completion)", "-"),
    ("distinct_2", "distinct-2", "higher"),
    ("prompt_distinct_2", "distinct-2 within a prompt's samples", "higher"),
    ("self_bleu", "self-BLEU", "lower"),
    ("token_gini", "token Gini", "lower"),
    ("vendi", "Vendi score (hashed n-grams)", "higher"),
    ("mean_tokens", "mean words per completion", "-"),
)
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "smoke": dict(stages="tiny", bases=[0], seeds=[0], samples=2, max_steps=2, grpo=[]),
    # cpu: the bundled data phrased with 2 templates and no ending, so the large topics
    # repeat their prompts verbatim and are dense where they are large (in cpu-varied, the
    # first setup, every phrasing is used, and the base model's hidden states hardly see a
    # large topic as dense). lr 5e-4 (the stage preset has 1e-4): in pilots on bases 90-92,
    # uniform GRPO raised the collapse by +0.046 ± 0.009 at 5e-4 and +0.033 ± 0.019 at 3e-4.
    # 8 bases x 2 seeds: in the first setup, two runs of 3 bases x 5 seeds (AVX-512 and AVX2
    # kernels) put the effect's SD between bases at about 0.043 and a seed pair's SD within
    # a base at 0.068, so the pooled variance (0.043^2 + 0.068^2 / seeds) / bases is 0.00052
    # here against 0.00091 for 3 x 5, at about the same cost (an SFT run costs about 2.5
    # GRPO runs).
    "cpu": dict(
        stages="small",
        bases=list(range(8)),
        seeds=[0, 1],
        samples=24,
        max_steps=None,
        grpo=["--lr", "5e-4"],
        data=dict(templates=2, modifiers=1),
    ),
    # cpu-varied, lr 3e-4 (the stage preset has 1e-4): at 1e-4 uniform GRPO barely moved in
    # 100 steps and the sanity check failed; at 3e-4 it visibly over-trained the common topics.
    "cpu-varied": dict(
        stages="small",
        bases=list(range(8)),
        seeds=[0, 1],
        samples=24,
        max_steps=None,
        grpo=["--lr", "3e-4"],
    ),
    # gpu: the cpu preset's data at the medium stage preset's settings; not yet run or piloted.
    "gpu": dict(
        stages="medium",
        bases=list(range(24)),
        seeds=[0, 1],
        samples=16,
        max_steps=None,
        grpo=[],
        data=dict(templates=2, modifiers=1),
    ),
}
# Two-sided 5% test, 80% power: the t quantiles behind `critical` and `detectable`.
_ALPHA, _POWER = 0.05, 0.80
# `bases_needed` looks no further than this many base models.
MAX_BASES = 10_000


def collapsed(response: str, topic: str) -> bool:
    """About a common topic instead of its own `topic`."""
    return not on_topic(response, topic) and any(on_topic(response, c) for c in COMMON)


@torch.no_grad()
def evaluate(
    policy: GPT,
    reference: GPT,
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
    metrics = {**diversity_report(texts, embeddings), "kl": float(kl)}
    metrics["reward"] = statistics.fmean(
        topic_reward(t, e.topic) for t, e in zip(texts, rows, strict=True)
    )
    metrics["prompt_distinct_2"] = statistics.fmean(
        distinct_n(texts[i : i + samples], 2) for i in range(0, len(texts), samples)
    )
    for tier, topics in (("common", COMMON), ("rare", RARE)):
        keep = [(t, e.topic) for t, e in zip(texts, rows, strict=True) if e.topic in topics]
        metrics[f"{tier}/on_topic"] = statistics.fmean(on_topic(t, name) for t, name in keep)
        metrics[f"{tier}/collapse"] = statistics.fmean(collapsed(t, name) for t, name in keep)
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
    metrics = evaluate(policy, reference, eval_args["heldout"], **eval_args["evaluation"])
    return {"metrics": metrics, "draws": checkpoint["draws"], "ess": checkpoint["weights_ess"]}


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (nan for one value)."""
    if len(values) < 2:
        return values[0], math.nan
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def pooled(per_base: Sequence[float]) -> tuple[float, float]:
    """The mean of per-base estimates and its standard error from their spread over bases.

    The base model is the unit of replication: a rerun on another machine trains other
    base models, and the effect varies from base to base more than the GRPO seeds within
    a base show. An SE from the seeds alone would be too small for that rerun.
    """
    return mean_se(per_base)


def critical(n: int) -> float:
    """How many standard errors a mean of `n` values must lie from 0 (two-sided t test)."""
    return float(stats.t.ppf(1 - _ALPHA / 2, n - 1)) if n > 1 else math.nan


def detectable(se: float, n: int) -> float:
    """The true difference found beyond `critical(n)` SE 80% of the time, for a mean of `n`."""
    return (critical(n) + float(stats.t.ppf(_POWER, n - 1))) * se if n > 1 else math.nan


def fmt(mean: float, se: float, spec: str = "+.3f") -> str:
    return f"{mean:{spec}}" if math.isnan(se) else f"{mean:{spec}} ± {se:.3f}"


class Runs:
    """Every run's results, by (arm, base, seed), and the paired comparisons on them."""

    def __init__(
        self,
        results: dict[tuple[str, int, int], dict[str, Any]],
        bases: list[int],
        seeds: list[int],
        base_metrics: dict[int, dict[str, float]],
    ) -> None:
        self.results, self.bases, self.seeds, self.base = results, bases, seeds, base_metrics

    def values(self, arm: str, key: str, base: int) -> list[float]:
        return [self.results[(arm, base, s)]["metrics"][key] for s in self.seeds]

    def pair_differences(
        self, key: str, arm: str, base: int, control: str = CONTROL
    ) -> list[float]:
        """`arm` minus `control` on `key`, one per GRPO seed within `base`."""
        pairs = zip(self.values(control, key, base), self.values(arm, key, base), strict=True)
        return [b - a for a, b in pairs]

    def difference(
        self, key: str, arm: str, base: int, control: str = CONTROL
    ) -> tuple[float, float]:
        """`arm` minus `control` on `key`, paired by seed within `base`: mean ± SE."""
        return mean_se(self.pair_differences(key, arm, base, control))

    def pooled_difference(self, key: str, arm: str, control: str = CONTROL) -> tuple[float, float]:
        return pooled([self.difference(key, arm, b, control)[0] for b in self.bases])

    def pair_spread(self, key: str, arm: str, control: str = CONTROL) -> float:
        """SD over GRPO seeds of a pair's difference within a base, pooled over bases."""
        return math.sqrt(
            statistics.fmean(
                statistics.variance(self.pair_differences(key, arm, b, control)) for b in self.bases
            )
        )

    def gain_over_base(self, key: str, arm: str, base: int) -> tuple[float, float]:
        return mean_se([v - self.base[base][key] for v in self.values(arm, key, base)])

    def arm_mean(self, arm: str, key: str) -> float:
        return statistics.fmean(v for b in self.bases for v in self.values(arm, key, b))

    def draws(self, arm: str) -> list[int]:
        """The dataset rows `arm` trained on, over all bases and seeds."""
        return [
            i for b in self.bases for s in self.seeds for i in self.results[(arm, b, s)]["draws"]
        ]

    def ess(self, arm: str) -> float:
        return statistics.fmean(
            self.results[(arm, b, s)]["ess"] for b in self.bases for s in self.seeds
        )


def verdict(
    mean: float,
    se: float,
    n: int,
    better: str,
    *,
    good: str = "density is better",
    bad: str = "density is worse",
) -> str:
    """The two-sided 5% t test of a mean of `n` per-base estimates against 0.

    `good` and `bad` say what a mean beyond the threshold in the `better` direction, or
    the other one, means.
    """
    if math.isnan(se):
        return "one base model: no standard error, no verdict"
    t = critical(n)
    if abs(mean) <= t * se:
        return f"no difference beyond {t:.2f} standard errors (t test, {n - 1} df)"
    reading = good if (mean > 0) == (better == "higher") else bad
    return f"{reading} (beyond {t:.2f} standard errors)"


def readings(treatment: str) -> dict[str, str]:
    """`verdict`'s wording for a comparison of `treatment` with uniform."""
    return {"good": f"{treatment} is better", "bad": f"{treatment} is worse"}


def bases_needed(effect: float, spread: float) -> int | None:
    """The fewest base models whose pooled test finds `effect` 80% of the time.

    `spread` is the SD of the per-base estimates; None if even `MAX_BASES` are too few.
    """
    if effect == 0.0 or math.isnan(spread):
        return None
    for n in range(2, MAX_BASES + 1):
        if detectable(spread / math.sqrt(n), n) <= abs(effect):
            return n
    return None


def power(effect: float, se: float, n_bases: int, n_seeds: int) -> str:
    """How many base models would detect an effect of the observed size 80% of the time."""
    if math.isnan(se) or effect == 0.0:
        return ""
    needed = bases_needed(effect, se * math.sqrt(n_bases))
    count = f"about {needed}" if needed is not None else f"more than {MAX_BASES}"
    return (
        f"An effect of the observed size ({abs(effect):.3f}) would be detected 80% of the time "
        f"with {count} base models of {n_seeds} GRPO seeds each (this run has {n_bases})."
    )


def write_plot(path: Path, runs: Runs) -> bool:
    """The endpoint against each arm's ESS/N, per base and pooled; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    key, label, _ = PRIMARY
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for number, base in enumerate(runs.bases):
        points = [(runs.ess(a.name), *mean_se(runs.values(a.name, key, base))) for a in ARMS]
        x, y, se = zip(*points, strict=True)
        left.errorbar(
            x,
            y,
            yerr=[0 if math.isnan(e) else e for e in se],
            marker="o",
            capsize=3,
            color=f"C{number}",
            label=f"base {base}",
        )
    left.set(xlabel="ESS/N of the weights (1 = uniform)", ylabel=label, title="per base")
    left.invert_xaxis()
    left.legend(fontsize=8)
    for number, arm in enumerate(ARMS[1:], start=1):
        mean, se = runs.pooled_difference(key, arm.name)
        right.errorbar(
            [runs.ess(arm.name)],
            [mean],
            yerr=[0 if math.isnan(se) else critical(len(runs.bases)) * se],
            marker="o",
            capsize=3,
            color=f"C{number}",
            label=arm.name,
        )
    right.axhline(0, color="grey", lw=1, ls="--")
    right.set(
        xlabel="ESS/N of the weights",
        ylabel=f"{key}: arm - uniform (95% interval)",
        title="pooled over bases",
    )
    right.invert_xaxis()
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_results(
    path: Path,
    *,
    command: str,
    runs: Runs,
    train: list[Example],
    plot: Path | None,
    setup: dict[str, Any],
) -> None:
    key, label, better = PRIMARY
    n_bases, n_seeds = len(runs.bases), len(runs.seeds)
    treatment = TREATMENT
    compared = arm_named(treatment).describe()
    lines = [
        "# Does density-aware sampling reduce mode collapse in GRPO?",
        "",
        "Generated by `examples/compare.py`; every stage is seeded:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Setup: {setup['summary']}",
        "",
        f"Machine: {setup['machine']}; wall time {setup['minutes']:.1f} minutes.",
        "",
        "## Primary endpoint",
        "",
        f"Fixed before the run (`compare.PRIMARY`): **{label}**, the share of completions to",
        "the held-out prompts of the four smallest topics that use a common topic's vocabulary",
        f"and none of their own (lower is better). Compared: {compared}",
        f"minus uniform, paired by GRPO seed ({n_seeds} per base), per base and pooled",
        f"over the {n_bases} base models (the mean of the per-base estimates, its standard error",
        "from their spread: a rerun on another machine trains other base models). Judged by",
        "a two-sided 5% t test of the pooled estimate; minimal detectable effect: the true",
        "difference that test finds 80% of the time with these standard errors.",
        "",
        "<!-- --8<-- [start:primary] -->",
        "",
        f"| base | base model | uniform | {treatment} | {treatment} − uniform "
        "| minimal detectable |",
        "|---|---|---|---|---|---|",
    ]
    estimates = []
    for base in runs.bases:
        mean, se = runs.difference(key, treatment, base)
        estimates.append(mean)
        lines.append(
            f"| {base} | {runs.base[base][key]:.3f} "
            f"| {fmt(*mean_se(runs.values(CONTROL, key, base)), '.3f')} "
            f"| {fmt(*mean_se(runs.values(treatment, key, base)), '.3f')} | {fmt(mean, se)} "
            f"| {detectable(se, n_seeds):.3f} |"
        )
    mean, se = pooled(estimates)
    spread = se * math.sqrt(n_bases)
    lines += [
        f"| pooled | {statistics.fmean(runs.base[b][key] for b in runs.bases):.3f} "
        f"| {runs.arm_mean(CONTROL, key):.3f} | {runs.arm_mean(treatment, key):.3f} "
        f"| **{fmt(mean, se)}** | {detectable(se, n_bases):.3f} |",
        "",
        f"**Result: {verdict(mean, se, n_bases, better, **readings(treatment))}.** "
        f"{power(mean, se, n_bases, n_seeds)}",
        "",
        f"The per-base estimates range from {min(estimates):+.3f} to {max(estimates):+.3f} "
        f"(SD {spread:.3f}); within a base, one seed pair's difference varies with SD "
        f"{runs.pair_spread(key, treatment) if n_seeds > 1 else math.nan:.3f} over GRPO seeds. "
        "Per base, a few seeds cannot tell a difference (the t test of "
        f"{n_seeds} seed pairs needs {critical(n_seeds):.1f} SE); the pooled test is the one "
        "that counts.",
        "",
        "<!-- --8<-- [end:primary] -->",
        "",
        "## The endpoint against the strength of the weights",
        "",
        "Each density arm's weights are computed from its base model's hidden states; ESS/N",
        "is their effective sample size over distinct prompts (1 for uniform). Differences",
        "are against uniform, pooled over bases.",
        "",
        "<!-- --8<-- [start:arms] -->",
        "",
        "| arm | weights | ESS/N | endpoint | arm − uniform | rare on topic | arm − uniform |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        settings = "-" if arm.sampler == "uniform" else f"beta {arm.beta}, ESS floor {arm.min_ess}"
        cells = []
        for metric in (key, "rare/on_topic"):
            diff = "-" if arm.name == CONTROL else fmt(*runs.pooled_difference(metric, arm.name))
            cells += [f"{runs.arm_mean(arm.name, metric):.3f}", diff]
        lines.append(
            f"| {arm.name} | {settings} | {runs.ess(arm.name):.2f} | " + " | ".join(cells) + " |"
        )
    lines += ["", "<!-- --8<-- [end:arms] -->"]
    if plot is not None:
        lines += ["", f"![the endpoint against the weights' ESS/N]({plot.name})"]

    lines += [
        "",
        "## Sanity check: does uniform GRPO over-train the dense part?",
        "",
        "The question can only be answered if uniform sampling visibly trains the common",
        "topics at the rare ones' expense. Uniform GRPO minus its base model, pooled over",
        "bases and seeds (mean of per-base means ± SE); the reward is the same rule on every",
        "topic, so it rewards on the rare prompts exactly what the on-topic share measures.",
        "",
        "<!-- --8<-- [start:sanity] -->",
        "",
        "| measure | base model | uniform GRPO | uniform − base |",
        "|---|---|---|---|",
    ]
    checks = {}
    for metric, name in (
        ("common/on_topic", "on topic, common topics"),
        ("rare/on_topic", "on topic, rare topics"),
        (key, label),
    ):
        gain = pooled([runs.gain_over_base(metric, CONTROL, b)[0] for b in runs.bases])
        checks[metric] = gain
        lines.append(
            f"| {name} | {statistics.fmean(runs.base[b][metric] for b in runs.bases):.3f} "
            f"| {runs.arm_mean(CONTROL, metric):.3f} | {fmt(*gain)} |"
        )
    draws = Counter(train[i].topic for i in runs.draws(CONTROL))
    rare_share = sum(draws[t] for t in RARE) / sum(draws.values())

    rises = {metric: mean > critical(n_bases) * se for metric, (mean, se) in checks.items()}

    def moves(metric: str) -> str:
        return f"{'raises' if rises[metric] else 'does not raise'} it ({fmt(*checks[metric])})"

    passed = rises[key] or (rises["common/on_topic"] and not rises["rare/on_topic"])
    lines += [
        "",
        f"Check **{'passed' if passed else 'not passed'}** (it passes when uniform GRPO raises "
        "the collapse, or the common topics' on-topic share but not the rare ones', by the t "
        f"test over bases: beyond {critical(n_bases):.2f} SE). Uniform "
        f"sampling gives the rare topics {rare_share:.1%} of the draws. On the common topics' "
        f"on-topic share uniform GRPO {moves('common/on_topic')}; on the rare topics' it "
        f"{moves('rare/on_topic')}; on the collapse onto the common topics it {moves(key)}.",
        "",
        "<!-- --8<-- [end:sanity] -->",
        "",
        "## Secondary metrics",
        "",
        f"Mean over bases and seeds; the differences are {compared} minus uniform,",
        "pooled over bases ± SE. About ten comparisons: one may pass a 5% test by chance.",
        "",
        "<!-- --8<-- [start:secondary] -->",
        "",
        "| metric | better | base model | "
        + " | ".join(a.name for a in ARMS)
        + f" | {treatment} − uniform |",
        "|---|---|---|" + "---|" * len(ARMS) + "---|",
    ]
    for metric, name, direction in SECONDARY:
        base_value = statistics.fmean(runs.base[b][metric] for b in runs.bases)
        cells = " | ".join(f"{runs.arm_mean(a.name, metric):.3f}" for a in ARMS)
        lines.append(
            f"| {name} | {direction} | {base_value:.3f} | {cells} "
            f"| {fmt(*runs.pooled_difference(metric, treatment))} |"
        )
    lines += ["", "<!-- --8<-- [end:secondary] -->"]

    group_sizes = Counter(e.group for e in train)
    lines += [
        "",
        "## How often each prompt group was trained on",
        "",
        "Share of the prompts drawn, over all runs of an arm. `dup:` groups are near-duplicate",
        "rewrites of one prompt.",
        "",
        "<!-- --8<-- [start:visits] -->",
        "",
        "| group | share of the set | " + " | ".join(a.name for a in ARMS) + " |",
        "|---|---|" + "---|" * len(ARMS),
    ]
    shares = {}
    for arm in ARMS:
        counts = Counter(train[i].group for i in runs.draws(arm.name))
        shares[arm.name] = {g: c / sum(counts.values()) for g, c in counts.items()}
    for group, size in sorted(group_sizes.items(), key=lambda item: -item[1]):
        cells = " | ".join(f"{shares[a.name].get(group, 0.0):.1%}" for a in ARMS)
        lines.append(f"| {group} | {size / len(train):.1%} | {cells} |")
    lines += [
        "",
        "<!-- --8<-- [end:visits] -->",
        "",
        "## Notes",
        "",
        "- Within a base and a seed the arms share the sampler seed and the sampling",
        "  generator, so they differ only in the prompt weights. The base seeds vary the SFT",
        "  model's initialisation and batch order; the data is the same.",
        "- Held-out prompts ask about subjects no training prompt mentions, the same number",
        "  per topic.",
        "- Vendi is computed on katdensity's HashingEmbedder (character n-grams) of the",
        "  completions; KL is the mean over completions of the summed log-ratio of the policy",
        "  to its base on the sampled tokens.",
        "- Tiny byte-level models and a rule reward: this answers the question for this",
        "  setup, not for large models. `--preset gpu` scales it up.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        choices=list(EXPERIMENTS),
        default="cpu",
        help="experiment (default cpu: 27-33 minutes on 2 cores)",
    )
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, ...")
    parser.add_argument("--bases", type=int, nargs="+", help="SFT seeds, one base model each")
    parser.add_argument("--seeds", type=int, nargs="+", help="GRPO seeds, one run per arm")
    parser.add_argument("--max-steps", type=int, help="GRPO steps per run")
    parser.add_argument("--samples", type=int, help="completions per held-out prompt")
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="runs in parallel processes, each with its share of the threads",
    )
    parser.add_argument("--out-dir", default="runs/compare", help="checkpoints and logs")
    parser.add_argument(
        "--results", help="the report (default: RESULTS.md in --out-dir); the plot goes beside it"
    )
    args = parser.parse_args(argv)
    experiment = EXPERIMENTS[args.preset]
    bases = args.bases or experiment["bases"]
    seeds = args.seeds or experiment["seeds"]
    samples = args.samples or experiment["samples"]
    start, load_before = time.time(), os.getloadavg()[0]
    out = Path(args.out_dir)
    phrasing = experiment.get("data", {})
    common = ["--preset", experiment["stages"], "--device", args.device]
    common += [f"--{name}={value}" for name, value in phrasing.items()]
    threads = max(1, torch.get_num_threads() // args.jobs)
    context = get_context("spawn")
    out.mkdir(parents=True, exist_ok=True)

    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        sft_futures = {
            b: pool.submit(
                _train_base,
                [*common, "--seed", str(b), "--out-dir", str(out / f"sft{b}")],
                str(out / f"sft{b}.log"),
                threads,
            )
            for b in bases
        }
        sft = {b: future.result() for b, future in sft_futures.items()}
    grpo_defaults = train_grpo.parse_args(["--sft", str(sft[bases[0]]), *common])
    max_steps = args.max_steps or experiment["max_steps"] or grpo_defaults.max_steps
    train, heldout = load_data(None, topic_size=grpo_defaults.topic_size, seed=0, **phrasing)
    evaluation = dict(samples=samples, max_new_tokens=grpo_defaults.max_new_tokens, seed=1234)
    jobs = []
    for base in bases:
        eval_args = dict(device=args.device, sft=sft[base], heldout=heldout, evaluation=evaluation)
        for seed in seeds:
            for arm in ARMS:
                run_dir = out / f"base{base}" / f"{arm.name}-seed{seed}"
                run_dir.mkdir(parents=True, exist_ok=True)
                argv_grpo = [
                    *common,
                    "--sft",
                    str(sft[base]),
                    *arm.flags(),
                    *experiment["grpo"],
                    "--seed",
                    str(seed),
                    "--max-steps",
                    str(max_steps),
                    "--out-dir",
                    str(run_dir),
                ]
                jobs.append(
                    ((arm.name, base, seed), argv_grpo, str(run_dir / "log.txt"), eval_args)
                )
    results: dict[tuple[str, int, int], dict[str, Any]] = {}
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [(key, log, pool.submit(run_arm, a, log, threads, e)) for key, a, log, e in jobs]
        for key, log, future in futures:
            results[key] = future.result()
            print(f"GRPO {key[0]} base {key[1]} seed {key[2]}: done, log in {log}")

    device = pick_device(args.device)
    base_metrics = {}
    for base in bases:
        reference = load_model(load_checkpoint(sft[base]), device)
        base_metrics[base] = evaluate(reference, reference, heldout, **evaluation)
    runs = Runs(results, bases, seeds, base_metrics)

    path = Path(args.results) if args.results else out / "RESULTS.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot = path.with_name(path.stem.lower() + ".png")
    has_plot = write_plot(plot, runs)
    command = "python -m examples.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    if "ATEN_CPU_CAPABILITY" in os.environ:  # it changes the kernels, and so the base models
        command = f"ATEN_CPU_CAPABILITY={os.environ['ATEN_CPU_CAPABILITY']} {command}"
    setup = {
        "summary": (
            f"preset `{args.preset}` (stage preset `{experiment['stages']}`), "
            f"{len(train)} training prompts{_phrasing(phrasing, train)} in "
            f"{len(set(e.group for e in train))} groups, "
            f"{len(heldout)} held-out prompts × {samples} samples, {len(bases)} base models × "
            f"{len(seeds)} GRPO seeds × {len(ARMS)} arms, {max_steps} GRPO steps per run "
            f"{' '.join(experiment['grpo'])}, reward `topic_reward`."
        ),
        "machine": (
            f"{platform.machine()} ({_cpu_model()}), {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()} CPU kernels), "
            f"device {_device_name(device)}, {args.jobs} parallel run(s), "
            f"load average {load_before:.1f} when it started"
        ),
        "minutes": (time.time() - start) / 60,
    }
    write_results(
        path,
        command=command.strip(),
        runs=runs,
        train=train,
        plot=plot if has_plot else None,
        setup=setup,
    )
    print(f"wrote {path}" + (f" and {plot}" if has_plot else " (no matplotlib: no plot)"))
    return path


def _train_base(argv: list[str], log: str, threads: int) -> Path:
    """One SFT base model, in a worker process; its output goes to `log`."""
    torch.set_num_threads(threads)
    with open(log, "w") as f, contextlib.redirect_stdout(f):
        return train_sft.main(argv)


def _phrasing(phrasing: dict[str, int], train: list[Example]) -> str:
    """The bundled data's phrasing, where a preset narrows it."""
    if not phrasing:
        return ""
    distinct = len({e.prompt for e in train})
    templates = phrasing.get("templates", len(TEMPLATES))
    modifiers = phrasing.get("modifiers", len(MODIFIERS))
    endings = "no ending" if modifiers == 1 else f"the first {modifiers} endings"
    return f" ({distinct} distinct: {templates} templates, {endings})"


def _device_name(device: torch.device) -> str:
    """The device, with the GPU's name: another GPU trains other base models."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
