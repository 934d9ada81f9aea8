"""From densities to sampling probabilities: the `Weighting` protocol and its default."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from katdensity._groups import first_occurrence, group_sums
from katdensity._validate import as_groups, as_log_density, as_probabilities, check_real
from katdensity.density.result import DensityEstimator, DensityResult
from katdensity.errors import InvalidInputError

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_MAX_WEIGHT_RATIO",
    "DEFAULT_MIN_ESS_RATIO",
    "InverseDensityWeighting",
    "WeightResult",
    "Weighting",
    "effective_sample_size",
    "inverse_density_weights",
    "weigh",
    "weights_with_floor",
]

logger = logging.getLogger(__name__)

# The default floor on the ESS over distinct prompts, as a share of their number: the
# weights may discard at most 35% of the set's effective size unless the user asks.
DEFAULT_MIN_ESS_RATIO = 0.65
# The default strength: full inverse density, `density ** -1`, before the floor tempers it.
DEFAULT_BETA = 1.0
# The default cap on a prompt's probability, as a multiple of uniform.
DEFAULT_MAX_WEIGHT_RATIO = 20.0
_SCAN_STEPS = 32


@runtime_checkable
class Weighting(Protocol):
    """Turns a density estimate into sampling probabilities: the sampler's plug-in point.

    Contract: `weighting(result)` returns a `(N,)` float64 CPU tensor of non-negative
    probabilities summing to 1, row `i` for point `i` of `result`. Implement it to combine
    density with anything else you know per prompt (difficulty, a cap on repeats, ...).
    """

    def __call__(self, result: DensityResult) -> torch.Tensor:
        """Sampling probabilities for the points of `result`, shape `(N,)`, float64."""
        ...


def inverse_density_weights(
    log_density: torch.Tensor | np.ndarray,
    *,
    beta: float = DEFAULT_BETA,
    max_weight_ratio: float | None = DEFAULT_MAX_WEIGHT_RATIO,
    uniform_mix: float = 0.0,
    groups: torch.Tensor | np.ndarray | None = None,
    min_ess_ratio: float | None = DEFAULT_MIN_ESS_RATIO,
    modes: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Sampling probabilities proportional to `density ** -beta`, capped, mixed with uniform
    and bounded in how far they move from uniform.

    With `groups`, a prompt and its exact copies count as one prompt: together they weigh
    what one prompt at their density would at any `beta`, the cap and the uniform share apply
    to them together, and `N` below is the number of distinct prompts `M`.

    The steps, in order:

    1. `p_i ∝ exp(-beta * log_density_i)`, computed with a log-sum-exp so no density
       overflows: dense points get *lower* probability.
    2. Modes (with `modes`): a mode of two or more distinct prompts (a family of
       near-duplicates, e.g. from [`find_modes`][katdensity.density.modes.find_modes]) is
       one prompt reworded: it weighs what its members weigh together, at most what one
       prompt at the median density does, and its distinct prompts share that equally.
    3. Cap: no prompt (with its copies) gets more than `max_weight_ratio / N`. The mass
       above the cap is redistributed over the uncapped prompts in proportion to their
       weight (water-filling), so an isolated outlier cannot take over the sample.
    4. Mix: `p = (1 - uniform_mix) * p + uniform_mix / N` per prompt, a floor that keeps
       every prompt reachable.
    5. Floor on the effective sample size: when the ESS over distinct prompts falls below
       `min_ess_ratio * N`, `beta` is lowered to the largest value that keeps it there
       (logged at INFO), so the weights never discard more of the set than that.

    Args:
        log_density: `(N,)` natural-log densities, e.g. `DensityResult.log_density`.
        beta: strength: `0` gives uniform, `1` full inverse density; values in between
            temper it, values above 1 exaggerate it.
        max_weight_ratio: cap on `p_i * N`, at least 1; `None` disables the cap.
        uniform_mix: share of uniform probability mixed in, in `[0, 1]`.
        groups: `(N,)` integer labels, equal for the copies of one prompt, e.g.
            `DensityResult.distinct_index`; `None` treats every row as its own prompt.
        min_ess_ratio: the smallest distinct ESS/N allowed, in `(0, 1]`, default 0.65;
            `None` lets `beta` act in full. Raising it keeps the sample closer to uniform;
            lowering it lets the density correction go further.
        modes: `(N,)` integer mode labels, equal for the rows of one near-duplicate family
            and never splitting a prompt's copies; `None` caps no mode.

    Returns:
        `(N,)` float64 probabilities summing to 1, row `i` for row `i`; copies of one
            prompt share its probability equally.

    Raises:
        InvalidInputError: non-finite log-densities or out-of-range options.

    Example:
        >>> import torch
        >>> from katdensity import inverse_density_weights
        >>> inverse_density_weights(torch.tensor([0.0, 0.0, 2.0]), max_weight_ratio=None)
        tensor([0.4683, 0.4683, 0.0634], dtype=torch.float64)
    """
    probabilities, _ = weights_with_floor(
        log_density,
        beta=beta,
        max_weight_ratio=max_weight_ratio,
        uniform_mix=uniform_mix,
        groups=groups,
        min_ess_ratio=min_ess_ratio,
        modes=modes,
    )
    return probabilities


def weights_with_floor(
    log_density: torch.Tensor | np.ndarray,
    *,
    beta: float,
    max_weight_ratio: float | None,
    uniform_mix: float,
    groups: torch.Tensor | np.ndarray | None,
    min_ess_ratio: float | None,
    modes: torch.Tensor | np.ndarray | None = None,
) -> tuple[torch.Tensor, float]:
    """[`inverse_density_weights`][katdensity.inverse_density_weights], and the `beta` used."""
    log_density = as_log_density(log_density)
    beta = check_real("beta", beta, low=0.0)
    uniform_mix = check_real("uniform_mix", uniform_mix, low=0.0, high=1.0)
    ratio = None
    if max_weight_ratio is not None:
        ratio = check_real("max_weight_ratio", max_weight_ratio, low=1.0)
    if min_ess_ratio is not None:
        min_ess_ratio = check_real("min_ess_ratio", min_ess_ratio, low=0.0, high=1.0, low_open=True)
    labels, n_prompts = _labels(groups, log_density.shape[0])
    log_copies = torch.bincount(labels, minlength=n_prompts).double().log()[labels]
    # A prompt's copies share one prompt's weight whatever beta: log m is taken out of the
    # density before beta applies and divided out after.
    own = log_density - log_copies
    mode_cap = None if modes is None else _ModeCap(own, labels, n_prompts, modes)

    def at(strength: float, mode_strength: float = 1.0) -> torch.Tensor:
        log_weights = -strength * own - log_copies
        if mode_cap is not None:
            log_weights = mode_cap(log_weights, strength, mode_strength)
        probabilities = torch.softmax(log_weights, dim=0)
        return _cap_and_mix(probabilities, labels, n_prompts, ratio, uniform_mix)

    def meets_floor(probabilities: torch.Tensor) -> bool:
        return min_ess_ratio is None or (
            _distinct_ess(probabilities, labels, n_prompts) >= min_ess_ratio * n_prompts
        )

    probabilities = at(beta)
    if meets_floor(probabilities):
        return probabilities, beta
    assert min_ess_ratio is not None
    used = _largest_strength(lambda b: meets_floor(at(b)), beta)
    logger.info(
        "strength beta %.3g -> %.3g to keep distinct ESS/N >= %.2f", beta, used, min_ess_ratio
    )
    probabilities = at(used)
    if used > 0.0 or meets_floor(probabilities):
        return probabilities, used
    # Modes alone hold too much of the set to be one prompt each: temper their cap too.
    mode_strength = _largest_strength(lambda m: meets_floor(at(0.0, m)), 1.0)
    logger.info(
        "mode cap strength 1 -> %.3g to keep distinct ESS/N >= %.2f", mode_strength, min_ess_ratio
    )
    return at(0.0, mode_strength), 0.0


class _ModeCap:
    """A mode of two or more distinct prompts is one prompt reworded: it weighs what its
    members weigh together, at most one median prompt's weight, shared equally among its
    distinct prompts (and each prompt's share among its copies). `own` is the log-density
    of a single copy of each row's prompt."""

    def __init__(
        self,
        own: torch.Tensor,
        labels: torch.Tensor,
        n_prompts: int,
        modes: torch.Tensor | np.ndarray,
    ) -> None:
        self.modes, self.n_modes = as_groups(modes, own.shape[0])
        first = first_occurrence(labels, n_prompts)
        if not bool((self.modes == self.modes[first][labels]).all()):
            raise InvalidInputError(
                "modes should give every copy of a prompt the label of its prompt; "
                "build them from the same DensityResult (e.g. with find_modes)"
            )
        prompts = torch.bincount(self.modes[first], minlength=self.n_modes)[self.modes]
        copies = torch.bincount(labels, minlength=n_prompts)[labels]
        self.shared = prompts > 1  # rows in a mode of 2+ distinct prompts
        self.log_prompts = prompts.double().log()
        self.log_share = -(prompts * copies).double().log()  # each row's share of its mode
        self.median = float(own[first].median())

    def __call__(
        self, log_weights: torch.Tensor, strength: float, mode_strength: float
    ) -> torch.Tensor:
        top = float(log_weights.max())
        totals = torch.zeros(self.n_modes, dtype=torch.float64).index_add_(
            0, self.modes, torch.exp(log_weights - top)
        )
        log_totals = (totals.log() + top)[self.modes]
        # At full mode strength a mode of m prompts weighs one median prompt; tempered,
        # `m ** (1 - mode_strength)` of them: at 0 it weighs what its members do.
        cap = -strength * self.median + (1.0 - mode_strength) * self.log_prompts
        log_mode = torch.minimum(log_totals, cap)
        return torch.where(self.shared, log_mode + self.log_share, log_weights)


def _largest_strength(meets_floor: Callable[[float], bool], beta: float) -> float:
    """The largest `b` in `[0, beta]` with `meets_floor(b)`, to 1e-3 of `beta`: a coarse scan
    down from `beta` (the ESS need not fall monotonically with it), then bisection."""
    above = beta
    for step in range(1, _SCAN_STEPS + 1):
        candidate = beta * (1 - step / _SCAN_STEPS)
        if meets_floor(candidate):
            below = candidate
            break
        above = candidate
    else:
        return 0.0
    while above - below > 1e-3 * beta:
        middle = (above + below) / 2
        below, above = (middle, above) if meets_floor(middle) else (below, middle)
    return below


def _cap_and_mix(
    probabilities: torch.Tensor,
    labels: torch.Tensor,
    n_prompts: int,
    ratio: float | None,
    uniform_mix: float,
) -> torch.Tensor:
    # Work on each prompt's total (its copies together), then share it among the copies.
    mass = group_sums(probabilities, labels, n_prompts)
    adjusted = mass
    if ratio is not None:
        adjusted = _cap(adjusted, ratio / n_prompts)
    if uniform_mix > 0.0:
        adjusted = (1.0 - uniform_mix) * adjusted + uniform_mix / n_prompts
    share = torch.where(mass > 0, adjusted / mass, torch.zeros_like(mass))
    probabilities = probabilities * share[labels]
    if bool((mass == 0).any()):  # prompts whose weight underflowed get their share evenly
        copies = torch.bincount(labels, minlength=n_prompts).double()
        probabilities = torch.where(
            mass[labels] == 0, adjusted[labels] / copies[labels], probabilities
        )
    return probabilities / probabilities.sum()


def _distinct_ess(probabilities: torch.Tensor, labels: torch.Tensor, n_prompts: int) -> float:
    mass = group_sums(probabilities, labels, n_prompts)
    return float(1.0 / mass.square().sum())


def _labels(groups: torch.Tensor | np.ndarray | None, n: int) -> tuple[torch.Tensor, int]:
    if groups is None:
        return torch.arange(n), n
    return as_groups(groups, n)


def _cap(probabilities: torch.Tensor, cap: float) -> torch.Tensor:
    """Water-fill: clip at `cap` and rescale the rest so the total stays 1."""
    if float(probabilities.max()) <= cap:
        return probabilities
    ordered, order = torch.sort(probabilities, descending=True)
    n = ordered.shape[0]
    n_capped = torch.arange(n, dtype=torch.float64)
    rest = torch.flip(torch.cumsum(torch.flip(ordered, (0,)), 0), (0,))  # mass of items m..
    # With the first m items capped, item m is scaled by (1 - m * cap) / rest[m]; the right
    # m is the first one at which that no longer exceeds the cap.
    fits = ordered * (1.0 - n_capped * cap) <= cap * rest
    m = int(torch.nonzero(fits)[0, 0]) if bool(fits.any()) else n
    result = ordered.clone()
    result[:m] = cap
    if m < n:
        result[m:] = ordered[m:] * (1.0 - m * cap) / float(rest[m])
    capped = torch.empty_like(result)
    capped[order] = result
    return capped


def effective_sample_size(
    weights: torch.Tensor | np.ndarray, groups: torch.Tensor | np.ndarray | None = None
) -> float:
    """Kish's effective sample size `(sum w)^2 / sum w^2` of non-negative weights.

    It equals `N` for uniform weights and 1 when one item holds all the weight; `ESS / N`
    says how far a weighting is from uniform. With `groups`, the weights of a prompt's
    copies are added first, so 30 copies of one prompt count as one prompt: the ESS over
    distinct prompts, at most their number `M` (compare it with `M`).

    Args:
        weights: `(N,)` non-negative weights.
        groups: `(N,)` integer labels, equal for the copies of one prompt (e.g.
            `DensityResult.distinct_index`); `None` counts rows.

    Raises:
        InvalidInputError: negative, non-finite or all-zero weights, or misaligned groups.

    Example:
        >>> import torch
        >>> from katdensity import effective_sample_size
        >>> weights = torch.ones(4)  # rows 0-2 are one prompt repeated
        >>> effective_sample_size(weights), effective_sample_size(weights, [0, 0, 0, 1])
        (4.0, 1.6)
    """
    probabilities = as_probabilities(weights)
    return _distinct_ess(probabilities, *_labels(groups, probabilities.shape[0]))


@dataclass(frozen=True)
class WeightResult:
    """The default weights of a prompt set and everything a report of them needs.

    Attributes:
        probabilities: `(N,)` float64 sampling probabilities summing to 1, row `i` for
            row `i` of `density`.
        density: the density estimate they were computed from (its neighbour graph, its
            copies in `density.distinct_index`).
        modes: `(N,)` int64 mode labels of
            [`find_modes`][katdensity.density.modes.find_modes], found once: capped when
            `mode_cap`, and listed by the report either way.
        beta: the strength asked for.
        beta_used: the strength used: `beta`, or less where the ESS floor tempered it.
        max_weight_ratio: the cap on a prompt's probability, as a multiple of uniform.
        uniform_mix: the share of uniform probability mixed in.
        min_ess_ratio: the floor on the distinct ESS/M, `None` for none.
        mode_cap: whether each mode weighs at most one median prompt.
    """

    probabilities: torch.Tensor
    density: DensityResult
    modes: torch.Tensor
    beta: float
    beta_used: float
    max_weight_ratio: float | None
    uniform_mix: float
    min_ess_ratio: float | None
    mode_cap: bool

    @property
    def distinct_index(self) -> torch.Tensor:
        """`(N,)` int64: the distinct prompt each row is a copy of (the density's)."""
        return self.density.distinct_index

    @property
    def distinct_ess(self) -> float:
        """Kish's effective sample size over distinct prompts (copies added first)."""
        return effective_sample_size(self.probabilities, self.distinct_index)

    def settings(self) -> dict[str, float | bool | None]:
        """The options the weights were computed with, `beta_used` included (plain values)."""
        return {
            "beta": self.beta,
            "max_weight_ratio": self.max_weight_ratio,
            "uniform_mix": self.uniform_mix,
            "min_ess_ratio": self.min_ess_ratio,
            "mode_cap": self.mode_cap,
            "beta_used": self.beta_used,
        }


def weigh(
    source: DensityResult | torch.Tensor | np.ndarray,
    *,
    estimator: DensityEstimator | None = None,
    beta: float = DEFAULT_BETA,
    max_weight_ratio: float | None = DEFAULT_MAX_WEIGHT_RATIO,
    uniform_mix: float = 0.0,
    min_ess_ratio: float | None = DEFAULT_MIN_ESS_RATIO,
    mode_cap: bool = True,
) -> WeightResult:
    """The library's default weights: the one path from embeddings to sampling probabilities.

    Every entry point (the default [`InverseDensityWeighting`][katdensity.InverseDensityWeighting],
    the `katdensity` commands, the demo, the TRL and verl integrations) computes its weights
    here, so they agree by construction. It finds the modes once, applies
    [`inverse_density_weights`][katdensity.inverse_density_weights] with the copies and the
    modes of the estimate, and returns the probabilities with what a report needs.

    Args:
        source: a [`DensityResult`][katdensity.DensityResult], or `(N, D)` embeddings to
            estimate it from with `estimator`.
        estimator: any [`DensityEstimator`][katdensity.DensityEstimator] for embeddings;
            default `ExactKNNDensity()`. Not used for a `DensityResult`.
        beta: strength of the inverse-density correction (0 uniform, 1 full).
        max_weight_ratio: cap on any prompt's probability (its copies together), as a
            multiple of uniform `1/M`; `None` disables it.
        uniform_mix: share of uniform probability mixed in, in `[0, 1]`.
        min_ess_ratio: the smallest distinct ESS/M allowed (default 0.65); `None` lets
            `beta` act in full.
        mode_cap: weigh each family of near-duplicates at most as one prompt of median
            density (default `True`).

    Returns:
        The weights, row-aligned with `source`, and how they were made.

    Raises:
        InvalidInputError: bad embeddings or options out of range.

    Example:
        >>> import torch
        >>> from katdensity import weigh
        >>> points = torch.randn(100, 8, generator=torch.Generator().manual_seed(0))
        >>> points[:20] = points[0]  # one prompt, twenty times
        >>> weighted = weigh(points)
        >>> round(float(weighted.probabilities[:20].sum()) * 81, 1)  # about one prompt's share
        1.0
    """
    if isinstance(source, DensityResult):
        if estimator is not None:
            raise InvalidInputError("estimator is used only for embeddings, not a DensityResult")
        result = source
    else:
        if estimator is None:
            from katdensity.density.exact import ExactKNNDensity

            estimator = ExactKNNDensity()
        result = estimator.estimate(source)
    if not isinstance(mode_cap, bool):
        raise InvalidInputError(f"mode_cap should be True or False, but got {mode_cap!r}")
    from katdensity.density.modes import find_modes  # scipy, imported on first use

    modes = find_modes(result)
    probabilities, beta_used = weights_with_floor(
        result.log_density,
        beta=beta,
        max_weight_ratio=max_weight_ratio,
        uniform_mix=uniform_mix,
        groups=result.distinct_index,
        min_ess_ratio=min_ess_ratio,
        modes=modes if mode_cap else None,
    )
    return WeightResult(
        probabilities=probabilities,
        density=result,
        modes=modes,
        beta=float(beta),
        beta_used=beta_used,
        max_weight_ratio=max_weight_ratio,
        uniform_mix=float(uniform_mix),
        min_ess_ratio=min_ess_ratio,
        mode_cap=mode_cap,
    )


class InverseDensityWeighting:
    """The default [`Weighting`][katdensity.Weighting], built on
    [`inverse_density_weights`][katdensity.inverse_density_weights].

    Args:
        beta: strength of the inverse-density correction (0 uniform, 1 full).
        max_weight_ratio: cap on any prompt's probability (its copies together), as a
            multiple of uniform `1/M` over the `M` distinct prompts.
        uniform_mix: share of uniform probability mixed in.
        min_ess_ratio: the smallest distinct ESS/M allowed (default 0.65): `beta` is lowered
            until the weights meet it; `None` lets `beta` act in full.
        mode_cap: weigh each family of near-duplicates found by
            [`find_modes`][katdensity.density.modes.find_modes] at most as one prompt of
            median density (default `True`); `False` leaves families to the density alone.

    Attributes:
        beta_used_: the strength the last call used (`beta`, or less to meet the floor);
            [`weigh`][katdensity.InverseDensityWeighting.weigh] returns it with the weights.
    """

    def __init__(
        self,
        beta: float = DEFAULT_BETA,
        *,
        max_weight_ratio: float | None = DEFAULT_MAX_WEIGHT_RATIO,
        uniform_mix: float = 0.0,
        min_ess_ratio: float | None = DEFAULT_MIN_ESS_RATIO,
        mode_cap: bool = True,
    ) -> None:
        self.beta = check_real("beta", beta, low=0.0)
        if max_weight_ratio is not None:
            check_real("max_weight_ratio", max_weight_ratio, low=1.0)
        self.max_weight_ratio = max_weight_ratio
        self.uniform_mix = check_real("uniform_mix", uniform_mix, low=0.0, high=1.0)
        if min_ess_ratio is not None:
            check_real("min_ess_ratio", min_ess_ratio, low=0.0, high=1.0, low_open=True)
        self.min_ess_ratio = min_ess_ratio
        if not isinstance(mode_cap, bool):
            raise InvalidInputError(f"mode_cap should be True or False, but got {mode_cap!r}")
        self.mode_cap = mode_cap
        self.beta_used_: float | None = None

    def __call__(self, result: DensityResult) -> torch.Tensor:
        """Probabilities `(N,)` for the points of `result`: `self.weigh(result).probabilities`."""
        return self.weigh(result).probabilities

    def weigh(self, result: DensityResult) -> WeightResult:
        """The weights of `result` with these options, and what a report needs:
        [`weigh`][katdensity.weigh]`(result, ...)`."""
        if not isinstance(result, DensityResult):
            raise InvalidInputError(
                f"result should be a DensityResult, but got {type(result).__name__}"
            )
        weighted = weigh(
            result,
            beta=self.beta,
            max_weight_ratio=self.max_weight_ratio,
            uniform_mix=self.uniform_mix,
            min_ess_ratio=self.min_ess_ratio,
            mode_cap=self.mode_cap,
        )
        self.beta_used_ = weighted.beta_used
        return weighted

    def __repr__(self) -> str:
        return (
            f"InverseDensityWeighting(beta={self.beta}, max_weight_ratio={self.max_weight_ratio}, "
            f"uniform_mix={self.uniform_mix}, min_ess_ratio={self.min_ess_ratio}, "
            f"mode_cap={self.mode_cap})"
        )
