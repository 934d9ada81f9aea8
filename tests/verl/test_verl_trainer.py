"""katdensity.integrations.verl inside verl: its dataloader, its checkpoints, its Ray workers.

Run in verl's environment (`.ci/verl_check`); the folder's conftest leaves it out elsewhere.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from katdensity import InverseDensitySampler
from katdensity.integrations import verl as integration
from katdensity.integrations.verl import DensitySampler, create_rl_sampler, install
from katdensity.io import load_weights
from tests.verl.layout import FIRST_ID, IMPORTERS, write_density_files, write_prompts

BATCH = 6  # 40 rows: 6 batches and 4 rows that verl drops (drop_last) every epoch
SUBSET = 40  # data.train_max_samples: verl keeps 40 of the 48 rows, chosen with data.seed


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`(parquet, weights)`: the test prompt set in verl's layout and its weights file."""
    folder = tmp_path_factory.mktemp("verl")
    parquet = write_prompts(folder / "train.parquet")
    return parquet, write_density_files(parquet, folder)[1]


def overrides(files: tuple[Path, Path], *extra: str) -> list[str]:
    parquet, weights = files
    return [
        f"data.train_files={parquet}",
        f"data.val_files={parquet}",
        f"data.train_batch_size={BATCH}",
        f"data.train_max_samples={SUBSET}",
        "data.seed=7",
        "data.dataloader_num_workers=0",
        "actor_rollout_ref.rollout.n=4",
        f"+data.density.weights={weights}",
        *extra,
    ]


def verl_config(overrides: list[str]) -> Any:
    """verl's PPO config with `overrides`, composed as `python -m verl.trainer.main_ppo` does."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("verl.trainer.config", version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def train_dataloader(config: Any) -> Any:
    """The train dataloader verl's RayPPOTrainer builds, without its Ray workers."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    trainer = RayPPOTrainer.__new__(RayPPOTrainer)
    trainer.config, trainer.tokenizer, trainer.processor = config, None, None
    trainer._create_dataloader(None, None, None, None)
    return trainer.train_dataloader


def expected_ids(dataset: Any, weights: Path, seed: int) -> Iterator[int]:
    """The ids InverseDensitySampler draws with the file's weights for `dataset`'s rows."""
    ids = [str(extra["index"]) for extra in dataset.dataframe["extra_info"]]
    stored = load_weights(weights)
    sampler = InverseDensitySampler(stored.weights[[stored.ids.index(i) for i in ids]], seed=seed)
    while True:  # epoch after epoch, as verl iterates the dataloader
        yield from (int(ids[row]) for row in sampler)


def batch_ids(batch: dict[str, Any]) -> list[int]:
    return [int(index) for index in batch["index"]]  # extra_info.index of each drawn row


def test_install_replaces_verls_function_wherever_it_was_imported(
    files: tuple[Path, Path],
) -> None:
    modules = [importlib.import_module(name) for name in IMPORTERS]
    install()
    install()  # a second call changes nothing
    assert all(module.create_rl_sampler is create_rl_sampler for module in modules)
    verls = integration._verl_create_rl_sampler
    assert verls is not None and verls.__module__ == "verl.trainer.ppo.utils"

    # Without data.density, verl's own samplers.
    from torch.utils.data import SequentialSampler
    from torchdata.stateful_dataloader.sampler import RandomSampler

    config = verl_config([o for o in overrides(files) if "density" not in o])
    utils = modules[0]
    dataset = utils.create_rl_dataset(config.data.train_files, config.data, None, None)
    assert isinstance(utils.create_rl_sampler(config.data, dataset), RandomSampler)
    config.data.shuffle = False
    assert isinstance(utils.create_rl_sampler(config.data, dataset), SequentialSampler)


def test_verls_dataloader_draws_inversely_to_density(files: tuple[Path, Path]) -> None:
    install()
    loader = train_dataloader(verl_config(overrides(files)))
    assert isinstance(loader.sampler, DensitySampler)
    assert len(loader.dataset) == SUBSET and len(loader) == SUBSET // BATCH

    batches = [batch_ids(batch) for batch in loader]
    # One id per prompt drawn: rollout.n=4 repeats are verl's, after the draw.
    assert [len(batch) for batch in batches] == [BATCH] * (SUBSET // BATCH)
    drawn = [i for batch in batches for i in batch]
    expected = expected_ids(loader.dataset, files[1], seed=7)
    assert drawn == [next(expected) for _ in drawn]
    dense = sum((i - FIRST_ID) % 3 == 0 for i in drawn) / len(drawn)
    kept = [int(e["index"]) for e in loader.dataset.dataframe["extra_info"]]
    assert dense < sum((i - FIRST_ID) % 3 == 0 for i in kept) / len(kept)  # drawn less


@pytest.mark.parametrize("workers", [0, 2])
def test_a_checkpoint_resumes_the_exact_sequence(
    files: tuple[Path, Path], tmp_path: Path, workers: int
) -> None:
    install()
    config = verl_config(overrides(files, f"data.dataloader_num_workers={workers}"))
    epochs, stop = 3, SUBSET // BATCH + 2  # stop mid-way through the second epoch

    def fit(loader: Any, epochs: int) -> Iterator[list[int]]:
        for _ in range(epochs):  # as RayPPOTrainer.fit: each epoch iterates the loader anew
            for batch in loader:
                yield batch_ids(batch)

    uninterrupted = list(fit(train_dataloader(config), epochs))

    loader = train_dataloader(config)
    steps = fit(loader, epochs)
    before = [next(steps) for _ in range(stop)]
    torch.save(loader.state_dict(), tmp_path / "data.pt")  # RayPPOTrainer._save_checkpoint
    steps.close()

    resumed = train_dataloader(config)  # a new process: a new sampler, at its first epoch
    resumed.load_state_dict(torch.load(tmp_path / "data.pt", weights_only=False))
    after = list(fit(resumed, epochs - 1))  # fit restarts at the interrupted epoch
    assert before + after == uninterrupted


@pytest.mark.slow
# --doctest-modules imported the probe while collecting; runpy runs a fresh copy as __main__.
@pytest.mark.filterwarnings("ignore:'tests.verl.ray_probe' found in sys.modules:RuntimeWarning")
def test_the_entry_point_installs_the_sampler_in_verls_ray_workers(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    monkeypatch.setattr(sys, "argv", sys.argv[:])
    out = tmp_path / "probe.json"
    command = [
        "--entry",
        "tests.verl.ray_probe",
        *overrides(files),
        "ray_kwargs.ray_init.num_cpus=1",
        "++ray_kwargs.ray_init.include_dashboard=false",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        f"+probe_out={out}",
    ]
    try:
        integration.main(command)
    finally:
        ray.shutdown()
    report = json.loads(out.read_text())
    assert report.pop("pid") != os.getpid()  # built in a Ray worker, not in this process

    dataset = train_dataloader(verl_config(overrides(files))).dataset
    ids = [str(extra["index"]) for extra in dataset.dataframe["extra_info"]]
    expected = expected_ids(dataset, files[1], seed=7)
    draws = [ids.index(str(next(expected))) for _ in range(SUBSET)]
    assert report == {name: {"class": "DensitySampler", "draws": draws} for name in IMPORTERS}
