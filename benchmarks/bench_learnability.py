"""Rare and learnable: which prompts to roll out, against a simulated learner with known pass rates.

The prompt set (one per seed), in an 8-dimensional latent space whose coordinates are the
embeddings (Euclidean metric, `ExactKNNDensity(k=10)` over the training rows):

- easy: a dense block of 32 templates, each a centre drawn from the region's cloud with 40
  near-duplicate instances scattered 0.05 per axis around it, and 10 exact copies of instances
  (1,600 rows, 1,280 distinct prompts). Initial logit: the template's `N(2.2, 0.3)` plus
  `N(0, 0.15)` per instance, a pass rate of about 0.9.
- middle: 2,400 prompts, a cloud of standard deviation 1 per axis. Initial logit
  `-0.2 + 0.35 u.(z - c) + N(0, 0.15)` (`u` a random unit direction, `c` the centre): pass
  rates of about 0.3 to 0.6 that vary smoothly across the region.
- rare: 160 prompts, a cloud of the same spread (15 times sparser than the middle). Initial
  logit `-2.8 + 0.3 u.(z - c) + N(0, 0.15)`: pass rates of about 0.02 to 0.1.

The three centres lie 12 apart. Held out, never drawn and not in the density estimate: 4 new
instances of every easy template (128), 240 middle and 64 rare prompts from the same clouds.

The model of learning. Prompt `i` (training or held out) has a logit `theta_i`; its pass rate
is `p_i = sigmoid(theta_i)`, and each of a group's `G = 8` completions is rewarded 1 with
probability `p_i`, 0 otherwise. After a training step on groups `j` (prompt `z_j`, rewards
`r_j`), every prompt moves by

    theta_i += lr * sum_j std(r_j) * exp(-|z_i - z_j|^2 / (2 * 1.5^2)).

`std(r_j)` is the GRPO signal: with advantages `(r - mean) / std`, the expected push on a
prompt's pass rate is `cov(r, A) = std(r)`; it is 0 for a group whose rewards are all equal,
so a zero-variance group teaches nothing, kept or dropped. The kernel makes learning local:
training a prompt teaches its neighbours (0.7 at the middle's typical nearest-neighbour
distance, 1.2; 0.5 at the rare region's, 1.7; nothing across regions), so held-out prompts
improve only as much as their region is trained. Learning is linear in the groups and never
forgets. `lr = 0.006` is set once on the uniform arm: it lifts the middle's held-out pass
rate from about 0.45 to about 0.8 over the default budget; no parameter was set by looking
at another arm.

Arms, at equal rollouts (`steps * B * G` completions each, `B = 64` prompts per batch; a
batch's B prompts are drawn without replacement from the arm's probabilities, with the
tracker fed and the weights recomputed after every batch):

- uniform: every dataset row alike (copies drawn as often as they appear).
- density: `weigh(result).probabilities`, the library's default weights, fixed.
- DAPO: uniform draws, groups with zero variance dropped after rollout and batches of B
  drawn until a training step holds B useful groups; every rollout counts against the
  budget, the dropped ones as waste.
- GRESO: DAPO's filling, and before rollout a prompt whose last `c` groups were all solved
  (or all failed) is skipped with probability `1 - max(p_easy ** c, 0.01)` (`p_hard` for
  failed); `p_easy` and `p_hard` start at 0.5 and move by 0.01 a step (within 0.05-0.95)
  toward zero-variance shares of 0.25/3 (solved) and 0.25*2/3 (failed) after the first epoch,
  as in the authors' `all_probabilistic` filter.
- learnability alone: `LearnabilityWeighting` over a uniform base,
  `InverseDensityWeighting(0, mode_cap=False)` (every distinct prompt alike).
- density x learnability: `LearnabilityWeighting(tracker)` with the library's defaults.

Both learnability arms share one tracker setting, `LearnabilityTracker(N, density=result,
half_life=E)` with `E = ceil(M / B)` updates, one epoch (60 batches: evidence halves every
epoch, as the TRL integration's tracker does; neighbours' evidence lent along the kNN graph
with the library's defaults). A seventh arm, the oracle, is
the library's rule fed the true pass rates (the tracker's evidence replaced before every
weighting), to tell the tracker's estimate from the rule that combines it.

Measured per arm, mean and standard error over seeds (the arms of a seed share its prompt
set): the share of rollouts in zero-variance groups (for DAPO and GRESO, the rollouts
dropped after generation), the share of rollouts spent on the rare region, the held-out pass
rate per region at the end, and the distinct ESS/M of the final draw probabilities. Then
density x learnability over a grid of `strength` x `explore`, and over its two ESS floors:
the density weights' (`InverseDensityWeighting(min_ess_ratio=)`) and the combined weights'
(`LearnabilityWeighting(min_ess_ratio=)`), with the oracle beside it.

Last, the cost of one `tracker.update` of 1,024 completions plus one `weighting(result)` at
1M prompts (goal: 50 ms on CPU). Building that density result with `ExactKNNDensity` takes
too long on 2 cores, so the points are 1,000 far-apart Gaussian clusters of 1,000 32-dim
points each, whose exact kNN graph is found cluster by cluster (`torch.cdist` + `topk`), and
`knn_log_density` gives the density; cProfile shows where the time goes.

    pip install matplotlib
    python benchmarks/bench_learnability.py            # about 7 minutes on 2 cores
    python benchmarks/bench_learnability.py --quick    # a smoke test, about a minute
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _report import machine, markdown_table, print_table, write_section

from katdensity import (
    DensityResult,
    ExactKNNDensity,
    InverseDensityWeighting,
    LearnabilityTracker,
    LearnabilityWeighting,
    Neighbors,
    effective_sample_size,
    weigh,
)
from katdensity.density.formula import knn_log_density
from katdensity.weights import DEFAULT_MIN_ESS_RATIO

# The prompt set.
LATENT_DIM = 8
CENTRE_DISTANCE = 12.0
SPREAD = 1.0
EASY_TEMPLATES, EASY_INSTANCES, EASY_COPIES, EASY_HELD_OUT = 32, 40, 10, 4
TEMPLATE_SPREAD = 0.05
MIDDLE, MIDDLE_HELD_OUT = 2400, 240
RARE, RARE_HELD_OUT = 160, 64
REGIONS = ("easy", "middle", "rare")
EASY, MIDDLE_REGION, RARE_REGION = range(3)
# The learner.
GROUP = 8
BATCH = 64
LENGTH_SCALE = 1.5
LR = 0.006
# GRESO (Zheng et al., 2025), its published settings.
GRESO_START, GRESO_STEP, GRESO_RANGE, GRESO_FLOOR = 0.5, 0.01, (0.05, 0.95), 0.01
GRESO_TARGET = 0.25
# The timing.
TIMING_N, TIMING_CLUSTERS, TIMING_DIM = 1_000_000, 1000, 32
TIMING_BATCH, TIMING_REPEATS, TIMING_GOAL_MS = 1024, 20, 50.0
CHECKPOINTS = 20
ORACLE_EVIDENCE = 1e4


@dataclass
class World:
    """One seed's prompt set: `P` distinct points (training and held out) and `N` rows."""

    latent: torch.Tensor  # (P, LATENT_DIM)
    region: torch.Tensor  # (P,) 0 easy, 1 middle, 2 rare
    held_out: torch.Tensor  # (P,) bool
    theta0: torch.Tensor  # (P,) initial logits
    row_point: torch.Tensor  # (N,) the point each training row is
    result: DensityResult  # of the N training rows


def make_world(seed: int) -> World:
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    centres = torch.zeros(3, LATENT_DIM, dtype=torch.float64)
    centres[torch.arange(3), torch.arange(3)] = CENTRE_DISTANCE / 2**0.5  # pairwise 12 apart
    direction = normal(LATENT_DIM)
    direction /= direction.norm()
    points, regions, held, thetas = [], [], [], []

    def add(z: torch.Tensor, region: int, theta: torch.Tensor, held_out: bool) -> None:
        points.append(z)
        regions.append(torch.full((len(z),), region))
        held.append(torch.full((len(z),), held_out))
        thetas.append(theta)

    templates = centres[EASY] + SPREAD * normal(EASY_TEMPLATES, LATENT_DIM)
    template_logit = 2.2 + 0.3 * normal(EASY_TEMPLATES)
    for count, held_out in ((EASY_INSTANCES, False), (EASY_HELD_OUT, True)):
        z = templates.repeat_interleave(count, 0)
        z = z + TEMPLATE_SPREAD * normal(len(z), LATENT_DIM)
        theta = template_logit.repeat_interleave(count) + 0.15 * normal(len(z))
        add(z, EASY, theta, held_out)
    for region, base, slope, sizes in (
        (MIDDLE_REGION, -0.2, 0.35, (MIDDLE, MIDDLE_HELD_OUT)),
        (RARE_REGION, -2.8, 0.3, (RARE, RARE_HELD_OUT)),
    ):
        for size, held_out in zip(sizes, (False, True), strict=True):
            offset = SPREAD * normal(size, LATENT_DIM)
            add(
                centres[region] + offset,
                region,
                base + slope * offset @ direction + 0.15 * normal(size),
                held_out,
            )
    latent, region = torch.cat(points), torch.cat(regions)
    held_out, theta0 = torch.cat(held), torch.cat(thetas)
    training = torch.nonzero(~held_out).squeeze(1)
    easy_rows = training[region[training] == EASY]
    copies = easy_rows[
        torch.randperm(len(easy_rows), generator=gen)[: EASY_TEMPLATES * EASY_COPIES]
    ]
    rows = torch.cat([training, copies])
    row_point = rows[torch.randperm(len(rows), generator=gen)]
    estimator = ExactKNNDensity(k=10, metric="euclidean", progress=False)
    result = estimator.estimate(latent[row_point].float())
    return World(latent, region, held_out, theta0, row_point, result)


def kernel_push(world: World, points: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """`(P,)`: `sum_j signal_j * exp(-|z_i - z_j|^2 / (2 l^2))` for every point `i`."""
    if points.numel() == 0:
        return torch.zeros(len(world.latent), dtype=torch.float64)
    centres = world.latent[points]  # (groups, LATENT_DIM)
    squared = (
        world.latent.square().sum(1, keepdim=True)
        + centres.square().sum(1)
        - 2.0 * world.latent @ centres.T
    ).clamp_min(0.0)  # (P, groups)
    return torch.exp(squared / (-2.0 * LENGTH_SCALE**2)) @ signal


class Arm:
    """Draws each batch's rows; `fill` arms train only on batches of B useful groups."""

    fill = False

    def __init__(self, world: World) -> None:
        self.world = world
        self.theta = world.theta0  # the learner's logits, `(P,)`, set by `simulate`
        n = len(world.row_point)
        self.uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)

    def probabilities(self) -> torch.Tensor:
        return self.uniform

    def draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.probabilities(), n, replacement=False, generator=gen)

    def observe(self, rows: torch.Tensor, rewards: torch.Tensor) -> None:
        """Rewards `(n, G)` of the rows just rolled out."""

    def end_step(self, rolled: int, solved: int, failed: int) -> None:
        """A training step is over: it rolled out `rolled` groups, `solved` and `failed` of
        them with zero variance."""


class Density(Arm):
    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.weights = weigh(world.result).probabilities

    def probabilities(self) -> torch.Tensor:
        return self.weights


class Dapo(Arm):
    fill = True


class Greso(Arm):
    """GRESO's `all_probabilistic` pre-rollout filter (dataset rows are its data ids)."""

    fill = True

    def __init__(self, world: World) -> None:
        super().__init__(world)
        n = len(world.row_point)
        self.solved_run = torch.zeros(n, dtype=torch.int64)  # consecutive all-pass groups
        self.failed_run = torch.zeros(n, dtype=torch.int64)
        self.p_easy = self.p_hard = GRESO_START
        self.steps, self.candidates, self.skipped = 0, 0, 0

    def keep_probability(self) -> torch.Tensor:
        keep = torch.ones(len(self.uniform), dtype=torch.float64)
        for run, p in ((self.solved_run, self.p_easy), (self.failed_run, self.p_hard)):
            keep = torch.where(run > 0, (p ** run.double()).clamp_min(GRESO_FLOOR), keep)
        return keep

    def probabilities(self) -> torch.Tensor:
        admitted = self.uniform * self.keep_probability()
        return admitted / admitted.sum()

    def draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        taken: list[torch.Tensor] = []
        keep = self.keep_probability()
        while sum(len(t) for t in taken) < n:
            candidates = torch.multinomial(self.uniform, n, replacement=False, generator=gen)
            admit = torch.rand(n, generator=gen, dtype=torch.float64) < keep[candidates]
            self.candidates += n
            self.skipped += int((~admit).sum())
            taken.append(candidates[admit])
        rows = torch.unique(torch.cat(taken))  # a row drawn twice is rolled out once
        return rows[torch.randperm(len(rows), generator=gen)[:n]]

    def observe(self, rows: torch.Tensor, rewards: torch.Tensor) -> None:
        solved, failed = rewards.min(1).values == 1, rewards.max(1).values == 0
        self.solved_run[rows] = torch.where(solved, self.solved_run[rows] + 1, 0)
        self.failed_run[rows] = torch.where(failed, self.failed_run[rows] + 1, 0)

    def end_step(self, rolled: int, solved: int, failed: int) -> None:
        self.steps += 1
        if self.steps * BATCH <= len(self.uniform):  # adapted after the first epoch
            return
        low, high = GRESO_RANGE
        for name, share, target in (
            ("p_easy", solved / rolled, GRESO_TARGET / 3),
            ("p_hard", failed / rolled, GRESO_TARGET * 2 / 3),
        ):
            step = -GRESO_STEP if share >= target else GRESO_STEP
            setattr(self, name, min(max(getattr(self, name) + step, low), high))


def epoch_updates(world: World) -> int:
    """Batches (tracker updates) per epoch over the distinct training prompts."""
    return -(-(int(world.result.distinct_index.max()) + 1) // BATCH)


class Learnability(Arm):
    """`LearnabilityWeighting` over the tracker fed every group, re-weighted every batch."""

    def __init__(
        self, world: World, base: InverseDensityWeighting | None = None, **options: Any
    ) -> None:
        super().__init__(world)
        self.tracker = LearnabilityTracker(
            len(world.row_point), density=world.result, half_life=epoch_updates(world)
        )
        self.weighting = LearnabilityWeighting(self.tracker, density=base, **options)
        self.weights = self.weighting(world.result)
        self.strengths: list[float] = []

    def probabilities(self) -> torch.Tensor:
        return self.weights

    def reweigh(self) -> None:
        self.weights = self.weighting(self.world.result)
        assert self.weighting.strength_used_ is not None
        self.strengths.append(self.weighting.strength_used_)

    def observe(self, rows: torch.Tensor, rewards: torch.Tensor) -> None:
        self.tracker.update(rows.repeat_interleave(GROUP), rewards.flatten())
        self.reweigh()


class Oracle(Learnability):
    """The library's rule fed the true pass rates: before every weighting the tracker's
    evidence is replaced by 10,000 completions at each prompt's true pass rate, none lent."""

    def __init__(
        self, world: World, base: InverseDensityWeighting | None = None, **options: Any
    ) -> None:
        super().__init__(world, base, **options)
        labels = world.result.distinct_index
        rows = torch.arange(len(labels))
        first = torch.full((int(labels.max()) + 1,), len(labels)).scatter_reduce(
            0, labels, rows, reduce="amin"
        )
        self.first_point = world.row_point[first]  # the point of each distinct prompt

    def observe(self, rows: torch.Tensor, rewards: torch.Tensor) -> None:
        rate = torch.sigmoid(self.theta[self.first_point])
        state = self.tracker.state_dict()
        state["own"] = ORACLE_EVIDENCE * torch.stack([rate, 1.0 - rate])
        state["borrowed"] = torch.zeros_like(state["own"])
        state["scale"] = 1.0
        self.tracker.load_state_dict(state)
        self.reweigh()


def uniform_base() -> InverseDensityWeighting:
    """Every distinct prompt alike: `beta=0` alone still caps modes, so `mode_cap=False`."""
    return InverseDensityWeighting(0.0, mode_cap=False)


ARMS: dict[str, Callable[[World], Arm]] = {
    "uniform": Arm,
    "density": Density,
    "DAPO (filter after rollout)": Dapo,
    "GRESO (skip before rollout)": Greso,
    "learnability alone": lambda world: Learnability(world, uniform_base()),
    "density x learnability": Learnability,
    "density x true learnability (oracle)": Oracle,
}
GRID = ((1.0, 2.0, 3.0, 4.0), (0.0, 0.1, 0.25))  # strength x explore
# The floors' price: (the density weights' min_ess_ratio, the combined weights', the arm).
FLOORS: tuple[tuple[float, float | None, str], ...] = (
    (DEFAULT_MIN_ESS_RATIO, DEFAULT_MIN_ESS_RATIO, "tracker"),
    (DEFAULT_MIN_ESS_RATIO, DEFAULT_MIN_ESS_RATIO, "oracle"),
    (DEFAULT_MIN_ESS_RATIO, 0.35, "tracker"),
    (DEFAULT_MIN_ESS_RATIO, 0.35, "oracle"),
    (DEFAULT_MIN_ESS_RATIO, None, "tracker"),
    (0.5, 0.5, "tracker"),
)


@dataclass
class Run:
    zero_share: float
    rare_share: float
    held_out: list[float]  # per region
    ess: float  # distinct ESS / M of the final draw probabilities
    steps: int
    skipped: float = float("nan")  # GRESO: drawn prompts skipped before rollout, a share
    strength: float = float("nan")  # learnability arms: mean strength used
    floor: float | None = None  # learnability arms: the combined weights' ESS floor
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (rollouts, zero, rare)


def held_out_rates(world: World, theta: torch.Tensor) -> list[float]:
    rates = torch.sigmoid(theta)
    return [float(rates[world.held_out & (world.region == r)].mean()) for r in range(3)]


def simulate(arm: Arm, world: World, steps: int, seed: int) -> Run:
    gen = torch.Generator().manual_seed(10_000 + seed)
    budget = steps * BATCH  # groups
    theta = arm.theta = world.theta0.clone()  # updated in place
    done = zero = rare = steps_taken = 0
    pending_points = torch.zeros(0, dtype=torch.int64)  # useful groups not yet trained on
    pending_signal = torch.zeros(0, dtype=torch.float64)
    step_rolled = step_solved = step_failed = 0
    window_zero = window_done = 0
    every = max(budget // CHECKPOINTS, 1)
    curve = [(0.0, float("nan"), held_out_rates(world, theta)[RARE_REGION])]
    while done < budget:
        rows = arm.draw(min(BATCH, budget - done), gen)
        points = world.row_point[rows]
        pass_rate = torch.sigmoid(theta[points])
        rewards = (torch.rand(len(rows), GROUP, generator=gen) < pass_rate[:, None]).double()
        arm.observe(rows, rewards)
        signal = rewards.std(dim=1, unbiased=False)
        useful = signal > 0
        solved = int((rewards.min(1).values == 1).sum())
        wasted = int((~useful).sum())
        step_rolled += len(rows)
        step_solved += solved
        step_failed += wasted - solved
        zero += wasted
        window_zero += wasted
        rare += int((world.region[points] == RARE_REGION).sum())
        done += len(rows)
        window_done += len(rows)
        pending_points = torch.cat([pending_points, points[useful]])
        pending_signal = torch.cat([pending_signal, signal[useful]])
        if not arm.fill or len(pending_points) >= BATCH or done >= budget:
            # A filling arm trains on B useful groups and keeps the surplus for the next step.
            take = BATCH if arm.fill and done < budget else len(pending_points)
            theta += LR * kernel_push(world, pending_points[:take], pending_signal[:take])
            pending_points, pending_signal = pending_points[take:], pending_signal[take:]
            arm.end_step(step_rolled, step_solved, step_failed)
            steps_taken += 1
            step_rolled = step_solved = step_failed = 0
        if window_done >= every or done >= budget:
            share = window_zero / window_done
            curve.append((done * GROUP, share, held_out_rates(world, theta)[RARE_REGION]))
            window_zero = window_done = 0
    groups = world.result.distinct_index
    run = Run(
        zero_share=zero / done,
        rare_share=rare / done,
        held_out=held_out_rates(world, theta),
        ess=effective_sample_size(arm.probabilities(), groups) / (int(groups.max()) + 1),
        steps=steps_taken,
        curve=curve,
    )
    if isinstance(arm, Greso):
        run.skipped = arm.skipped / arm.candidates
    if isinstance(arm, Learnability):
        run.strength = float(np.mean(arm.strengths))
        run.floor = arm.weighting.min_ess_ratio
    return run


def mean_se(values: list[float], digits: int = 3) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    se = statistics.stdev(values) / len(values) ** 0.5
    return f"{statistics.mean(values):.{digits}f} ± {se:.{digits}f}"


def mean(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.mean(value(r) for r in runs)


HEADER = [
    "arm",
    "zero-variance share of rollouts",
    "rare share of rollouts",
    "held-out easy",
    "held-out middle",
    "held-out rare",
    "distinct ESS/M",
    "training steps",
    "note",
]
SHORT_HEADER = [
    "zero-variance share",
    "/ uniform's",
    "rare share",
    "held-out middle",
    "held-out rare",
    "seeds rare > alone's",
    "distinct ESS/M (lowest)",
    "strength used",
]


def arm_row(name: str, runs: list[Run]) -> list[str]:
    note = ""
    if name.startswith(("DAPO", "GRESO")):
        note = "its zero-variance rollouts are dropped after generation: wasted"
    if name.startswith("GRESO"):
        note += f"; {mean(runs, lambda r: r.skipped):.0%} of drawn prompts skipped before rollout"
    if not np.isnan(runs[0].strength):
        note = f"strength used {mean(runs, lambda r: r.strength):.2f} (mean over batches)"
    return [
        name,
        mean_se([r.zero_share for r in runs]),
        mean_se([r.rare_share for r in runs]),
        *(mean_se([r.held_out[g] for r in runs]) for g in range(len(REGIONS))),
        mean_se([r.ess for r in runs], 2),
        f"{mean(runs, lambda r: r.steps):.0f}",
        note,
    ]


def short_row(runs: list[Run], reference: dict[str, list[Run]]) -> list[str]:
    uniform, alone = reference["uniform"], reference["learnability alone"]
    ratio = mean(runs, lambda r: r.zero_share) / mean(uniform, lambda r: r.zero_share)
    wins = sum(
        r.held_out[RARE_REGION] > a.held_out[RARE_REGION] for r, a in zip(runs, alone, strict=True)
    )
    return [
        mean_se([r.zero_share for r in runs]),
        f"{ratio:.2f}",
        mean_se([r.rare_share for r in runs]),
        mean_se([r.held_out[MIDDLE_REGION] for r in runs]),
        mean_se([r.held_out[RARE_REGION] for r in runs]),
        f"{wins} of {len(runs)}",
        f"{min(r.ess for r in runs):.2f}",
        f"{mean(runs, lambda r: r.strength):.2f}",
    ]


def acceptance(runs: dict[str, list[Run]]) -> list[str]:
    uniform, both = runs["uniform"], runs["density x learnability"]
    alone = runs["learnability alone"]
    ratio = mean(both, lambda r: r.zero_share) / mean(uniform, lambda r: r.zero_share)
    wins = sum(
        b.held_out[RARE_REGION] > a.held_out[RARE_REGION] for a, b in zip(alone, both, strict=True)
    )
    rare_both = mean(both, lambda r: r.held_out[RARE_REGION])
    rare_alone = mean(alone, lambda r: r.held_out[RARE_REGION])
    lowest = min(r.ess for r in both)
    floor = both[0].floor if both[0].floor is not None else 0.0
    return [
        f"zero-variance share, density x learnability / uniform: {ratio:.2f} (goal <= 0.50): "
        + ("met" if ratio <= 0.5 else "NOT met"),
        f"held-out rare pass rate, density x learnability vs learnability alone: "
        f"{rare_both:.4f} vs {rare_alone:.4f}, higher in {wins} of {len(both)} seeds: "
        + ("met" if rare_both > rare_alone else "NOT met"),
        f"lowest distinct ESS/M of density x learnability: {lowest:.2f} (floor {floor}): "
        + ("met" if lowest >= floor - 1e-9 else "NOT met"),
    ]


# ---- the cost at 1M prompts -------------------------------------------------------------


def clustered_result(n: int, clusters: int, seed: int = 0) -> DensityResult:
    """`n` random 32-dim points in `clusters` clusters (standard deviation 1) whose centres
    are drawn with standard deviation 10, so they lie about 80 apart while a cluster's points
    lie within about 16 of each other: the exact kNN graph is found cluster by cluster."""
    gen = torch.Generator().manual_seed(seed)
    size = n // clusters
    distances, indices = [], []
    for cluster in range(clusters):
        centre = 10.0 * torch.randn(TIMING_DIM, generator=gen)
        points = centre + torch.randn(size, TIMING_DIM, generator=gen)
        d, i = torch.cdist(points, points).topk(11, largest=False)
        distances.append(d[:, 1:])
        indices.append(i[:, 1:] + cluster * size)
    neighbors = Neighbors(torch.cat(distances), torch.cat(indices), "euclidean")
    log_density, dim = knn_log_density(neighbors)
    return DensityResult(log_density, neighbors, dim)


@dataclass
class Timing:
    rows: list[list[str]]
    profile: list[list[str]]
    once: dict[str, float]


def timing(n: int, clusters: int, seed: int = 0) -> Timing:
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    result = clustered_result(n, clusters, seed)
    once = {"load average": os.getloadavg()[0], "kNN graph (s)": time.perf_counter() - start}
    start = time.perf_counter()
    tracker = LearnabilityTracker(n, density=result)
    once["tracker (s)"] = time.perf_counter() - start
    weighting = LearnabilityWeighting(tracker)
    start = time.perf_counter()
    weighting(result)  # the density weights, computed once (modes, floor)
    once["first weighting (s)"] = time.perf_counter() - start

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(n, (TIMING_BATCH // GROUP,), generator=gen).repeat_interleave(GROUP)
        return rows, (torch.rand(len(rows), generator=gen) < 0.5).double()

    def measure(when: str) -> list[list[str]]:
        update, weighing = [], []
        for _ in range(TIMING_REPEATS):
            rows, rewards = batch()
            t0 = time.perf_counter()
            tracker.update(rows, rewards)
            t1 = time.perf_counter()
            weighting(result)
            t2 = time.perf_counter()
            update.append(t1 - t0)
            weighing.append(t2 - t1)
        both = [u + w for u, w in zip(update, weighing, strict=True)]
        verdict = "met" if min(both) * 1e3 <= TIMING_GOAL_MS else "NOT met"
        assert weighting.strength_used_ is not None
        return [
            [when, "tracker.update", *milliseconds(update)],
            [
                when,
                f"weighting(result), strength used {weighting.strength_used_:.2f}",
                *milliseconds(weighing),
            ],
            [when, f"both (goal {TIMING_GOAL_MS:.0f} ms: {verdict})", *milliseconds(both)],
        ]

    for _ in range(100):  # evidence, as after 100 steps of training
        tracker.update(*batch())
    seen = int((tracker.evidence() > 0).sum())
    early = f"after 100 updates ({seen:,} prompts with evidence)"
    rows = measure(early)
    profile = [[early, *row] for row in profiled(tracker, weighting, result, batch)]
    # Late in a run every prompt has been drawn: 8 completions each at a pass rate drawn
    # uniformly, loaded as the tracker's state.
    state = tracker.state_dict()
    rates = torch.rand(n, generator=gen, dtype=torch.float64)
    successes = torch.binomial(torch.full((n,), float(GROUP), dtype=torch.float64), rates)
    state["own"] = torch.stack([successes, GROUP - successes])
    tracker.load_state_dict(state)
    late = "every prompt with evidence (after an epoch)"
    rows += measure(late)
    profile += [[late, *row] for row in profiled(tracker, weighting, result, batch)]
    return Timing(rows, profile, once)


def milliseconds(seconds: list[float]) -> list[str]:
    """Median and fastest wall time, in ms: on a shared machine the fastest is the cost
    without interference, the median what a run saw."""
    return [f"{statistics.median(seconds) * 1e3:.1f}", f"{min(seconds) * 1e3:.1f}"]


def profiled(
    tracker: LearnabilityTracker,
    weighting: LearnabilityWeighting,
    result: DensityResult,
    batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    rounds: int = 10,
) -> list[list[str]]:
    """The library's functions in the fastest of `rounds` update + weighting rounds, each
    profiled alone (the least disturbed by other processes): calls, cumulative and own ms,
    as cProfile counts them (with its own overhead)."""
    fastest: pstats.Stats | None = None
    for _ in range(rounds):
        profile = cProfile.Profile()
        profile.enable()
        tracker.update(*batch())
        weighting(result)
        profile.disable()
        stats = pstats.Stats(profile)
        if fastest is None or stats.total_tt < fastest.total_tt:  # type: ignore[attr-defined]
            fastest = stats
    assert fastest is not None
    rows = []
    for (path, _, function), (_, count, own, cumulative, _) in fastest.stats.items():  # type: ignore[attr-defined]
        if "katdensity" in path and cumulative >= 0.5e-3:
            name = f"{Path(path).stem}.{function}"
            rows.append(
                (cumulative, [name, str(count), f"{cumulative * 1e3:.1f}", f"{own * 1e3:.1f}"])
            )
    return [row for _, row in sorted(rows, key=lambda item: -item[0])]


# ---- the report -------------------------------------------------------------------------


def plot(runs: dict[str, list[Run]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, arm_runs in runs.items():
        curves = np.array([r.curve for r in arm_runs])  # (seeds, checkpoints, 3)
        x = curves[0, :, 0] / 1e3
        style = ":" if "oracle" in name else "--" if name.startswith("DAPO") else "-"
        left.plot(x, curves[:, :, 2].mean(0), style, marker=".", label=name)
        right.plot(x[1:], curves[:, 1:, 1].mean(0), style, marker=".", label=name)
    left.set(
        xlabel="rollouts (thousands)",
        ylabel="held-out rare pass rate (mean of seeds)",
        title="rare hard region, learned through its neighbours",
    )
    right.set(
        xlabel="rollouts (thousands)",
        ylabel="share of rollouts in zero-variance groups",
        title="wasted rollouts over training",
    )
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def check_uniform_base(world: World) -> None:
    probabilities = uniform_base()(world.result)
    labels = world.result.distinct_index
    mass = torch.zeros(int(labels.max()) + 1, dtype=torch.float64).index_add_(
        0, labels, probabilities
    )
    if float(mass.max() - mass.min()) > 1e-12:
        raise SystemExit("uniform_base() is not uniform over distinct prompts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="prompt sets, one run per arm each")
    parser.add_argument(
        "--steps",
        type=int,
        default=300,
        help=f"batches of {BATCH} prompts x {GROUP} completions per run",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2 seeds, 40 steps, no grid, the timing at 100,000 "
        "prompts; writes neither RESULTS.md nor --out",
    )
    parser.add_argument(
        "--no-grid",
        action="store_true",
        help="skip the strength x explore grid and the floor table",
    )
    parser.add_argument("--no-timing", action="store_true", help="skip the 1M-prompt timing")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).with_name("learnability.png")),
        help="the plot (default benchmarks/learnability.png)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    seeds, steps, timing_n, clusters = args.seeds, args.steps, TIMING_N, TIMING_CLUSTERS
    grid = not args.no_grid
    if args.quick:
        seeds, steps, timing_n, clusters, grid = 2, 40, 100_000, 100, False

    started = time.perf_counter()
    worlds = [make_world(seed) for seed in range(seeds)]
    check_uniform_base(worlds[0])
    runs: dict[str, list[Run]] = {name: [] for name in ARMS}
    for seed, world in enumerate(worlds):
        for name, make in ARMS.items():
            runs[name].append(simulate(make(world), world, steps, seed))
    start_row = ["(at the start)", "-", "-"]
    start_row += [mean_se([held_out_rates(w, w.theta0)[g] for w in worlds]) for g in range(3)]
    table = [[*start_row, "-", "-", ""]] + [arm_row(name, r) for name, r in runs.items()]
    print_table(HEADER, table)
    checks = acceptance(runs)
    print("\n".join(checks))
    print(f"({time.perf_counter() - started:.0f} s)\n")

    grid_rows, floor_rows = [], []
    if grid:
        for strength in GRID[0]:
            for explore in GRID[1]:
                arm_runs = [
                    simulate(Learnability(w, strength=strength, explore=explore), w, steps, s)
                    for s, w in enumerate(worlds)
                ]
                grid_rows.append([f"{strength:g}", f"{explore:g}", *short_row(arm_runs, runs)])
        print_table(GRID_HEADER, grid_rows)
        for density_floor, floor, kind in FLOORS:
            make = Oracle if kind == "oracle" else Learnability
            arm_runs = [
                simulate(
                    make(
                        w, InverseDensityWeighting(min_ess_ratio=density_floor), min_ess_ratio=floor
                    ),
                    w,
                    steps,
                    s,
                )
                for s, w in enumerate(worlds)
            ]
            floor_rows.append([str(density_floor), str(floor), kind, *short_row(arm_runs, runs)])
        print()
        print_table(FLOOR_HEADER, floor_rows)
        print(f"({time.perf_counter() - started:.0f} s)")

    measured = None
    if not args.no_timing:
        measured = timing(timing_n, clusters)
        print(f"\n{timing_n:,} prompts, {TIMING_BATCH:,} completions a batch:")
        print_table(TIMING_HEADER, measured.rows)
        print(", ".join(f"{key} {value:.2f}" for key, value in measured.once.items()))
        print("cProfile, the fastest of 10 update + weighting rounds:")
        print_table(PROFILE_HEADER, measured.profile)

    if args.quick:
        return
    plot(runs, Path(args.out))
    if args.no_write:
        return
    write_section(
        "learnability",
        report(seeds, steps, table, checks, grid_rows, floor_rows, measured, timing_n, clusters),
    )


GRID_HEADER = ["strength", "explore", *SHORT_HEADER]
FLOOR_HEADER = ["density floor", "learnability floor", "learnability", *SHORT_HEADER]
TIMING_HEADER = ["tracker state", "step", "median ms", "fastest ms"]
PROFILE_HEADER = ["tracker state", "function", "calls", "cumulative ms", "own ms"]


def report(
    seeds: int,
    steps: int,
    table: list[list[str]],
    checks: list[str],
    grid_rows: list[list[str]],
    floor_rows: list[list[str]],
    measured: Timing | None,
    timing_n: int,
    clusters: int,
) -> str:
    command = "python benchmarks/bench_learnability.py"
    if (seeds, steps) != (5, 300):
        command += f" --seeds {seeds} --steps {steps}"
    body = (
        "## Rare and learnable: learnability weights against a simulated learner\n\n"
        f"`{command}` on {machine()}. The model is stated in the script's docstring: an "
        "8-dim latent space with a dense easy template block (1,600 rows, 32 templates, pass "
        "rate ~0.9), a learnable middle (2,400 prompts, ~0.3-0.6) and a rare hard region "
        "(160 prompts, 15 times sparser, ~0.02-0.1), held-out prompts in each; after each "
        "training step every logit rises by `lr * std(group rewards) * exp(-d^2 / 4.5)`, so "
        "zero-variance groups teach nothing and held-out prompts learn through trained "
        f"neighbours. {seeds} seeds (prompt sets), {steps} batches of {BATCH} prompts x "
        f"{GROUP} completions ({steps * BATCH * GROUP:,} rollouts per arm); mean ± standard "
        "error over seeds. Distinct ESS/M is that of the final draw probabilities (DAPO draws "
        "uniformly; GRESO's are its admission chances). The oracle is the library's rule fed "
        "the true pass rates.\n\n"
        + markdown_table(HEADER, table)
        + "\n\nThe issue's acceptance, on this default setting:\n\n"
        + "\n".join(f"- {check}" for check in checks)
        + "\n\nA zero-variance share also rises as an arm solves its prompts: an arm that "
        "lifts the middle faster meets more solved groups late in training (the plot's right "
        "panel). The plot, held-out rare pass rate and zero-variance share over training: "
        "`benchmarks/learnability.png`.\n"
    )
    if grid_rows:
        body += (
            "\nDensity x learnability over `strength` x `explore` (the same prompt sets and "
            "seeds; `/ uniform's` is the zero-variance share over uniform's):\n\n"
            + markdown_table(GRID_HEADER, grid_rows)
            + "\n\nThe floors' price: the density weights' `min_ess_ratio` "
            "(`InverseDensityWeighting`, the base) and the combined weights' "
            "(`LearnabilityWeighting(min_ess_ratio=)`), with the tracker's learnability or the "
            "true one (oracle); `seeds rare > alone's` compares with learnability alone above:"
            "\n\n" + markdown_table(FLOOR_HEADER, floor_rows) + "\n"
        )
    if measured is not None:
        once = measured.once
        body += (
            f"\nThe cost at {timing_n:,} prompts (32-dim points in {clusters:,} clusters far "
            "apart, the exact kNN graph with k=10 found cluster by cluster): one "
            f"`tracker.update` of {TIMING_BATCH:,} completions ({TIMING_BATCH // GROUP} prompts "
            f"x {GROUP}, random rewards) and one `weighting(result)`, {TIMING_REPEATS} "
            "repeats, after a first call that computes the density weights "
            f"({once['first weighting (s)']:.1f} s; the tracker's lending graph took "
            f"{once['tracker (s)']:.1f} s): early in a run, after 100 updates, and late in "
            "one, when every prompt has evidence (8 completions each at a uniform random pass "
            "rate, loaded with `load_state_dict`). The machine was shared (1-minute load average "
            f"{once['load average']:.1f} on its {os.cpu_count()} cores when the timing began): "
            "the fastest of the repeats is the cost without interference, and the goal is "
            "judged on it.\n\n"
            + markdown_table(TIMING_HEADER, measured.rows)
            + "\n\nWhere the time goes: cProfile of the fastest of 10 update + weighting "
            "rounds:\n\n" + markdown_table(PROFILE_HEADER, measured.profile) + "\n"
        )
    return body


if __name__ == "__main__":
    main()
