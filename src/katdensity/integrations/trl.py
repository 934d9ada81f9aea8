"""TRL's GRPO and RLOO trainers with prompts drawn by katdensity (`pip install "katdensity[trl]"`).

TRL's `GRPOTrainer` and `RLOOTrainer` draw prompts through `_get_train_sampler`, which
returns a `RepeatSampler` whose structure the rest of the trainer relies on:

- every rank draws the same prompt order (the trainer splits each batch across ranks);
- each prompt comes `num_generations` (G) times in a row, so one prompt's completions are
  normalised together;
- each chunk of `generation_batch_size / G` prompts comes
  `num_iterations * steps_per_generation` times in a row, so generations are reused across
  the optimisation steps that share them; an incomplete last chunk is dropped.

[`DensityGRPOTrainer`][katdensity.integrations.trl.DensityGRPOTrainer] and
[`DensityRLOOTrainer`][katdensity.integrations.trl.DensityRLOOTrainer] override
`_get_train_sampler` to return a
[`DensityRepeatSampler`][katdensity.integrations.trl.DensityRepeatSampler]: the same
structure over an [`InverseDensitySampler`][katdensity.InverseDensitySampler], so only
which prompts are drawn changes. Both trainers are TRL's own classes with one extra layer;
everything else is TRL's.
[`DensityRefreshCallback`][katdensity.integrations.trl.DensityRefreshCallback] recomputes
the weights from the current policy during training.

Importing this module without TRL raises
[`MissingDependencyError`][katdensity.MissingDependencyError].
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import torch
from torch.utils.data import Sampler

from katdensity._atomic import atomic_path
from katdensity._optional import require
from katdensity._validate import check_int
from katdensity.density.result import DensityEstimator
from katdensity.embedders.base import Embedder
from katdensity.errors import InvalidInputError
from katdensity.integrations._weights import (
    from_rank_zero,
    prompt_texts,
    row_weights,
    weights_for_ids,
)
from katdensity.io import read_torch_file
from katdensity.sampler import InverseDensitySampler
from katdensity.weights import Weighting, effective_sample_size

# The trainers load transformers' Trainer with them, so once they import, so does the rest.
require("trl.trainer.grpo_trainer", extra="trl", purpose="katdensity.integrations.trl")
require("trl.trainer.rloo_trainer", extra="trl", purpose="katdensity.integrations.trl")

from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState  # noqa: E402
from transformers import TrainingArguments as _TrainingArguments  # noqa: E402
from trl.trainer.grpo_trainer import GRPOTrainer  # noqa: E402
from trl.trainer.rloo_trainer import RLOOTrainer  # noqa: E402

__all__ = [
    "SAMPLER_STATE_NAME",
    "DensityGRPOTrainer",
    "DensityRLOOTrainer",
    "DensityRefreshCallback",
    "DensityRepeatSampler",
    "DensityWeights",
]

logger = logging.getLogger(__name__)

SAMPLER_STATE_NAME = "katdensity_sampler.pt"
"""The file each checkpoint folder gets with the sampler's state (written by rank 0)."""

DensityWeights: TypeAlias = (
    Literal["policy"] | str | os.PathLike[str] | torch.Tensor | np.ndarray | Sequence[float]
)
"""`"policy"`, a weights file path, or one weight per dataset row."""

_STATE_VERSION = 2


class DensityRepeatSampler(Sampler[int]):
    """TRL's `RepeatSampler` structure over an `InverseDensitySampler`.

    Each pass takes the sampler's draw (`num_samples` prompts, each `group_size` times in a
    row), cuts it into chunks of `batch_size` prompts, drops an incomplete last chunk, and
    yields each chunk `repeat_count` times in a row: what `RepeatSampler(...,
    mini_repeat_count=G, batch_size, repeat_count)` yields from a permutation.

    Args:
        sampler: built with `group_size=G` (TRL's `mini_repeat_count`) and
            `distributed="replicate"`, so every rank sees the same order.
        batch_size: distinct prompts per generation batch (`generation_batch_size / G`).
        repeat_count: times each chunk of `batch_size` prompts is yielded in a row
            (`num_iterations * steps_per_generation`).

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

    def __iter__(self) -> Iterator[int]:
        indices = list(self.sampler)
        chunk = self.batch_size * self.sampler.group_size
        for start in range(0, len(indices) - chunk + 1, chunk):
            for _ in range(self.repeat_count):
                yield from indices[start : start + chunk]

    def __len__(self) -> int:
        chunks = self.sampler.num_samples // self.batch_size
        return chunks * self.batch_size * self.sampler.group_size * self.repeat_count

    def set_epoch(self, epoch: int) -> None:
        """Passed on, so every pass draws afresh and reproducibly (`seed + epoch`)."""
        self.sampler.set_epoch(epoch)

    @property
    def weights(self) -> torch.Tensor:
        """The sampler's current `(N,)` float64 probabilities (those of the next pass)."""
        return self.sampler.weights

    def update_weights(self, weights: torch.Tensor | np.ndarray) -> None:
        """The sampler's `update_weights`: the next pass draws from `weights` `(N,)`."""
        self.sampler.update_weights(weights)

    def state_dict(self) -> dict[str, Any]:
        """The pass in progress and the weights of this pass and the next.

        The trainer replays the pass itself on resume (`set_epoch`, then skipping the
        batches already trained), so the sampler's state is taken with nothing of the pass
        consumed: its epoch, seed and weights, and the weights of the passes after it.
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
        if state.get("version") not in (1, _STATE_VERSION):
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


if TYPE_CHECKING:
    _TrainerBase = Trainer
else:
    _TrainerBase = object


class _DensitySampling(_TrainerBase):
    """What `DensityGRPOTrainer` and `DensityRLOOTrainer` add to TRL's trainer.

    They share `_get_train_sampler`'s contract in TRL 1.16: `num_generations`,
    `num_iterations`, `shuffle_dataset` and `args.generation_batch_size` /
    `steps_per_generation` / `seed` mean the same in both.
    """

    def __init__(
        self,
        *args: Any,
        density_weights: DensityWeights,
        id_column: str = "id",
        density_num_samples: int | None = None,
        density_embedder: Embedder | None = None,
        density_estimator: DensityEstimator | None = None,
        density_weighting: Weighting | None = None,
        **kwargs: Any,
    ) -> None:
        # Checked before TRL loads anything, so a bad option fails fast.
        if not isinstance(id_column, str):
            raise InvalidInputError(f"id_column should be a string, but got {id_column!r}")
        if density_num_samples is not None:
            check_int("density_num_samples", density_num_samples, low=1)
        for name, value, protocol in (
            ("density_embedder", density_embedder, Embedder),
            ("density_estimator", density_estimator, DensityEstimator),
            ("density_weighting", density_weighting, Weighting),
        ):
            if value is not None and not isinstance(value, protocol):
                raise InvalidInputError(
                    f"{name} should implement {protocol.__name__}, but got {type(value).__name__}"
                )
        self.id_column = id_column
        self.density_num_samples = density_num_samples
        self.density_embedder = density_embedder
        self.density_estimator = density_estimator
        self.density_weighting = density_weighting
        self.density_sampler: DensityRepeatSampler | None = None
        super().__init__(*args, **kwargs)
        trl_trainer: Any = self  # for the attributes TRL's trainers set
        # TRL accepts a Dataset or an IterableDataset, which has no length and no sampler.
        if not isinstance(self.train_dataset, Sized):
            raise InvalidInputError(
                "train_dataset should be a map-style datasets.Dataset (TRL streams an "
                "IterableDataset without a sampler), but got "
                f"{type(self.train_dataset).__name__}"
            )
        if not trl_trainer.shuffle_dataset:
            raise InvalidInputError(
                "shuffle_dataset should be True: density sampling replaces the shuffle, "
                "but got shuffle_dataset=False, which asks for the dataset order"
            )
        self.density_weights: torch.Tensor = self._initial_weights(density_weights)
        for callback in self.callback_handler.callbacks:
            _bind(callback, self)

    def _initial_weights(self, density_weights: DensityWeights) -> torch.Tensor:
        dataset: Any = self.train_dataset  # a datasets.Dataset, checked in __init__
        if isinstance(density_weights, str) and density_weights == "policy":
            return self.compute_density_weights()  # the same on every rank already
        if isinstance(density_weights, (str, os.PathLike)):
            if self.id_column not in dataset.column_names:
                raise InvalidInputError(
                    f"id_column should name the column of train_dataset that holds the ids "
                    f"of {density_weights}, but got id_column={self.id_column!r} and the "
                    f"columns are {dataset.column_names}"
                )
            weights = weights_for_ids(
                density_weights, dataset[self.id_column], id_column=self.id_column
            )
        else:
            weights = row_weights(density_weights, len(dataset))
        # NOTE [ one set of weights ]: every rank must draw the same order, so every rank
        # takes rank 0's weights, whatever each read or was given.
        weights = from_rank_zero(weights)
        source = density_weights if isinstance(density_weights, (str, os.PathLike)) else "a tensor"
        logger.info(
            "density weights from %s: ESS %.0f of %d rows",
            source,
            effective_sample_size(weights),
            weights.shape[0],
        )
        return weights

    def compute_density_weights(self) -> torch.Tensor:
        """Weights from the current policy: embed the prompts, estimate density, weight.

        The prompts (`train_dataset["prompt"]`; a conversation counts by its user turns)
        are embedded with `density_embedder`, by default a
        [`HiddenStateEmbedder`][katdensity.HiddenStateEmbedder] over the policy model and
        the trainer's tokenizer, split across ranks
        ([`embed_distributed`][katdensity.embed_distributed]); the density comes from
        `density_estimator` (default [`ExactKNNDensity`][katdensity.ExactKNNDensity]`()`,
        whose search the ranks share) and the weights from `density_weighting` (default
        [`InverseDensityWeighting`][katdensity.InverseDensityWeighting]`()`). Every rank
        must call it; all return rank 0's result.

        Returns:
            `(N,)` float64 probabilities, row `i` for dataset row `i`.
        """
        from katdensity.density.exact import ExactKNNDensity
        from katdensity.embedders.distributed import embed_distributed
        from katdensity.embedders.hidden_state import HiddenStateEmbedder
        from katdensity.weights import InverseDensityWeighting

        dataset: Any = self.train_dataset  # a datasets.Dataset, checked in __init__
        texts = prompt_texts(dataset["prompt"])
        embedder = self.density_embedder
        if embedder is None:
            policy = self.model
            # A PEFT model's adapters live inside its base model, which is the HF model.
            base = getattr(policy, "get_base_model", None)
            embedder = HiddenStateEmbedder(
                base() if callable(base) else policy, self.processing_class
            )
        result = (self.density_estimator or ExactKNNDensity()).estimate(
            embed_distributed(embedder, texts)
        )
        weights = from_rank_zero((self.density_weighting or InverseDensityWeighting())(result))
        groups = result.distinct_index
        logger.info(
            "density weights from the policy: ESS %.0f of %d distinct prompts",
            effective_sample_size(weights, groups),
            int(groups.max()) + 1,
        )
        return weights

    def _get_train_sampler(self, dataset: Any = None) -> Sampler[int]:
        dataset = self.train_dataset if dataset is None else dataset
        rows = self.density_weights.shape[0]
        if len(dataset) != rows:
            raise InvalidInputError(
                f"the train dataset should keep the {rows} rows the weights were made for, "
                f"but has {len(dataset)}"
            )
        trl_trainer: Any = self  # for the attributes TRL's trainers set
        generations: int = trl_trainer.num_generations
        batch_size: int = trl_trainer.args.generation_batch_size // generations
        num_samples = self.density_num_samples or rows
        if num_samples < batch_size:
            raise InvalidInputError(
                f"density_num_samples should be at least the prompts of one generation "
                f"batch ({batch_size}), but got density_num_samples={num_samples}"
            )
        sampler = InverseDensitySampler(
            self.density_weights,
            num_samples=num_samples,
            seed=self.args.seed,
            distributed="replicate",
            group_size=generations,
        )
        self.density_sampler = DensityRepeatSampler(
            sampler,
            batch_size=batch_size,
            repeat_count=trl_trainer.num_iterations * trl_trainer.args.steps_per_generation,
        )
        return self.density_sampler

    # NOTE [ checkpoints ]: the trainer replays the interrupted pass itself (set_epoch, then
    # skip_first_batches), so a resume is exact as long as the pass draws from the weights
    # it started with. Those (and any refreshed ones) go into each checkpoint beside the RNG
    # state, and come back before the first batch: `_load_optimizer_and_scheduler` is the
    # hook that runs after the data loader is built and before it is iterated.

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        if self.density_sampler is not None and self.args.should_save:
            with atomic_path(os.path.join(output_dir, SAMPLER_STATE_NAME)) as temporary:
                torch.save(self.density_sampler.state_dict(), temporary)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or self.density_sampler is None:
            return
        path = os.path.join(checkpoint, SAMPLER_STATE_NAME)
        # Read like every katdensity file: a damaged one is an InvalidInputError naming it.
        state = (
            read_torch_file(Path(path), ("version", "sampler"), "the density trainer")
            if os.path.isfile(path)
            else None
        )
        state = from_rank_zero(state)
        if state is None:
            logger.warning(
                "%s has no %s: the resumed run draws from the weights the trainer was built "
                "with, which may not be those of the interrupted run",
                checkpoint,
                SAMPLER_STATE_NAME,
            )
            return
        self.density_sampler.load_state_dict(state)

    def add_callback(self, callback: Any) -> None:
        super().add_callback(callback)
        for added in self.callback_handler.callbacks:
            _bind(added, self)


class DensityGRPOTrainer(_DensitySampling, GRPOTrainer):
    """TRL's `GRPOTrainer`, its prompts drawn with probabilities from katdensity.

    Takes every argument `GRPOTrainer` takes, plus the keyword-only ones below. The prompt
    order keeps TRL's structure exactly (see the module docstring); each pass over the
    sampler draws `density_num_samples` prompts with replacement, seeded by
    `args.seed + epoch`, the same on every rank. Checkpoints hold the sampler's state
    (`katdensity_sampler.pt`), so `train(resume_from_checkpoint=...)` continues with the
    same prompts, even after
    [`DensityRefreshCallback`][katdensity.integrations.trl.DensityRefreshCallback] changed
    the weights.

    Args:
        *args: `GRPOTrainer`'s positional arguments.
        density_weights: where the weights come from: `"policy"` computes them when the
            trainer is built (see `compute_density_weights`); a path (`str` or
            `os.PathLike`) reads a `katdensity weights` file and matches its ids to
            `train_dataset[id_column]`; a tensor, array or sequence gives one
            non-negative weight per dataset row. Every rank uses rank 0's weights.
        id_column: the dataset column holding the ids of the weights file. Ids are
            compared as text (integer ids match their decimal string).
        density_num_samples: prompts drawn per pass over the sampler (an "epoch" to the
            trainer); default the dataset's size. Smaller passes let refreshed weights apply
            sooner.
        density_embedder: any [`Embedder`][katdensity.Embedder] for the policy route and
            the refresh callback; default a `HiddenStateEmbedder` over the policy (mean of
            the last hidden layer).
        density_estimator: any [`DensityEstimator`][katdensity.DensityEstimator]; default
            `ExactKNNDensity()`.
        density_weighting: any [`Weighting`][katdensity.Weighting]; default
            `InverseDensityWeighting()`.
        **kwargs: `GRPOTrainer`'s keyword arguments.

    Attributes:
        density_weights: `(N,)` float64 probabilities the sampler starts from, the same on
            every rank.
        density_sampler: the sampler of the current `train()` (`None` before), a
            [`DensityRepeatSampler`][katdensity.integrations.trl.DensityRepeatSampler];
            its `weights` are those of the next pass.

    Raises:
        InvalidInputError: a train dataset that is not a map-style `datasets.Dataset`,
            `shuffle_dataset=False`, weights not one per row, or a weights file whose ids
            do not match the dataset's (missing, extra or repeated).

    Example:
        ```python
        from katdensity.integrations.trl import DensityGRPOTrainer

        trainer = DensityGRPOTrainer(
            model=model, reward_funcs=reward, args=GRPOConfig(...), train_dataset=dataset,
            density_weights="weights.pt",   # or "policy", or a tensor of N weights
        )
        trainer.train()
        ```
    """


class DensityRLOOTrainer(_DensitySampling, RLOOTrainer):
    """TRL's `RLOOTrainer`, its prompts drawn with probabilities from katdensity.

    `RLOOTrainer` builds its sampler exactly as `GRPOTrainer` does in TRL 1.16 (the same
    `RepeatSampler` arguments and data loader), so this class takes the same extra
    arguments and behaves the same way: see
    [`DensityGRPOTrainer`][katdensity.integrations.trl.DensityGRPOTrainer].
    """


class DensityRefreshCallback(TrainerCallback):
    """Recomputes the weights from the current policy every `every_n_steps` optimiser steps.

    After step `s` with `s % every_n_steps == 0` it calls the trainer's
    `compute_density_weights()` (on every rank, which share the work) and hands the result
    to the sampler's `update_weights`: the pass over the prompts in progress finishes with
    the draw it started with, and the next pass draws from the new weights. Set the
    trainer's `density_num_samples` to make passes short enough for that to matter.

    Use it with [`DensityGRPOTrainer`][katdensity.integrations.trl.DensityGRPOTrainer] or
    [`DensityRLOOTrainer`][katdensity.integrations.trl.DensityRLOOTrainer], in
    `callbacks=[...]` or through `add_callback`: the trainer binds itself to it.

    Args:
        every_n_steps: optimiser steps between refreshes.

    Example:
        ```python
        trainer = DensityGRPOTrainer(..., density_weights="policy",
                                     callbacks=[DensityRefreshCallback(every_n_steps=100)])
        ```
    """

    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = check_int("every_n_steps", every_n_steps, low=1)
        self.trainer: _DensitySampling | None = None

    def on_train_begin(
        self,
        args: _TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if self.trainer is None:
            raise InvalidInputError(
                "DensityRefreshCallback should be used with DensityGRPOTrainer or "
                "DensityRLOOTrainer, but no such trainer holds it"
            )

    def on_step_end(
        self,
        args: _TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        trainer = self.trainer
        if trainer is None or trainer.density_sampler is None:
            return
        if state.global_step % self.every_n_steps == 0:
            trainer.density_sampler.update_weights(trainer.compute_density_weights())
            logger.info("step %d: new density weights, drawn from the next pass", state.global_step)


def _bind(callback: Any, trainer: _DensitySampling) -> None:
    if isinstance(callback, DensityRefreshCallback):
        callback.trainer = trainer
