"""verl's PPO/GRPO trainers with prompts drawn by katdensity (`pip install "katdensity[verl]"`).

verl 0.9 builds the prompt sampler of every trainer with one function,
`verl.trainer.ppo.utils.create_rl_sampler(data_config, dataset)`: the v1 trainer
(`ppo/v1/trainer_base.py`), the legacy `RayPPOTrainer` (`ppo/ray_trainer.py`, also through
`main_ppo_v0.py`'s `train_sampler=`), and the fully-async and one-step-off-policy mains all
call it by name. It returns torchdata's `RandomSampler` or a `SequentialSampler`; verl has
no setting that names another sampler class (0.5 to 0.7 read `data.sampler.class_path`, and
they need `numpy<2`, which katdensity cannot run with).

[`create_rl_sampler`][katdensity.integrations.verl.create_rl_sampler] has verl's signature:
it returns a [`DensitySampler`][katdensity.integrations.verl.DensitySampler] when the data
config has a `density` section, and verl's own sampler otherwise.
[`install`][katdensity.integrations.verl.install] puts it in place of verl's function, and
`python -m katdensity.integrations.verl OVERRIDES...` runs verl's main with it installed in
every process:

    python -m katdensity.integrations.verl data.train_files=train.parquet ... \\
        +data.density.weights=weights.pt

Note: How the sampler reaches verl
    verl's mains build the sampler inside Ray actors (the `TaskRunner`, the fully-async
    rollouter), never in the process that was started, so replacing the function there
    alone changes nothing. Ray runs a job's `worker_process_setup_hook` in every worker
    before any actor, and verl passes `ray_kwargs.ray_init.runtime_env` from its config to
    `ray.init` (`run_ppo` in `verl/trainer/main_ppo.py`), so the entry point adds
    `++ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=
    katdensity.integrations.verl.install`. The hook replaces verl's function in
    `verl.trainer.ppo.utils` and in every module that already imported it by name; modules
    imported later take the replacement.

The sampler draws `len(dataset)` prompts per epoch, with replacement, each once: verl
repeats every prompt `actor_rollout_ref.rollout.n` times itself after drawing (`repeat` in
`ray_trainer.py`, the agent loop in v1), so the sampler never repeats (`group_size=1`).
verl's `StatefulDataLoader` saves the sampler's `state_dict()` with every checkpoint
(`data.pt`) and restores it on resume, which continues the interrupted epoch exactly.

With `+data.density.learnability=true` the sampler draws each training batch
(`data.train_batch_size` prompts) from density times learnability, learned from the rewards
of the batches before: building it wraps the functions of verl's v1 and legacy trainers
that see a training batch's rewards (see `katdensity.integrations._verl_learning`), and the
tracker's evidence rides in the sampler's `state_dict()`.

Importing this module needs no verl; `install`, `main` and the fallback to verl's sampler
raise [`MissingDependencyError`][katdensity.MissingDependencyError] without it.
"""

from __future__ import annotations

import argparse
import logging
import runpy
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, fields
from types import ModuleType
from typing import Any

import torch
from torch.utils.data import Sampler

from katdensity._optional import require
from katdensity._validate import as_probabilities, check_int, check_real
from katdensity.density.exact import ExactKNNDensity
from katdensity.errors import InvalidInputError
from katdensity.ids import match_ids
from katdensity.integrations._verl_learning import (
    LEARNABILITY_KEY,
    LearnabilityFeed,
    checked_reward_range,
    hook_trainers,
    learning_batch_size,
)
from katdensity.io import Prompt, load_embeddings, load_weights, read_prompts
from katdensity.report import weight_report
from katdensity.sampler import InverseDensitySampler
from katdensity.weights import DEFAULT_MIN_ESS_RATIO, WeightResult, effective_sample_size, weigh

__all__ = [
    "DEFAULT_ENTRY",
    "SETUP_HOOK",
    "DensityOptions",
    "DensitySampler",
    "create_rl_sampler",
    "dataset_prompts",
    "density_weights",
    "install",
    "main",
]

logger = logging.getLogger(__name__)

SETUP_HOOK = "katdensity.integrations.verl.install"
"""What Ray's `worker_process_setup_hook` is set to: `install`, run in every Ray worker."""

DEFAULT_ENTRY = "verl.trainer.main_ppo"
"""The verl main that `python -m katdensity.integrations.verl` runs unless told another."""

_HOOK_KEY = "ray_kwargs.ray_init.runtime_env.worker_process_setup_hook"
# Options that shape weights computed here; a weights file holds weights already computed.
_WEIGHTING_OPTIONS = ("k", "beta", "max_weight_ratio", "uniform_mix", "min_ess_ratio")
_LEARNABILITY_OPTIONS = ("reward_range", "learnability_strength", "learnability_half_life")

_SamplerFactory = Callable[[Any, Any], Sampler[int]]
_verl_create_rl_sampler: _SamplerFactory | None = None  # verl's own, once install() replaced it


@dataclass(frozen=True, kw_only=True)
class DensityOptions:
    """The `data.density` section of a verl config, checked.

    Give exactly one source of weights: `weights`, a file written by `katdensity weights`,
    or `embeddings`, a file written by `katdensity embed`, from which the weights are
    computed when the sampler is built (exact kNN, on the CPU of verl's `TaskRunner`: for a
    large prompt set run `katdensity weights` beforehand, on a GPU). Either file's ids are
    matched to the dataset's (`extra_info.index`, as `katdensity.io` reads verl's parquet
    files); the file may hold more ids than the dataset, such as the rows verl filtered out.

    Args:
        weights: path of a weights file.
        embeddings: path of an embeddings file.
        k: neighbours of the density estimate (`embeddings` only).
        beta: strength of the inverse-density correction (`embeddings` only).
        max_weight_ratio: cap on a prompt's probability as a multiple of uniform, `None`
            for none (`embeddings` only).
        uniform_mix: share of uniform probability mixed in (`embeddings` only).
        min_ess_ratio: the smallest ESS over distinct prompts, as a share of their number,
            that `beta` is lowered to keep; `None` lets `beta` act in full (`embeddings` only).
        seed: seed of the draws; default `data.seed`, else 0.
        learnability: also learn each prompt's pass rate from the rewards of every training
            batch, and draw each next batch of prompts by density times learnability (see
            [`LearnabilityWeighting`][katdensity.LearnabilityWeighting]). With
            `embeddings`, near neighbours share evidence and outcomes split modes; with
            `weights`, exact copies of a prompt share evidence.
        reward_range: `(low, high)` of a completion's reward (`learnability` only).
        learnability_strength: exponent of the learnability factor, 0 for density alone;
            `None`: [`LearnabilityWeighting`][katdensity.LearnabilityWeighting]'s default
            (`learnability` only).
        learnability_half_life: training batches after which evidence counts half, so the
            pass rates follow the policy as it changes; `None`: one epoch's batches
            (distinct prompts / `data.train_batch_size`); a large number keeps nearly all
            (`learnability` only).
    """

    weights: str | None = None
    embeddings: str | None = None
    k: int = 10
    beta: float = 1.0
    max_weight_ratio: float | None = 20.0
    uniform_mix: float = 0.0
    min_ess_ratio: float | None = DEFAULT_MIN_ESS_RATIO
    seed: int | None = None
    learnability: bool = False
    reward_range: tuple[float, float] = (0.0, 1.0)
    learnability_strength: float | None = None
    learnability_half_life: float | None = None

    def __post_init__(self) -> None:
        if (self.weights is None) == (self.embeddings is None):
            raise InvalidInputError(
                "data.density should name one source of weights, weights= (a `katdensity "
                "weights` file) or embeddings= (a `katdensity embed` file), but got "
                f"weights={self.weights!r} and embeddings={self.embeddings!r}"
            )
        for name in ("weights", "embeddings"):
            path = getattr(self, name)
            if path is not None and not (isinstance(path, str) and path):
                raise InvalidInputError(
                    f"data.density.{name} should be a path, but got {name}={path!r}"
                )
        check_int("data.density.k", self.k, low=1)
        check_real("data.density.beta", self.beta, low=0.0)
        if self.max_weight_ratio is not None:
            check_real("data.density.max_weight_ratio", self.max_weight_ratio, low=1.0)
        check_real("data.density.uniform_mix", self.uniform_mix, low=0.0, high=1.0)
        if self.min_ess_ratio is not None:
            check_real(
                "data.density.min_ess_ratio", self.min_ess_ratio, low=0.0, high=1.0, low_open=True
            )
        if self.seed is not None:
            check_int("data.density.seed", self.seed)
        if not isinstance(self.learnability, bool):
            raise InvalidInputError(
                "data.density.learnability should be true or false, but got "
                f"learnability={self.learnability!r}"
            )
        # Hydra gives a list as a ListConfig: kept as the tuple of floats it stands for.
        object.__setattr__(self, "reward_range", checked_reward_range(self.reward_range))
        if self.learnability_strength is not None:
            check_real("data.density.learnability_strength", self.learnability_strength, low=0.0)
        if self.learnability_half_life is not None:
            check_real(
                "data.density.learnability_half_life",
                self.learnability_half_life,
                low=0.0,
                low_open=True,
            )

    @classmethod
    def from_data_config(cls, data_config: Mapping[str, Any]) -> DensityOptions | None:
        """The options under `data_config["density"]`; `None` when there is no such section.

        Raises:
            InvalidInputError: an unknown option, options that contradict each other, or a
                value out of range.
        """
        section = data_config.get("density")
        if section is None:
            return None
        if not isinstance(section, Mapping):
            raise InvalidInputError(
                "data.density should be a section of options (+data.density.weights=...), "
                f"but got density={section!r}"
            )
        options = {str(key): section[key] for key in section}
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InvalidInputError(
                f"data.density should hold only {', '.join(known)}, but got {', '.join(unknown)}"
            )
        # Options that would be ignored: (when, which, why and the fix).
        for ignored, names, why in (
            (
                options.get("weights") is not None,
                _WEIGHTING_OPTIONS,
                "shapes weights computed from embeddings=, but weights= names weights "
                "already computed; set it when writing them (katdensity weights), or give "
                "embeddings= instead",
            ),
            (
                options.get("learnability") is not True,
                _LEARNABILITY_OPTIONS,
                "shapes learnability, which is off; set +data.density.learnability=true, "
                "or drop it",
            ),
        ):
            given = [name for name in names if name in options]
            if ignored and given:
                raise InvalidInputError(f"data.density.{given[0]} {why}")
        return cls(**options)


class DensitySampler(InverseDensitySampler):
    """The [`InverseDensitySampler`][katdensity.InverseDensitySampler] that verl's trainers get.

    It draws exactly what an `InverseDensitySampler` with the same weights and arguments
    draws. The one difference is on resume: `load_state_dict` continues the interrupted epoch
    with the weights it started with, as the base class does, and then draws from the weights
    this sampler was built with rather than those saved in the checkpoint. So resuming a run
    with a rewritten weights file (say, from prompts embedded by the current policy) applies
    the new weights from the next epoch.

    With `learner`, the sampler draws in chunks of one training batch, and `state_dict()`
    also holds the learnability state, which `load_state_dict` restores: the next chunk draws
    from the weights of the interrupted run, or, if the density weights were rewritten, from
    the new ones times the restored learnability.

    Args:
        *args: `InverseDensitySampler`'s arguments.
        learner: the learnability the trainer hooks feed; `None` for density alone.
        **kwargs: `InverseDensitySampler`'s keyword arguments.
    """

    def __init__(self, *args: Any, learner: LearnabilityFeed | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.learner = learner

    def __iter__(self) -> Iterator[int]:
        learner = self.learner
        for index in super().__iter__():
            if learner is not None:
                learner.note_drawn()
            yield index

    def state_dict(self, *, consumed: int | None = None) -> dict[str, Any]:
        """`InverseDensitySampler.state_dict`, and the learnability state with a learner."""
        state = super().state_dict(consumed=consumed)
        if self.learner is not None:
            state[LEARNABILITY_KEY] = self.learner.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`; later epochs (chunks, with a learner) draw from this
        sampler's own weights.

        Raises:
            InvalidInputError: a state of another sampler, or of a run whose
                `data.density.learnability` or `data.train_batch_size` differed.
        """
        if state.get("chunk_size") != self.chunk_size:
            raise InvalidInputError(
                f"the checkpoint's sampler drew chunks of {state.get('chunk_size')} prompts "
                f"and this one draws {self.chunk_size}; keep data.density.learnability and "
                "data.train_batch_size as they were when the checkpoint was written"
            )
        configured = self.weights
        super().load_state_dict(state)
        learner = self.learner
        if learner is None:
            if not torch.equal(configured, self.weights):
                logger.info(
                    "the weights differ from the checkpoint's; they apply from the next epoch"
                )
                self.update_weights(configured)
            return
        saved = state.get(LEARNABILITY_KEY)
        if saved is None:
            logger.warning("the checkpoint holds no learnability state: the tracker starts empty")
        elif learner.load_state_dict(saved):
            return  # the saved weights are those the uninterrupted run draws next
        else:
            logger.info(
                "the density weights differ from the checkpoint's; times the restored "
                "learnability, they apply from the next chunk"
            )
        self.update_weights(learner.weights())


def dataset_prompts(dataset: Any, *, prompt_key: str = "prompt") -> list[Prompt]:
    """The prompt of each row of a verl dataset, with the ids `katdensity embed` gives them.

    verl's `RLHFDataset` (and its subclasses) keep their rows, after verl's own filtering
    and `train_max_samples`, in a `datasets.Dataset` named `dataframe`; its rows are read as
    [`read_prompts`][katdensity.io.read_prompts] reads verl's parquet files, so ids come
    from `extra_info.index`, else from the prompt text.

    Args:
        dataset: the dataset verl built (`len(dataset)` rows).
        prompt_key: the column holding the prompt (verl's `data.prompt_key`).

    Returns:
        One prompt per dataset row, in dataset order.

    Raises:
        InvalidInputError: a dataset without a `dataframe`, or rows `read_prompts` refuses.
    """
    frame = getattr(dataset, "dataframe", None)
    if frame is None or not hasattr(frame, "column_names"):
        raise InvalidInputError(
            "data.density needs the dataset's rows: verl's RLHFDataset keeps them in a "
            f"datasets.Dataset named dataframe, but {type(dataset).__name__} has none"
        )
    # Only the columns that hold prompts and ids: others (images, say) can be large.
    columns = [name for name in (prompt_key, "extra_info") if name in frame.column_names]
    return read_prompts(frame.select_columns(columns), field=prompt_key)


def _rows_for(file_ids: Sequence[str], ids: Sequence[str], path: str) -> torch.Tensor:
    """`(len(ids),)` int64: the row of `path` holding each dataset id."""
    return match_ids(
        ids,
        file_ids,
        wanted_from="the dataset's ids (extra_info.index)",
        available_from=path,
        extra="allow",
        fix="give every row its own index, and write the file from the data.train_files verl "
        "reads (katdensity embed, then katdensity weights)",
    )


def density_weights(options: DensityOptions, prompts: Sequence[Prompt]) -> torch.Tensor:
    """The sampling probabilities of the dataset's rows, from `options`' file.

    Args:
        options: which file, and (for embeddings) how to weigh.
        prompts: the dataset's rows, as
            [`dataset_prompts`][katdensity.integrations.verl.dataset_prompts] gives them.

    Returns:
        `(len(prompts),)` float64 probabilities, row `i` for dataset row `i`.

    Raises:
        InvalidInputError: a bad file, repeated dataset ids, dataset ids the file lacks, or
            weights that are all zero on the dataset's rows.
    """
    if options.weights is not None:
        return _stored_weights(options.weights, [prompt.id for prompt in prompts])
    return _computed_weights(str(options.embeddings), options, prompts).probabilities


def _stored_weights(path: str, ids: Sequence[str]) -> torch.Tensor:
    stored = load_weights(path)
    rows = _rows_for(stored.ids, ids, path)
    weights = as_probabilities(stored.weights[rows], name=f"the weights of {path}")
    groups = None if stored.groups is None else stored.groups[rows]
    distinct = len(ids) if groups is None else int(torch.unique(groups).numel())
    ess = effective_sample_size(weights, groups)
    logger.info(
        "%s: %d of its %d weights are the dataset's rows; ESS over distinct prompts "
        "%.0f of %d (%.2f)",
        path, len(ids), len(stored.ids), ess, distinct, ess / distinct,
    )  # fmt: skip
    return weights


def _computed_weights(
    path: str, options: DensityOptions, prompts: Sequence[Prompt]
) -> WeightResult:
    stored = load_embeddings(path)
    rows = _rows_for(stored.ids, [prompt.id for prompt in prompts], path)
    # verl builds the sampler in one process, even where a process group exists.
    weighted = weigh(
        stored.embeddings[rows.numpy()],
        estimator=ExactKNNDensity(k=options.k, distributed=False),
        beta=options.beta,
        max_weight_ratio=options.max_weight_ratio,
        uniform_mix=options.uniform_mix,
        min_ess_ratio=options.min_ess_ratio,
    )
    report = weight_report(weighted)
    logger.info("%s\n%s", path, report.format([prompt.text for prompt in prompts]))
    return weighted


def _learner(
    options: DensityOptions, prompts: Sequence[Prompt], batch_size: int
) -> LearnabilityFeed:
    """The learnability over the dataset's rows, with the trainer hooks that feed it."""
    if options.weights is not None:
        base = _stored_weights(options.weights, [prompt.id for prompt in prompts])
        density, modes = None, None
    else:
        weighted = _computed_weights(str(options.embeddings), options, prompts)
        base, density, modes = weighted.probabilities, weighted.density, weighted.modes
    learner = LearnabilityFeed(
        prompts,
        base,
        density=density,
        modes=modes,
        reward_range=options.reward_range,
        batch_size=batch_size,
        half_life=options.learnability_half_life,
        strength=options.learnability_strength,
    )
    hook_trainers()
    return learner


def create_rl_sampler(data_config: Mapping[str, Any], dataset: Sized) -> Sampler[int]:
    """verl's `create_rl_sampler`, drawing inversely to density when `data.density` is set.

    Without a `density` section it returns what verl's own function returns.

    Args:
        data_config: verl's `data` config.
        dataset: the training dataset verl built.

    Returns:
        A [`DensitySampler`][katdensity.integrations.verl.DensitySampler] drawing
        `len(dataset)` prompts per epoch, each once, seeded by `data.density.seed`, else
        `data.seed`, else 0; or verl's sampler.

    Raises:
        InvalidInputError: bad `data.density` options (see
            [`DensityOptions`][katdensity.integrations.verl.DensityOptions]), `data.density`
            with `data.shuffle=False`, or a file that does not match the dataset; with
            `learnability`, dataloader workers, no `data.train_batch_size`, or rows without
            their own `extra_info.index`.
        MissingDependencyError: no `data.density` section and verl is not installed.
    """
    options = DensityOptions.from_data_config(data_config)
    if options is None:
        return _verl_sampler(data_config, dataset)
    if not data_config.get("shuffle", True):
        raise InvalidInputError(
            "data.shuffle=False asks for the dataset's order, but data.density asks for "
            "weighted draws; drop one of them"
        )
    prompts = dataset_prompts(dataset, prompt_key=str(data_config.get("prompt_key", "prompt")))
    if len(prompts) != len(dataset):
        raise InvalidInputError(
            f"the dataset should have one prompt per row ({len(dataset)}), but its dataframe "
            f"has {len(prompts)}"
        )
    seed = options.seed if options.seed is not None else data_config.get("seed")
    learner, chunk_size = None, None
    if options.learnability:
        chunk_size = learning_batch_size(data_config)
        learner = _learner(options, prompts, chunk_size)
    # NOTE [ One draw, no repeats ]: verl's driver draws for every rank and splits batches
    # itself, so the draw is not sharded; it repeats each prompt rollout.n times after
    # drawing, so the sampler yields each drawn prompt once.
    return DensitySampler(
        density_weights(options, prompts) if learner is None else learner.weights(),
        seed=0 if seed is None else check_int("data.seed", seed),
        num_replicas=1,
        rank=0,
        group_size=1,
        chunk_size=chunk_size,
        learner=learner,
    )


def _verl_utils() -> ModuleType:
    return require("verl.trainer.ppo.utils", extra="verl", purpose="katdensity.integrations.verl")


def _verl_sampler(data_config: Mapping[str, Any], dataset: Sized) -> Sampler[int]:
    original = _verl_create_rl_sampler or _verl_utils().create_rl_sampler
    return original(data_config, dataset)


def install() -> None:
    """Make verl build its prompt samplers with `create_rl_sampler`, in this process.

    Replaces `verl.trainer.ppo.utils.create_rl_sampler`, and the same function in every
    module that imported it by name (`ray_trainer`, `main_ppo_v0`, `ppo/v1/trainer_base`,
    the experimental mains); modules imported later take the replacement. Calling it again
    does nothing. It is Ray's `worker_process_setup_hook` for `python -m
    katdensity.integrations.verl`, which also calls it in the process it starts.

    Raises:
        MissingDependencyError: verl is not installed.
    """
    global _verl_create_rl_sampler
    utils = _verl_utils()
    if _verl_create_rl_sampler is None:
        _verl_create_rl_sampler = utils.create_rl_sampler
    original = _verl_create_rl_sampler
    for module in list(sys.modules.values()):
        # The module's own namespace: getattr would wake lazily imported modules.
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict) and namespace.get("create_rl_sampler") is original:
            namespace["create_rl_sampler"] = create_rl_sampler
    # verl leaves the root logger at WARNING; what the weights do is worth reading in its logs.
    package_logger = logging.getLogger("katdensity")
    if package_logger.level == logging.NOTSET:
        package_logger.setLevel(logging.INFO)


def _verl_argv(overrides: Sequence[str]) -> list[str]:
    """verl's command line: `overrides`, plus the setup hook that installs the sampler in Ray.

    Raises:
        InvalidInputError: `overrides` set the setup hook already.
    """
    for override in overrides:
        if override.lstrip("+~").startswith(_HOOK_KEY + "="):
            raise InvalidInputError(
                f"{_HOOK_KEY} is set by katdensity.integrations.verl, but got {override!r}; "
                f"call {SETUP_HOOK}() from your hook and run verl's main directly"
            )
    return [*overrides, f"++{_HOOK_KEY}={SETUP_HOOK}"]


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m katdensity.integrations.verl [--entry MODULE] OVERRIDES...`: run verl's main.

    Runs `python -m MODULE OVERRIDES...` (`verl.trainer.main_ppo` by default) with
    [`install`][katdensity.integrations.verl.install] called in this process and, through
    Ray's `worker_process_setup_hook`, in every Ray worker.
    """
    parser = argparse.ArgumentParser(
        prog="python -m katdensity.integrations.verl",
        description="Run a verl trainer whose prompts are drawn inversely to their density. "
        "Every argument but --entry goes to verl (Hydra overrides, such as "
        "+data.density.weights=weights.pt).",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--entry",
        default=DEFAULT_ENTRY,
        metavar="MODULE",
        help="the verl main to run as `python -m MODULE` (default: %(default)s; also "
        "verl.experimental.fully_async_policy.fully_async_main, "
        "verl.experimental.one_step_off_policy.main_ppo)",
    )
    args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    command = _verl_argv(overrides)
    install()
    sys.argv = [args.entry, *command]
    logger.info("running %s %s", args.entry, " ".join(command))
    runpy.run_module(args.entry, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    # The module Ray workers import is katdensity.integrations.verl, not this __main__ copy:
    # run its main, so that one copy holds verl's replaced function.
    from katdensity.integrations.verl import main as _main

    _main()
