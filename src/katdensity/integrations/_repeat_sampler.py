"""TRL's repeat structure over an `InverseDensitySampler`: `DensityRepeatSampler`.

Kept apart from the trainers so that it imports without TRL; the trainers of
[`katdensity.integrations.trl`][katdensity.integrations.trl] build it, and that module
re-exports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from katdensity._validate import check_int
from katdensity.errors import InvalidInputError
from katdensity.sampler import InverseDensitySampler

__all__ = ["DensityRepeatSampler"]

# Version 3: the sampler may draw in chunks, and the file may hold "learnability".
_STATE_VERSION = 3


class DensityRepeatSampler(Sampler[int]):
    """TRL's `RepeatSampler` structure over an `InverseDensitySampler`.

    Each pass takes the sampler's draw (`num_samples` prompts, each `group_size` times in a
    row), cuts it into chunks of `batch_size` prompts, drops an incomplete last chunk, and
    yields each chunk `repeat_count` times in a row: what `RepeatSampler(...,
    mini_repeat_count=G, batch_size, repeat_count)` yields from a permutation.

    The draw is read lazily, one chunk at a time, when the chunk's first prompt is asked
    for: a sampler built with `chunk_size=batch_size` draws each chunk from the weights
    current then, so `update_weights` after a generation batch applies to the chunks read
    after it.

    Args:
        sampler: built with `group_size=G` (TRL's `mini_repeat_count`) and
            `distributed="replicate"`, so every rank sees the same order.
        batch_size: distinct prompts per generation batch (`generation_batch_size / G`).
        repeat_count: times each chunk of `batch_size` prompts is yielded in a row
            (`num_iterations * steps_per_generation`).

    Attributes:
        chunks_read: chunks of the pass in progress whose first prompt was read (and so
            drawn) so far.

    Raises:
        InvalidInputError: a sampler that shards, or sizes that are not positive integers.
    """

    # NOTE [ no `generator` attribute ]: accelerate gives a sampler that has a `generator`
    # attribute set to None a randomly seeded one, and synchronises it across ranks. The
    # draw here is seeded by `seed + epoch` alone, so the class must not grow one.

    def __init__(self, sampler: InverseDensitySampler, batch_size: int, repeat_count: int):
        if sampler.distributed != "replicate":
            raise InvalidInputError(
                f"sampler should use distributed='replicate' (TRL splits batches across "
                f"ranks itself), but got distributed={sampler.distributed!r}"
            )
        self.sampler = sampler
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.repeat_count = check_int("repeat_count", repeat_count, low=1)
        self.chunks_read = 0

    def __iter__(self) -> Iterator[int]:
        self.chunks_read = 0
        size = self.batch_size * self.sampler.group_size
        chunk: list[int] = []
        for index in self.sampler:
            if not chunk:
                self.chunks_read += 1
            chunk.append(index)
            if len(chunk) == size:
                for _ in range(self.repeat_count):
                    yield from chunk
                chunk = []

    def __len__(self) -> int:
        chunks = self.sampler.num_samples // self.batch_size
        return chunks * self.batch_size * self.sampler.group_size * self.repeat_count

    def set_epoch(self, epoch: int) -> None:
        """Passed on, so every pass draws afresh and reproducibly (`seed + epoch`)."""
        self.sampler.set_epoch(epoch)

    @property
    def weights(self) -> torch.Tensor:
        """The sampler's current `(N,)` float64 probabilities (those of the next draw)."""
        return self.sampler.weights

    def update_weights(self, weights: torch.Tensor | np.ndarray) -> None:
        """The sampler's `update_weights`: the next pass (with `chunk_size`, the next chunk
        read) draws from `weights` `(N,)`."""
        self.sampler.update_weights(weights)

    def state_dict(self) -> dict[str, Any]:
        """The pass in progress, the weights of each chunk drawn so far and those of the next.

        The trainer replays the pass itself on resume (`set_epoch`, then skipping the
        batches already trained), so the sampler's state is taken with nothing of the pass
        consumed: its epoch, seed, the weights of every chunk already drawn (drawn again
        from them) and the weights of what comes next.
        """
        return {
            "version": _STATE_VERSION,
            "batch_size": self.batch_size,
            "repeat_count": self.repeat_count,
            "sampler": self.sampler.state_dict(consumed=0),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`: the interrupted pass is drawn again from its own weights.

        Raises:
            InvalidInputError: a state from another version, structure, size or seed.
        """
        if state.get("version") not in (1, 2, _STATE_VERSION):
            raise InvalidInputError(
                f"state should come from DensityRepeatSampler.state_dict() (version 1 to "
                f"{_STATE_VERSION}), but got version={state.get('version')!r}"
            )
        for key, expected in (("batch_size", self.batch_size), ("repeat_count", self.repeat_count)):
            if state[key] != expected:
                raise InvalidInputError(
                    f"state was saved with {key}={state[key]}, but this sampler has "
                    f"{key}={expected}; resume with the same TRL batch settings"
                )
        inner = state["sampler"]
        if state["version"] == 1:
            # Version 1 saved the sampler after its pass was drawn whole: replay that pass
            # (its epoch was set by the trainer) from its start.
            inner = {**inner, "position": 0, "in_progress": bool(inner["epoch_was_set"])}
        self.sampler.load_state_dict(inner)
