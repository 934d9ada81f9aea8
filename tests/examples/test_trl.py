"""The TRL recipe runs, on the policy's weights and on a `katdensity weights` file.

The trainer itself is tested in tests/integrations/test_trl.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # from transformers

from examples import data  # noqa: E402
from examples.trl_grpo import main  # noqa: E402
from katdensity.integrations.trl import DensityGRPOTrainer, DensityRefreshCallback  # noqa: E402


def test_recipe_trains_on_the_policys_weights_and_refreshes_them(tmp_path: Path) -> None:
    trainer = main(
        ["--max-steps", "2", "--refresh-every", "1", "--device", "cpu",
         "--output-dir", str(tmp_path), "--templates", "2", "--modifiers", "1"]
    )  # fmt: skip
    assert isinstance(trainer, DensityGRPOTrainer) and trainer.state.global_step == 2
    phrased, _ = data.load_data(None, topic_size=60, seed=0, templates=2, modifiers=1)
    assert trainer.train_dataset["prompt"] == [e.prompt for e in phrased]
    assert any(isinstance(c, DensityRefreshCallback) for c in trainer.callback_handler.callbacks)
    assert trainer.density_sampler is not None
    assert not torch.equal(trainer.density_sampler.weights, trainer.density_weights)


def test_recipe_trains_on_a_weights_file_from_the_command_line(tmp_path: Path) -> None:
    data.main(["--out", str(tmp_path), "--topic-size", "60", "--seed", "0"])
    for command in (
        ["embed", "--data", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "emb.pt")],
        ["weights", "--emb", str(tmp_path / "emb.pt"), "--out", str(tmp_path / "weights.pt")],
    ):
        subprocess.run([sys.executable, "-m", "katdensity", "--quiet", *command], check=True)
    trainer = main(
        ["--max-steps", "1", "--weights", str(tmp_path / "weights.pt"), "--device", "cpu",
         "--output-dir", str(tmp_path / "run")]
    )  # fmt: skip
    assert trainer.state.global_step == 1
    assert trainer.density_weights.shape == (len(trainer.train_dataset),)
