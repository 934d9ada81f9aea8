"""Learnability in verl's trainers: each completion's reward, back to its prompt's row.

`LearnabilityFeed` holds a [`LearnabilityTracker`][katdensity.LearnabilityTracker] over
the rows of verl's training dataset, turns the rewards of one training batch into the
tracker's update, and gives the sampler its next weights (density times learnability).
`hook_trainers` wraps the places of verl's two PPO/GRPO trainers where a training batch's
rewards are known:

- the v1 trainer (`trainer.use_v1=true`, the default; every `trainer.v1.trainer_mode`):
  `PPOTrainer._compute_advantage(batch, metrics)` in `verl/trainer/ppo/v1/trainer_base.py`.
  The batch is a list of TransferQueue keys `{uid}_{session}_{output}`; each trajectory
  holds the prompt's dataset fields (`index` among them, from `extra_info.index`) and its
  `rm_scores`. The metrics go into the `metrics` dict verl logs.
- the legacy `RayPPOTrainer` (`trainer.use_v1=false`): the module function
  `compute_advantage(batch, ...)` of `verl/trainer/ppo/ray_trainer.py`, which `fit` calls
  once per training step with the whole batch (`non_tensor_batch["extra_info"]`, `["uid"]`,
  `token_level_scores`), before the step's checkpoint. It is fed only inside
  `RayPPOTrainer.fit` (wrapped to say which trainer is fitting), never from validation or
  another trainer that imported the function; `compute_data_metrics`, which `fit` calls
  once per step, carries the metrics into verl's log; `_load_checkpoint` restores the
  tracker where verl skips the dataloader's state (a checkpoint at an epoch boundary).

The sampler is found as `trainer.train_dataloader.sampler`: the trainer builds it and runs
its fit loop in one process, verl's `TaskRunner` actor.

Nothing here imports verl at module level.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from katdensity._groups import first_occurrence
from katdensity._optional import require
from katdensity._validate import check_int, check_real
from katdensity.density.result import DensityResult
from katdensity.errors import InvalidInputError
from katdensity.integrations._weights import copy_groups, epoch_half_life, learn_from_batch
from katdensity.io import Prompt, read_torch_file
from katdensity.learnability import LearnabilityTracker, LearnabilityWeighting
from katdensity.sampler import InverseDensitySampler
from katdensity.weights import effective_sample_size

__all__ = [
    "LEARNABILITY_KEY",
    "LearnabilityFeed",
    "checked_reward_range",
    "hook_trainers",
    "learning_batch_size",
]

logger = logging.getLogger("katdensity.integrations.verl")

LEARNABILITY_KEY = "katdensity_learnability"
"""The key of the sampler's `state_dict()` that holds the learnability state."""

_METRIC_PREFIX = "katdensity/"
# Training batches drawn with no reward in that make the feed warn: the v1 trainer's async
# modes draw a warm-up batch and a step's batch before the first rewards come.
_UNFED_BATCHES = 3
_WRAPPED = "__katdensity_wraps__"  # set on each wrapper: the function it wraps
# The RayPPOTrainer whose fit() is running, so the module functions it calls know it.
_FITTING: contextvars.ContextVar[Any] = contextvars.ContextVar("katdensity_verl_fitting")


class LearnabilityFeed:
    """Rewards of verl's training batches in, sampling weights out.

    Args:
        prompts: the dataset's rows, as
            [`dataset_prompts`][katdensity.integrations.verl.dataset_prompts] gives them;
            each needs its own `extra_info.index`, which verl puts in every batch as
            `index` (a row number it is not: verl filters and subsamples rows).
        base: `(N,)` float64 density probabilities, row `i` for dataset row `i`.
        density: the density estimate `base` was computed from: copies share a posterior
            and near neighbours lend evidence. `None` (a weights file): exact copies of a
            prompt's text share one.
        modes: `(N,)` the mode labels of `base`'s weights, split by outcome; with
            `density` only.
        reward_range: `(low, high)` of a completion's reward.
        batch_size: prompts per training batch (`data.train_batch_size`).
        half_life: training batches after which evidence counts half; `None`: one epoch's
            batches, distinct prompts / `batch_size`, as the TRL integration's default.
        strength: exponent of the learnability factor (0: density alone); `None`:
            `LearnabilityWeighting`'s default.

    Attributes:
        tracker: the [`LearnabilityTracker`][katdensity.LearnabilityTracker].
        weighting: the [`LearnabilityWeighting`][katdensity.LearnabilityWeighting] over it.
        pending_metrics: what the latest batch of the legacy trainer showed, until its
            log takes it.

    Raises:
        InvalidInputError: a row without `extra_info.index`, or two rows with the same one.
    """

    def __init__(
        self,
        prompts: Sequence[Prompt],
        base: torch.Tensor,
        *,
        density: DensityResult | None,
        modes: torch.Tensor | None,
        reward_range: tuple[float, float],
        batch_size: int,
        half_life: float | None,
        strength: float | None,
    ) -> None:
        self._rows = _rows_by_index(prompts)
        # Copies share one posterior: the density's, else exact repeats of a prompt's text.
        if density is not None:
            groups, labels = None, density.distinct_index
        else:
            groups = labels = copy_groups([prompt.text for prompt in prompts])
        if half_life is None:
            half_life = epoch_half_life(int(labels.max()) + 1, batch_size)
        self.tracker = LearnabilityTracker(
            len(prompts),
            density=density,
            groups=groups,
            reward_range=reward_range,
            half_life=half_life,
        )
        self.weighting = (
            LearnabilityWeighting(self.tracker)
            if strength is None
            else LearnabilityWeighting(self.tracker, strength=strength)
        )
        self.base = base
        self.modes = modes
        tracker = self.tracker
        self._distinct_rows = first_occurrence(tracker.distinct_index, tracker.num_distinct)
        self.pending_metrics: dict[str, float] = {}
        self._batch_size = batch_size
        self._drawn = 0  # prompts drawn in this process
        logger.info(
            "learnability: a tracker over %d distinct prompts, fed by the rewards of every "
            "training batch (evidence halves every %.3g batches); each batch of %d prompts "
            "is drawn by the weights the batches before it left",
            tracker.num_distinct, tracker.half_life, batch_size,
        )  # fmt: skip

    def note_drawn(self) -> None:
        """Count one prompt drawn; warn, once, when batches come and rewards do not.

        Only the trainers `hook_trainers` wraps feed the tracker: under another (verl's
        experimental fully-async or one-step-off-policy mains), the batches would be drawn
        by density alone.
        """
        self._drawn += 1
        if self._drawn == _UNFED_BATCHES * self._batch_size + 1 and self.tracker.updates == 0:
            logger.warning(
                "data.density.learnability: %d training batches were drawn and no rewards "
                "have reached the tracker; only the trainers of verl.trainer.main_ppo feed it "
                "(the v1 trainer and the legacy RayPPOTrainer), and until they do, batches "
                "are drawn by density alone",
                _UNFED_BATCHES,
            )

    def weights(self) -> torch.Tensor:
        """`(N,)` float64: the density weights times learnability, from the evidence so far."""
        weighting = self.weighting
        return weighting.combine(self.base, modes=self.modes, min_ess_ratio=weighting.min_ess_ratio)

    def rows(self, indices: Iterable[Any]) -> torch.Tensor:
        """`(B,)` int64: the dataset row of each batch entry's `index` (`extra_info.index`).

        Raises:
            InvalidInputError: an index no row of the dataset has.
        """
        found = []
        for index in indices:
            row = self._rows.get(str(index))
            if row is None:
                raise InvalidInputError(
                    f"data.density.learnability should find each completion's prompt by its "
                    f"index (extra_info.index), but no row of the training dataset has "
                    f"index={index!r}; train on the data.train_files the sampler was built "
                    "from, with the extra_info verl's RLHFDataset reads"
                )
            found.append(row)
        return torch.tensor(found, dtype=torch.int64)

    def feed(
        self,
        sampler: InverseDensitySampler,
        indices: Sequence[Any],
        groups: Sequence[Any],
        rewards: torch.Tensor,
    ) -> dict[str, float]:
        """One training batch into the tracker; the sampler's next chunk draws by the result.

        Args:
            sampler: gets the new weights (`update_weights`: from its next chunk).
            indices: `(B,)` each completion's `index` (its prompt's `extra_info.index`).
            groups: `(B,)` each completion's prompt group (verl's `uid`): a prompt drawn
                twice in one batch makes two groups.
            rewards: `(B,)` each completion's reward (before any KL penalty), NaN for one
                without a score.

        Returns:
            `katdensity/...` metrics: those of `learn_from_batch` (the TRL integration's)
            and `katdensity/distinct_ess` of the new weights.

        Raises:
            InvalidInputError: lengths that differ, an unknown index, or a reward outside
                `data.density.reward_range`.
        """
        rewards = rewards.detach().to("cpu", torch.float64).flatten()
        if not len(indices) == len(groups) == rewards.numel():
            raise InvalidInputError(
                f"a training batch should give one index, group and reward per completion, "
                f"but gave {len(indices)} indices, {len(groups)} groups and "
                f"{rewards.numel()} rewards"
            )
        if not groups:
            return {}
        rows = self.rows(indices)
        scored = rewards[~torch.isnan(rewards)]
        low, high = self.tracker.reward_range
        if scored.numel() and (float(scored.min()) < low or float(scored.max()) > high):
            raise InvalidInputError(
                f"the rewards should lie in data.density.reward_range [{low}, {high}], but "
                f"range from {float(scored.min())} to {float(scored.max())}; set "
                "+data.density.reward_range=[low,high] to the range of your reward function"
            )
        rows, rewards, group_size = _by_group(rows, groups, rewards)
        metrics = learn_from_batch(
            self.tracker, rows, rewards, group_size=group_size, distinct_rows=self._distinct_rows
        )
        weights = self.weights()
        sampler.update_weights(weights)
        metrics["distinct_ess"] = effective_sample_size(weights, self.tracker.distinct_index)
        logger.info(
            "learnability, batch %d (%d groups of %d): zero-variance groups predicted %.2f, "
            "observed %.2f; prompts seen %.2f, of them failed %.2f, learnable %.2f, solved "
            "%.2f; next weights: distinct ESS %.0f of %d",
            self.tracker.updates, rows.numel() // group_size, group_size,
            metrics["zero_variance_predicted"], metrics["zero_variance_observed"],
            metrics["prompts_seen"], metrics["pass_rate_failed"],
            metrics["pass_rate_learnable"], metrics["pass_rate_solved"],
            metrics["distinct_ess"], self.tracker.num_distinct,
        )  # fmt: skip
        return {_METRIC_PREFIX + name: value for name, value in metrics.items()}

    def state_dict(self) -> dict[str, Any]:
        """The tracker's evidence and the density weights it multiplies (plain tensors)."""
        return {"tracker": self.tracker.state_dict(), "base": self.base.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> bool:
        """Restore a `state_dict()`; `True` when it was saved over these density weights.

        Raises:
            InvalidInputError: a state of other learnability settings or another dataset.
        """
        if not isinstance(state, Mapping) or "tracker" not in state:
            raise InvalidInputError(
                f"the checkpoint's {LEARNABILITY_KEY} should hold the tracker's state, but "
                f"got {type(state).__name__}"
            )
        try:
            self.tracker.load_state_dict(state["tracker"])
        except InvalidInputError as error:
            raise InvalidInputError(
                f"the checkpoint's learnability state does not fit this run ({error}); keep "
                "data.density and the training data as they were when it was written"
            ) from None
        base = state.get("base")
        return isinstance(base, torch.Tensor) and torch.equal(base, self.base)


def checked_reward_range(value: Any) -> tuple[float, float]:
    """`data.density.reward_range` (a list, or Hydra's ListConfig) as `(low, high)` floats.

    Raises:
        InvalidInputError: not two finite numbers with `low < high`.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise InvalidInputError(
            f"data.density.reward_range should be [low, high], but got reward_range={value!r}"
        )
    low = check_real("data.density.reward_range[0]", value[0])
    high = check_real("data.density.reward_range[1]", value[1])
    if not low < high:
        raise InvalidInputError(
            f"data.density.reward_range should be [low, high] with low < high, but got "
            f"reward_range=[{low}, {high}]"
        )
    return low, high


def learning_batch_size(data_config: Mapping[str, Any]) -> int:
    """The prompts of one training batch (`data.train_batch_size`): a chunk of the sampler.

    Raises:
        InvalidInputError: dataloader workers, or no `data.train_batch_size`.
    """
    workers = data_config.get("dataloader_num_workers") or 0
    if workers:
        # NOTE [ No workers with learnability ]: with workers, torchdata's dataloader draws
        # batches ahead of training and checkpoints the sampler as it was when it drew the
        # last batch trained, so a resumed run would lack the rewards of the batches in
        # between and draw with other weights.
        raise InvalidInputError(
            "data.density.learnability needs data.dataloader_num_workers=0 (verl's dataset "
            "reads a row without tokenising it, so workers save little), but got "
            f"dataloader_num_workers={workers}: with workers, the dataloader draws prompts "
            "before the rewards that should weigh them are in"
        )
    return check_int("data.train_batch_size", data_config.get("train_batch_size"), low=1)


def _rows_by_index(prompts: Sequence[Prompt]) -> dict[str, int]:
    """Each row's `extra_info.index` as text, to its row."""
    rows: dict[str, int] = {}
    fix = "give every row of data.train_files its own extra_info.index"
    for row, prompt in enumerate(prompts):
        extra = prompt.record.get("extra_info")
        index = extra.get("index") if isinstance(extra, Mapping) else None
        if index is None:
            raise InvalidInputError(
                f"data.density.learnability should find each completion's prompt by its "
                f"extra_info.index (verl passes it on as index), but row {row} has none; {fix}"
            )
        first = rows.setdefault(str(index), row)
        if first != row:
            raise InvalidInputError(
                f"data.density.learnability should find each completion's prompt by its "
                f"extra_info.index, but rows {first} and {row} both have index={index!r}; {fix}"
            )
    return rows


def _by_group(
    rows: torch.Tensor, groups: Sequence[Any], rewards: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`(rows, rewards, G)`: each group's completions in a row, padded to the largest group
    `G` with NaN rewards (a failed rollout, say), so every group takes `G` places.

    verl reorders a batch to balance sequence lengths across ranks, so a group's
    completions need not be next to each other.
    """
    members: dict[Any, list[int]] = {}
    for position, group in enumerate(groups):
        members.setdefault(group, []).append(position)
    size = max(len(positions) for positions in members.values())
    listed_rows, listed_rewards = rows.tolist(), rewards.tolist()
    out_rows: list[int] = []
    out_rewards: list[float] = []
    for positions in members.values():
        padding = size - len(positions)
        out_rows += [listed_rows[p] for p in positions] + [listed_rows[positions[0]]] * padding
        out_rewards += [listed_rewards[p] for p in positions] + [float("nan")] * padding
    return torch.tensor(out_rows), torch.tensor(out_rewards, dtype=torch.float64), size


# ---------------------------------------------------------------------------------------
# Where verl's trainers know a training batch's rewards.


def hook_trainers() -> None:
    """Wrap, once per process, the places of verl's trainers that feed learnability.

    Imports verl's two trainer modules (a trainer whose module cannot import is not the one
    running) and wraps the functions the module's docstring names. Calling it again does
    nothing.

    Raises:
        InvalidInputError: a verl whose trainers lack one of those functions.
    """
    for module_name, targets in _HOOKS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for owner_name, attribute, make in targets:
            owner = module if owner_name is None else getattr(module, owner_name, None)
            original = None if owner is None else vars(owner).get(attribute)
            if not callable(original):
                where = ".".join(filter(None, [module_name, owner_name, attribute]))
                raise InvalidInputError(
                    f"data.density.learnability should find verl 0.9's {where}, but this verl "
                    "has none; install verl 0.9, or drop data.density.learnability"
                )
            if getattr(original, _WRAPPED, None) is not None:
                continue
            wrapper = functools.wraps(original)(make(original))
            setattr(wrapper, _WRAPPED, original)
            setattr(owner, attribute, wrapper)


def _feed_of(trainer: Any) -> tuple[LearnabilityFeed, InverseDensitySampler] | None:
    """The feed and sampler of `trainer`'s train dataloader, if it learns."""
    sampler = getattr(getattr(trainer, "train_dataloader", None), "sampler", None)
    feed = getattr(sampler, "learner", None)
    if isinstance(feed, LearnabilityFeed) and isinstance(sampler, InverseDensitySampler):
        return feed, sampler
    return None


def _v1_compute_advantage(original: Callable[..., Any]) -> Callable[..., Any]:
    def compute_advantage(self: Any, batch: Any, metrics: dict[str, Any]) -> Any:
        found = _feed_of(self)
        if found is not None and getattr(
            getattr(self, "replay_buffer", None), "filter_groups_metric", None
        ):
            raise InvalidInputError(
                "data.density.learnability learns from the rewards of every group, but "
                "algorithm.filter_groups drops the groups whose rewards are all equal before "
                "verl computes advantages; turn one of them off"
            )
        result = original(self, batch, metrics=metrics)
        if found is not None:
            feed, sampler = found
            metrics.update(feed.feed(sampler, *_v1_batch(batch)))
        return result

    return compute_advantage


def _v1_batch(batch: Any) -> tuple[list[Any], list[str], torch.Tensor]:
    """`(indices, groups, rewards)` of a v1 training batch (a TransferQueue `KVBatchMeta`).

    A key is `{uid}_{session}_{output}`: a multi-turn session may put several outputs, all
    with the session's reward, so each session counts once, by its last output. verl's
    padding samples (tagged `is_padding`) count not at all.
    """
    tq = require("transfer_queue", extra="verl", purpose="verl's v1 trainer")
    last: dict[str, tuple[int, str]] = {}
    for key, tag in zip(batch.keys, batch.tags, strict=True):
        if tag.get("is_padding", False):
            continue
        session, _, output = key.rpartition("_")
        if session not in last or last[session][0] < int(output):
            last[session] = (int(output), key)
    keys = [key for _, key in last.values()]
    fields = ["index", "rm_scores"]
    try:
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=fields)
        indices, scores = _plain(data["index"]), data["rm_scores"]
    except (KeyError, ValueError, RuntimeError) as error:
        raise InvalidInputError(
            "data.density.learnability reads each trajectory's index and rm_scores from "
            f"TransferQueue, but could not ({error!r}); use verl's agent loop, which stores "
            "the dataset's fields with each trajectory"
        ) from None
    rewards = torch.tensor([float(score.sum()) for score in scores])
    return indices, [key.split("_")[0] for key in keys], rewards


def _plain(values: Any) -> list[Any]:
    """A TransferQueue field as Python values: a tensor's numbers, or the items' data."""
    if isinstance(values, torch.Tensor) and not values.is_nested:
        return list(values.tolist())
    return [getattr(value, "data", value) for value in values]


def _legacy_fit(original: Callable[..., Any]) -> Callable[..., Any]:
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = _FITTING.set(self)
        try:
            return original(self, *args, **kwargs)
        finally:
            _FITTING.reset(token)

    return fit


def _legacy_compute_advantage(original: Callable[..., Any]) -> Callable[..., Any]:
    def compute_advantage(data: Any, *args: Any, **kwargs: Any) -> Any:
        found = _feed_of(_FITTING.get(None))
        if found is not None:
            feed, sampler = found
            non_tensor = data.non_tensor_batch
            if "extra_info" not in non_tensor or "uid" not in non_tensor:
                raise InvalidInputError(
                    "data.density.learnability reads each completion's extra_info and uid from "
                    f"the training batch, but this batch has {sorted(non_tensor)}; use verl's "
                    "RLHFDataset"
                )
            # `index` leaves the batch with the prompts sent to generation; `extra_info`
            # stays for the reward function, and holds the index `index` was read from.
            indices = [_extra_index(extra) for extra in non_tensor["extra_info"]]
            rewards = data.batch["token_level_scores"].sum(dim=-1)
            feed.pending_metrics = feed.feed(sampler, indices, list(non_tensor["uid"]), rewards)
        return original(data, *args, **kwargs)

    return compute_advantage


def _extra_index(extra: Any) -> Any:
    return extra.get("index") if isinstance(extra, Mapping) else None


def _legacy_data_metrics(original: Callable[..., Any]) -> Callable[..., Any]:
    def compute_data_metrics(*args: Any, **kwargs: Any) -> Any:
        metrics = original(*args, **kwargs)
        found = _feed_of(_FITTING.get(None))
        if found is not None and isinstance(metrics, dict):
            feed = found[0]
            metrics.update(feed.pending_metrics)
            feed.pending_metrics = {}
        return metrics

    return compute_data_metrics


def _legacy_load_checkpoint(original: Callable[..., Any]) -> Callable[..., Any]:
    # NOTE [ epoch boundary ]: RayPPOTrainer does not restore the dataloader from a
    # checkpoint written at the end of an epoch (its state says "exhausted"), so the
    # sampler, and the tracker riding in its state, would start afresh. Where verl does
    # restore it, the sampler loads the same tracker state again when the dataloader is
    # next iterated: reading it here is harmless either way.
    def load_checkpoint(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        found = _feed_of(self)
        if found is not None and getattr(self, "global_steps", 0) > 0:
            path = _checkpoint_folder(self.config.trainer, self.global_steps) / "data.pt"
            if not path.is_file():  # verl has said so, and starts the dataloader afresh
                return result
            saved = _find_learnability(read_torch_file(path, (), "verl's trainer"))
            feed, sampler = found
            if saved is None:
                logger.warning(
                    "%s holds no learnability state: the tracker starts without evidence", path
                )
            else:
                feed.load_state_dict(saved)
                sampler.update_weights(feed.weights())
        return result

    return load_checkpoint


def _checkpoint_folder(trainer_config: Any, global_steps: int) -> Path:
    """The checkpoint folder `RayPPOTrainer._load_checkpoint` resumed from."""
    if trainer_config.resume_mode == "resume_path":
        folder = str(trainer_config.resume_from_path)
    else:
        folder = os.path.join(str(trainer_config.default_local_dir), f"global_step_{global_steps}")
    return Path(os.path.abspath(folder))


def _find_learnability(state: Any) -> Any:
    """The learnability state inside a dataloader's `state_dict()`, wherever torchdata put
    the sampler's; `None` without one."""
    if isinstance(state, Mapping):
        if LEARNABILITY_KEY in state:
            return state[LEARNABILITY_KEY]
        children: Iterable[Any] = state.values()
    elif isinstance(state, (list, tuple)):
        children = state
    else:
        return None
    for child in children:
        found = _find_learnability(child)
        if found is not None:
            return found
    return None


_Hook = tuple[str | None, str, Callable[[Callable[..., Any]], Callable[..., Any]]]
_HOOKS: dict[str, list[_Hook]] = {
    "verl.trainer.ppo.ray_trainer": [
        ("RayPPOTrainer", "fit", _legacy_fit),
        ("RayPPOTrainer", "_load_checkpoint", _legacy_load_checkpoint),
        (None, "compute_advantage", _legacy_compute_advantage),
        (None, "compute_data_metrics", _legacy_data_metrics),
    ],
    "verl.trainer.ppo.v1.trainer_base": [
        ("PPOTrainer", "_compute_advantage", _v1_compute_advantage),
    ],
}
