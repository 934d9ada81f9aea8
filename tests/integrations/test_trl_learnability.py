"""`learnability=` in katdensity.integrations.trl against the real TRL: a reward with known
per-prompt pass rates, so the tracker's posterior, the logged metrics and the weights have
exact oracles; one draw order on two gloo ranks; a resumed run trains on the prompts of the
uninterrupted one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from katdensity import (
    InverseDensitySampler,
    LearnabilityTracker,
    LearnabilityWeighting,
    effective_sample_size,
)
from katdensity.errors import InvalidInputError
from katdensity.learnability import PASS_RATE_BANDS
from tests.integrations.tiny import N_PROMPTS, prompt_rows, spawn_two_ranks

pytest.importorskip("trl")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # from transformers

from trl import GRPOConfig, RLOOConfig  # noqa: E402

from katdensity.integrations.trl import (  # noqa: E402
    ROW_COLUMN,
    SAMPLER_STATE_NAME,
    DensityGRPOTrainer,
    DensityRefreshCallback,
    DensityRepeatSampler,
    DensityRLOOTrainer,
)
from tests.integrations.test_trl import build  # noqa: E402

G = 4
# Rows 0-7 always pass, 8-15 never, 16-23 pass a known share of every group.
PASS_RATES = [1.0] * 8 + [0.0] * 8 + [0.25, 0.5, 0.75, 0.5, 0.25, 0.5, 0.75, 0.5]
# Generation batches of 4 prompts x 4 completions; 6 steps are one pass over the 24 rows.
OPTIONS = {"per_device_train_batch_size": 16, "num_generations": G, "max_steps": 6}


class KnownPassRates:
    """Completion j of a group of row r passes when j < G * PASS_RATES[r]: every group of
    a row has exactly its pass rate. Records each batch's rows and the columns it got."""

    __name__ = "known"

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.columns: set[str] = set()

    def __call__(self, completions: list[Any], id: list[str], **kwargs: Any) -> list[float]:
        self.columns |= set(kwargs)
        rows = [int(name[1:]) for name in id]
        self.batches.append(rows)
        return [float(j % G < G * PASS_RATES[row]) for j, row in enumerate(rows)]


def learning_run(out: Path, **density: Any) -> tuple[Any, KnownPassRates]:
    from datasets import Dataset

    from tests.integrations.tiny import byte_tokenizer

    reward = KnownPassRates()
    options = {**OPTIONS, "logging_strategy": "steps", "logging_steps": 1}
    options.update(density.pop("options", {}))
    density.setdefault("learnability", True)
    trainer = build(
        byte_tokenizer(),
        Dataset.from_dict(prompt_rows()),
        out,
        reward=reward,
        options=options,
        **density,
    )
    return trainer, reward


def expected_pass_rate(evidence: torch.Tensor) -> torch.Tensor:
    """The Beta(1, 1) posterior mean after `evidence` completions at the known rates."""
    rates = torch.tensor(PASS_RATES, dtype=torch.float64)
    return (1.0 + rates * evidence) / (2.0 + evidence)


def assert_same(first: Any, second: Any) -> None:
    """Equal states: tensors bit for bit, everything else by `==`."""
    if isinstance(first, dict):
        assert first.keys() == second.keys()
        for key in first:
            assert_same(first[key], second[key])
    elif isinstance(first, list):
        assert len(first) == len(second)
        for one, other in zip(first, second, strict=True):
            assert_same(one, other)
    elif isinstance(first, torch.Tensor):
        assert torch.equal(first, second)
    else:
        assert first == second


def train_order(state: dict[str, Any], batch_size: int) -> list[int]:
    """The oracle: the prompts a pass yields, drawn chunk by chunk from the weights the
    saved sampler state recorded for each chunk."""
    inner = InverseDensitySampler(
        torch.ones(N_PROMPTS),
        seed=0,
        distributed="replicate",
        group_size=G,
        chunk_size=batch_size,
        num_samples=N_PROMPTS,
    )
    inner.load_state_dict(state["sampler"])
    return list(DensityRepeatSampler(inner, batch_size=batch_size, repeat_count=1))


@pytest.mark.parametrize("trainer_class", [DensityGRPOTrainer, DensityRLOOTrainer])
def test_the_tracker_learns_the_known_pass_rates_from_every_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trainer_class: Any
) -> None:
    updates: list[torch.Tensor] = []
    original = DensityRepeatSampler.update_weights

    def update(self: DensityRepeatSampler, weights: torch.Tensor) -> None:
        updates.append(weights / weights.sum())
        original(self, weights)

    monkeypatch.setattr(DensityRepeatSampler, "update_weights", update)
    config_class = GRPOConfig if trainer_class is DensityGRPOTrainer else RLOOConfig
    trainer, reward = learning_run(tmp_path, trainer_class=trainer_class, config_class=config_class)
    trainer.train()
    tracker = trainer.learnability_tracker

    # Every completion of every group reached the tracker once, with its row, the groups
    # all of whose rewards are equal (rows 0-15, which TRL gives no gradient) included.
    assert tracker.updates == len(updates) == len(reward.batches) == 6
    # Evidence halves every epoch: 24 prompts, 4 per generation batch.
    assert tracker.half_life == 6
    fade = 0.5 ** (1 / 6)
    expected = sum(
        torch.bincount(torch.tensor(batch), minlength=N_PROMPTS).double() * fade ** (5 - step)
        for step, batch in enumerate(reward.batches)
    )
    torch.testing.assert_close(tracker.evidence(), expected)
    torch.testing.assert_close(tracker.pass_rate(), expected_pass_rate(tracker.evidence()))
    assert ROW_COLUMN not in reward.columns

    # The weights are rank-free LearnabilityWeighting rules over the given (uniform)
    # weights: a row surely solved or surely failed weighs less than one passing half the
    # time with as much evidence.
    weights = trainer.density_sampler.weights
    used = trainer._learnability_weighting.strength_used_  # 4, or less to keep the floor
    assert used is not None and 0 < used <= 4
    factor = (4 * tracker.learnability()) ** used
    expected = 0.9 * factor / factor.sum() + 0.1 / N_PROMPTS
    torch.testing.assert_close(weights, expected)
    evidence = tracker.evidence()
    for solved_or_failed in range(16):
        for learnable in (17, 19, 21, 23):  # pass rate 1/2
            if evidence[solved_or_failed] >= evidence[learnable] > 0:
                assert weights[solved_or_failed] < weights[learnable]

    # Chunk c of the pass is drawn from the weights after the update of generation batch
    # c - 2: transformers reads one optimisation step ahead of training.
    state = trainer.density_sampler.state_dict()
    chunks = state["sampler"]["chunk_weights"]
    uniform = torch.full((N_PROMPTS,), 1 / N_PROMPTS, dtype=torch.float64)
    assert len(chunks) == 6
    for c, drawn in enumerate(chunks):
        torch.testing.assert_close(drawn, uniform if c < 2 else updates[c - 2])
    assert train_order(state, batch_size=4) == [row for batch in reward.batches for row in batch]

    # The log: TRL's share of zero-std groups is the observed one; the prediction starts at
    # the prior's (E[p^4 + (1 - p)^4] = 2/5 under Beta(1, 1)); the bands and the ESS are
    # those of the final tracker and weights.
    logs = [entry for entry in trainer.state.log_history if "katdensity/distinct_ess" in entry]
    assert len(logs) == 6
    for entry in logs:
        assert entry["katdensity/zero_variance_observed"] == entry["frac_reward_zero_std"]
    assert logs[0]["katdensity/zero_variance_predicted"] == pytest.approx(0.4)
    seen = evidence > 0
    rates = tracker.pass_rate()[seen]
    failed, solved = PASS_RATE_BANDS
    assert logs[-1]["katdensity/prompts_seen"] == pytest.approx(seen.double().mean().item())
    assert logs[-1]["katdensity/pass_rate_failed"] == pytest.approx(
        (rates < failed).double().mean().item()
    )
    assert logs[-1]["katdensity/pass_rate_solved"] == pytest.approx(
        (rates > solved).double().mean().item()
    )
    assert logs[-1]["katdensity/distinct_ess"] == pytest.approx(effective_sample_size(weights))


def test_policy_weights_learn_through_learnability_weighting(tmp_path: Path) -> None:
    trainer, _ = learning_run(tmp_path, density_weights="policy", options={"max_steps": 2})
    tracker = trainer.learnability_tracker
    assert tracker.density is trainer.density_result  # borrows along the kNN graph
    trainer.train()
    assert tracker.updates == 2
    expected = LearnabilityWeighting(tracker)(trainer.density_result)
    torch.testing.assert_close(trainer.density_sampler.weights, expected)

    # A refresh recomputes the density, and the weights are its times learnability.
    trainer, _ = learning_run(
        tmp_path,
        density_weights="policy",
        options={"max_steps": 2},
        callbacks=[DensityRefreshCallback(every_n_steps=1)],
    )
    built_with = trainer.density_result
    trainer.train()
    assert trainer.density_result is not built_with
    expected = LearnabilityWeighting(trainer.learnability_tracker)(trainer.density_result)
    torch.testing.assert_close(trainer.density_sampler.weights, expected)


def test_exact_copies_share_one_posterior_without_a_density(tokenizer: Any, tmp_path: Path) -> None:
    from datasets import Dataset

    rows = prompt_rows()
    rows["prompt"][1] = rows["prompt"][0]
    trainer = build(tokenizer, Dataset.from_dict(rows), tmp_path, learnability=True)
    tracker = trainer.learnability_tracker
    assert tracker.num_distinct == N_PROMPTS - 1
    tracker.update([0, 0], [1.0, 1.0])
    assert tracker.evidence()[1] == 2


def test_a_given_tracker_is_used_and_checked(tmp_path: Path) -> None:
    tracker = LearnabilityTracker(N_PROMPTS, reward_range=(0.0, 2.0), half_life=3)
    trainer, _ = learning_run(tmp_path, learnability=tracker, options={"max_steps": 1})
    assert trainer.learnability_tracker is tracker
    trainer.train()
    assert tracker.updates == 1
    with pytest.raises(InvalidInputError, match=r"track the 24 rows .* num_prompts=23"):
        learning_run(tmp_path, learnability=LearnabilityTracker(N_PROMPTS - 1))
    with pytest.raises(InvalidInputError, match="learnability should be True, False or a"):
        learning_run(tmp_path, learnability="yes")


def test_rewards_outside_the_range_name_the_fix(tmp_path: Path) -> None:
    tracker = LearnabilityTracker(N_PROMPTS, reward_range=(0.0, 0.5))
    trainer, _ = learning_run(tmp_path, learnability=tracker, options={"max_steps": 1})
    with pytest.raises(InvalidInputError, match=r"reward_range \[0.0, 0.5\].*reward_range="):
        trainer.train()
    assert tracker.updates == 0


def test_a_dataset_with_the_row_column_is_refused(tokenizer: Any, tmp_path: Path) -> None:
    from datasets import Dataset

    rows = {**prompt_rows(), ROW_COLUMN: list(range(N_PROMPTS))}
    with pytest.raises(InvalidInputError, match="remove_columns"):
        build(tokenizer, Dataset.from_dict(rows), tmp_path, learnability=True)


def test_a_version_2_sampler_state_still_loads() -> None:
    inner = InverseDensitySampler(torch.ones(6), seed=0, distributed="replicate", group_size=2)
    sampler = DensityRepeatSampler(inner, batch_size=3, repeat_count=2)
    sampler.set_epoch(1)
    first = list(sampler)
    state = sampler.state_dict()
    old = {key: value for key, value in state["sampler"].items() if key != "chunk_size"}
    old.update(version=2, epoch_weights=old.pop("chunk_weights")[0])
    restored = DensityRepeatSampler(
        InverseDensitySampler(torch.ones(6), seed=0, distributed="replicate", group_size=2),
        batch_size=3,
        repeat_count=2,
    )
    restored.load_state_dict({**state, "version": 2, "sampler": old})
    restored.set_epoch(1)
    assert list(restored) == first


def test_resumed_run_with_learnability_trains_on_the_uninterrupted_prompts(
    tmp_path: Path,
) -> None:
    def run(out: Path, resume: str | None = None) -> tuple[Any, KnownPassRates]:
        trainer, reward = learning_run(
            out,
            density_num_samples=16,  # a pass is 4 steps: the checkpoint is mid-pass
            options={"max_steps": 7, "save_strategy": "steps", "save_steps": 3},
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer, reward

    whole, whole_reward = run(tmp_path / "whole")
    checkpoint = tmp_path / "whole" / "checkpoint-3"
    state = torch.load(checkpoint / SAMPLER_STATE_NAME, weights_only=True)
    assert state["version"] == 3 and state["learnability"]["updates"] == 3
    resumed, resumed_reward = run(tmp_path / "resumed", resume=str(checkpoint))
    assert resumed_reward.batches == whole_reward.batches[3:]
    assert_same(resumed.learnability_tracker.state_dict(), whole.learnability_tracker.state_dict())
    assert torch.equal(resumed.density_sampler.weights, whole.density_sampler.weights)


# --- two ranks -----------------------------------------------------------------------


def _rank(rank: int, port: int, out: str) -> None:
    """One of two gloo processes, as `accelerate launch` would start them."""
    import os
    import warnings

    import torch.distributed as dist

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )  # fmt: skip
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", FutureWarning)
    # Each rank is handed different weights; every rank uses rank 0's.
    own = torch.rand(N_PROMPTS, generator=torch.Generator().manual_seed(rank))
    trainer, reward = learning_run(
        Path(out),
        density_weights=own,
        options={"per_device_train_batch_size": 8, "ddp_timeout": 60},
    )
    trainer.train()
    torch.save(
        {
            "world": dist.get_world_size(),
            "tracker": trainer.learnability_tracker.state_dict(),
            "sampler": trainer.density_sampler.state_dict(),
            "batches": reward.batches,
        },
        Path(out, f"rank{rank}.pt"),
    )
    # See the NOTE in examples/ddp_snippet.py: skip the teardown, where gloo may abort.
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


def test_two_ranks_learn_identically_and_split_one_order(tmp_path: Path) -> None:
    spawn_two_ranks(_rank, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["world"] == 2
    assert_same(ranks[1]["tracker"], ranks[0]["tracker"])
    assert_same(ranks[1]["sampler"], ranks[0]["sampler"])
    # Every completion of both ranks reached both trackers, with its row.
    tracker = LearnabilityTracker(N_PROMPTS, half_life=ranks[0]["tracker"]["half_life"])
    tracker.load_state_dict(ranks[0]["tracker"])
    assert tracker.updates == 6
    torch.testing.assert_close(tracker.pass_rate(), expected_pass_rate(tracker.evidence()))
    # Each generation batch (4 prompts x 4 completions) is split between the ranks in the
    # order drawn chunk by chunk from the learned weights.
    steps = zip(ranks[0]["batches"], ranks[1]["batches"], strict=True)
    trained = [row for halves in steps for half in halves for row in half]
    assert len(trained) == 6 * 16
    assert trained == train_order(ranks[0]["sampler"], batch_size=4)
    fade = 0.5 ** (1 / tracker.half_life)  # evidence halves every epoch
    expected = sum(
        torch.bincount(torch.tensor(trained[16 * step : 16 * (step + 1)]), minlength=N_PROMPTS)
        * fade ** (5 - step)
        for step in range(6)
    )
    torch.testing.assert_close(tracker.evidence(), expected.double())
