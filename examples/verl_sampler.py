"""A verl sampler recipe: draw RL prompts inversely to their density in verl's PPO/GRPO trainer.

verl builds its training sampler from the data config: when `data.sampler.class_path` is
set it imports `class_name` from that file or module and calls

    sampler = cls(data_source=dataset, data_config=config.data)

then, if the sampler is an `AbstractCurriculumSampler`, calls `sampler.update(batch=batch)`
after every training step with the step's `DataProto`. Its StatefulDataLoader saves and
restores the sampler's `state_dict()` with the trainer's checkpoints. verl repeats each
prompt `rollout.n` times itself, so the sampler yields every drawn prompt once.

`DensitySampler` keeps that constructor shape and delegates to katdensity's
`InverseDensitySampler`. Embed the prompts first, in dataset order (for example with
`katdensity embed`, whose `.pt` / `.npy` files `katdensity.io.load_embeddings` reads), and
point the config at the file:

    python -m verl.trainer.main_ppo ... \\
        data.dataloader_num_workers=0 \\
        data.sampler.class_path=/path/to/examples/verl_sampler.py \\
        data.sampler.class_name=DensitySampler \\
        +data.sampler.embeddings=/path/to/prompt_embeddings.pt \\
        +data.sampler.beta=1.0 +data.sampler.k=10 \\
        +data.sampler.refresh_every=100

`update(batch)` is the hook for weights that change during training: every
`refresh_every` steps it re-reads the embeddings file, and if another process has
rewritten it (say, re-embedded the prompts with the current policy checkpoint) it
recomputes the weights and hands them to `update_weights`, which applies them from the
sampler's next epoch, the same on every process. The module imports without verl (then
the class derives from torch's `Sampler`), so it is tested without verl.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sized
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Sampler

from katdensity import ExactKNNDensity, InverseDensitySampler, InverseDensityWeighting
from katdensity.io import load_embeddings

try:
    from verl.experimental.dataset.sampler import AbstractCurriculumSampler as _Base
except ImportError:  # verl is not needed to read, use or test this recipe
    _Base = Sampler


class DensitySampler(_Base):  # type: ignore[misc, valid-type]
    """verl `AbstractCurriculumSampler` drawing prompts with inverse-density weights.

    Options, under `data.sampler` in the verl config (`data_config.sampler`):

    - `embeddings` (required): a `.pt` or `.npy` embeddings file, row `i` for dataset row `i`;
    - `k` (10), `beta` (1.0), `max_weight_ratio` (20.0), `uniform_mix` (0.0): the density
      estimate and the weighting (see `InverseDensityWeighting`);
    - `refresh_every` (0, never): re-read the embeddings file every that many `update` calls.

    The seed is `data_config.seed` (default 0); every epoch draws `len(data_source)`
    prompts with replacement.
    """

    def __init__(self, data_source: Sized, data_config: Mapping[str, Any]) -> None:
        options = data_config.get("sampler") or {}
        if not options.get("embeddings"):
            raise ValueError(
                "data.sampler.embeddings should name the prompt embeddings file, but it is "
                "not set; write one with `katdensity embed`"
            )
        self.path = Path(options["embeddings"])
        self.k = int(options.get("k", 10))
        self.weighting = InverseDensityWeighting(
            float(options.get("beta", 1.0)),
            max_weight_ratio=options.get("max_weight_ratio", 20.0),
            uniform_mix=float(options.get("uniform_mix", 0.0)),
        )
        self.refresh_every = int(options.get("refresh_every", 0))
        self.n = len(data_source)
        self.steps = 0
        self._mtime = self.path.stat().st_mtime_ns
        # verl's driver is one process that splits batches itself: one replica, rank 0.
        self.sampler = InverseDensitySampler(
            self._weights(),
            seed=int(data_config.get("seed", None) or 0),
            num_replicas=1,
            rank=0,
        )

    def _weights(self) -> torch.Tensor:
        embeddings = load_embeddings(self.path).embeddings
        if len(embeddings) != self.n:
            raise ValueError(
                f"the embeddings file should have one row per dataset row ({self.n}), but "
                f"{self.path} has {len(embeddings)}"
            )
        # verl's driver builds the sampler alone, even where a process group exists.
        estimator = ExactKNNDensity(k=self.k, distributed=False)
        return self.weighting(estimator.estimate(embeddings))

    def __iter__(self) -> Iterator[int]:
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)

    def update(self, batch: Any) -> None:
        """Called by verl after every step; reloads the weights when the file has changed."""
        self.steps += 1
        if self.refresh_every and self.steps % self.refresh_every == 0:
            mtime = self.path.stat().st_mtime_ns
            if mtime != self._mtime:
                self._mtime = mtime
                self.sampler.update_weights(self._weights())

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.steps = int(state["steps"])
