"""The A/B experiment's analysis: what it compares, the statistics, and the report it writes.

`examples.compare` runs the experiment and hands its results here as `Runs`; this module
turns them into the Markdown report, and `examples.pool` reads those reports back (the
`primary` section) to pool them over base models. Everything the verdicts rest on lives
here once, so a report and a pooled report judge alike:

- the design, fixed before any run: the arms (`ARMS`), the comparison (`TREATMENT` minus
  `CONTROL`), the primary endpoint (`PRIMARY`) and the secondary metrics (`SECONDARY`);
- the statistics: per base model, the mean over GRPO seed pairs (`Runs.difference`);
  pooled, the mean of the per-base estimates with the SE from their spread over bases
  (`pooled`); a two-sided 5% t test (`critical`, `verdict`) and its power (`detectable`,
  `bases_needed`);
- the report (`write_report`): the endpoint first, then the endpoint against the weights'
  ESS/N, the sanity check, the secondary metrics and the draws per prompt group, each
  table between `--8<--` section markers (`marker`) that the docs include and
  `examples.pool` reads.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats

from examples.data import TOPICS, Example

COMMON, RARE = list(TOPICS)[:4], list(TOPICS)[4:]  # the four largest topics, the four smallest


@dataclass(frozen=True)
class Arm:
    """One way of drawing GRPO's prompts: `sampler` and, for density, its weights' strength."""

    name: str
    sampler: str
    beta: float = 1.0
    min_ess: float = 0.65

    def flags(self) -> list[str]:
        """`examples.train_grpo`'s flags for this arm."""
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
# Two-sided 5% test, 80% power: the t quantiles behind `critical` and `detectable`.
_ALPHA, _POWER = 0.05, 0.80
# `bases_needed` looks no further than this many base models.
MAX_BASES = 10_000


def secondary_header(arms: list[str], treatment: str) -> list[str]:
    """The head of a secondary-metrics table: the metric, its better direction, the base
    model, one column per arm and the treatment minus uniform."""
    return [
        f"| metric | better | base model | {' | '.join(arms)} | {treatment} − uniform |",
        "|---|---|---|" + "---|" * len(arms) + "---|",
    ]


def marker(edge: str, section: str) -> str:
    """The line that starts (`edge="start"`) or ends a report's `section`.

    pymdownx.snippets includes a section by name (`--8<-- "RESULTS.md:primary"`), and
    `examples.pool` reads the `primary` one.
    """
    return f"<!-- --8<-- [{edge}:{section}] -->"


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
    """`mean ± se`, or the mean alone where there is no SE."""
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
    unit: str = "base model",
) -> str:
    """The two-sided 5% t test of a mean of `n` per-unit estimates against 0.

    `good` and `bad` say what a mean beyond the threshold in the `better` direction, or
    the other one, means; `unit` names what the estimates are per (a base model here, a
    seed in `examples.real_lm`).
    """
    if math.isnan(se):
        return f"one {unit}: no standard error, no verdict"
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


def write_report(
    path: Path,
    *,
    command: str,
    runs: Runs,
    train: list[Example],
    plot: Path | None,
    setup: dict[str, Any],
) -> None:
    """The Markdown report of `runs`, written to `path`.

    Args:
        command: the command that ran the experiment, shown first so it can be rerun.
        train: the training prompts, whose topics and groups the draws are counted by.
        plot: the plot to link under the arms table, or None.
        setup: the `summary` and `machine` lines, and the wall time in `minutes`.
    """
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
        f"Fixed before the run (`examples.report.PRIMARY`): **{label}**, the share of",
        "completions to the held-out prompts of the four smallest topics that use a common",
        f"topic's vocabulary and none of their own (lower is better). Compared: {compared}",
        f"minus uniform, paired by GRPO seed ({n_seeds} per base), per base and pooled",
        f"over the {n_bases} base models (the mean of the per-base estimates, its standard error",
        "from their spread: a rerun on another machine trains other base models). Judged by",
        "a two-sided 5% t test of the pooled estimate; minimal detectable effect: the true",
        "difference that test finds 80% of the time with these standard errors.",
        "",
        marker("start", "primary"),
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
        marker("end", "primary"),
        "",
        "## The endpoint against the strength of the weights",
        "",
        "Each density arm's weights are computed from its base model's hidden states; ESS/N",
        "is their effective sample size over distinct prompts (1 for uniform). Differences",
        "are against uniform, pooled over bases.",
        "",
        marker("start", "arms"),
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
    lines += ["", marker("end", "arms")]
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
        marker("start", "sanity"),
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
        marker("end", "sanity"),
        "",
        "## Secondary metrics",
        "",
        f"Mean over bases and seeds; the differences are {compared} minus uniform,",
        "pooled over bases ± SE. About ten comparisons: one may pass a 5% test by chance.",
        "",
        marker("start", "secondary"),
        "",
        *secondary_header([a.name for a in ARMS], treatment),
    ]
    for metric, name, direction in SECONDARY:
        base_value = statistics.fmean(runs.base[b][metric] for b in runs.bases)
        cells = " | ".join(f"{runs.arm_mean(a.name, metric):.3f}" for a in ARMS)
        lines.append(
            f"| {name} | {direction} | {base_value:.3f} | {cells} "
            f"| {fmt(*runs.pooled_difference(metric, treatment))} |"
        )
    lines += ["", marker("end", "secondary")]

    group_sizes = Counter(e.group for e in train)
    lines += [
        "",
        "## How often each prompt group was trained on",
        "",
        "Share of the prompts drawn, over all runs of an arm. `dup:` groups are near-duplicate",
        "rewrites of one prompt.",
        "",
        marker("start", "visits"),
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
        marker("end", "visits"),
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
