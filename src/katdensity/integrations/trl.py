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
the weights from the current policy during training. With `learnability=`, the trainers
also learn each prompt's pass rate from the rewards of every generation batch (a
[`LearnabilityTracker`][katdensity.LearnabilityTracker]) and draw each next chunk of prompts
by rarity times learnability ([`LearnabilityWeighting`][katdensity.LearnabilityWeighting]).

Importing this module without TRL raises
[`MissingDependencyError`][katdensity.MissingDependencyError].
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import torch
from torch.utils.data import Sampler

from katdensity._atomic import atomic_path
from katdensity._distributed import process_group
from katdensity._groups import first_occurrence
from katdensity._optional import require
from katdensity._validate import check_int
from katdensity.density.result import DensityEstimator, DensityResult
from katdensity.embedders.base import Embedder
from katdensity.errors import InvalidInputError
from katdensity.integrations._repeat_sampler import DensityRepeatSampler
from katdensity.integrations._weights import (
    copy_groups,
    epoch_half_life,
    from_rank_zero,
    learn_from_batch,
    prompt_texts,
    row_weights,
    weights_for_ids,
)
from katdensity.io import read_torch_file
from katdensity.learnability import LearnabilityTracker, LearnabilityWeighting
from katdensity.sampler import InverseDensitySampler
from katdensity.weights import InverseDensityWeighting, Weighting, effective_sample_size

# The trainers load transformers' Trainer with them, so once they import, so does the rest.
require("trl.trainer.grpo_trainer", extra="trl", purpose="katdensity.integrations.trl")
require("trl.trainer.rloo_trainer", extra="trl", purpose="katdensity.integrations.trl")

from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState  # noqa: E402
from transformers import TrainingArguments as _TrainingArguments  # noqa: E402
from trl.trainer.grpo_trainer import GRPOTrainer  # noqa: E402
from trl.trainer.rloo_trainer import RLOOTrainer  # noqa: E402

__all__ = [
    "ROW_COLUMN",
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

ROW_COLUMN = "katdensity_row"
"""The column added to the train dataset with `learnability=`: each row's number, so every
completion's reward reaches the tracker with its dataset row. It is taken out of each batch
before TRL sees it: reward functions and environments never get it."""

DensityWeights: TypeAlias = (
    Literal["policy"] | str | os.PathLike[str] | torch.Tensor | np.ndarray | Sequence[float]
)
"""`"policy"`, a weights file path, or one weight per dataset row."""

if TYPE_CHECKING:
    _TrainerBase = Trainer
else:
    _TrainerBase = object


class _DensitySampling(_TrainerBase):
    """What `DensityGRPOTrainer` and `DensityRLOOTrainer` add to TRL's trainer.

    They share `_get_train_sampler`'s contract in TRL 1.16: `num_generations`,
    `num_iterations`, `shuffle_dataset` and `args.generation_batch_size` /
    `steps_per_generation` / `seed` mean the same in both, and so do `_calculate_rewards`
    (each completion's reward per function, gathered from every rank) and `reward_weights`.
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
        learnability: bool | LearnabilityTracker = False,
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
        if not isinstance(learnability, (bool, LearnabilityTracker)):
            raise InvalidInputError(
                "learnability should be True, False or a LearnabilityTracker, but got "
                f"{type(learnability).__name__}"
            )
        self.id_column = id_column
        self.density_num_samples = density_num_samples
        self.density_embedder = density_embedder
        self.density_estimator = density_estimator
        self.density_weighting = density_weighting
        self.density_sampler: DensityRepeatSampler | None = None
        self.density_result: DensityResult | None = None
        self.learnability_tracker: LearnabilityTracker | None = None
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
        self._density_base = self.density_weights  # what learnability multiplies
        if learnability is not False:
            self._start_learnability(learnability)
        self._batch_rows: list[int] | None = None
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
        [`InverseDensityWeighting`][katdensity.InverseDensityWeighting]`()`). The density
        is kept in `density_result`. Every rank must call it; all return rank 0's result.

        Returns:
            `(N,)` float64 probabilities, row `i` for dataset row `i`.
        """
        from katdensity.density.exact import ExactKNNDensity
        from katdensity.embedders.distributed import embed_distributed
        from katdensity.embedders.hidden_state import HiddenStateEmbedder

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
        self.density_result = result
        weights = from_rank_zero((self.density_weighting or InverseDensityWeighting())(result))
        groups = result.distinct_index
        logger.info(
            "density weights from the policy: ESS %.0f of %d distinct prompts",
            effective_sample_size(weights, groups),
            int(groups.max()) + 1,
        )
        return weights

    # NOTE [ learnability ]: each completion's dataset row travels with it as ROW_COLUMN,
    # taken out of the batch before TRL sees it. TRL's `_calculate_rewards` returns every
    # completion's rewards gathered from all ranks in rank order, before any group is
    # normalised or filtered; the rows are gathered in the same order, so every rank feeds
    # its tracker the same batch, zero-variance groups included. Rank 0's new weights go
    # to every rank's sampler, which draws each chunk from the weights current when the
    # data loader reads the chunk's first prompt: accelerate's sharded batch sampler makes
    # every rank read a global batch whole before any rank yields it, so every rank reads
    # each chunk between the same two updates; `_learn` checks it.

    def _start_learnability(self, learnability: bool | LearnabilityTracker) -> None:
        dataset: Any = self.train_dataset
        rows = len(dataset)
        if isinstance(learnability, LearnabilityTracker):
            if learnability.num_prompts != rows:
                raise InvalidInputError(
                    f"learnability should track the {rows} rows of train_dataset, but the "
                    f"tracker has num_prompts={learnability.num_prompts}"
                )
            tracker = learnability
        else:
            # Copies share one posterior: the density result's, else exact repeats.
            trl_trainer: Any = self
            result = self.density_result
            groups = None if result is not None else copy_groups(dataset["prompt"])
            labels = result.distinct_index if result is not None else groups
            assert labels is not None
            per_update = trl_trainer.args.generation_batch_size // trl_trainer.num_generations
            tracker = LearnabilityTracker(
                rows,
                density=result,
                groups=groups,
                half_life=epoch_half_life(int(labels.max()) + 1, per_update),
            )
        if ROW_COLUMN in dataset.column_names:
            raise InvalidInputError(
                f"train_dataset should not have a column {ROW_COLUMN!r}: the trainer adds it "
                f"with learnability=; remove it (dataset.remove_columns({ROW_COLUMN!r}))"
            )
        self.train_dataset = dataset.add_column(ROW_COLUMN, np.arange(rows, dtype=np.int64))
        self.learnability_tracker = tracker
        weighting = self.density_weighting
        self._learnability_weighting = LearnabilityWeighting(
            tracker, density=weighting if isinstance(weighting, InverseDensityWeighting) else None
        )
        self._distinct_rows = first_occurrence(tracker.distinct_index, tracker.num_distinct)

    def _learned_weights(self) -> torch.Tensor:
        """Density times learnability from the evidence so far: rank 0's, on every rank."""
        weighting = self._learnability_weighting
        if process_group()[1] != 0:
            return from_rank_zero(torch.empty(0))
        result = self.density_result
        if result is not None and (
            self.density_weighting is None
            or isinstance(self.density_weighting, InverseDensityWeighting)
        ):
            weights = weighting(result)
        else:
            # Given weights come without modes; the combined weights keep the floor.
            weights = weighting.combine(self._density_base, min_ess_ratio=weighting.min_ess_ratio)
        return from_rank_zero(weights)

    def _refreshed_weights(self) -> torch.Tensor:
        """New density weights from the policy, times learnability when it is on."""
        weights = self.compute_density_weights()
        if self.learnability_tracker is None:
            return weights
        self._density_base = weights
        return self._learned_weights()

    def _set_signature_columns_if_needed(self) -> None:
        parent: Any = super()
        parent._set_signature_columns_if_needed()
        columns: list[str] | None = self._signature_columns
        if self.learnability_tracker is not None and columns and ROW_COLUMN not in columns:
            columns.append(ROW_COLUMN)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._batch_rows = None
        if self.learnability_tracker is not None:
            rows = [example.pop(ROW_COLUMN, None) for example in inputs]
            trl_trainer: Any = self
            if trl_trainer.model.training and None not in rows:
                self._batch_rows = rows
        parent: Any = super()
        return parent._generate_and_score_completions(inputs)  # type: ignore[no-any-return]

    def _calculate_rewards(
        self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any
    ) -> torch.Tensor:
        parent: Any = super()
        rewards_per_func: torch.Tensor = parent._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        rows, self._batch_rows = self._batch_rows, None
        if rows is not None:
            device = rewards_per_func.device
            gathered = self.accelerator.gather(torch.tensor(rows, device=device))
            self._learn(gathered, rewards_per_func)
        return rewards_per_func

    def _learn(self, rows: torch.Tensor, rewards_per_func: torch.Tensor) -> None:
        """One generation batch of every rank into the tracker, the sampler and the log."""
        tracker, sampler = self.learnability_tracker, self.density_sampler
        if tracker is None or sampler is None:  # a data loader not built by this trainer
            return
        trl_trainer: Any = self
        # The reward TRL normalises: the functions times reward_weights, NaN if none scored.
        reward_weights = trl_trainer.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * reward_weights.unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        metrics = learn_from_batch(
            tracker,
            rows.to("cpu", torch.int64),
            rewards.to("cpu"),
            group_size=trl_trainer.num_generations,
            distinct_rows=self._distinct_rows,
        )
        weights = self._learned_weights()
        read = from_rank_zero(sampler.chunks_read)
        if read != sampler.chunks_read:
            raise InvalidInputError(
                f"every rank should have read the same chunks of prompts when the weights "
                f"change, but rank 0 read {read} and this rank {sampler.chunks_read}; give "
                "every rank the same data loader settings"
            )
        sampler.update_weights(weights)
        metrics["distinct_ess"] = effective_sample_size(weights, tracker.distinct_index)
        for name, value in metrics.items():
            trl_trainer._metrics["train"][f"katdensity/{name}"].append(value)

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
        learning = self.learnability_tracker is not None
        sampler = InverseDensitySampler(
            self._learned_weights() if learning else self.density_weights,
            num_samples=num_samples,
            seed=self.args.seed,
            distributed="replicate",
            group_size=generations,
            # One chunk per generation batch, each from the weights current when it is read.
            chunk_size=batch_size if learning else None,
        )
        self.density_sampler = DensityRepeatSampler(
            sampler,
            batch_size=batch_size,
            repeat_count=trl_trainer.num_iterations * trl_trainer.args.steps_per_generation,
        )
        return self.density_sampler

    # NOTE [ checkpoints ]: the trainer replays the interrupted pass itself (set_epoch, then
    # skip_first_batches), so a resume is exact as long as each chunk of the pass is drawn
    # from the weights it was drawn from before. Those (and the learnability tracker) go
    # into each checkpoint beside the RNG state, and come back before the first batch:
    # `_load_optimizer_and_scheduler` is the hook that runs after the data loader is built
    # and before it is iterated.

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        if self.density_sampler is not None and self.args.should_save:
            state = self.density_sampler.state_dict()
            tracker = self.learnability_tracker
            state["learnability"] = None if tracker is None else tracker.state_dict()
            with atomic_path(os.path.join(output_dir, SAMPLER_STATE_NAME)) as temporary:
                torch.save(state, temporary)

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
        tracker, saved = self.learnability_tracker, state.get("learnability")
        if tracker is not None and saved is not None:
            tracker.load_state_dict(saved)
        elif tracker is not None:
            logger.warning(
                "%s holds no learnability state: the tracker keeps the evidence it had",
                path,
            )

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
    (`katdensity_sampler.pt`), and the learnability tracker's, so
    `train(resume_from_checkpoint=...)` continues with the same prompts, even after
    [`DensityRefreshCallback`][katdensity.integrations.trl.DensityRefreshCallback] or
    learnability changed the weights.

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
        learnability: `True` learns each prompt's pass rate from the rewards of every
            generation batch and draws each next chunk of prompts (one generation batch)
            by density times learnability: a
            [`LearnabilityTracker`][katdensity.LearnabilityTracker] over the dataset's rows
            (with `"policy"`, over its density, borrowing along the kNN graph; otherwise
            exact copies of a prompt share one posterior; evidence halves every epoch,
            `half_life` = distinct prompts / prompts per generation batch), weighed by
            [`LearnabilityWeighting`][katdensity.LearnabilityWeighting] (with
            `density_weighting` when it is an `InverseDensityWeighting`); without a
            density (a file, a tensor, another weighting) the weights given are multiplied
            by `(4 * learnability) ** strength` and mixed with an `explore` share of
            themselves. A `LearnabilityTracker` (one prompt per dataset row) is used as
            given: for rewards outside `[0, 1]` (`reward_range=`), a `half_life`, or
            evidence from an earlier run. The reward fed is TRL's: the reward functions
            times `reward_weights`, summed. Default `False`.
        **kwargs: `GRPOTrainer`'s keyword arguments.

    Attributes:
        density_weights: `(N,)` float64 probabilities the sampler starts from, the same on
            every rank.
        density_result: the [`DensityResult`][katdensity.DensityResult] of the latest
            `compute_density_weights()` (the policy route, a refresh); `None` without.
        density_sampler: the sampler of the current `train()` (`None` before), a
            [`DensityRepeatSampler`][katdensity.integrations.trl.DensityRepeatSampler];
            its `weights` are those of the next pass (with learnability, the next chunk).
        learnability_tracker: the tracker with `learnability=`, else `None`. With it, each
            generation batch logs `katdensity/zero_variance_predicted` (before the update)
            and `katdensity/zero_variance_observed`, `katdensity/prompts_seen`, the shares
            of those in each pass-rate band (`katdensity/pass_rate_failed`, `_learnable`,
            `_solved`) and `katdensity/distinct_ess` of the new weights.

    Raises:
        InvalidInputError: a train dataset that is not a map-style `datasets.Dataset`,
            `shuffle_dataset=False`, weights not one per row, a weights file whose ids
            do not match the dataset's (missing, extra or repeated), or a tracker of
            another number of prompts; during training, rewards outside the tracker's
            `reward_range`.

    Example:
        ```python
        from katdensity.integrations.trl import DensityGRPOTrainer

        trainer = DensityGRPOTrainer(
            model=model, reward_funcs=reward, args=GRPOConfig(...), train_dataset=dataset,
            density_weights="weights.pt",   # or "policy", or a tensor of N weights
            learnability=True,              # optional: rare and learnable
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
    trainer's `density_num_samples` to make passes short enough for that to matter. With
    `learnability=`, the new density weights are multiplied by learnability and apply from
    the next chunk of prompts the data loader reads.

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
            trainer.density_sampler.update_weights(trainer._refreshed_weights())
            logger.info("step %d: new density weights, drawn from the next pass", state.global_step)


def _bind(callback: Any, trainer: _DensitySampling) -> None:
    if isinstance(callback, DensityRefreshCallback):
        callback.trainer = trainer
