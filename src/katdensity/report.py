"""What the weights do to a prompt set, for a person to read: `WeightReport`.

The report counts a prompt and its exact copies as one prompt throughout: the effective
sample size over distinct prompts beside the one over rows, the largest modes (exact copies
and near-duplicates, see [`find_modes`][katdensity.density.modes.find_modes]) with their
share of uniform and of weighted draws, and the most and least weighted prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from katdensity._groups import first_occurrence, group_sums
from katdensity._table import format_table
from katdensity._text import shorten
from katdensity._validate import as_probabilities, check_int
from katdensity.density.modes import find_modes
from katdensity.density.result import DensityResult
from katdensity.errors import InvalidInputError
from katdensity.learnability import PASS_RATE_BANDS, LearnabilityTracker
from katdensity.weights import WeightResult, effective_sample_size

__all__ = ["Mode", "PromptWeight", "WeightReport", "learnability_summary", "weight_report"]

_SHOWN_CHARS = 70


@dataclass(frozen=True)
class Mode:
    """A set of rows that are one prompt in all but wording.

    Attributes:
        rows: rows in the mode, copies included.
        prompts: distinct prompts in it.
        example: its first row.
        uniform_share: its share of uniform draws (`rows / N`).
        weighted_share: its share of weighted draws (the sum of its weights).
    """

    rows: int
    prompts: int
    example: int
    uniform_share: float
    weighted_share: float


@dataclass(frozen=True)
class PromptWeight:
    """One distinct prompt's weight.

    Attributes:
        row: its first row.
        copies: rows holding it.
        times_uniform: its weight (copies together) times the number of distinct prompts:
            1 is what uniform sampling over distinct prompts gives it.
    """

    row: int
    copies: int
    times_uniform: float


@dataclass(frozen=True)
class WeightReport:
    """What a weighting does to a prompt set.

    Attributes:
        n_rows: rows `N`.
        n_prompts: distinct prompts `M`.
        ess_rows: Kish's effective sample size over rows.
        ess_prompts: the same over distinct prompts (copies added first).
        beta: the strength asked for, if known.
        beta_used: the strength used (lower when the ESS floor tempered it), if known.
        min_ess_ratio: the floor on `ess_prompts / n_prompts`, if known.
        modes: the largest modes (two rows or more), largest first.
        most_weighted: the distinct prompts with the largest weights, largest first.
        least_weighted: those with the smallest weights, smallest first.
    """

    n_rows: int
    n_prompts: int
    ess_rows: float
    ess_prompts: float
    beta: float | None
    beta_used: float | None
    min_ess_ratio: float | None
    modes: list[Mode]
    most_weighted: list[PromptWeight]
    least_weighted: list[PromptWeight]

    def format(self, texts: Sequence[str] | None = None, ids: Sequence[str] | None = None) -> str:
        """The report as text: the summary lines and three tables.

        Args:
            texts: `N` prompt texts, shown (shortened) for each mode and prompt.
            ids: `N` prompt ids, shown when there are no texts; else `#row`.
        """
        for name, values in (("texts", texts), ("ids", ids)):
            if values is not None and len(values) != self.n_rows:
                raise InvalidInputError(
                    f"{name} should have one entry per row ({self.n_rows}), but got {len(values)}"
                )

        def shown(row: int) -> str:
            if texts is not None:
                return shorten(str(texts[row]), _SHOWN_CHARS)
            return str(ids[row]) if ids is not None else f"#{row}"

        lines = [
            f"ESS over distinct prompts  {self.ess_prompts:.0f} of {self.n_prompts} "
            f"({self.ess_prompts / self.n_prompts:.2f})",
            f"ESS over rows              {self.ess_rows:.0f} of {self.n_rows} "
            f"({self.ess_rows / self.n_rows:.2f})",
        ]
        if self.beta is not None and self.beta_used is not None:
            if self.beta_used != self.beta and self.min_ess_ratio is not None:
                lines.append(
                    f"strength                   beta {self.beta:g} -> {self.beta_used:.2f} to "
                    f"keep distinct ESS/N >= {self.min_ess_ratio:.2f}"
                )
            else:
                lines.append(f"strength                   beta {self.beta:g}")
        if self.modes:
            table: list[tuple[str, ...]] = [
                ("largest modes", "rows", "prompts", "uniform share", "weighted share")
            ]
            table += [
                (
                    shown(m.example),
                    str(m.rows),
                    str(m.prompts),
                    f"{m.uniform_share:.4f}",
                    f"{m.weighted_share:.4f}",
                )
                for m in self.modes
            ]
            lines += ["", format_table(table)]
        else:
            lines += ["", "no modes found: no copies or near-duplicates"]
        for title, prompts in (
            ("most weighted", self.most_weighted),
            ("least weighted", self.least_weighted),
        ):
            ranked: list[tuple[str, ...]] = [(title, "copies", "weight x M")]
            ranked += [(shown(p.row), str(p.copies), f"{p.times_uniform:.3g}") for p in prompts]
            lines += ["", format_table(ranked)]
        return "\n".join(lines)


def weight_report(
    result: DensityResult | WeightResult,
    weights: torch.Tensor | np.ndarray | None = None,
    *,
    beta: float | None = None,
    beta_used: float | None = None,
    min_ess_ratio: float | None = None,
    modes: torch.Tensor | None = None,
    top: int = 10,
) -> WeightReport:
    """Summarise what `weights` do to the prompts of `result`.

    Given a [`WeightResult`][katdensity.WeightResult] (what [`weigh`][katdensity.weigh]
    returns), the report takes the weights, their strengths, floor and modes from it.

    Args:
        result: the density estimate the weights came from (its copies and neighbours),
            or the `WeightResult` of [`weigh`][katdensity.weigh].
        weights: `(N,)` sampling weights, row-aligned with `result`; only for a
            `DensityResult`.
        beta: the strength asked for, to report.
        beta_used: the strength used, to report.
        min_ess_ratio: the ESS floor, to report.
        modes: `(N,)` mode labels; default
            [`find_modes`][katdensity.density.modes.find_modes] of `result`.
        top: how many modes and most/least weighted prompts to list.

    Returns:
        The report; `report.format(texts)` renders it.

    Raises:
        InvalidInputError: weights or modes not aligned with `result`, or a bad `top`.

    Example:
        >>> import torch
        >>> from katdensity import ExactKNNDensity, InverseDensityWeighting
        >>> points = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
        >>> points[:10] = points[0]  # one prompt, ten times
        >>> result = ExactKNNDensity(k=5).estimate(points)
        >>> report = weight_report(result, InverseDensityWeighting()(result))
        >>> report.n_prompts, report.modes[0].rows, report.modes[0].prompts
        (41, 10, 1)
    """
    if isinstance(result, WeightResult):
        if weights is not None or modes is not None:
            raise InvalidInputError(
                "a WeightResult carries its weights and modes; pass neither weights nor modes"
            )
        weighted = result
        return weight_report(
            weighted.density,
            weighted.probabilities,
            beta=weighted.beta,
            beta_used=weighted.beta_used,
            min_ess_ratio=weighted.min_ess_ratio,
            modes=weighted.modes,
            top=top,
        )
    if weights is None:
        raise InvalidInputError("weights should be given with a DensityResult")
    probabilities = as_probabilities(weights)
    n = len(result)
    if probabilities.shape[0] != n:
        raise InvalidInputError(
            f"weights should have one entry per row of the result ({n}), "
            f"but got {probabilities.shape[0]}"
        )
    top = check_int("top", top, low=1)
    labels = find_modes(result) if modes is None else modes.to(device="cpu", dtype=torch.int64)
    if labels.shape != (n,):
        raise InvalidInputError(f"modes should hold one label per row ({n})")
    distinct = result.distinct_index
    n_prompts = int(distinct.max()) + 1
    return WeightReport(
        n_rows=n,
        n_prompts=n_prompts,
        ess_rows=effective_sample_size(probabilities),
        ess_prompts=effective_sample_size(probabilities, distinct),
        beta=beta,
        beta_used=beta_used,
        min_ess_ratio=min_ess_ratio,
        modes=_largest_modes(labels, distinct, probabilities, top),
        most_weighted=_ranked(distinct, probabilities, top, largest=True),
        least_weighted=_ranked(distinct, probabilities, top, largest=False),
    )


def _largest_modes(
    labels: torch.Tensor, distinct: torch.Tensor, probabilities: torch.Tensor, top: int
) -> list[Mode]:
    n_labels = int(labels.max()) + 1
    rows = torch.bincount(labels, minlength=n_labels)
    # Distinct prompts per mode: each distinct prompt counted once, at its first row.
    first_of_prompt = first_occurrence(distinct, int(distinct.max()) + 1)
    prompts = torch.bincount(labels[first_of_prompt], minlength=n_labels)
    mass = group_sums(probabilities, labels, n_labels)
    first = first_occurrence(labels, n_labels)
    order = [int(m) for m in torch.argsort(-rows, stable=True) if int(rows[m]) >= 2][:top]
    n = labels.numel()
    return [
        Mode(
            rows=int(rows[m]),
            prompts=int(prompts[m]),
            example=int(first[m]),
            uniform_share=int(rows[m]) / n,
            weighted_share=float(mass[m]),
        )
        for m in order
    ]


def _ranked(
    distinct: torch.Tensor, probabilities: torch.Tensor, top: int, *, largest: bool
) -> list[PromptWeight]:
    n_prompts = int(distinct.max()) + 1
    mass = group_sums(probabilities, distinct, n_prompts)
    copies = torch.bincount(distinct, minlength=n_prompts)
    first = first_occurrence(distinct, n_prompts)
    order = torch.argsort(mass, descending=largest, stable=True)[:top]
    return [
        PromptWeight(
            row=int(first[p]), copies=int(copies[p]), times_uniform=float(mass[p]) * n_prompts
        )
        for p in order
    ]


def learnability_summary(
    tracker: LearnabilityTracker, weights: torch.Tensor | np.ndarray, *, group_size: int = 8
) -> str:
    """What the rewards say and what the weights make of it, as text.

    The pass-rate bands of the distinct prompts that have rewards of their own
    ([`PASS_RATE_BANDS`][katdensity.learnability.PASS_RATE_BANDS]: failed, learnable,
    solved), and the share of groups of `group_size` completions expected to have no
    reward variance (no gradient), under uniform draws and under `weights`.

    Args:
        tracker: the tracker fed with the rewards.
        weights: `(N,)` sampling weights of the tracker's rows.
        group_size: completions per prompt (GRPO's G).

    Returns:
        Three lines of text.

    Raises:
        InvalidInputError: weights not aligned with the tracker, or a bad `group_size`.
    """
    probabilities = as_probabilities(weights)
    if probabilities.shape[0] != tracker.num_prompts:
        raise InvalidInputError(
            f"weights should have one entry per prompt of the tracker ({tracker.num_prompts}), "
            f"but got {probabilities.shape[0]}"
        )
    group_size = check_int("group_size", group_size, low=1)
    zero_variance = tracker.zero_variance_probability(group_size)
    rates, seen = tracker.pass_rate(), tracker.evidence() > 0
    low, high = PASS_RATE_BANDS
    # One entry per distinct prompt: copies share their rates.
    first = first_occurrence(tracker.distinct_index, tracker.num_distinct)
    rated = rates[first][seen[first]]
    counted = max(int(rated.numel()), 1)
    bands = [
        float((rated < low).sum()) / counted,
        float(((rated >= low) & (rated <= high)).sum()) / counted,
        float((rated > high).sum()) / counted,
    ]
    return "\n".join(
        [
            f"prompts with rewards       {int(rated.numel())} of {tracker.num_distinct} distinct",
            f"pass-rate bands            failed (<{low}) {bands[0]:.2f}, learnable "
            f"{bands[1]:.2f}, solved (>{high}) {bands[2]:.2f}",
            f"zero-variance groups of {group_size}  expected {float(zero_variance.mean()):.3f} "
            f"under uniform draws, {float((probabilities * zero_variance).sum()):.3f} under "
            "these weights",
        ]
    )
