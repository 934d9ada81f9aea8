"""`LearnabilityWeighting`: rare and learnable, the density weights times learnability.

The rule, for the rows of a [`DensityResult`][katdensity.DensityResult]:

1. `q`: the density weighting's probabilities (by default the library's,
   [`weigh`][katdensity.weigh]: copies as one prompt, each near-duplicate family capped at
   one median prompt, the ESS floor), computed once per density result.
2. Modes that outcomes split: a family of near-duplicates is one prompt reworded only while
   its members fare alike. A mode whose members with evidence fall in `b` different bands of
   pass rate (failed, learnable, solved) weighs `b` prompts: "What is 4 plus 2?" and
   "What is 47 plus 4?" may sit in one mode, but once one is solved and the other is not,
   they are two prompts.
3. `w ∝ q · (4 · learnability) ** strength`: a prompt's learnability `E[p (1 - p)]` (from
   the [`LearnabilityTracker`][katdensity.LearnabilityTracker]) is 1/4 at most, so the
   factor is in `[0, 1]`: 1 for a prompt that passes half the time, 0 for one surely solved
   or surely failed. The default `strength` is 4: learnability is a posterior mean, and
   while a prompt's evidence is thin its posterior pulls `E[p (1 - p)]` toward the prior's
   (1/6 for the uniform prior), so the factor's spread understates the prompts' true
   spread; at 1 the weights use about half of what the true pass rates would allow (see
   docs/learnability.md).
4. `p = (1 - explore) · w + explore · q`: an `explore` share drawn by density alone keeps
   every prompt drawable, so a prompt judged solved or hopeless is retried now and then and
   the tracker sees it if the policy has changed.
5. A floor on the effective sample size, as for the density weights: when the distinct ESS
   of `p` falls below `min_ess_ratio · M` (default 0.5), `strength` is lowered until it
   holds. It is lower than the density weights' 0.65 because learnability discards, on
   purpose, what no longer teaches. At the default strength the floor, not the exponent,
   usually sets how far the weights lean to learnable prompts once evidence is in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from katdensity._groups import first_occurrence, group_sums
from katdensity._validate import as_probabilities, check_real
from katdensity.density.result import DensityResult
from katdensity.errors import InvalidInputError
from katdensity.learnability.tracker import LearnabilityTracker, beta_learnability
from katdensity.weights import InverseDensityWeighting, WeightResult

__all__ = ["LEARNABILITY_MIN_ESS_RATIO", "PASS_RATE_BANDS", "LearnabilityWeighting"]

logger = logging.getLogger(__name__)

PASS_RATE_BANDS = (0.2, 0.8)
"""Pass rates below the first are "failed", above the second "solved", "learnable" between."""

LEARNABILITY_MIN_ESS_RATIO = 0.5
"""The default floor on the distinct ESS/M of density times learnability (see rule 5)."""

_BISECTION_STEPS = 10
# The floor is searched on the informed prompts' learnability factors binned by their
# logarithm, then checked on the prompts themselves.
_FACTOR_BINS = 2048
_BINNED_BISECTION_STEPS = 20


class LearnabilityWeighting:
    """A [`Weighting`][katdensity.Weighting]: inverse density times learnability.

    See the module's rule. Call it again after `tracker.update(...)` to get the weights of
    the evidence so far; the density weights are computed once per density result.

    Args:
        tracker: the [`LearnabilityTracker`][katdensity.LearnabilityTracker] fed with the
            run's rewards, over the same rows.
        density: the density weighting; default `InverseDensityWeighting()`, the library's
            default weights.
        strength: exponent of the learnability factor: 0 gives the density weights alone,
            1 weighs a prompt in proportion to its learnability, 4 (default) leans as far
            as the ESS floor allows once the evidence is in (see rule 3).
        explore: share of the draws made by density alone, in `[0, 1]` (default 0.1).
        band_evidence: completions of its own a prompt needs before its pass-rate band
            counts in splitting its mode (default 4).
        min_ess_ratio: the smallest distinct ESS/M of the combined weights (default 0.5,
            see rule 5); `None` lets `strength` act in full.

    Attributes:
        strength_used_: the strength the last call used (`strength`, or less to meet the
            ESS floor).

    Example:
        >>> import torch
        >>> from katdensity import ExactKNNDensity, LearnabilityTracker, LearnabilityWeighting
        >>> points = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
        >>> result = ExactKNNDensity(k=5).estimate(points)
        >>> tracker = LearnabilityTracker(40, density=result)
        >>> tracker.update([0] * 8 + [1] * 8, [1.0] * 8 + [1.0, 0.0] * 4)  # 0 solved, 1 not
        >>> weights = LearnabilityWeighting(tracker)(result)
        >>> bool(weights[1] > weights[0])
        True
    """

    def __init__(
        self,
        tracker: LearnabilityTracker,
        *,
        density: InverseDensityWeighting | None = None,
        strength: float = 4.0,
        explore: float = 0.1,
        band_evidence: float = 4.0,
        min_ess_ratio: float | None = LEARNABILITY_MIN_ESS_RATIO,
    ) -> None:
        if not isinstance(tracker, LearnabilityTracker):
            raise InvalidInputError(
                f"tracker should be a LearnabilityTracker, but got {type(tracker).__name__}"
            )
        if density is not None and not isinstance(density, InverseDensityWeighting):
            raise InvalidInputError(
                "density should be an InverseDensityWeighting (its modes and floor are "
                f"needed), but got {type(density).__name__}"
            )
        self.tracker = tracker
        self.density = InverseDensityWeighting() if density is None else density
        self.strength = check_real("strength", strength, low=0.0)
        self.explore = check_real("explore", explore, low=0.0, high=1.0)
        self.band_evidence = check_real("band_evidence", band_evidence, low=0.0)
        self.min_ess_ratio = min_ess_ratio
        if min_ess_ratio is not None:
            self.min_ess_ratio = check_real(
                "min_ess_ratio", min_ess_ratio, low=0.0, high=1.0, low_open=True
            )
        self.strength_used_: float | None = None
        self._base: tuple[DensityResult, WeightResult] | None = None
        # (base and modes as given, base as probabilities, its mass per distinct prompt,
        # the sum of squared masses): computed once per base.
        self._cache: (
            tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor, float] | None
        ) = None
        # The distinct prompts that share their mode with another, their mode numbered
        # 0..S-1, and those modes' labels: the only ones an outcome can split.
        self._shared = _SharedModes.none()

    def base(self, result: DensityResult) -> WeightResult:
        """The density weights of `result` (computed on the first call for it)."""
        if self._base is None or self._base[0] is not result:
            if not isinstance(result, DensityResult):
                raise InvalidInputError(
                    f"result should be a DensityResult, but got {type(result).__name__}"
                )
            if len(result) != self.tracker.num_prompts:
                raise InvalidInputError(
                    f"result should describe the tracker's {self.tracker.num_prompts} prompts, "
                    f"but has {len(result)}"
                )
            self._base = (result, self.density.weigh(result))
        return self._base[1]

    def __call__(self, result: DensityResult) -> torch.Tensor:
        """Probabilities `(N,)` for the rows of `result`, from the tracker's evidence now."""
        base = self.base(result)
        return self.combine(base.probabilities, modes=base.modes, min_ess_ratio=self.min_ess_ratio)

    def combine(
        self,
        base: torch.Tensor,
        *,
        modes: torch.Tensor | None = None,
        min_ess_ratio: float | None = None,
    ) -> torch.Tensor:
        """Rules 2-5 over given density weights, for weights without a `DensityResult`
        (a weights file, a tensor): `self(result)` is `combine` of `self.base(result)`.

        Args:
            base: `(N,)` density probabilities of the tracker's rows.
            modes: `(N,)` mode labels to split by outcome; `None` splits none.
            min_ess_ratio: the floor on the distinct ESS/M (copies from the tracker);
                `None` for none.

        Returns:
            `(N,)` float64 probabilities summing to 1.

        Raises:
            InvalidInputError: `base` or `modes` not one per row of the tracker.
        """
        tracker = self.tracker
        n, labels, n_prompts = tracker.num_prompts, tracker.distinct_index, tracker.num_distinct
        # NOTE [ cost ]: a prompt without evidence sits at the prior, so the prompts at the
        # prior are summed once (their mass and squared mass) and only the informed ones,
        # those the run has touched, are visited while the floor is searched: re-weighting a
        # million prompts costs a few passes over them, not one per search step. Late in a
        # run every prompt is informed; the passes then avoid temporaries where they can
        # (a fresh tensor of a million numbers costs more in page faults than the pass).
        prompts, alpha, beta, own = tracker.informed_posterior()
        every = prompts.numel() == n_prompts
        density, mass, square = self._prepared(base, modes)
        if modes is not None:
            split = self._split_modes(density, modes, prompts, alpha, beta, own)
            if split is not None:
                density = split
                mass = group_sums(density, labels, n_prompts)
                square = float(torch.dot(mass, mass))
        seen = mass if every else mass[prompts]
        alpha0, beta0 = (torch.tensor([value], dtype=torch.float64) for value in tracker.prior)
        mix = _Mixture(
            seen=seen,
            factor=_learnability_factor(alpha, beta),
            unseen_mass=max(1.0 - float(seen.sum()), 0.0),
            unseen_square=max(square - float(torch.dot(seen, seen)), 0.0),
            prior_factor=float(4.0 * beta_learnability(alpha0, beta0)),
            explore=self.explore,
        )
        used = self.strength
        if min_ess_ratio is not None and mix.ess(used) < min_ess_ratio * n_prompts:
            used = mix.strength_for(min_ess_ratio * n_prompts, high=self.strength)
            logger.debug(
                "learnability strength %.3g -> %.3g to keep distinct ESS/N >= %.2f",
                self.strength,
                used,
                min_ess_ratio,
            )
        self.strength_used_ = used
        unseen_scale, seen_scale = mix.scales(used)
        if every:
            scale = seen_scale
        else:
            scale = torch.full((n_prompts,), unseen_scale, dtype=torch.float64)
            scale[prompts] = seen_scale
        # The scales keep the total at 1 by construction; copies share their prompt's scale.
        return density * (scale if n_prompts == n else scale[labels])

    def _prepared(
        self, base: torch.Tensor, modes: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """`(base as probabilities, its mass per distinct prompt, the sum of squared
        masses)`, computed once per base (with each distinct prompt's first row)."""
        cached = self._cache
        if cached is not None and cached[0] is base and cached[1] is modes:
            return cached[2], cached[3], cached[4]
        tracker = self.tracker
        n = tracker.num_prompts
        probabilities = as_probabilities(base, name="base")
        if probabilities.shape[0] != n or (modes is not None and modes.shape != (n,)):
            raise InvalidInputError(
                f"base and modes should hold one entry per prompt of the tracker ({n})"
            )
        mass = group_sums(probabilities, tracker.distinct_index, tracker.num_distinct)
        square = float(mass.square().sum())
        first = first_occurrence(tracker.distinct_index, tracker.num_distinct)
        self._shared = _SharedModes.none() if modes is None else _SharedModes.of(modes[first])
        self._cache = (base, modes, probabilities, mass, square)
        return probabilities, mass, square

    def _split_modes(
        self,
        base: torch.Tensor,
        modes: torch.Tensor,
        prompts: torch.Tensor,
        alpha: torch.Tensor,
        beta: torch.Tensor,
        own: torch.Tensor,
    ) -> torch.Tensor | None:
        """`base` with each mode whose informed members fall in `b` pass-rate bands weighing
        `b` times its weight (rule 2); `None` when no mode is split."""
        shared = self._shared
        banded = own >= self.band_evidence
        if shared.prompts.numel() == 0 or not bool(banded.any()):
            return None
        low, high = PASS_RATE_BANDS
        # Band 0 failed, 1 learnable, 2 solved, 3 too little evidence: pass rate p < low is
        # alpha < low (alpha + beta), and so on, without dividing.
        total = alpha + beta
        band = (alpha >= low * total).to(torch.uint8)
        band += alpha > total.mul_(high)
        band.masked_fill_(~banded, 3)
        if prompts.numel() < self.tracker.num_distinct:
            every = torch.full((self.tracker.num_distinct,), 3, dtype=torch.uint8)
            every[prompts] = band
            band = every
        # Each shared prompt marks its (mode, band) cell; band 3 marks a column not counted.
        present = torch.zeros(shared.count * 4, dtype=torch.bool)
        present[shared.mode4 + band[shared.prompts]] = True
        bands = present.view(shared.count, 4)[:, :3].sum(1)
        split = bands > 1
        if not bool(split.any()):
            return None
        factor = torch.ones(int(modes.max()) + 1, dtype=torch.float64)
        factor[shared.labels[split]] = bands[split].double()
        adjusted = base * factor[modes]
        return adjusted / adjusted.sum()

    def __repr__(self) -> str:
        return (
            f"LearnabilityWeighting({self.tracker!r}, density={self.density!r}, "
            f"strength={self.strength}, explore={self.explore})"
        )


@dataclass(frozen=True)
class _SharedModes:
    """The distinct prompts whose mode holds another distinct prompt: `prompts` `(P,)`,
    `mode4` `(P,)` four times their mode numbered `0..count-1`, `labels` `(count,)` those
    modes' labels."""

    prompts: torch.Tensor
    mode4: torch.Tensor
    labels: torch.Tensor
    count: int

    @staticmethod
    def none() -> _SharedModes:
        empty = torch.empty(0, dtype=torch.int64)
        return _SharedModes(empty, empty, empty, 0)

    @staticmethod
    def of(prompt_modes: torch.Tensor) -> _SharedModes:
        """From `(M,)` the mode label of each distinct prompt."""
        prompt_modes = prompt_modes.to(torch.int64)
        size = torch.bincount(prompt_modes)
        prompts = torch.nonzero(size[prompt_modes] > 1)[:, 0]
        labels, mode = torch.unique(prompt_modes[prompts], return_inverse=True)
        return _SharedModes(prompts, 4 * mode, labels, int(labels.numel()))


@dataclass
class _Mixture:
    """The combined weights as a function of `strength` (rules 3-4), per distinct prompt:
    `seen` `(I,)` the density mass of each informed prompt and `factor` `(I,)` its
    learnability factor; the prompts at the prior, `unseen_mass` in all (`unseen_square`
    the sum of their squared masses), share `prior_factor`."""

    seen: torch.Tensor
    factor: torch.Tensor
    unseen_mass: float
    unseen_square: float
    prior_factor: float
    explore: float
    # The last strength's scales: the floor's check and the weights use the same ones.
    _last: tuple[float, tuple[float, torch.Tensor]] | None = None

    def scales(self, strength: float) -> tuple[float, torch.Tensor]:
        """The multiplier of the density mass: of every prompt at the prior, and of each
        informed prompt."""
        if self._last is not None and self._last[0] == strength:
            return self._last[1]
        self._last = (strength, self._scales(strength))
        return self._last[1]

    def _scales(self, strength: float) -> tuple[float, torch.Tensor]:
        unseen_factor = math.pow(self.prior_factor, strength)
        seen_factor = self.factor.pow(strength)
        total = unseen_factor * self.unseen_mass + float(torch.dot(self.seen, seen_factor))
        if total <= 0.0:  # every prompt solved or failed for sure: density alone
            return 1.0, torch.ones_like(self.seen)
        keep = 1.0 - self.explore
        return (
            keep * unseen_factor / total + self.explore,
            seen_factor.mul_(keep / total).add_(self.explore),
        )

    def ess(self, strength: float) -> float:
        """The distinct ESS of the combined weights."""
        unseen_scale, seen_scale = self.scales(strength)
        seen_mass = torch.mul(self.seen, seen_scale)
        squares = unseen_scale**2 * self.unseen_square + float(torch.dot(seen_mass, seen_mass))
        return 1.0 / squares

    def strength_for(self, ess: float, *, high: float) -> float:
        """The largest strength in `[0, high]` (to `high / 2^10`) whose ESS is at least
        `ess`, given that `high`'s is not.

        NOTE [ binned search ]: the ESS is a sum over the informed prompts, up to a million,
        and a bisection evaluates it a dozen times. The prompts are binned by the logarithm
        of their factor (`_FACTOR_BINS` bins: `factor^s` of a bin's prompts differs from its
        centre's by under 0.5% at s = 4), so the search costs one pass over the prompts;
        its answer is then checked exactly, and searched exactly only if that fails.
        """
        binned = self._binned_ess()
        low, top = 0.0, high
        for _ in range(_BINNED_BISECTION_STEPS):
            middle = (low + top) / 2
            low, top = (middle, top) if binned(middle) >= ess else (low, middle)
        candidate = _on_grid(low, high)
        if self.ess(candidate) >= ess:
            return candidate
        low, top = 0.0, candidate
        for _ in range(_BISECTION_STEPS):
            middle = (low + top) / 2
            low, top = (middle, top) if self.ess(middle) >= ess else (low, middle)
        return low

    def _binned_ess(self) -> Callable[[float], float]:
        """The ESS at a positive strength, from the prompts binned by log factor."""
        zero = self.factor == 0  # surely solved or failed: only `explore` draws them
        smallest = float(self.factor.masked_fill(zero, 1.0).min()) if self.factor.numel() else 1.0
        bottom = math.log(smallest)
        width = max(-bottom, 1e-12) / _FACTOR_BINS
        # Bin `_FACTOR_BINS` holds the zeros.
        bins = self.factor.clamp(min=smallest).log_().sub_(bottom).div_(width).floor_()
        bins = bins.clamp_(0, _FACTOR_BINS - 1).long().masked_fill_(zero, _FACTOR_BINS)
        squares = torch.mul(self.seen, self.seen)
        mass = torch.zeros(_FACTOR_BINS + 1, dtype=torch.float64).index_add_(0, bins, self.seen)
        square = torch.zeros(_FACTOR_BINS + 1, dtype=torch.float64).index_add_(0, bins, squares)
        zero_square = float(square[-1])
        mass, square = mass[:-1], square[:-1]
        centre = bottom + width * (torch.arange(_FACTOR_BINS, dtype=torch.float64) + 0.5)
        keep, explore = 1.0 - self.explore, self.explore

        def ess(strength: float) -> float:
            unseen_factor = math.pow(self.prior_factor, strength)
            factor = torch.exp(strength * centre)
            total = unseen_factor * self.unseen_mass + float((mass * factor).sum())
            if total <= 0.0:
                return 1.0 / (self.unseen_square + float(square.sum()) + zero_square)
            scale = keep * factor / total + explore
            unseen_scale = keep * unseen_factor / total + explore
            return 1.0 / (
                unseen_scale**2 * self.unseen_square
                + float((square * scale.square()).sum())
                + explore**2 * zero_square
            )

        return ess


def _learnability_factor(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """`4 E[p (1 - p)]` for `p ~ Beta(alpha, beta)`, in `[0, 1]` (rule 3's factor)."""
    total = alpha + beta
    denominator = total.add(1.0).mul_(total)
    return torch.mul(alpha, beta).mul_(4.0).div_(denominator).clamp_(0.0, 1.0)


def _on_grid(strength: float, high: float) -> float:
    """`strength` rounded down to the exact bisection's grid, `high / 2^10`."""
    step = math.ldexp(high, -_BISECTION_STEPS)
    return step * int(strength / step)
