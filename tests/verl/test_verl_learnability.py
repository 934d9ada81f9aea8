"""`+data.density.learnability=true` inside verl: the hooks on verl's own trainer classes,
the legacy `RayPPOTrainer.fit` run for real with its Ray workers stood in for, and the v1
trainer's batch read from a real TransferQueue.

Run in verl's environment (`.ci/verl_check`); the folder's conftest leaves it out elsewhere.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from katdensity import LearnabilityTracker
from katdensity.integrations import _verl_learning as learning
from katdensity.integrations.verl import DensitySampler, install
from tests.verl.layout import FIRST_ID, write_density_files, write_prompts
from tests.verl.test_verl_trainer import BATCH, SUBSET, train_dataloader, verl_config

N = 4  # actor_rollout_ref.rollout.n
STEPS_PER_EPOCH = SUBSET // BATCH  # 6
PROMPT, RESPONSE = 3, 5  # token lengths of the stand-in rollouts

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # verl's deprecations


def passes(prompt_id: int, completion: int) -> float:
    """The reward oracle: the dense topic always passes, the row after it never, the rest
    every other completion."""
    kind = (prompt_id - FIRST_ID) % 3
    return 1.0 if kind == 0 else 0.0 if kind == 1 else float(completion % 2)


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`(parquet, weights)` of the test prompt set."""
    folder = tmp_path_factory.mktemp("verl-learn")
    path = write_prompts(folder / "train.parquet")
    return path, write_density_files(path, folder)[1]


def learning_overrides(files: tuple[Path, Path], checkpoints: Path, *extra: str) -> list[str]:
    parquet, weights = files
    return [
        f"data.train_files={parquet}",
        f"data.val_files={parquet}",
        f"data.train_batch_size={BATCH}",
        f"data.train_max_samples={SUBSET}",
        "data.seed=7",
        "data.dataloader_num_workers=0",
        f"actor_rollout_ref.rollout.n={N}",
        f"+data.density.weights={weights}",
        "+data.density.learnability=true",
        "algorithm.adv_estimator=grpo",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.balance_batch=false",
        "trainer.total_epochs=2",
        "trainer.logger=[console]",
        f"trainer.default_local_dir={checkpoints}",
        *extra,
    ]


class Rollouts:
    """Stands in for verl's agent loop: each completion's reward from `passes`, on its last
    response token, as verl's reward loop puts it. Records the prompt ids of each batch and
    the tracker the sampler had when the batch was drawn."""

    def __init__(self, sampler: DensitySampler) -> None:
        self.sampler = sampler
        self.batches: list[list[int]] = []
        self.updates_seen: list[int] = []

    def generate_sequences(self, prompts: Any) -> Any:
        from verl.protocol import DataProto

        ids = [int(index) for index in prompts.non_tensor_batch["index"]]  # repeated N times
        size = len(ids)
        self.batches.append(ids[::N])
        assert self.sampler.learner is not None
        self.updates_seen.append(self.sampler.learner.tracker.updates)
        scores = torch.zeros(size, RESPONSE)
        scores[:, -1] = torch.tensor([passes(i, j % N) for j, i in enumerate(ids)])
        return DataProto.from_dict(
            tensors={
                "prompts": torch.ones(size, PROMPT, dtype=torch.long),
                "responses": torch.ones(size, RESPONSE, dtype=torch.long),
                "input_ids": torch.ones(size, PROMPT + RESPONSE, dtype=torch.long),
                "attention_mask": torch.ones(size, PROMPT + RESPONSE, dtype=torch.long),
                "rm_scores": scores,
            },
            non_tensors={"multi_modal_inputs": np.array([{}] * size, dtype=object)},
            meta_info={"timing": {}},
        )


class Workers:
    """Stands in for verl's worker groups and weight sync: they do nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def legacy_trainer(config: Any) -> tuple[Any, Rollouts]:
    """verl's RayPPOTrainer with its real dataloader, checkpoints and fit loop, and no Ray
    workers: rollouts, log-probs and the actor update are stood in for."""
    from verl.protocol import DataProto
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    trainer = RayPPOTrainer.__new__(RayPPOTrainer)
    trainer.config, trainer.tokenizer, trainer.processor = config, None, None
    trainer._create_dataloader(None, None, None, None)
    rollouts = Rollouts(trainer.train_dataloader.sampler)
    trainer.async_rollout_manager = rollouts
    trainer.checkpoint_manager = trainer.actor_rollout_wg = Workers()
    trainer.resource_pool_manager = types.SimpleNamespace(get_n_gpus=lambda: 1)
    trainer.use_rm = trainer.use_critic = trainer.use_reference_policy = False
    trainer._init_dump_executor()

    def old_log_prob(batch: Any) -> tuple[Any, float]:
        shape = batch.batch["responses"].shape
        zeros = {"old_log_probs": torch.zeros(shape), "entropys": torch.zeros(shape)}
        return DataProto.from_dict(tensors=zeros), 0.0

    trainer._compute_old_log_prob = old_log_prob
    trainer._update_actor = lambda batch: DataProto(meta_info={"metrics": {}})
    return trainer, rollouts


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The metrics of every step, as verl's Tracking logger gets them."""
    from verl.utils.tracking import Tracking

    steps: list[dict[str, Any]] = []
    monkeypatch.setattr(Tracking, "log", lambda self, data, step, **kwargs: steps.append(data))
    return steps


def test_learnability_hooks_verls_trainer_classes(parquet: tuple[Path, Path], tmp_path: Path):
    from verl.trainer.ppo import ray_trainer
    from verl.trainer.ppo.v1 import trainer_base

    install()
    overrides = learning_overrides(parquet, tmp_path, "+data.density.reward_range=[-1,1]")
    loader = train_dataloader(verl_config(overrides))
    assert isinstance(loader.sampler, DensitySampler) and loader.sampler.learner is not None
    assert loader.sampler.chunk_size == BATCH
    assert loader.sampler.learner.tracker.reward_range == (-1.0, 1.0)  # a Hydra list
    for owner, name in [
        (ray_trainer.RayPPOTrainer, "fit"),
        (ray_trainer.RayPPOTrainer, "_load_checkpoint"),
        (ray_trainer, "compute_advantage"),
        (ray_trainer, "compute_data_metrics"),
        (trainer_base.PPOTrainer, "_compute_advantage"),
    ]:
        wrapped = getattr(getattr(owner, name), "__katdensity_wraps__", None)
        assert wrapped is not None and wrapped.__name__ == name, (owner, name)
    learning.hook_trainers()  # once only
    assert not hasattr(ray_trainer.RayPPOTrainer.fit.__katdensity_wraps__, "__katdensity_wraps__")


def test_the_legacy_fit_feeds_every_batch_and_logs_what_the_tracker_sees(
    parquet: tuple[Path, Path], tmp_path: Path, logged: list[dict[str, Any]]
) -> None:
    install()
    trainer, rollouts = legacy_trainer(verl_config(learning_overrides(parquet, tmp_path)))
    trainer.fit()

    steps = 2 * STEPS_PER_EPOCH
    feed = trainer.train_dataloader.sampler.learner
    assert feed.tracker.updates == steps
    # Each batch was drawn after the rewards of the one before reached the tracker.
    assert rollouts.updates_seen == list(range(steps))
    # The oracle: every batch's rewards, zero-variance groups included, fed by hand to a
    # tracker of the same settings, each completion at the dataset row of its prompt.
    ids = [int(extra["index"]) for extra in trainer.train_dataset.dataframe["extra_info"]]
    oracle = LearnabilityTracker(len(ids), half_life=feed.tracker.half_life)
    for batch in rollouts.batches:
        oracle.update(
            [ids.index(i) for i in batch for _ in range(N)],
            [passes(i, j) for i in batch for j in range(N)],
        )
    torch.testing.assert_close(feed.tracker.pass_rate(), oracle.pass_rate())
    torch.testing.assert_close(feed.tracker.evidence(), oracle.evidence())
    # verl's log: every training step carries what the tracker saw in it, such as the share
    # of its groups whose rewards were all equal (the solved and the failed prompts).
    assert len(logged) == steps
    for metrics, batch in zip(logged, rollouts.batches, strict=True):
        flat = sum((i - FIRST_ID) % 3 != 2 for i in batch) / len(batch)
        assert metrics["katdensity/zero_variance_observed"] == pytest.approx(flat)
        assert 1 < metrics["katdensity/distinct_ess"] <= len(ids)


def test_a_resumed_legacy_run_trains_on_the_prompts_of_the_uninterrupted_one(
    parquet: tuple[Path, Path], tmp_path: Path, logged: list[dict[str, Any]]
) -> None:
    install()
    full, full_rollouts = legacy_trainer(
        verl_config(learning_overrides(parquet, tmp_path / "full"))
    )
    full.fit()

    stop = STEPS_PER_EPOCH + 2  # in the middle of the second epoch
    checkpoints = tmp_path / "stopped"
    first, first_rollouts = legacy_trainer(
        verl_config(
            learning_overrides(
                parquet, checkpoints, f"trainer.total_training_steps={stop}", "trainer.save_freq=4"
            )
        )
    )
    first.fit()  # saves at steps 4 and 8
    resumed, resumed_rollouts = legacy_trainer(
        verl_config(learning_overrides(parquet, checkpoints))
    )
    resumed.fit()  # a new trainer: resumes from step 8

    assert first_rollouts.batches + resumed_rollouts.batches == full_rollouts.batches
    assert resumed_rollouts.updates_seen[0] == stop
    feed, expected = resumed.train_dataloader.sampler.learner, full.train_dataloader.sampler.learner
    torch.testing.assert_close(feed.tracker.pass_rate(), expected.tracker.pass_rate())
    torch.testing.assert_close(feed.weights(), expected.weights())


def test_a_checkpoint_at_an_epoch_boundary_keeps_the_tracker(
    parquet: tuple[Path, Path], tmp_path: Path, logged: list[dict[str, Any]]
) -> None:
    install()
    stop = STEPS_PER_EPOCH
    overrides = [f"trainer.total_training_steps={stop}", f"trainer.save_freq={stop}"]
    first, _ = legacy_trainer(verl_config(learning_overrides(parquet, tmp_path, *overrides)))
    first.fit()
    before = first.train_dataloader.sampler.learner

    # verl skips the dataloader's state here (it says the epoch is over); the tracker is read
    # from the checkpoint all the same, and the next batch is drawn with its weights.
    resumed, rollouts = legacy_trainer(verl_config(learning_overrides(parquet, tmp_path)))
    resumed.fit()
    assert rollouts.updates_seen[0] == stop
    after = resumed.train_dataloader.sampler.learner
    assert after.tracker.updates == 2 * stop
    state = torch.load(tmp_path / f"global_step_{stop}" / "data.pt", weights_only=True)
    saved = learning._find_learnability(state)
    assert saved is not None and saved["tracker"]["updates"] == stop
    torch.testing.assert_close(saved["tracker"]["own"], before.tracker.state_dict()["own"])


@pytest.mark.slow
def test_the_v1_trainer_feeds_the_trajectories_of_its_transfer_queue(
    parquet: tuple[Path, Path], tmp_path: Path
) -> None:
    import ray
    import transfer_queue as tq
    from tensordict import NonTensorData, NonTensorStack
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
    from verl.utils import tensordict_utils as tu

    install()
    config = verl_config(learning_overrides(parquet, tmp_path))
    trainer = PPOTrainerSync.__new__(PPOTrainerSync)  # its dataloader, and no Ray workers
    trainer.config, trainer.tokenizer, trainer.processor = config, None, None
    trainer.trainer_mode, trainer.parameter_sync_step = "sync", 1
    trainer.replay_buffer = types.SimpleNamespace(filter_groups_metric=None)
    trainer._init_dataloader()
    sampler = trainer.train_dataloader.sampler
    assert isinstance(sampler, DensitySampler) and sampler.learner is not None

    ray.init(num_cpus=4, include_dashboard=False)  # TransferQueue's three actors
    try:
        tq.init()
        # One step's prompts as PPOTrainer._fetch_one_gen_batch makes them, rolled out as
        # AgentLoopWorkerTQ stores them: each session's trajectory holds the prompt's fields.
        prompts = next(iter(trainer.train_dataloader))
        prompts["uid"] = np.array([f"u{i}" for i in range(BATCH)], dtype=object)
        prompts = tu.get_tensordict(prompts)
        keys, fields, rewards = [], [], []
        for i in range(BATCH):
            prompt = {}
            for key, value in prompts.items():
                if isinstance(value, torch.Tensor):
                    prompt[key] = value[i]
                elif isinstance(value, NonTensorStack):
                    prompt[key] = value[i].data
                elif isinstance(value, NonTensorData):
                    prompt[key] = value.data
            for session in range(N):
                reward = passes(int(prompt["index"]), session)
                scores = torch.zeros(RESPONSE)
                scores[-1] = reward
                length = PROMPT + RESPONSE
                fields.append(
                    {
                        "prompts": torch.ones(PROMPT, dtype=torch.long),
                        "responses": torch.ones(RESPONSE, dtype=torch.long),
                        "response_mask": torch.ones(RESPONSE, dtype=torch.long),
                        "input_ids": torch.ones(length, dtype=torch.long),
                        "attention_mask": torch.ones(length, dtype=torch.long),
                        "position_ids": torch.arange(length),
                        "rm_scores": scores,
                        **prompt,
                        "session_id": session,
                    }
                )
                keys.append(f"{prompt['uid']}_{session}_0")
                rewards.append((int(prompt["index"]), reward))
        tags = [{"status": "success", "seq_len": PROMPT + RESPONSE}] * len(keys)
        tq.kv_batch_put(
            keys=keys, partition_id="train", fields=tu.list_of_dict_to_tensordict(fields), tags=tags
        )
        batch = KVBatchMeta(partition_id="train", keys=keys, tags=tags)
        batch = upsample_batch_to_divisible_size(batch, len(keys) + 3, eos_token_id=2)
        assert sum(tag.get("is_padding", False) for tag in batch.tags) == 3

        metrics: dict[str, Any] = {}
        trainer._compute_advantage(batch, metrics=metrics)  # verl's, with the hook around it
    finally:
        tq.close()
        ray.shutdown()

    ids = [int(extra["index"]) for extra in trainer.train_dataset.dataframe["extra_info"]]
    oracle = LearnabilityTracker(len(ids), half_life=sampler.learner.tracker.half_life)
    oracle.update([ids.index(i) for i, _ in rewards], [reward for _, reward in rewards])
    torch.testing.assert_close(sampler.learner.tracker.evidence(), oracle.evidence())
    torch.testing.assert_close(sampler.learner.tracker.pass_rate(), oracle.pass_rate())
    drawn = [i for i, _ in rewards[::N]]
    flat = sum((i - FIRST_ID) % 3 != 2 for i in drawn) / BATCH
    assert metrics["katdensity/zero_variance_observed"] == pytest.approx(flat)
    torch.testing.assert_close(sampler.weights, sampler.learner.weights())  # the next batch's
