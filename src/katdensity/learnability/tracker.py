"""`LearnabilityTracker`: which prompts still teach, learned online from GRPO rewards.

In GRPO a prompt whose G completions all get the same reward has zero advantage and gives
no gradient. The tracker keeps, for every distinct prompt, a Beta posterior over its pass
rate `p` under the current policy, and its learnability: the expected Bernoulli variance
`E[p (1 - p)]`, the variance of a completion's reward, which is what a group's advantages
are made of. It is 0 for a prompt surely solved or surely failed and 1/4 at most.

NOTE [ rewards in [0, 1] ]: a reward `r` in `[0, 1]` counts as `r` of a success and
`1 - r` of a failure (binary rewards are the special case). For continuous rewards,
`E[p (1 - p)]` of the mean reward `p` bounds the within-group reward variance from above
(a reward in `[0, 1]` with mean `p` has variance at most `p (1 - p)`); it is the tracked
quantity for any reward, so prompts rank the same way whatever the reward's kind.

NOTE [ borrowing ]: with `density=`, a prompt borrows the evidence of its neighbours on the
kNN graph, each neighbour's evidence weighted by `exp(-(r / r0)^2)`, `r` its distance and
`r0` `borrow_radius` times the median nearest-neighbour distance: an exact copy or a
near-duplicate (r ≈ 0) lends all of its evidence, an ordinary neighbour (r about the median)
`exp(-1 / borrow_radius^2)` of it (0.78 at the default 2), a far one little. Pass rates
under one policy vary smoothly between neighbours (a policy that solves a problem tends to
solve its rewordings and its near variants), so the neighbourhood is the prompt's prior.
The borrowed evidence counts at most `borrow_limit` completions and is scaled down as the
prompt gains evidence of its own, so one rollout informs every neighbour at no extra
rollout, and a prompt's own outcomes win once it has them. Updates push evidence along the
reversed graph, so an update costs what its batch touches, not the size of the set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from katdensity._groups import first_occurrence
from katdensity._validate import as_groups, check_int, check_real
from katdensity.density.formula import neighbor_radii
from katdensity.density.result import DensityResult
from katdensity.errors import InvalidInputError

__all__ = ["LearnabilityTracker"]

_STATE_VERSION = 2
# Evidence is stored divided by the decay so far (one multiply per read instead of one per
# update); the stored values are rescaled before that divisor overflows.
_RESCALE_ABOVE = 1e100
_NEGLIGIBLE_KERNEL = 1e-6


class LearnabilityTracker:
    """Per-prompt pass rates and learnability from rewards, shared by copies and neighbours.

    Args:
        num_prompts: `N`, the dataset's rows; `update` takes row indices in `[0, N)`.
        density: a [`DensityResult`][katdensity.DensityResult] of the same `N` rows: its
            copies (`distinct_index`) share one posterior, and a prompt with little evidence
            borrows its neighbours' (see the module's note). `None`: rows are independent.
        groups: `(N,)` labels equal for the copies of one prompt, when there is no
            `density`; default every row its own prompt.
        prior: `(alpha, beta)` of the Beta prior on every pass rate, both positive.
            `(1, 1)` is uniform: an unseen prompt has learnability 1/6.
        half_life: evidence halves after this many `update` calls, so the posterior follows
            the policy as it changes; `None` keeps all evidence.
        reward_range: `(low, high)` of the rewards; they are mapped to `[0, 1]`.
        borrow_limit: the most completions' worth of evidence a prompt borrows (default
            32: four groups of 8).
        borrow_radius: the radius of the lending kernel, as a multiple of the median
            nearest-neighbour distance (default 2; see the module's note). Smaller lends
            only to near-duplicates.

    Example:
        >>> import torch
        >>> from katdensity import LearnabilityTracker
        >>> tracker = LearnabilityTracker(3)
        >>> tracker.update([0, 0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 1, 0, 1])
        >>> tuple(round(x, 3) for x in tracker.pass_rate().tolist())
        (0.833, 0.5, 0.5)
        >>> tuple(round(x, 3) for x in tracker.learnability().tolist())
        (0.119, 0.214, 0.167)
    """

    def __init__(
        self,
        num_prompts: int,
        *,
        density: DensityResult | None = None,
        groups: torch.Tensor | np.ndarray | Sequence[int] | None = None,
        prior: tuple[float, float] = (1.0, 1.0),
        half_life: float | None = None,
        reward_range: tuple[float, float] = (0.0, 1.0),
        borrow_limit: float = 32.0,
        borrow_radius: float = 2.0,
    ) -> None:
        self.num_prompts = check_int("num_prompts", num_prompts, low=1)
        if density is not None and not isinstance(density, DensityResult):
            raise InvalidInputError(
                f"density should be a DensityResult, but got {type(density).__name__}"
            )
        if density is not None and len(density) != self.num_prompts:
            raise InvalidInputError(
                f"density should describe the {self.num_prompts} prompts, but has {len(density)}"
            )
        if density is not None and groups is not None:
            raise InvalidInputError("give density or groups, not both: density has the copies")
        self.prior = _pair("prior", prior, positive=True)
        self.reward_range = _pair("reward_range", reward_range, positive=False)
        if not self.reward_range[0] < self.reward_range[1]:
            raise InvalidInputError(
                f"reward_range should be (low, high) with low < high, but got {reward_range}"
            )
        self.half_life = None
        if half_life is not None:
            self.half_life = check_real("half_life", half_life, low=0.0, low_open=True)
        self.borrow_limit = check_real("borrow_limit", borrow_limit, low=0.0)
        self.borrow_radius = check_real("borrow_radius", borrow_radius, low=0.0, low_open=True)
        self.density = density
        if density is not None:
            self._labels, self._n_distinct = (
                density.distinct_index,
                int(density.distinct_index.max()) + 1,
            )
        elif groups is not None:
            self._labels, self._n_distinct = as_groups(groups, self.num_prompts)
        else:
            self._labels, self._n_distinct = torch.arange(self.num_prompts), self.num_prompts
        self._graph = (
            None
            if density is None
            else _LendingGraph(density, self._labels, self._n_distinct, self.borrow_radius)
        )
        self._decay = 1.0 if self.half_life is None else 0.5 ** (1.0 / self.half_life)
        self._reset()

    def _reset(self) -> None:
        m = self._n_distinct
        # [successes, failures] per distinct prompt, own and borrowed, in stored units.
        self._own = torch.zeros(2, m, dtype=torch.float64)
        self._borrowed = torch.zeros(2, m, dtype=torch.float64)
        self._scale = 1.0  # stored units times this are completions
        # The distinct prompts with any evidence, own or borrowed: every other one is at the
        # prior, so reads and re-weighting cost what the run has touched. A mask, and its
        # sorted list (sorted, so sums run in one order however the evidence came, and a
        # resumed run re-weighs bit for bit as the uninterrupted one) made when read.
        self._is_informed = torch.zeros(m, dtype=torch.bool)
        self._informed_list: torch.Tensor | None = None
        self.updates = 0

    @property
    def distinct_index(self) -> torch.Tensor:
        """`(N,)` int64: the distinct prompt of each row (copies share one posterior)."""
        return self._labels

    @property
    def num_distinct(self) -> int:
        """The number of distinct prompts `M` (copies counted once)."""
        return self._n_distinct

    def update(
        self,
        indices: torch.Tensor | np.ndarray | Sequence[int],
        rewards: torch.Tensor | np.ndarray | Sequence[float],
    ) -> None:
        """Add one batch of completions: the dataset row of each and its reward.

        Call it once per generation batch (with `half_life`, each call is one step of
        fading). The tracker is left exactly as it was when the input is refused.

        Args:
            indices: `(B,)` dataset rows in `[0, N)`, one per completion (a prompt's G
                completions repeat its row G times).
            rewards: `(B,)` rewards in `reward_range`.

        Raises:
            InvalidInputError: lengths that differ, rows out of range or not integers,
                rewards that are NaN, infinite or outside `reward_range`.
        """
        rows, successes = self._checked(indices, rewards)
        if self._decay != 1.0:
            self._scale *= self._decay
            if 1.0 / self._scale > _RESCALE_ABOVE:
                self._own *= self._scale
                self._borrowed *= self._scale
                self._scale = 1.0
        touched, inverse = torch.unique(self._labels[rows], return_inverse=True)
        outcomes = torch.stack([successes, 1.0 - successes])
        delta = torch.zeros(2, touched.numel(), dtype=torch.float64).index_add_(
            1, inverse, outcomes
        )
        delta /= self._scale
        self._own[:, touched] += delta
        self._note_informed(touched)
        if self._graph is not None:
            borrowers, lent = self._graph.lend(touched, delta)
            self._borrowed.index_add_(1, borrowers, lent)
            self._note_informed(borrowers)
        self.updates += 1

    def _note_informed(self, prompts: torch.Tensor) -> None:
        """Add `prompts` (distinct, no repeats) to the informed ones."""
        new = prompts[~self._is_informed[prompts]]
        if new.numel():
            self._is_informed[new] = True
            self._informed_list = None

    @property
    def _informed(self) -> torch.Tensor:
        if self._informed_list is None:
            self._informed_list = self._is_informed.nonzero()[:, 0]
        return self._informed_list

    def _checked(self, indices: Any, rewards: Any) -> tuple[torch.Tensor, torch.Tensor]:
        rows = _as_1d("indices", indices)
        values = _as_1d("rewards", rewards)
        if rows.shape != values.shape:
            raise InvalidInputError(
                f"indices and rewards should have one entry per completion each, but got "
                f"{rows.shape[0]} indices and {values.shape[0]} rewards"
            )
        if rows.is_floating_point() and not bool((rows == rows.round()).all()):
            raise InvalidInputError("indices should be integer dataset rows")
        if rows.dtype == torch.bool:
            raise InvalidInputError("indices should be integer dataset rows, but got booleans")
        rows = rows.to(torch.int64)
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= self.num_prompts):
            raise InvalidInputError(
                f"indices should be dataset rows in [0, {self.num_prompts}), but got "
                f"{int(rows.min())} to {int(rows.max())}"
            )
        values = values.to(torch.float64)
        if not bool(torch.isfinite(values).all()):
            raise InvalidInputError("rewards should be finite numbers, but hold NaN or inf")
        low, high = self.reward_range
        if values.numel() and (float(values.min()) < low or float(values.max()) > high):
            raise InvalidInputError(
                f"rewards should lie in reward_range [{low}, {high}], but range from "
                f"{float(values.min())} to {float(values.max())}; pass reward_range="
            )
        return rows, (values - low) / (high - low)

    def informed_posterior(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The posterior of the distinct prompts with any evidence; all others are at the
        prior.

        Returns:
            `(prompts, alpha, beta, own)`: `(I,)` distinct prompt numbers (as in
            `distinct_index`), their Beta posterior's parameters, and the completions of
            their own each has seen (faded).
        """
        prompts = self._informed
        every = prompts.numel() == self._n_distinct  # late in a run: no gather needed
        if every:
            prompts = torch.arange(self._n_distinct)
        own = self._own if every else self._own[:, prompts]  # stored units: times _scale
        own_count = own.sum(0).mul_(self._scale)
        alpha = own[0] * self._scale + self.prior[0]
        beta = own[1] * self._scale + self.prior[1]
        if self._graph is not None:
            borrowed = self._borrowed if every else self._borrowed[:, prompts]
            count = borrowed.sum(0).mul_(self._scale)
            # At most borrow_limit completions, less as the prompt's own evidence grows.
            room = self.borrow_limit / (1.0 + own_count / max(self.borrow_limit, 1e-12))
            factor = torch.where(count > room, room / count.clamp_min(1e-300), 1.0)
            factor.mul_(self._scale)
            alpha.addcmul_(borrowed[0], factor)
            beta.addcmul_(borrowed[1], factor)
        return prompts, alpha, beta, own_count

    def _posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(alpha, beta)` per distinct prompt, `(M,)` each."""
        prompts, alpha_seen, beta_seen, _ = self.informed_posterior()
        alpha = torch.full((self._n_distinct,), self.prior[0], dtype=torch.float64)
        beta = torch.full((self._n_distinct,), self.prior[1], dtype=torch.float64)
        alpha[prompts], beta[prompts] = alpha_seen, beta_seen
        return alpha, beta

    def pass_rate(self) -> torch.Tensor:
        """`(N,)` float64: the posterior mean pass rate of each row's prompt."""
        alpha, beta = self._posterior()
        return (alpha / (alpha + beta))[self._labels]

    def learnability(self) -> torch.Tensor:
        """`(N,)` float64: `E[p (1 - p)]` under each row's posterior, in `[0, 1/4]`."""
        alpha, beta = self._posterior()
        return beta_learnability(alpha, beta)[self._labels]

    def evidence(self) -> torch.Tensor:
        """`(N,)` float64: completions seen for each row's prompt (faded), borrowed excluded."""
        return (self._own.sum(0) * self._scale)[self._labels]

    def zero_variance_probability(self, group_size: int) -> torch.Tensor:
        """`(N,)` float64: the chance that a group of `group_size` binary rewards is all
        equal (no gradient), `E[p^G + (1 - p)^G]` under each row's posterior."""
        group_size = check_int("group_size", group_size, low=1)
        alpha, beta = self._posterior()
        steps = torch.arange(group_size, dtype=torch.float64)[:, None]
        total = alpha + beta
        all_pass = torch.prod((alpha + steps) / (total + steps), dim=0)
        all_fail = torch.prod((beta + steps) / (total + steps), dim=0)
        return (all_pass + all_fail)[self._labels]

    def state_dict(self) -> dict[str, Any]:
        """The evidence and settings, as tensors and plain values (`weights_only`-loadable)."""
        return {
            "version": _STATE_VERSION,
            "num_prompts": self.num_prompts,
            "distinct_index": self._labels.clone(),
            "prior": list(self.prior),
            "half_life": self.half_life,
            "reward_range": list(self.reward_range),
            "borrow_limit": self.borrow_limit,
            "borrow_radius": self.borrow_radius,
            # As stored, with the fading so far apart, so a restored tracker continues bit
            # for bit; completions are `own * scale`.
            "own": self._own.clone(),
            "borrowed": self._borrowed.clone(),
            "scale": self._scale,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()` of a tracker over the same prompt set and settings.

        Raises:
            InvalidInputError: a state of another version, prompt set (size or copies) or
                settings, naming the mismatch; the tracker is left as it was.
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise InvalidInputError(
                f"state should come from LearnabilityTracker.state_dict() (version "
                f"{_STATE_VERSION}), but got {type(state).__name__}"
                + (f" version={state.get('version')!r}" if isinstance(state, dict) else "")
            )
        if state.get("num_prompts") != self.num_prompts:
            raise InvalidInputError(
                f"state is of a set of {state.get('num_prompts')} prompts, but this tracker "
                f"has {self.num_prompts}; build it over the same dataset"
            )
        labels = state.get("distinct_index")
        if not isinstance(labels, torch.Tensor) or not torch.equal(labels, self._labels):
            raise InvalidInputError(
                "state is of a prompt set whose copies differ from this tracker's "
                "(distinct_index); build it with the same density or groups"
            )
        for key, mine in (
            ("prior", list(self.prior)),
            ("half_life", self.half_life),
            ("reward_range", list(self.reward_range)),
            ("borrow_limit", self.borrow_limit),
            ("borrow_radius", self.borrow_radius),
        ):
            if state.get(key) != mine:
                raise InvalidInputError(
                    f"state was saved with {key}={state.get(key)!r}, but this tracker has "
                    f"{key}={mine!r}; build it with the same settings"
                )
        shape = (2, self._n_distinct)
        own, borrowed = state.get("own"), state.get("borrowed")
        for key, value in (("own", own), ("borrowed", borrowed)):
            if (
                not isinstance(value, torch.Tensor)
                or value.shape != shape
                or not bool(torch.isfinite(value).all())
                or bool((value < 0).any())
            ):
                raise InvalidInputError(
                    f"state[{key!r}] should be a finite non-negative tensor of shape {shape}"
                )
        updates = check_int("state['updates']", state.get("updates"))
        scale = check_real("state['scale']", state.get("scale"), low=0.0, high=1.0, low_open=True)
        assert isinstance(own, torch.Tensor) and isinstance(borrowed, torch.Tensor)
        self._own = own.to(torch.float64).clone()
        self._borrowed = borrowed.to(torch.float64).clone()
        self._scale = scale
        self._is_informed = (self._own + self._borrowed).sum(0) > 0
        self._informed_list = None
        self.updates = updates

    def __repr__(self) -> str:
        return (
            f"LearnabilityTracker(num_prompts={self.num_prompts}, distinct={self._n_distinct}, "
            f"updates={self.updates}, prior={self.prior}, half_life={self.half_life})"
        )


def beta_learnability(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """`E[p (1 - p)]` for `p ~ Beta(alpha, beta)`: `alpha beta / (T (T + 1))`, T = alpha + beta."""
    total = alpha + beta
    return alpha * beta / (total * (total + 1.0))


class _LendingGraph:
    """The kNN graph between distinct prompts, reversed: whom each prompt lends evidence to,
    with what weight."""

    def __init__(
        self, density: DensityResult, labels: torch.Tensor, n_distinct: int, radius: float
    ) -> None:
        radii = neighbor_radii(density.neighbors)
        positive = radii[:, 0][radii[:, 0] > 0]
        typical = float(positive.median()) if positive.numel() else 1.0
        scale = max(radius * typical, 1e-12)
        weight = torch.exp(-((radii / scale) ** 2))
        borrower = labels[:, None].expand_as(radii)
        lender = labels[density.neighbors.indices.to("cpu")]
        # One edge per distinct pair: copies of a prompt list the same neighbours, and a
        # prompt never lends to itself (its own evidence is already its own).
        keep = (weight > _NEGLIGIBLE_KERNEL) & (lender != borrower)
        first_row = torch.zeros(labels.shape[0], dtype=torch.bool)
        first_row[first_occurrence(labels, n_distinct)] = True
        keep &= first_row[:, None]
        lender, borrower, weight = lender[keep], borrower[keep], weight[keep]
        order = torch.argsort(lender, stable=True)
        self.borrower = borrower[order]
        self.weight = weight[order]
        counts = torch.bincount(lender, minlength=n_distinct)
        self.start = torch.zeros(n_distinct + 1, dtype=torch.int64)
        self.start[1:] = torch.cumsum(counts, 0)

    def lend(
        self, lenders: torch.Tensor, evidence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(borrowers, lent)`: the edges out of `lenders`, `lent` `(2, E)` their evidence
        `(2, len(lenders))` times each edge's weight."""
        begin, end = self.start[lenders], self.start[lenders + 1]
        counts = end - begin
        owner = torch.repeat_interleave(torch.arange(lenders.numel()), counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        edges = begin[owner] + offsets
        return self.borrower[edges], evidence[:, owner] * self.weight[edges]


def _pair(name: str, value: Any, *, positive: bool) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidInputError(f"{name} should be a pair of numbers, but got {name}={value!r}")
    low = 0.0 if positive else None
    return (
        check_real(f"{name}[0]", value[0], low=low, low_open=positive),
        check_real(f"{name}[1]", value[1], low=low, low_open=positive),
    )


def _as_1d(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu")
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError) as error:
            raise InvalidInputError(
                f"{name} should be a 1-D sequence of numbers: {error}"
            ) from None
    if tensor.ndim != 1:
        raise InvalidInputError(
            f"{name} should be 1-D, one entry per completion, but has shape {tuple(tensor.shape)}"
        )
    if not (tensor.is_floating_point() or tensor.dtype in _NUMERIC_INTEGERS):
        raise InvalidInputError(f"{name} should hold numbers, but holds {tensor.dtype}")
    return tensor


_NUMERIC_INTEGERS = (
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
)
