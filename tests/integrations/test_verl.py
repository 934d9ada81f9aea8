"""katdensity.integrations.verl without verl: options, id matching, draws, resume state.

verl's own call paths are tested in its environment (tests/verl, run by .ci/verl_check).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from katdensity import ExactKNNDensity, InverseDensitySampler, InverseDensityWeighting
from katdensity.errors import InvalidInputError, MissingDependencyError
from katdensity.integrations import verl as integration
from katdensity.integrations.verl import (
    DensityOptions,
    DensitySampler,
    create_rl_sampler,
    dataset_prompts,
)
from katdensity.io import load_embeddings, load_weights
from tests.verl.layout import (
    FIRST_ID,
    N_PROMPTS,
    prompt_text,
    write_density_files,
    write_prompts,
)


class FrameDataset:
    """What verl's RLHFDataset shows of its rows: a `datasets.Dataset` named `dataframe`."""

    def __init__(self, frame: Any) -> None:
        self.dataframe = frame

    def __len__(self) -> int:
        return len(self.dataframe)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """`(parquet, embeddings, weights)` of the test prompt set."""
    folder = tmp_path_factory.mktemp("verl")
    parquet = write_prompts(folder / "train.parquet")
    return (parquet, *write_density_files(parquet, folder))


def dataset(parquet: Path, rows: list[int]) -> FrameDataset:
    """The rows `rows` of `parquet`, in that order, as verl keeps them after filtering."""
    from datasets import Dataset

    return FrameDataset(Dataset.from_parquet(str(parquet)).select(rows))


# Rows 5..36 in reverse: fewer rows than the file, in another order.
ROWS = list(range(36, 4, -1))


def test_no_density_section_means_no_options() -> None:
    assert DensityOptions.from_data_config({"shuffle": True, "seed": None}) is None


def test_options_are_read_from_the_density_section() -> None:
    section = {"embeddings": "e.pt", "k": 5, "beta": 0.5, "min_ess_ratio": None, "seed": 3}
    options = DensityOptions.from_data_config({"density": section})
    assert options == DensityOptions(embeddings="e.pt", k=5, beta=0.5, min_ess_ratio=None, seed=3)
    assert options is not None and options.max_weight_ratio == 20.0 and options.weights is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"weight": "w.pt"}, r"only weights, embeddings, .* but got weight"),
        ({}, r"one source of weights"),
        ({"weights": "w.pt", "embeddings": "e.pt"}, r"one source of weights"),
        ({"weights": "w.pt", "beta": 0.5}, r"data.density.beta shapes weights computed"),
        ({"embeddings": "e.pt", "beta": -1}, r"data.density.beta"),
        ({"embeddings": "e.pt", "k": 0}, r"data.density.k"),
        ({"embeddings": "e.pt", "min_ess_ratio": 0}, r"data.density.min_ess_ratio"),
        ({"weights": "w.pt", "seed": "one"}, r"data.density.seed should be an integer"),
        ({"weights": 3}, r"data.density.weights should be a path"),
    ],
)
def test_bad_options_are_named(section: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        DensityOptions.from_data_config({"density": section})


def test_dataset_prompts_carry_the_ids_katdensity_embed_gave(
    files: tuple[Path, Path, Path],
) -> None:
    parquet, embeddings, _ = files
    prompts = dataset_prompts(dataset(parquet, ROWS))
    assert [p.id for p in prompts] == [str(FIRST_ID + row) for row in ROWS]
    stored = load_embeddings(embeddings)
    assert stored.ids == [str(FIRST_ID + row) for row in range(N_PROMPTS)]
    assert [p.text for p in prompts] == [prompt_text(row) for row in ROWS]  # the user turns


def test_a_weights_file_is_matched_to_the_rows_by_id(files: tuple[Path, Path, Path]) -> None:
    parquet, _, weights = files
    config = {"shuffle": True, "seed": 7, "density": {"weights": str(weights)}}
    sampler = create_rl_sampler(config, dataset(parquet, ROWS))

    stored = load_weights(weights)
    expected = stored.weights[[stored.ids.index(str(FIRST_ID + row)) for row in ROWS]]
    assert isinstance(sampler, DensitySampler)
    torch.testing.assert_close(sampler.weights, expected.double() / expected.sum())
    assert not torch.allclose(sampler.weights, stored.weights[: len(ROWS)].double())
    # The draw is InverseDensitySampler's, seeded by data.seed, one index per prompt.
    assert list(sampler) == list(InverseDensitySampler(expected, seed=7))
    assert len(sampler) == len(ROWS) and sampler.group_size == 1


def test_embeddings_are_weighed_over_the_dataset_rows(files: tuple[Path, Path, Path]) -> None:
    parquet, embeddings, _ = files
    section = {"embeddings": str(embeddings), "k": 5, "beta": 0.5, "seed": 2}
    sampler = create_rl_sampler({"density": section, "seed": 9}, dataset(parquet, ROWS))

    stored = load_embeddings(embeddings)
    rows = [stored.ids.index(str(FIRST_ID + row)) for row in ROWS]
    expected = InverseDensitySampler.from_embeddings(
        stored.embeddings[rows], ExactKNNDensity(k=5), InverseDensityWeighting(0.5), seed=2
    )
    torch.testing.assert_close(sampler.weights, expected.weights)
    assert list(sampler) == list(expected)  # data.density.seed wins over data.seed
    dense = torch.tensor([row % 3 == 0 for row in ROWS])
    assert sampler.weights[dense].sum() < dense.double().mean()  # the dense topic, less


def test_dataset_ids_the_file_lacks_are_named(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, _, weights = files
    bigger = write_prompts(tmp_path / "bigger.parquet", n=N_PROMPTS + 2)
    with pytest.raises(InvalidInputError, match=r"2 of 50 are not in it, e.g. \['1048', '1049'\]"):
        create_rl_sampler({"density": {"weights": str(weights)}}, dataset(bigger, list(range(50))))


def test_repeated_dataset_ids_are_refused(files: tuple[Path, Path, Path]) -> None:
    parquet, _, weights = files
    with pytest.raises(
        InvalidInputError, match=r"should hold each id once, but id '1003' is in rows 0 and 2"
    ):
        create_rl_sampler({"density": {"weights": str(weights)}}, dataset(parquet, [3, 4, 3]))


def test_density_without_shuffle_is_refused(files: tuple[Path, Path, Path]) -> None:
    parquet, _, weights = files
    config = {"shuffle": False, "density": {"weights": str(weights)}}
    with pytest.raises(InvalidInputError, match=r"data.shuffle=False"):
        create_rl_sampler(config, dataset(parquet, ROWS))


def test_a_dataset_without_rows_is_named() -> None:
    with pytest.raises(InvalidInputError, match=r"dataframe, but list has none"):
        dataset_prompts([1, 2, 3])


def test_resume_continues_the_epoch_then_draws_from_the_new_weights() -> None:
    old, new = torch.rand(40, generator=torch.Generator().manual_seed(0)), torch.ones(40)
    before = DensitySampler(old, seed=1)
    epoch = iter(before)
    drawn = [next(epoch) for _ in range(13)]
    state = before.state_dict()

    resumed = DensitySampler(new, seed=1)  # a rewritten weights file
    resumed.load_state_dict(state)
    assert drawn + list(resumed) == list(InverseDensitySampler(old, seed=1))
    following = InverseDensitySampler(new, seed=1)
    following.set_epoch(1)
    assert list(resumed) == list(following)


def test_without_verl_the_fallback_and_install_name_the_extra(
    files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("verl", "verl.trainer", "verl.trainer.ppo", "verl.trainer.ppo.utils"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError
    monkeypatch.setattr(integration, "_verl_create_rl_sampler", None)
    with pytest.raises(MissingDependencyError, match=r"katdensity\[verl\]"):
        integration.install()
    with pytest.raises(MissingDependencyError, match=r"katdensity\[verl\]"):
        create_rl_sampler({"shuffle": True}, dataset(files[0], ROWS))


def test_the_entry_point_adds_the_ray_setup_hook() -> None:
    hook = (
        "++ray_kwargs.ray_init.runtime_env.worker_process_setup_hook="
        "katdensity.integrations.verl.install"
    )
    overrides = ["data.train_files=t.parquet", "+data.density.weights=w.pt"]
    assert integration._verl_argv(overrides) == [*overrides, hook]
    with pytest.raises(InvalidInputError, match=r"worker_process_setup_hook is set by"):
        integration._verl_argv(["+" + hook.lstrip("+").replace("install", "mine")])


def test_the_entry_point_help_names_its_one_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        integration.main(["--help"])
    assert exit_info.value.code == 0
    assert "--entry MODULE" in capsys.readouterr().out
