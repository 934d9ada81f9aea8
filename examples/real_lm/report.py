"""The real-model experiment's design, fixed before any run, its batches and its report.

Everything the verdicts rest on lives here once, so a batch report and a pooled one judge
alike:

- the design: the arms (`ARMS`), the comparison (`TREATMENT` minus `CONTROL`), the primary
  endpoint (`PRIMARY`) and the secondary metrics (`SECONDARY`);
- a batch (`Batch`): every run's metrics by (arm, seed), the base model's, the settings
  and the machine, saved as JSON beside its report (`save_batch`, `load_batch`) so that
  `examples.real_lm.pool` pools batches from their numbers, not from their Markdown;
- the statistics: the seed is the unit of replication (one pretrained base model, so no
  base models to pool over as `examples.compare` does). Per seed, an arm minus uniform;
  pooled, the mean over seeds with the standard error from their spread, judged by the
  two-sided 5% t test of `examples.report` (`critical`, `detectable`, `verdict`);
- the report (`write_report`), its tables between the `--8<--` section markers the docs
  include.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from examples.real_lm.prompts import RARE, REGIONS
from examples.report import (
    MAX_BASES,
    bases_needed,
    detectable,
    fmt,
    marker,
    mean_se,
    readings,
    secondary_header,
    verdict,
)


@dataclass(frozen=True)
class Arm:
    """One way of drawing GRPO's prompts through `DensityGRPOTrainer`.

    Attributes:
        name: the arm's name in the reports.
        density: `density_weights="policy"` (the library's default weights, from the
            policy's hidden states), else uniform weights (`torch.ones(N)`).
        learnability: `learnability=True`: the weights learn from the rewards.
    """

    name: str
    density: bool
    learnability: bool

    def describe(self) -> str:
        weights = "density from the policy" if self.density else "uniform"
        return f"{weights}, learnability" if self.learnability else weights


ARMS = (
    Arm("uniform", density=False, learnability=False),
    Arm("density", density=True, learnability=False),  # the library's default weights
    Arm("learnability", density=False, learnability=True),
    Arm("density x learnability", density=True, learnability=True),
)
CONTROL, TREATMENT = "uniform", "density"

# (key, label, which direction is better).
PRIMARY = (f"accuracy/{RARE}", "held-out accuracy on the rare region (word problems)", "higher")
SECONDARY = (
    ("accuracy/easy", "held-out accuracy, easy (the dense block)", "higher"),
    ("accuracy/arithmetic", "held-out accuracy, arithmetic", "higher"),
    ("accuracy/word", "held-out accuracy, word problems (the endpoint)", "higher"),
    ("zero_variance", "training rollouts in zero-variance groups", "lower"),
    ("train_reward", "training reward", "-"),
    ("kl", "KL to the base (nats / completion)", "-"),
    ("distinct_2", "distinct-2 of the held-out completions", "higher"),
    ("self_bleu", "self-BLEU", "lower"),
    ("vendi", "Vendi score (hashed n-grams)", "higher"),
    ("mean_tokens", "mean words per completion", "-"),
)
_VERSION = 1


@dataclass(frozen=True)
class Batch:
    """One run of `python -m examples.real_lm`: every arm at each of its seeds.

    Attributes:
        command: the command that ran it.
        setup: the settings (preset, data, GRPO, evaluation) that batches must share to pool.
        machine: the CPU, torch threads and kernels, and the device.
        minutes: the wall time.
        base: the base model's metrics, evaluated as every policy is.
        runs: `{arm: {seed: metrics}}`.
    """

    command: str
    setup: dict[str, Any]
    machine: str
    minutes: float
    base: dict[str, float]
    runs: dict[str, dict[int, dict[str, float]]]

    @property
    def seeds(self) -> list[int]:
        return sorted(self.runs[CONTROL])


def save_batch(path: Path, batch: Batch) -> None:
    """`batch` as JSON at `path`, written to a temporary file renamed into place."""
    partial = path.with_name(path.name + ".partial")
    text = json.dumps({"version": _VERSION, **asdict(batch)}, indent=1)
    partial.write_text(text + "\n", encoding="utf-8")
    partial.replace(path)


def load_batch(path: Path) -> Batch:
    """A batch that `save_batch` wrote.

    Raises:
        ValueError: the file is not such a batch, or misses an arm or a seed.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        runs = {
            arm: {int(seed): metrics for seed, metrics in by_seed.items()}
            for arm, by_seed in data["runs"].items()
        }
        batch = Batch(
            data["command"], data["setup"], data["machine"], data["minutes"], data["base"], runs
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a batch written by examples.real_lm ({error})") from None
    names = [arm.name for arm in ARMS]
    if sorted(runs) != sorted(names) or any(sorted(runs[a]) != batch.seeds for a in names):
        raise ValueError(f"{path}: every arm should have run every seed, but got {runs.keys()}")
    return batch


def merge(batches: list[Batch]) -> Batch:
    """Several batches of one setup as one, their runs together.

    Raises:
        ValueError: the batches ran different setups, or share a seed (a seed reruns the
            same draws, so its pair would count twice).
    """
    first = batches[0]
    runs: dict[str, dict[int, dict[str, float]]] = {arm.name: {} for arm in ARMS}
    for batch in batches:
        if batch.setup != first.setup:
            changed = sorted(k for k in batch.setup if batch.setup[k] != first.setup.get(k))
            raise ValueError(
                f"batches should share one setup to pool, but {batch.command!r} differs from "
                f"{first.command!r} in {', '.join(changed) or 'its keys'}"
            )
        for seed in batch.seeds:
            if seed in runs[CONTROL]:
                raise ValueError(
                    f"seed {seed} is in two batches: its pair would count twice; pool batches "
                    "of other seeds"
                )
        for arm, by_seed in batch.runs.items():
            runs[arm].update(by_seed)
    base = {
        key: statistics.fmean(b.base[key] for b in batches) for key in first.base
    }  # the same model and evaluation seed: equal on one machine
    return Batch(
        "\n".join(b.command for b in batches),
        first.setup,
        "\n".join(sorted({b.machine for b in batches})),
        sum(b.minutes for b in batches),
        base,
        runs,
    )


def values(batch: Batch, arm: str, key: str) -> list[float]:
    return [batch.runs[arm][seed][key] for seed in batch.seeds]


def differences(batch: Batch, arm: str, key: str) -> list[float]:
    """`arm` minus uniform on `key`, one per seed (the same seed: the same sampler seed and
    generation seed)."""
    pairs = zip(values(batch, CONTROL, key), values(batch, arm, key), strict=True)
    return [b - a for a, b in pairs]


def _mean(batch: Batch, arm: str, key: str) -> float:
    return statistics.fmean(values(batch, arm, key))


def _power(mean: float, se: float, n: int) -> str:
    """The minimal detectable effect, and the seeds an effect of the observed size needs."""
    if math.isnan(se):
        return "One seed: no standard error, so no test and no minimal detectable effect."
    text = f"Minimal detectable effect (80% power, {n} seeds): {detectable(se, n):.3f}."
    needed = bases_needed(mean, se * math.sqrt(n))
    if mean != 0.0:
        count = f"about {needed}" if needed is not None else f"more than {MAX_BASES}"
        text += f" An effect of the observed size ({abs(mean):.3f}) needs {count} seeds."
    return text


def write_report(path: Path, batch: Batch, *, title_note: str = "") -> None:
    """The Markdown report of `batch` (one batch, or several merged), written to `path`.

    Args:
        path: where to write it.
        batch: the runs, from one batch or from `merge`.
        title_note: said after the title (a pooled report says how many batches it pools).
    """
    key, label, better = PRIMARY
    seeds, n = batch.seeds, len(batch.seeds)
    setup = batch.setup
    lines = [
        f"# Density-aware sampling in TRL's GRPO on SmolLM2-135M-Instruct{title_note}",
        "",
        "Generated by `examples/real_lm`; every run is seeded:",
        "",
        "```bash",
        batch.command,
        "```",
        "",
        f"Setup: {setup['summary']}",
        "",
        f"Machine: {'; '.join(batch.machine.splitlines())}; wall time {batch.minutes:.1f} "
        f"minutes, {step_time(batch):.1f} s per GRPO step on average.",
        "",
        "## Primary endpoint",
        "",
        f"Fixed before any run (`examples.real_lm.report.PRIMARY`): **{label}**, the share "
        "of correct answers among completions sampled at the training temperature "
        f"({setup['samples']} per problem, {setup['heldout']} held-out word problems) after "
        "the preset's fixed budget of GRPO steps. Compared: density (the library's default "
        "weights, from the policy) minus uniform, paired by seed (the same sampler and "
        "generation seeds), pooled over the seeds: the mean, its standard error from their "
        "spread, a two-sided 5% t test, and its minimal detectable effect (the true "
        "difference that test finds 80% of the time).",
        "",
        marker("start", "primary"),
        "",
        f"| seed | uniform | {TREATMENT} | {TREATMENT} − uniform |",
        "|---|---|---|---|",
    ]
    diffs = differences(batch, TREATMENT, key)
    for seed, control, treated, diff in zip(
        seeds, values(batch, CONTROL, key), values(batch, TREATMENT, key), diffs, strict=True
    ):
        lines.append(f"| {seed} | {control:.3f} | {treated:.3f} | {diff:+.3f} |")
    mean, se = mean_se(diffs)
    lines += [
        f"| all {n} | {_mean(batch, CONTROL, key):.3f} | {_mean(batch, TREATMENT, key):.3f} "
        f"| **{fmt(mean, se)}** |",
        "",
        f"Base model: {batch.base[key]:.3f}.",
        "",
        f"**Result: {verdict(mean, se, n, better, unit='seed', **readings(TREATMENT))}.** "
        f"{_power(mean, se, n)}",
        "",
        marker("end", "primary"),
        "",
        "## Every arm against uniform",
        "",
        "The reward-driven weights on the same endpoint, by the same test: secondary",
        "comparisons (three tests: one may pass at 5% by chance). ESS/N: the effective",
        "sample size of the weights over the prompts, at the start and after the last step.",
        "",
        marker("start", "arms"),
        "",
        "| arm | weights | ESS/N start | ESS/N end | endpoint | arm − uniform | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        cells = [
            arm.name,
            arm.describe(),
            f"{_mean(batch, arm.name, 'ess_start'):.2f}",
            f"{_mean(batch, arm.name, 'ess_end'):.2f}",
            f"{_mean(batch, arm.name, key):.3f}",
        ]
        if arm.name == CONTROL:
            cells += ["-", "-"]
        else:
            diff = mean_se(differences(batch, arm.name, key))
            words = readings(arm.name)
            cells += [fmt(*diff), verdict(*diff, n, better, unit="seed", **words)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        marker("end", "arms"),
        "",
        "## Secondary metrics",
        "",
        "Mean over seeds; the last column is density minus uniform, paired by seed ± SE.",
        "",
        marker("start", "secondary"),
        "",
        *secondary_header([a.name for a in ARMS], TREATMENT),
    ]
    for metric, name, direction in SECONDARY:
        base = f"{batch.base[metric]:.3f}" if metric in batch.base else "-"
        cells = " | ".join(f"{_mean(batch, a.name, metric):.3f}" for a in ARMS)
        diff = fmt(*mean_se(differences(batch, TREATMENT, metric)))
        lines.append(f"| {name} | {direction} | {base} | {cells} | {diff} |")
    lines += [
        "",
        marker("end", "secondary"),
        "",
        "## Where the rollouts went",
        "",
        "Share of each arm's training prompts by region (each prompt is a group of "
        f"{setup['num_generations']} completions), over all seeds, beside each region's share "
        "of the training set; and the share of groups whose completions all got the same "
        "reward (no gradient).",
        "",
        marker("start", "rollouts"),
        "",
        "| arm | " + " | ".join(REGIONS) + " | zero-variance groups |",
        "|---|" + "---|" * len(REGIONS) + "---|",
        "| *the training set* | "
        + " | ".join(f"{setup['regions'][r]:.1%}" for r in REGIONS)
        + " | |",
    ]
    for arm in ARMS:
        shares = " | ".join(f"{_mean(batch, arm.name, f'draws/{r}'):.1%}" for r in REGIONS)
        lines.append(f"| {arm.name} | {shares} | {_mean(batch, arm.name, 'zero_variance'):.1%} |")
    lines += [
        "",
        marker("end", "rollouts"),
        "",
        "## Notes",
        "",
        "- Within a seed the arms share TRL's seed (sampler and generation) and everything",
        "  else; they differ only in the prompt weights, so the prompts drawn differ.",
        "- The reward is 1 when the last number of the completion equals the answer",
        "  (`examples.real_lm.prompts.parse_answer`), else 0; held-out problems share no",
        "  operands and phrasing with a training one.",
        "- Accuracy is over completions sampled with one fixed evaluation seed. KL sums, over",
        "  each completion's tokens, the exact KL between the policy's and the base model's",
        "  next-token distributions, averaged over completions. Vendi is over katdensity's",
        "  HashingEmbedder of the completions.",
        "- One pretrained base model: the seed is the unit of replication. A CPU budget is",
        "  a few GRPO steps per run; `--preset gpu` runs larger budgets and more seeds.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def step_time(batch: Batch) -> float:
    """Seconds per GRPO step, over every run."""
    return statistics.fmean(
        metrics["step_seconds"] for by_seed in batch.runs.values() for metrics in by_seed.values()
    )
