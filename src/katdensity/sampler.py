"""`InverseDensitySampler`: a torch sampler that draws prompts with given probabilities."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Sampler

from katdensity._distributed import process_group
from katdensity._draws import draw_with_replacement, draw_without_replacement
from katdensity._validate import as_probabilities, check_choice, check_int
from katdensity.density.result import DensityEstimator, DensityResult
from katdensity.embedders.base import Embedder
from katdensity.errors import InvalidInputError
from katdensity.weights import Weighting

__all__ = ["DistributedMode", "InverseDensitySampler"]

DistributedMode = Literal["shard", "replicate"]

_STATE_VERSION = 3
# Chunk c of an epoch seeded s is drawn with seed (s * stride + c) mod 2^63.
_CHUNK_SEED_STRIDE = 1_000_003
_SEED_MODULUS = 2**63
_SEED_BOUND = 2**62  # epoch seeds drawn from a user's generator stay below this


class InverseDensitySampler(Sampler[int]):
    """Draws dataset indices with given probabilities: a drop-in `WeightedRandomSampler`.

    It takes what `WeightedRandomSampler` takes (any 1-D sequence of non-negative numbers,
    `num_samples`, `replacement`, `generator`) and refuses what it refuses, but refuses bad
    weights (negative, NaN, all zero) when it is built rather than at the first draw.

    Each epoch makes one global draw of `num_samples` indices from the weights, seeded by
    `seed + epoch`, so every process that builds the sampler the same way draws the same
    sequence. On top of what `WeightedRandomSampler` does it is:

    - exact for any number of items, including more than 2^24;
    - distributed: with `distributed="shard"` rank `r` of `R` takes positions `r, r + R, ...`
      of the global draw (disjoint shards of equal length whose union is the draw, padded
      like `DistributedSampler`); with `"replicate"` every rank yields the whole sequence,
      which is what TRL's GRPO trainer expects before it splits batches itself;
    - GRPO-aware: `group_size=G` yields each drawn index G times in a row, so the G
      completions of one prompt land in the same batch (TRL's `RepeatSampler`);
    - resumable mid-epoch with `state_dict()` / `load_state_dict()`;
    - re-weightable with `update_weights()`, effective from the next epoch.

    Note: Epochs and resuming
        `set_epoch(e)` fixes the epoch, as with `DistributedSampler`. A sampler whose
        `set_epoch` is never called moves to the next epoch by itself after each complete
        pass, so it draws afresh every epoch like `WeightedRandomSampler`, still
        reproducibly. Stopping mid-epoch leaves the sampler there: the next `iter()`
        continues the epoch, and `set_epoch` restarts it. A sampler restored by
        `load_state_dict` resumes by itself: `set_epoch` with the restored epoch (what a DDP
        loop or the HF Trainer calls at the top of the epoch) keeps the restored position and
        the weights the epoch started with, so the sequence continues exactly as the
        uninterrupted run's. The weights must be identical on every rank.

    Args:
        weights: `(N,)` non-negative weights, one per dataset row (need not sum to 1): a
            tensor, an array or any sequence of numbers.
        num_samples: indices drawn per epoch across all ranks, before `group_size`
            repetition; default `N`.
        replacement: draw with replacement (default) or without (then `num_samples <= N`
            items of positive weight).
        generator: instead of `seed`, a `torch.Generator` that seeds each new epoch's draw,
            as in `WeightedRandomSampler` (every rank needs an identically seeded one).
        seed: base seed; epoch `e` uses `seed + e`. Default 0.
        num_replicas: number of ranks; default the `torch.distributed` world size, else 1.
        rank: this process's rank; default the `torch.distributed` rank, else 0.
        distributed: `"shard"` or `"replicate"`, see above.
        group_size: times each drawn index is yielded in a row (GRPO's generations per prompt).
        chunk_size: draw the epoch in chunks of this many indices (across all ranks, before
            `group_size`), each from the weights current when its first index is drawn and
            seeded by `(epoch seed, chunk)`: weights given to `update_weights` apply from the
            next chunk instead of the next epoch, for weights that learn online (see
            [`LearnabilityWeighting`][katdensity.LearnabilityWeighting]). With replacement
            only; with `distributed="shard"` a multiple of the number of ranks. Default: one
            chunk, the whole epoch.

    Example:
        >>> import torch
        >>> from katdensity import InverseDensitySampler
        >>> sampler = InverseDensitySampler(torch.tensor([0.1, 0.0, 0.9]), num_samples=4, seed=1)
        >>> all(i != 1 for i in sampler)
        True
    """

    def __init__(
        self,
        weights: torch.Tensor | np.ndarray | Sequence[float],
        num_samples: int | None = None,
        replacement: bool = True,
        generator: torch.Generator | None = None,
        *,
        seed: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        distributed: DistributedMode = "shard",
        group_size: int = 1,
        chunk_size: int | None = None,
    ) -> None:
        # Checked in WeightedRandomSampler's order, so the same bad input gets the same error.
        if num_samples is not None:
            num_samples = check_int("num_samples", num_samples, low=1)
        if not isinstance(replacement, bool):
            raise InvalidInputError(
                f"replacement should be a bool, but got replacement={replacement!r}"
            )
        self._probabilities = as_probabilities(weights)
        self.num_samples = self._probabilities.shape[0] if num_samples is None else num_samples
        self.replacement = replacement
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InvalidInputError(
                f"generator should be a torch.Generator, but got {type(generator).__name__}"
            )
        if generator is not None and seed is not None:
            raise InvalidInputError("give seed or generator, not both")
        self.generator = generator
        self.seed = 0 if seed is None else check_int("seed", seed)
        world, own_rank = process_group()
        if num_replicas is None:
            num_replicas = world
        self.num_replicas = check_int("num_replicas", num_replicas, low=1)
        if rank is None:
            rank = own_rank
        self.rank = check_int("rank", rank, low=0, high=self.num_replicas)
        self.distributed: DistributedMode = check_choice(  # type: ignore[assignment]
            "distributed", distributed, ("shard", "replicate")
        )
        self.group_size = check_int("group_size", group_size, low=1)
        self.chunk_size = None if chunk_size is None else check_int("chunk_size", chunk_size, low=1)
        if self.chunk_size is not None and not self.replacement:
            raise InvalidInputError(
                "chunk_size needs replacement=True: chunks drawn without replacement from "
                "changing weights could repeat an earlier chunk's items"
            )
        if (
            self.chunk_size is not None
            and self.distributed == "shard"
            and self.chunk_size % self.num_replicas
        ):
            raise InvalidInputError(
                f"chunk_size should be a multiple of num_replicas ({self.num_replicas}) so each "
                f"rank takes an equal part of every chunk, but got chunk_size={self.chunk_size}"
            )
        self._check_enough_items(self._probabilities)
        self.density: DensityResult | None = None
        self._epoch = 0
        self._epoch_was_set = False
        self._position = 0
        # The epoch's draw is fixed (seed and weights) from its first index to its last.
        self._in_progress = False
        self._drawn_epoch = 0
        # The weights of each chunk of the epoch drawn so far (one chunk without chunk_size).
        self._chunk_weights: list[torch.Tensor] = []
        self._epoch_seed = self.seed
        # Set by load_state_dict until the next iteration: set_epoch(same epoch) keeps it.
        self._restored = False

    @classmethod
    def from_embeddings(
        cls,
        embeddings: torch.Tensor | np.ndarray,
        estimator: DensityEstimator | None = None,
        weighting: Weighting | None = None,
        **kwargs: Any,
    ) -> InverseDensitySampler:
        """Estimate the density of `embeddings` and sample inversely to it.

        Args:
            embeddings: `(N, D)`, row `i` for dataset row `i`.
            estimator: any [`DensityEstimator`][katdensity.DensityEstimator]; default
                `ExactKNNDensity()`.
            weighting: any [`Weighting`][katdensity.Weighting]; default
                `InverseDensityWeighting()`.
            **kwargs: passed to the constructor (`num_samples`, `seed`, `group_size`, ...).

        Returns:
            The sampler, with the density estimate kept in its `density` attribute.
        """
        if estimator is None:
            from katdensity.density.exact import ExactKNNDensity

            estimator = ExactKNNDensity()
        if weighting is None:
            from katdensity.weights import InverseDensityWeighting

            weighting = InverseDensityWeighting()
        if not isinstance(estimator, DensityEstimator):
            raise InvalidInputError(
                f"estimator should implement DensityEstimator (an estimate() method), "
                f"but got {type(estimator).__name__}"
            )
        if not isinstance(weighting, Weighting):
            raise InvalidInputError(
                f"weighting should be a Weighting (a callable), but got {type(weighting).__name__}"
            )
        result = estimator.estimate(embeddings)
        sampler = cls(weighting(result), **kwargs)
        sampler.density = result
        return sampler

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        embedder: Embedder,
        estimator: DensityEstimator | None = None,
        weighting: Weighting | None = None,
        **kwargs: Any,
    ) -> InverseDensitySampler:
        """Embed `texts`, estimate their density and sample inversely to it.

        Args:
            texts: the prompts, one per dataset row, in dataset order.
            embedder: any [`Embedder`][katdensity.Embedder].
            estimator: any [`DensityEstimator`][katdensity.DensityEstimator]; default
                `ExactKNNDensity()`.
            weighting: any [`Weighting`][katdensity.Weighting]; default
                `InverseDensityWeighting()`.
            **kwargs: passed to the constructor (`num_samples`, `seed`, `group_size`, ...).

        Returns:
            The sampler, with the density estimate kept in its `density` attribute.

        Example:
            >>> from katdensity import HashingEmbedder, InverseDensitySampler, ExactKNNDensity
            >>> texts = [f"question {i} about topic {i % 3}" for i in range(30)]
            >>> sampler = InverseDensitySampler.from_texts(
            ...     texts, HashingEmbedder(), ExactKNNDensity(k=5), seed=0
            ... )
            >>> len(sampler)
            30
        """
        if not isinstance(embedder, Embedder):
            raise InvalidInputError(
                f"embedder should implement Embedder (an embed() method and dim), "
                f"but got {type(embedder).__name__}"
            )
        return cls.from_embeddings(embedder.embed(texts), estimator, weighting, **kwargs)

    @property
    def weights(self) -> torch.Tensor:
        """The current `(N,)` float64 probabilities (after the latest `update_weights`)."""
        return self._probabilities

    def _check_enough_items(self, probabilities: torch.Tensor) -> None:
        if not self.replacement:
            available = int((probabilities > 0).sum())
            if self.num_samples > available:
                raise InvalidInputError(
                    "without replacement, num_samples should be at most the number of items "
                    f"with positive weight ({available}), but got num_samples={self.num_samples}"
                )

    def _draws_per_rank(self) -> int:
        if self.distributed == "replicate":
            return self.num_samples
        return math.ceil(self.num_samples / self.num_replicas)

    def __len__(self) -> int:
        return self._draws_per_rank() * self.group_size

    def set_epoch(self, epoch: int) -> None:
        """Draw the next pass with `seed + epoch`; call it before each epoch, as with
        `DistributedSampler`.

        Right after `load_state_dict`, the restored epoch's number continues that epoch
        where the state left it instead of restarting it; any other number starts afresh.
        """
        epoch = check_int("epoch", epoch)
        self._epoch_was_set = True
        if self._restored and epoch == self._epoch:
            return
        self._epoch = epoch
        self._position = 0
        self._in_progress = False
        self._restored = False

    def update_weights(self, weights: torch.Tensor | np.ndarray) -> None:
        """Replace the weights (same length `N`); the next epoch (with `chunk_size`, the
        next chunk) draws from them.

        The epoch (chunk) in progress finishes with the draw it started with, so every rank
        keeps the same sequence as long as every rank calls this between the same indices.
        """
        probabilities = as_probabilities(weights)
        if probabilities.shape != self._probabilities.shape:
            raise InvalidInputError(
                f"weights should keep the dataset's length ({self._probabilities.shape[0]}), "
                f"but got {probabilities.shape[0]} weights"
            )
        self._check_enough_items(probabilities)
        self._probabilities = probabilities

    def _next_epoch_seed(self) -> int:
        if self.generator is None:
            return self.seed + self._epoch
        return int(torch.randint(_SEED_BOUND, (), generator=self.generator))

    def _total_draws(self) -> int:
        """Indices drawn per epoch across all ranks, before `group_size`."""
        return self._draws_per_rank() * (
            1 if self.distributed == "replicate" else self.num_replicas
        )

    def _chunk_length(self) -> int:
        """Indices this rank yields per chunk, after `group_size`."""
        if self.chunk_size is None:
            return len(self)
        per_rank = self.chunk_size // (1 if self.distributed == "replicate" else self.num_replicas)
        return per_rank * self.group_size

    def _global_draw(self, chunk: int, probabilities: torch.Tensor) -> torch.Tensor:
        total = self._total_draws()
        if self.chunk_size is not None:
            count = min(self.chunk_size, total - chunk * self.chunk_size)
            seed = (self._epoch_seed * _CHUNK_SEED_STRIDE + chunk) % _SEED_MODULUS
            return draw_with_replacement(probabilities, count, torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(self._epoch_seed)
        if self.replacement:
            return draw_with_replacement(probabilities, total, generator)
        draws = draw_without_replacement(probabilities, self.num_samples, generator)
        # Pad, like DistributedSampler, by repeating the start of the draw.
        padding = total - self.num_samples
        return torch.cat([draws, draws[:padding]]) if padding else draws

    def _chunk_indices(self, chunk: int) -> torch.Tensor:
        # A chunk's weights are fixed when its first index is drawn.
        while len(self._chunk_weights) <= chunk:
            self._chunk_weights.append(self._probabilities)
        draws = self._global_draw(chunk, self._chunk_weights[chunk])
        if self.distributed == "shard":
            draws = draws[self.rank :: self.num_replicas]
        return draws.repeat_interleave(self.group_size)

    def __iter__(self) -> Iterator[int]:
        if not self._in_progress:
            self._chunk_weights = []
            self._epoch_seed = self._next_epoch_seed()
            self._drawn_epoch = self._epoch
            self._in_progress = True
            self._position = 0
        self._restored = False
        length, per_chunk = len(self), self._chunk_length()
        while self._position < length:
            chunk = self._position // per_chunk
            indices = self._chunk_indices(chunk).tolist()
            for offset in range(self._position - chunk * per_chunk, len(indices)):
                self._position = chunk * per_chunk + offset + 1
                yield indices[offset]
        self._position = 0
        self._in_progress = False
        if not self._epoch_was_set:
            self._epoch += 1

    def state_dict(self, *, consumed: int | None = None) -> dict[str, Any]:
        """Everything needed to continue exactly where this rank's iteration stands.

        Holds the epoch, its seed, the number of indices already yielded in it, the weights
        of the chunk in progress and of any chunk drawn after it (so a resume is exact even
        after `update_weights`; chunks already consumed are never drawn again, so their
        weights are left out), the weights of what comes next, and the state of
        `generator`, if one was given.

        Args:
            consumed: the indices of the current epoch (the one in progress, else the last
                one drawn) that training consumed, after `group_size` repetition; default
                all that this sampler yielded. Pass fewer when a `DataLoader`'s workers
                prefetch ahead of training, or `0` when the trainer replays the epoch and
                skips what it trained itself (as the HF Trainer does).

        Raises:
            InvalidInputError: `consumed` outside `[0, len(self)]`.
        """
        epoch, position, in_progress = self._epoch, self._position, self._in_progress
        if consumed is not None:
            position = check_int("consumed", consumed, low=0, high=len(self) + 1)
            epoch, in_progress = self._drawn_epoch, True
        first_chunk = position // max(self._chunk_length(), 1)
        return {
            "version": _STATE_VERSION,
            "epoch": epoch,
            "epoch_was_set": self._epoch_was_set,
            "in_progress": in_progress,
            "position": position,
            "seed": self.seed,
            "epoch_seed": self._epoch_seed,
            "generator_state": None if self.generator is None else self.generator.get_state(),
            "num_samples": self.num_samples,
            "chunk_size": self.chunk_size,
            "first_chunk": first_chunk,
            "chunk_weights": [weights.clone() for weights in self._chunk_weights[first_chunk:]],
            "weights": self._probabilities.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`; the next `iter()` continues the interrupted epoch.

        Raises:
            InvalidInputError: a state from a sampler of another size, seed or version.
        """
        if state.get("version") not in (1, 2, _STATE_VERSION):
            raise InvalidInputError(
                f"state should come from InverseDensitySampler.state_dict() (version 1 to "
                f"{_STATE_VERSION}), but got version={state.get('version')!r}"
            )
        for key, expected in (
            ("seed", self.seed),
            ("num_samples", self.num_samples),
            ("chunk_size", self.chunk_size),
        ):
            if state.get(key) != expected:
                raise InvalidInputError(
                    f"state was saved with {key}={state[key]}, but this sampler has "
                    f"{key}={expected}; build the sampler with the same arguments"
                )
        weights = as_probabilities(state["weights"], name="state['weights']")
        # Before version 3 the epoch was one chunk, its weights "epoch_weights".
        saved = state["chunk_weights"] if "chunk_weights" in state else [state["epoch_weights"]]
        if not isinstance(saved, list):
            raise InvalidInputError("state['chunk_weights'] should be a list of weight vectors")
        chunk_weights = [
            as_probabilities(chunk, name=f"state['chunk_weights'][{index}]")
            for index, chunk in enumerate(saved)
        ]
        for found in (weights, *chunk_weights):
            if found.shape != self._probabilities.shape:
                raise InvalidInputError(
                    f"state holds weights for {found.shape[0]} items, but this sampler has "
                    f"{self._probabilities.shape[0]}"
                )
        first_chunk = check_int("state['first_chunk']", state.get("first_chunk", 0), low=0)
        self._probabilities = weights
        # The chunks before the first saved are consumed and never drawn again: only their
        # count matters, so they hold a shared placeholder.
        self._chunk_weights = [*[weights] * first_chunk, *chunk_weights]
        self._epoch = check_int("state['epoch']", state["epoch"])
        # Version 1 states predate generators: their epochs were seeded seed + epoch.
        self._epoch_seed = check_int(
            "state['epoch_seed']", state.get("epoch_seed", self.seed + self._epoch)
        )
        generator_state = state.get("generator_state")
        if (generator_state is None) != (self.generator is None):
            raise InvalidInputError(
                "state and sampler should both use a generator or both a seed, but the state "
                f"{'has' if generator_state is not None else 'has no'} generator state"
            )
        if self.generator is not None and isinstance(generator_state, torch.Tensor):
            self.generator.set_state(generator_state)
        self._epoch_was_set = bool(state["epoch_was_set"])
        self._position = check_int("state['position']", state["position"], high=len(self) + 1)
        # Before version 3 an epoch was in progress exactly when some of it was yielded.
        self._in_progress = bool(state.get("in_progress", self._position > 0))
        self._drawn_epoch = self._epoch
        self._restored = self._in_progress
