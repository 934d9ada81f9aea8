"""The TRL recipe, when trl is installed (`pip install "katdensity[examples]"`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # from transformers

from examples.trl_grpo import DensityRepeatSampler, main  # noqa: E402
from katdensity import InverseDensitySampler  # noqa: E402


def test_repeat_structure_matches_trl_repeat_sampler() -> None:
    from trl.trainer.utils import RepeatSampler

    weights = torch.ones(12, dtype=torch.float64)
    weights[[0, 5]] = 0.0  # never drawn
    sampler = DensityRepeatSampler(
        InverseDensitySampler(weights, seed=0, distributed="replicate", group_size=2),
        batch_size=3,
        repeat_count=4,
    )
    ours = list(sampler)
    reference = list(RepeatSampler(range(12), mini_repeat_count=2, batch_size=3, repeat_count=4))
    assert len(ours) == len(sampler) == len(reference) == 12 * 2 * 4
    assert 0 not in ours and 5 not in ours
    for start in range(0, len(ours), 3 * 2 * 4):  # one chunk, repeated: same shape as TRL's
        block, trl_block = ours[start : start + 24], reference[start : start + 24]
        assert block[:6] * 4 == block and trl_block[:6] * 4 == trl_block
        assert all(block[i] == block[i + 1] for i in range(0, 6, 2))
    for rank in (0, 1):  # every rank the same order
        other = InverseDensitySampler(
            weights, seed=0, distributed="replicate", group_size=2, num_replicas=2, rank=rank
        )
        assert list(DensityRepeatSampler(other, 3, 4)) == ours


def test_trainer_draws_prompts_from_the_density_sampler(tmp_path: Path) -> None:
    trainer = main(["--max-steps", "2", "--device", "cpu", "--output-dir", str(tmp_path)])
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, DensityRepeatSampler)
    assert sampler.sampler.group_size == trainer.num_generations
    assert sampler.repeat_count == trainer.num_iterations * trainer.args.steps_per_generation
    assert trainer.state.global_step == 2
    # The trainer's data loader yields the prompts in the sampler's order.
    sampler.set_epoch(0)
    order = list(sampler)
    first = next(iter(trainer.get_train_dataloader()))
    assert [row["prompt"] for row in first] == [
        trainer.train_dataset[i]["prompt"] for i in order[: len(first)]
    ]
