from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from examples.verl_sampler import DensitySampler
from katdensity.io import save_embeddings
from katdensity.synthetic import prompt_mixture


def write(path: Path, embeddings: torch.Tensor) -> None:
    save_embeddings(path, [f"p{i}" for i in range(len(embeddings))], embeddings)


def test_verl_constructor_shape_draws_away_from_the_dense_modes(tmp_path: Path) -> None:
    data = prompt_mixture(n_topics=4, topic_size=200, n_modes=2, mode_size=100, seed=0)
    write(tmp_path / "emb.pt", data.embeddings)
    config = {"seed": 3, "sampler": {"embeddings": str(tmp_path / "emb.pt"), "k": 10}}
    sampler = DensitySampler(data_source=range(len(data.embeddings)), data_config=config)
    drawn = torch.tensor(list(sampler))
    assert len(drawn) == len(sampler) == len(data.embeddings)
    in_modes = (data.mode[drawn] >= 0).float().mean()
    assert in_modes < 0.5 * (data.mode >= 0).float().mean()  # near-duplicates drawn less
    assert list(DensitySampler(range(len(drawn)), config)) == drawn.tolist()  # seeded


def test_update_reloads_rewritten_embeddings_from_the_next_epoch(tmp_path: Path) -> None:
    embeddings = prompt_mixture(n_topics=2, topic_size=100, n_modes=0, seed=0).embeddings
    path = tmp_path / "emb.pt"
    write(path, embeddings)
    config = {"sampler": {"embeddings": str(path), "refresh_every": 2}}
    sampler = DensitySampler(range(len(embeddings)), config)
    before = sampler.sampler.weights.clone()
    batch = SimpleNamespace(meta_info={})  # stands in for verl's DataProto
    sampler.update(batch)
    sampler.update(batch)  # the file has not changed: the weights stay
    assert torch.equal(sampler.sampler.weights, before)

    shifted = embeddings.clone()
    shifted[:50] = shifted[0]  # 50 copies of one prompt: a new dense mode
    write(path, shifted)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # a visibly newer file
    sampler.update(batch)  # step 3: not a refresh step
    assert torch.equal(sampler.sampler.weights, before)
    sampler.update(batch)  # step 4: reloads
    assert sampler.sampler.weights[:50].sum() < before[:50].sum()

    state = sampler.state_dict()
    resumed = DensitySampler(range(len(embeddings)), config)
    resumed.load_state_dict(state)
    assert resumed.steps == 4 and list(resumed) == list(sampler)


def test_missing_embeddings_option_names_it() -> None:
    with pytest.raises(ValueError, match=r"data.sampler.embeddings"):
        DensitySampler(range(3), {"sampler": {}})
