"""katdensity.integrations.verl without verl: options, id matching, draws, resume state, and
learnability fed by batches shaped as verl's trainers give them.

verl's own call paths are tested in its environment (tests/verl, run by .ci/verl_check).
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from katdensity import (
    ExactKNNDensity,
    InverseDensitySampler,
    InverseDensityWeighting,
    LearnabilityTracker,
    effective_sample_size,
)
from katdensity.errors import InvalidInputError, MissingDependencyError
from katdensity.integrations import _verl_learning as learning
from katdensity.integrations import verl as integration
from katdensity.integrations.verl import (
    DensityOptions,
    DensitySampler,
    create_rl_sampler,
    dataset_prompts,
)
from katdensity.io import Prompt, load_embeddings, load_weights
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


# ---------------------------------------------------------------------------------------
# Learnability: the tracker fed by verl's training batches.

BATCH = 6  # data.train_batch_size: 32 rows make 5 batches an epoch, 2 rows dropped
N = 4  # actor_rollout_ref.rollout.n


def passes(prompt_id: int, completion: int) -> float:
    """The reward oracle: the dense topic always passes, the row after it never, the rest
    every other completion (the only groups whose rewards differ)."""
    kind = (prompt_id - FIRST_ID) % 3
    return 1.0 if kind == 0 else 0.0 if kind == 1 else float(completion % 2)


def learning_config(source: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {
        "shuffle": True,
        "seed": 7,
        "train_batch_size": BATCH,
        "dataloader_num_workers": 0,
        "density": {**source, "learnability": True, **options},
    }


def verl_batches(sampler: DensitySampler) -> Iterator[list[int]]:
    """The dataset rows of each batch verl's dataloader reads: `BATCH` at a time, an
    incomplete last batch dropped, epoch after epoch."""
    while True:
        batch: list[int] = []
        for row in sampler:
            batch.append(row)
            if len(batch) == BATCH:
                yield batch
                batch = []


def train(
    sampler: DensitySampler,
    data: FrameDataset,
    steps: int,
    *,
    batches: Iterator[list[int]],
    logged: list[dict[str, float]] | None = None,
) -> list[int]:
    """`steps` training steps as verl's trainers run them: draw a batch, roll each prompt
    out N times, feed the rewards; the rows drawn (the metrics of each step to `logged`)."""
    ids = [int(extra["index"]) for extra in data.dataframe["extra_info"]]
    assert sampler.learner is not None
    drawn: list[int] = []
    for _ in range(steps):
        rows = next(batches)
        drawn += rows
        step = sampler.learner.tracker.updates
        indices = [ids[row] for row in rows for _ in range(N)]  # repeat(interleave=True)
        groups = [f"{step}-{k}" for k in range(len(rows)) for _ in range(N)]
        rewards = torch.tensor([passes(ids[row], j) for row in rows for j in range(N)])
        metrics = sampler.learner.feed(sampler, indices, groups, rewards)
        if logged is not None:
            logged.append(metrics)
    return drawn


@pytest.fixture
def weights_source(files: tuple[Path, Path, Path]) -> dict[str, Any]:
    return {"weights": str(files[2])}


def test_learnability_options_are_read_and_checked() -> None:
    section = {
        "weights": "w.pt",
        "learnability": True,
        "reward_range": [-1, 1],
        "learnability_strength": 0.5,
        "learnability_half_life": 20,
    }
    options = DensityOptions.from_data_config({"density": section})
    assert options is not None and options.reward_range == (-1.0, 1.0)
    assert options.learnability_strength == 0.5 and options.learnability_half_life == 20
    assert DensityOptions(weights="w.pt").learnability is False


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"learnability": "yes"}, r"learnability should be true or false"),
        ({"reward_range": [0, 1]}, r"reward_range shapes learnability, which is off"),
        ({"learnability": True, "reward_range": [1, 0]}, r"low < high, but got .*\[1.0, 0.0\]"),
        ({"learnability": True, "reward_range": "0,1"}, r"reward_range should be \[low, high\]"),
        ({"learnability": True, "learnability_strength": -1}, r"learnability_strength should"),
        ({"learnability": True, "learnability_half_life": 0}, r"learnability_half_life should"),
    ],
)
def test_bad_learnability_options_are_named(section: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        DensityOptions.from_data_config({"density": {"weights": "w.pt", **section}})


def test_learnability_draws_one_chunk_per_training_batch(
    files: tuple[Path, Path, Path], weights_source: dict[str, Any]
) -> None:
    sampler = create_rl_sampler(learning_config(weights_source), dataset(files[0], ROWS))
    assert isinstance(sampler, DensitySampler) and sampler.learner is not None
    assert sampler.chunk_size == BATCH and sampler.group_size == 1 and len(sampler) == len(ROWS)
    # Before any reward, density alone: the weights file's, as without learnability.
    plain = create_rl_sampler(
        {"shuffle": True, "seed": 7, "density": weights_source}, dataset(files[0], ROWS)
    )
    torch.testing.assert_close(sampler.weights, plain.weights)
    tracker = sampler.learner.tracker
    assert tracker.num_prompts == len(ROWS) and tracker.num_distinct == len(ROWS)
    assert tracker.reward_range == (0.0, 1.0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"dataloader_num_workers": 8}, r"needs data.dataloader_num_workers=0 .* got .*=8"),
        ({"train_batch_size": None}, r"data.train_batch_size should be an integer"),
    ],
)
def test_learnability_refuses_a_dataloader_it_cannot_follow(
    files: tuple[Path, Path, Path],
    weights_source: dict[str, Any],
    config: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        create_rl_sampler({**learning_config(weights_source), **config}, dataset(files[0], ROWS))


def test_batches_drawn_without_rewards_are_named_once(
    files: tuple[Path, Path, Path],
    weights_source: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A verl main whose trainer katdensity does not hook (the fully-async rollouter, say):
    # batch after batch is drawn, and no reward comes.
    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    data = dataset(files[0], ROWS)
    sampler = create_rl_sampler(learning_config(weights_source), data)
    assert isinstance(sampler, DensitySampler)
    batches = verl_batches(sampler)
    for _ in range(3):
        next(batches)
    assert warnings() == []
    for _ in range(4):
        next(batches)
    assert warnings() == [
        "data.density.learnability: 3 training batches were drawn and no rewards have "
        "reached the tracker; only the trainers of verl.trainer.main_ppo feed it (the v1 "
        "trainer and the legacy RayPPOTrainer), and until they do, batches are drawn by "
        "density alone"
    ]
    caplog.clear()
    fed = create_rl_sampler(learning_config(weights_source), data)
    assert isinstance(fed, DensitySampler)
    train(fed, data, 6, batches=verl_batches(fed))
    assert warnings() == []


def test_each_reward_reaches_the_row_of_its_index(
    files: tuple[Path, Path, Path], weights_source: dict[str, Any]
) -> None:
    data = dataset(files[0], ROWS)
    sampler = create_rl_sampler(learning_config(weights_source), data)
    assert isinstance(sampler, DensitySampler) and sampler.learner is not None
    # Two groups of prompt id 1010 (dataset row 26, not 10), one of 1011, balanced apart.
    indices = [1010, 1011, 1010, 1011, 1010, 1010, 1011, 1010]
    groups = ["a", "b", "c", "b", "a", "c", "b", "a"]
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    metrics = sampler.learner.feed(sampler, indices, groups, rewards)

    row_1010, row_1011 = ROWS.index(10), ROWS.index(11)
    evidence = sampler.learner.tracker.evidence()
    assert evidence[row_1010] == 5 and evidence[row_1011] == 3 and evidence.sum() == 8
    # Groups a (3 completions, padded to 3) and c: all passed; b: one of three passed.
    assert metrics["katdensity/zero_variance_observed"] == pytest.approx(2 / 3)
    pass_rate = sampler.learner.tracker.pass_rate()
    assert pass_rate[row_1010] == pytest.approx(6 / 7)  # Beta(1 + 5, 1 + 0)
    assert pass_rate[row_1011] == pytest.approx(2 / 5)  # Beta(1 + 1, 1 + 2)
    # The next chunk draws by the new weights: the solved prompt less than the learnable one.
    weights = sampler.weights
    assert weights[row_1010] / weights[row_1011] < (
        sampler.learner.base[row_1010] / sampler.learner.base[row_1011]
    )
    assert metrics["katdensity/distinct_ess"] == pytest.approx(effective_sample_size(weights))


def test_every_group_is_fed_and_reported(
    files: tuple[Path, Path, Path], weights_source: dict[str, Any]
) -> None:
    data = dataset(files[0], ROWS)
    sampler = create_rl_sampler(learning_config(weights_source), data)
    assert isinstance(sampler, DensitySampler) and sampler.learner is not None
    logged: list[dict[str, float]] = []
    drawn = train(sampler, data, 5, batches=verl_batches(sampler), logged=logged)  # an epoch

    # The oracle: each batch's rewards, zero-variance groups included, fed by hand at the
    # dataset rows; evidence halves every epoch by default.
    tracker = sampler.learner.tracker
    assert tracker.half_life == -(-len(ROWS) // BATCH)
    oracle = LearnabilityTracker(len(ROWS), half_life=tracker.half_life)
    for step in range(5):
        rows = drawn[step * BATCH : (step + 1) * BATCH]
        oracle.update(
            [row for row in rows for _ in range(N)],
            [passes(FIRST_ID + ROWS[row], j) for row in rows for j in range(N)],
        )
        flat = sum(ROWS[row] % 3 != 2 for row in rows) / BATCH  # the solved and the failed
        assert logged[step]["katdensity/zero_variance_observed"] == pytest.approx(flat)
        assert set(logged[step]) == {
            "katdensity/" + name
            for name in (
                "zero_variance_predicted",
                "zero_variance_observed",
                "prompts_seen",
                "pass_rate_failed",
                "pass_rate_learnable",
                "pass_rate_solved",
                "distinct_ess",
            )
        }
    torch.testing.assert_close(tracker.evidence(), oracle.evidence())
    torch.testing.assert_close(tracker.pass_rate(), oracle.pass_rate())
    seen = tracker.evidence() > 0
    assert logged[-1]["katdensity/prompts_seen"] == pytest.approx(float(seen.double().mean()))


def test_an_unknown_index_or_a_reward_out_of_range_is_refused(
    files: tuple[Path, Path, Path], weights_source: dict[str, Any]
) -> None:
    sampler = create_rl_sampler(learning_config(weights_source), dataset(files[0], ROWS))
    assert isinstance(sampler, DensitySampler) and sampler.learner is not None
    feed = sampler.learner
    with pytest.raises(InvalidInputError, match=r"no row of the training dataset has index=0"):
        feed.feed(sampler, [0, 0], ["a", "a"], torch.tensor([1.0, 0.0]))  # verl's default
    with pytest.raises(InvalidInputError, match=r"\+data.density.reward_range=\[low,high\]"):
        feed.feed(sampler, [1010, 1010], ["a", "a"], torch.tensor([2.0, 0.0]))
    with pytest.raises(InvalidInputError, match=r"one index, group and reward per completion"):
        feed.feed(sampler, [1010], ["a", "a"], torch.tensor([1.0, 0.0]))
    assert feed.tracker.updates == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([{"index": 1}, {"split": "train"}], r"row 1 has none"),
        ([{"index": 1}, None], r"row 1 has none"),
        ([{"index": 1}, {"index": "1"}], r"rows 0 and 1 both have index='1'"),
    ],
)
def test_rows_without_their_own_extra_info_index_are_refused(
    extra: list[Any], message: str
) -> None:
    prompts = [
        Prompt(id=str(row), text=f"prompt {row}", record={"extra_info": info})
        for row, info in enumerate(extra)
    ]
    with pytest.raises(InvalidInputError, match=message):
        learning.LearnabilityFeed(
            prompts,
            torch.full((2,), 0.5, dtype=torch.float64),
            density=None,
            modes=None,
            reward_range=(0.0, 1.0),
            batch_size=BATCH,
            half_life=None,
            strength=None,
        )


def test_with_embeddings_the_tracker_follows_the_density(files: tuple[Path, Path, Path]) -> None:
    parquet, embeddings, _ = files
    config = learning_config({"embeddings": str(embeddings), "k": 5})
    data = dataset(parquet, ROWS)
    sampler = create_rl_sampler(config, data)
    assert isinstance(sampler, DensitySampler) and sampler.learner is not None
    section = {"embeddings": str(embeddings), "k": 5}
    plain = create_rl_sampler({"seed": 7, "density": section}, data)
    torch.testing.assert_close(sampler.weights, plain.weights)
    # Over the density estimate (copies, neighbours that lend evidence), modes split by outcome.
    feed = sampler.learner
    assert feed.tracker.density is not None and len(feed.tracker.density) == len(ROWS)
    assert feed.modes is not None and feed.modes.shape == (len(ROWS),)
    feed.feed(sampler, [1012] * N, ["a"] * N, torch.ones(N))  # solved
    row = ROWS.index(12)
    assert sampler.weights[row] < plain.weights[row]


def test_the_learnability_state_round_trips_through_a_weights_only_file(
    files: tuple[Path, Path, Path], weights_source: dict[str, Any], tmp_path: Path
) -> None:
    data = dataset(files[0], ROWS)
    sampler = create_rl_sampler(learning_config(weights_source), data)
    assert isinstance(sampler, DensitySampler) and sampler.learner is not None
    train(sampler, data, 3, batches=verl_batches(sampler))
    torch.save(sampler.state_dict(), tmp_path / "data.pt")
    state = torch.load(tmp_path / "data.pt", weights_only=True)

    restored = create_rl_sampler(learning_config(weights_source), data)
    assert isinstance(restored, DensitySampler) and restored.learner is not None
    restored.load_state_dict(state)
    for mine, theirs in zip(
        restored.learner.tracker.state_dict().values(),
        sampler.learner.tracker.state_dict().values(),
        strict=True,
    ):
        assert mine == theirs if not isinstance(mine, torch.Tensor) else torch.equal(mine, theirs)
    assert torch.equal(restored.weights, sampler.weights)


def test_a_resumed_run_draws_and_learns_as_the_uninterrupted_one(
    files: tuple[Path, Path, Path], weights_source: dict[str, Any], tmp_path: Path
) -> None:
    data = dataset(files[0], ROWS)
    config = learning_config(weights_source, learnability_half_life=3)
    steps, stop = 12, 7  # 5 batches an epoch: stop in the middle of the second

    uninterrupted = create_rl_sampler(config, data)
    assert isinstance(uninterrupted, DensitySampler) and uninterrupted.learner is not None
    expected = train(uninterrupted, data, steps, batches=verl_batches(uninterrupted))

    before = create_rl_sampler(config, data)
    assert isinstance(before, DensitySampler)
    drawn = train(before, data, stop, batches=verl_batches(before))
    torch.save(before.state_dict(), tmp_path / "data.pt")  # verl's checkpoint

    resumed = create_rl_sampler(config, data)  # a new process
    assert isinstance(resumed, DensitySampler) and resumed.learner is not None
    resumed.load_state_dict(torch.load(tmp_path / "data.pt", weights_only=True))
    drawn += train(resumed, data, steps - stop, batches=verl_batches(resumed))

    assert drawn == expected
    assert resumed.learner.tracker.updates == steps
    torch.testing.assert_close(
        resumed.learner.tracker.pass_rate(), uninterrupted.learner.tracker.pass_rate()
    )
    torch.testing.assert_close(resumed.weights, uninterrupted.weights)
    # The weights changed between batches: the draw is not the density-only one.
    density_only = InverseDensitySampler(uninterrupted.learner.base, seed=7, chunk_size=BATCH)
    assert expected[: 5 * BATCH] != list(density_only)[: 5 * BATCH]


def test_new_density_weights_apply_times_the_restored_learnability(
    files: tuple[Path, Path, Path], weights_source: dict[str, Any]
) -> None:
    parquet, embeddings, _ = files
    data = dataset(parquet, ROWS)
    sampler = create_rl_sampler(learning_config(weights_source), data)
    assert isinstance(sampler, DensitySampler)
    train(sampler, data, 2, batches=verl_batches(sampler))

    rewritten = create_rl_sampler(learning_config({"embeddings": str(embeddings)}), data)
    assert isinstance(rewritten, DensitySampler) and rewritten.learner is not None
    rewritten.load_state_dict(sampler.state_dict())
    assert rewritten.learner.tracker.updates == 2
    torch.testing.assert_close(rewritten.weights, rewritten.learner.weights())
    assert not torch.allclose(rewritten.weights, sampler.weights)


def test_a_checkpoint_of_another_chunking_is_refused(
    files: tuple[Path, Path, Path], weights_source: dict[str, Any]
) -> None:
    data = dataset(files[0], ROWS)
    learning_sampler = create_rl_sampler(learning_config(weights_source), data)
    plain = create_rl_sampler({"seed": 7, "density": weights_source}, data)
    with pytest.raises(InvalidInputError, match=r"chunks of None prompts and this one draws 6"):
        learning_sampler.load_state_dict(plain.state_dict())  # type: ignore[attr-defined]
    with pytest.raises(InvalidInputError, match=r"keep data.density.learnability"):
        plain.load_state_dict(learning_sampler.state_dict())  # type: ignore[attr-defined]


# The trainer hooks, with stand-ins for verl's objects.


class Batch:
    """What the legacy trainer's `compute_advantage` reads of a DataProto."""

    def __init__(self, indices: list[int], uids: list[str], scores: torch.Tensor) -> None:
        extra_info = [{"split": "train", "index": index} for index in indices]
        self.non_tensor_batch = {
            "extra_info": np.array(extra_info, dtype=object),
            "uid": np.array(uids, dtype=object),
        }
        self.batch = {"token_level_scores": scores}


class Trainer:
    """What the hooks read of a verl trainer."""

    def __init__(self, sampler: Any) -> None:
        self.train_dataloader = types.SimpleNamespace(sampler=sampler)
        self.replay_buffer = types.SimpleNamespace(filter_groups_metric=None)


def test_the_legacy_trainer_feeds_only_inside_fit_and_logs_the_metrics(
    files: tuple[Path, Path, Path], weights_source: dict[str, Any]
) -> None:
    sampler = create_rl_sampler(learning_config(weights_source), dataset(files[0], ROWS))
    assert isinstance(sampler, DensitySampler) and sampler.learner is not None
    compute_advantage = learning._legacy_compute_advantage(lambda data, **kwargs: data)
    data_metrics = learning._legacy_data_metrics(lambda batch, use_critic: {"critic": 0.0})
    # Token-level scores: the reward on the last response token, as verl's reward loop puts it.
    scores = torch.zeros(4, 3)
    scores[:, -1] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    batch = Batch([1010, 1011, 1010, 1011], ["a", "b", "a", "b"], scores)

    compute_advantage(batch, adv_estimator="grpo")  # validation, another trainer: no trainer
    assert sampler.learner.tracker.updates == 0
    logged: dict[str, float] = {}

    def fit(self: Trainer) -> None:  # the legacy loop's calls, in its order
        compute_advantage(batch, adv_estimator="grpo")
        logged.update(data_metrics(batch=batch, use_critic=False))

    learning._legacy_fit(fit)(Trainer(sampler))
    assert sampler.learner.tracker.updates == 1
    evidence = sampler.learner.tracker.evidence()
    assert evidence[ROWS.index(10)] == 2 and evidence[ROWS.index(11)] == 2
    assert logged["critic"] == 0.0
    assert logged["katdensity/zero_variance_observed"] == 0.5  # group b: both failed
    assert sampler.learner.pending_metrics == {}
    assert learning._FITTING.get(None) is None


def test_the_v1_trainer_feeds_each_session_once_without_padding(
    files: tuple[Path, Path, Path],
    weights_source: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sampler = create_rl_sampler(learning_config(weights_source), dataset(files[0], ROWS))
    assert isinstance(sampler, DensitySampler) and sampler.learner is not None
    # Prompt uid "u" (id 1010): session 0 a two-turn trajectory, session 1 one output;
    # prompt "v" (id 1011): two sessions; and one padding sample.
    stored = {
        "u_0_0": (1010, [0.0, 1.0]),
        "u_0_1": (1010, [0.0, 1.0]),
        "u_1_0": (1010, [0.0, 1.0]),
        "v_0_0": (1011, [0.0]),
        "v_1_0": (1011, [1.0]),
        "pad1_0_0": (1010, [0.0]),
    }
    asked: list[tuple[list[str], list[str]]] = []

    def kv_batch_get(keys: list[str], partition_id: str, select_fields: list[str]) -> Any:
        asked.append((keys, select_fields))
        scores = [torch.tensor(stored[key][1]) for key in keys]
        return {"index": torch.tensor([stored[key][0] for key in keys]), "rm_scores": scores}

    fake = types.ModuleType("transfer_queue")
    fake.kv_batch_get = kv_batch_get  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "transfer_queue", fake)
    keys = ["v_1_0", "u_0_0", "pad1_0_0", "u_1_0", "v_0_0", "u_0_1"]  # balanced, reordered
    tags = [{"is_padding": key.startswith("pad")} for key in keys]
    batch = types.SimpleNamespace(keys=keys, tags=tags, partition_id="train")
    metrics: dict[str, Any] = {"actor/loss": 1.0}
    trainer = Trainer(sampler)

    compute_advantage = learning._v1_compute_advantage(lambda self, batch, metrics: batch)
    assert compute_advantage(trainer, batch, metrics=metrics) is batch
    assert sorted(asked[0][0]) == ["u_0_1", "u_1_0", "v_0_0", "v_1_0"]
    assert asked[0][1] == ["index", "rm_scores"]
    evidence = sampler.learner.tracker.evidence()
    assert evidence[ROWS.index(10)] == 2 and evidence[ROWS.index(11)] == 2
    assert metrics["actor/loss"] == 1.0 and metrics["katdensity/zero_variance_observed"] == 0.5

    trainer.replay_buffer.filter_groups_metric = "reward"
    with pytest.raises(InvalidInputError, match=r"algorithm.filter_groups drops the groups"):
        compute_advantage(trainer, batch, metrics=metrics)


def test_a_tracker_of_other_settings_is_named_on_resume(
    files: tuple[Path, Path, Path], weights_source: dict[str, Any]
) -> None:
    data = dataset(files[0], ROWS)
    sampler = create_rl_sampler(learning_config(weights_source), data)
    other = create_rl_sampler(learning_config(weights_source, reward_range=[-1, 1]), data)
    with pytest.raises(InvalidInputError, match=r"does not fit this run \(state was saved with"):
        other.load_state_dict(sampler.state_dict())  # type: ignore[attr-defined]
    assert isinstance(other, DensitySampler) and other.learner is not None
    assert isinstance(other.learner.tracker, LearnabilityTracker)
