"""katdensity.integrations.trl against the real TRL: the prompt order its trainers yield is
TRL's repeat structure over katdensity's draw, weights files match by id, the refresh
callback re-weights at the right steps, and a resumed run trains on the same prompts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from katdensity import InverseDensitySampler
from katdensity.errors import InvalidInputError
from tests.integrations.tiny import N_PROMPTS, prompt_rows, spawn_two_ranks, tiny_gpt2

pytest.importorskip("trl")  # in CI (the examples extra), where skips fail the run
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # from transformers

from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer  # noqa: E402
from trl.trainer.utils import RepeatSampler  # noqa: E402

from katdensity.integrations.trl import (  # noqa: E402
    SAMPLER_STATE_NAME,
    DensityGRPOTrainer,
    DensityRefreshCallback,
    DensityRepeatSampler,
    DensityRLOOTrainer,
)

TRAINERS = [
    (DensityGRPOTrainer, GRPOTrainer, GRPOConfig),
    (DensityRLOOTrainer, RLOOTrainer, RLOOConfig),
]


class IdRecorder:
    """A reward function that records the `id` column of every generation batch."""

    __name__ = "id_recorder"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, completions: list[Any], id: list[str], **kwargs: Any) -> list[float]:
        self.batches.append(list(id))
        return [float(len(str(c))) for c in completions]


def config(config_class: Any, out: Path, **options: Any) -> Any:
    settings: dict[str, Any] = {
        "output_dir": str(out),
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "num_generations": 2,
        "max_completion_length": 4,
        "learning_rate": 1e-3,
        "save_strategy": "no",
        "logging_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": True,
        "bf16": False,
        "seed": 0,
        "beta": 0.0,  # no reference model, which RLOO would otherwise load by name
    }
    settings.update(options)
    return config_class(**settings)


def build(
    tokenizer: Any,
    dataset: Any,
    out: Path,
    *,
    trainer_class: Any = DensityGRPOTrainer,
    config_class: Any = GRPOConfig,
    reward: Any = None,
    callbacks: list[Any] | None = None,
    options: dict[str, Any] | None = None,
    **density: Any,
) -> Any:
    if "density_weights" not in density:
        density["density_weights"] = torch.ones(len(dataset))
    return trainer_class(
        model=tiny_gpt2(tokenizer),
        reward_funcs=reward or IdRecorder(),
        args=config(config_class, out, **(options or {})),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
        **density,
    )


def expected_order(
    weights: torch.Tensor, *, seed: int, epoch: int, num_samples: int, g: int, b: int, r: int
) -> list[int]:
    """The oracle: TRL's own RepeatSampler structure (unshuffled, so it yields positions)
    laid over katdensity's draw for the epoch."""
    draw = InverseDensitySampler(
        weights, num_samples=num_samples, seed=seed, distributed="replicate"
    )
    draw.set_epoch(epoch)
    indices = list(draw)
    structure = RepeatSampler(
        range(num_samples), mini_repeat_count=g, batch_size=b, repeat_count=r, shuffle=False
    )
    return [indices[position] for position in structure]


def skewed_weights(n: int = N_PROMPTS) -> torch.Tensor:
    weights = torch.arange(1, n + 1, dtype=torch.float64)
    weights[[0, 5]] = 0.0  # never drawn
    return weights


# --- the repeat structure ------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "num_samples", "g", "b", "r"),
    [(12, 12, 2, 3, 4), (13, 13, 3, 4, 1), (10, 7, 4, 2, 3), (5, 9, 1, 1, 2)],
)
def test_repeat_sampler_is_trl_structure_over_the_density_draw(
    n: int, num_samples: int, g: int, b: int, r: int
) -> None:
    weights = torch.rand(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    sampler = DensityRepeatSampler(
        InverseDensitySampler(
            weights, num_samples=num_samples, seed=3, distributed="replicate", group_size=g
        ),
        batch_size=b,
        repeat_count=r,
    )
    trl_sampler = RepeatSampler(
        range(num_samples), mini_repeat_count=g, batch_size=b, repeat_count=r
    )
    assert len(sampler) == len(trl_sampler) == len(list(trl_sampler))
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        ours = list(sampler)
        assert len(ours) == len(sampler)
        assert ours == expected_order(
            weights, seed=3, epoch=epoch, num_samples=num_samples, g=g, b=b, r=r
        )


def test_every_rank_draws_the_same_order() -> None:
    weights = skewed_weights()
    orders = []
    for rank in (0, 1, 2):
        inner = InverseDensitySampler(
            weights, seed=0, distributed="replicate", group_size=2, num_replicas=3, rank=rank
        )
        orders.append(list(DensityRepeatSampler(inner, batch_size=3, repeat_count=2)))
    assert orders[0] == orders[1] == orders[2]
    assert 0 not in orders[0] and 5 not in orders[0]


def test_a_sharding_sampler_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="replicate"):
        DensityRepeatSampler(InverseDensitySampler(torch.ones(4)), batch_size=2, repeat_count=1)


@pytest.mark.parametrize(("trainer_class", "trl_class", "config_class"), TRAINERS)
def test_trainer_sampler_has_trls_parameters_and_the_density_draw(
    tokenizer: Any,
    dataset: Any,
    tmp_path: Path,
    trainer_class: Any,
    trl_class: Any,
    config_class: Any,
) -> None:
    weights = skewed_weights()
    options = {"gradient_accumulation_steps": 2, "num_iterations": 2, "seed": 7}
    trainer = build(
        tokenizer,
        dataset,
        tmp_path,
        trainer_class=trainer_class,
        config_class=config_class,
        options=options,
        density_weights=weights,
    )
    sampler = trainer._get_train_sampler()
    reference = trl_class._get_train_sampler(trainer)  # TRL's own, on the same trainer
    assert isinstance(sampler, DensityRepeatSampler) and isinstance(reference, RepeatSampler)
    assert sampler.sampler.group_size == reference.mini_repeat_count == 2
    assert sampler.batch_size == reference.batch_size == 4  # generation batch 8 = 4 prompts x 2
    assert sampler.repeat_count == reference.repeat_count == 4  # num_iterations x steps/gen
    assert len(sampler) == len(reference)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        assert list(sampler) == expected_order(
            weights, seed=7, epoch=epoch, num_samples=N_PROMPTS, g=2, b=4, r=4
        )

    # The data loader the trainer trains from yields the rows in that order.
    loader = trainer.get_train_dataloader()
    loader.set_epoch(1)
    rows = [row["id"] for batch in loader for row in batch]
    expected = expected_order(weights, seed=7, epoch=1, num_samples=N_PROMPTS, g=2, b=4, r=4)
    assert rows == [f"p{i}" for i in expected]


def test_density_num_samples_sets_the_pass_length(
    tokenizer: Any, dataset: Any, tmp_path: Path
) -> None:
    trainer = build(tokenizer, dataset, tmp_path, density_num_samples=6)
    sampler = trainer._get_train_sampler()
    assert sampler.sampler.num_samples == 6 and len(sampler) == 6 * 2
    with pytest.raises(InvalidInputError, match="density_num_samples should be at least"):
        build(tokenizer, dataset, tmp_path, density_num_samples=1)._get_train_sampler()


# --- where the weights come from -----------------------------------------------------


def write_weights(path: Path, ids: list[Any], weights: list[float]) -> Path:
    torch.save({"ids": ids, "weights": torch.tensor(weights, dtype=torch.float64)}, path)
    return path


def test_weights_file_is_matched_to_the_dataset_ids(
    tokenizer: Any, dataset: Any, tmp_path: Path
) -> None:
    order = list(reversed(range(N_PROMPTS)))  # the file lists the prompts in another order
    path = write_weights(
        tmp_path / "weights.pt", [f"p{i}" for i in order], [float(i + 1) for i in order]
    )
    trainer = build(tokenizer, dataset, tmp_path, density_weights=str(path))
    expected = torch.arange(1, N_PROMPTS + 1, dtype=torch.float64)
    torch.testing.assert_close(trainer.density_weights, expected / expected.sum())
    # A Path works as well as a string, and integer ids match their decimal text.
    from datasets import Dataset

    numbered = Dataset.from_dict({**prompt_rows(), "id": list(range(N_PROMPTS))})
    path = write_weights(tmp_path / "numbered.pt", [str(i) for i in order], [1.0] * N_PROMPTS)
    trainer = build(tokenizer, numbered, tmp_path, density_weights=path)
    torch.testing.assert_close(
        trainer.density_weights, torch.full((N_PROMPTS,), 1 / N_PROMPTS, dtype=torch.float64)
    )


IDS = [f"p{i}" for i in range(N_PROMPTS)]


@pytest.mark.parametrize(
    ("file_ids", "dataset_ids", "message"),
    [
        (IDS[:-1], IDS, r"but 1 of 24 are not in it, e\.g\. \['p23'\]"),
        ([*IDS, "p24", "p25"], IDS, r"2 of its ids are not there, e\.g\. \['p24', 'p25'\]"),
        (["p0", *IDS[:-1]], IDS, r"weights\.pt.*'p0'"),  # katdensity.io may refuse it first
        (IDS, ["p1", *IDS[1:]], r"train_dataset\['id'\] should hold each id once.*'p1'.* 0 and 1"),
    ],
    ids=["missing", "extra", "repeated in the file", "repeated in the dataset"],
)
def test_weights_file_with_missing_extra_or_repeated_ids_is_refused(
    tokenizer: Any,
    tmp_path: Path,
    file_ids: list[str],
    dataset_ids: list[str],
    message: str,
) -> None:
    from datasets import Dataset

    data = Dataset.from_dict({**prompt_rows(), "id": dataset_ids})
    path = write_weights(tmp_path / "weights.pt", file_ids, [1.0] * len(file_ids))
    with pytest.raises(InvalidInputError, match=message):
        build(tokenizer, data, tmp_path, density_weights=str(path))


def test_weights_file_without_the_id_column_is_refused(
    tokenizer: Any, dataset: Any, tmp_path: Path
) -> None:
    path = write_weights(tmp_path / "weights.pt", prompt_rows()["id"], [1.0] * N_PROMPTS)
    with pytest.raises(
        InvalidInputError, match=r"id_column='uid' and the columns are \['id', 'prompt'\]"
    ):
        build(tokenizer, dataset, tmp_path, density_weights=str(path), id_column="uid")


def test_row_aligned_weights_accept_arrays_and_check_the_length(
    tokenizer: Any, dataset: Any, tmp_path: Path
) -> None:
    array = np.linspace(1.0, 2.0, N_PROMPTS)
    trainer = build(tokenizer, dataset, tmp_path, density_weights=array)
    torch.testing.assert_close(trainer.density_weights, torch.from_numpy(array / array.sum()))
    with pytest.raises(
        InvalidInputError, match=r"one weight per row of train_dataset \(24\), but holds 23"
    ):
        build(tokenizer, dataset, tmp_path, density_weights=torch.ones(N_PROMPTS - 1))
    with pytest.raises(InvalidInputError, match="non-negative"):
        build(tokenizer, dataset, tmp_path, density_weights=-torch.ones(N_PROMPTS))


def test_policy_weights_are_the_pipeline_on_the_policy(
    tokenizer: Any, dataset: Any, tmp_path: Path
) -> None:
    from katdensity import ExactKNNDensity, HiddenStateEmbedder, InverseDensityWeighting

    estimator, weighting = (
        ExactKNNDensity(k=5),
        InverseDensityWeighting(beta=1.0, min_ess_ratio=None),
    )
    trainer = build(
        tokenizer,
        dataset,
        tmp_path,
        density_weights="policy",
        density_estimator=estimator,
        density_weighting=weighting,
    )
    embeddings = HiddenStateEmbedder(tiny_gpt2(tokenizer), tokenizer).embed(dataset["prompt"])
    expected = weighting(estimator.estimate(embeddings))
    torch.testing.assert_close(trainer.density_weights, expected)
    # The dense topic (4 prompts in 6 are about violins) is drawn less per prompt.
    dense = torch.tensor(["violins" in p for p in dataset["prompt"]])
    assert trainer.density_weights[dense].mean() < trainer.density_weights[~dense].mean()


def test_policy_weights_by_default_are_the_librarys_default_weights(
    tokenizer: Any, dataset: Any, tmp_path: Path
) -> None:
    from katdensity import ExactKNNDensity, ExternalEmbedder, HashingEmbedder, weigh

    hashing = HashingEmbedder()
    trainer = build(
        tokenizer,
        dataset,
        tmp_path,
        density_weights="policy",
        density_embedder=ExternalEmbedder(hashing.embed, normalize=False),
    )
    expected = weigh(hashing.embed(dataset["prompt"]), estimator=ExactKNNDensity())
    torch.testing.assert_close(trainer.density_weights, expected.probabilities, rtol=0, atol=1e-15)


def test_policy_weights_embed_conversations_by_their_user_turns(
    tokenizer: Any, tmp_path: Path
) -> None:
    from datasets import Dataset

    rows = prompt_rows()
    chat = [
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": p}]
        for p in rows["prompt"]
    ]
    plain = build(tokenizer, Dataset.from_dict(rows), tmp_path, density_weights="policy")
    conversational = build(
        tokenizer, Dataset.from_dict({**rows, "prompt": chat}), tmp_path, density_weights="policy"
    )
    torch.testing.assert_close(conversational.density_weights, plain.density_weights)


@pytest.mark.parametrize(
    ("density", "options", "message"),
    [
        ({"density_estimator": "exact"}, {}, "density_estimator should implement DensityEstimator"),
        ({"density_weighting": 3}, {}, "density_weighting should implement Weighting"),
        ({"density_num_samples": 0}, {}, "density_num_samples"),
        ({}, {"shuffle_dataset": False}, "shuffle_dataset should be True"),
    ],
)
def test_bad_options_are_refused(
    tokenizer: Any,
    dataset: Any,
    tmp_path: Path,
    density: dict[str, Any],
    options: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build(tokenizer, dataset, tmp_path, options=options, **density)


def test_an_iterable_dataset_is_refused(tokenizer: Any, dataset: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="map-style"):
        build(
            tokenizer,
            dataset.to_iterable_dataset(),
            tmp_path,
            density_weights=torch.ones(N_PROMPTS),
        )


# --- training, the refresh callback and resuming -------------------------------------


def test_short_training_run_trains_on_the_sampler_order(
    tokenizer: Any, dataset: Any, tmp_path: Path
) -> None:
    recorder = IdRecorder()
    trainer = build(
        tokenizer,
        dataset,
        tmp_path,
        reward=recorder,
        options={"max_steps": 3},
        density_weights="policy",
        callbacks=[DensityRefreshCallback(every_n_steps=2)],
    )
    weights = trainer.density_weights
    trainer.train()
    assert trainer.state.global_step == 3
    # One generation batch per step: 2 prompts x 2 generations, in the order of the draw
    # the trainer started from (the refresh at step 2 applies from the next pass).
    expected = expected_order(weights, seed=0, epoch=0, num_samples=N_PROMPTS, g=2, b=2, r=1)
    assert [i for batch in recorder.batches for i in batch] == [f"p{i}" for i in expected[:12]]
    assert not torch.equal(trainer.density_sampler.weights, weights)  # refreshed at step 2


def one_hot(row: int) -> torch.Tensor:
    weights = torch.zeros(N_PROMPTS, dtype=torch.float64)
    weights[row % N_PROMPTS] = 1.0
    return weights


@pytest.fixture
def stepped_weights(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Refreshes return weights on one row, `10 + global_step`; the steps are recorded."""
    refreshed: list[int] = []
    original = DensityRepeatSampler.update_weights

    def compute(self: Any) -> torch.Tensor:
        return one_hot(10 + self.state.global_step)

    def update(self: DensityRepeatSampler, weights: torch.Tensor) -> None:
        refreshed.append(int(weights.argmax()) - 10)
        original(self, weights)

    monkeypatch.setattr(DensityGRPOTrainer, "compute_density_weights", compute)
    monkeypatch.setattr(DensityRepeatSampler, "update_weights", update)
    yield refreshed


def test_refresh_callback_updates_the_weights_every_n_steps_for_the_next_pass(
    tokenizer: Any, dataset: Any, tmp_path: Path, stepped_weights: list[int]
) -> None:
    recorder = IdRecorder()
    trainer = build(
        tokenizer,
        dataset,
        tmp_path,
        reward=recorder,
        options={"max_steps": 7},
        density_num_samples=4,  # a pass is 2 steps of 2 prompts
        callbacks=[DensityRefreshCallback(every_n_steps=3)],
    )
    trainer.train()
    assert stepped_weights == [3, 6]
    # Passes: steps 1-2, 3-4, 5-6, 7. The refresh after step 3 applies from step 5 on; the
    # one after step 6 from step 7.
    uniform = torch.ones(N_PROMPTS, dtype=torch.float64)
    before = [
        i
        for epoch in (0, 1)
        for i in expected_order(uniform, seed=0, epoch=epoch, num_samples=4, g=2, b=2, r=1)
    ]
    assert [i for batch in recorder.batches[:4] for i in batch] == [f"p{i}" for i in before]
    assert {i for batch in recorder.batches[4:6] for i in batch} == {"p13"}
    assert set(recorder.batches[6]) == {"p16"}


def test_refresh_callback_binds_through_add_callback_and_refuses_other_trainers(
    tokenizer: Any, dataset: Any, tmp_path: Path, stepped_weights: list[int]
) -> None:
    trainer = build(tokenizer, dataset, tmp_path, options={"max_steps": 2})
    trainer.add_callback(DensityRefreshCallback(every_n_steps=1))
    trainer.train()
    assert stepped_weights == [1, 2]

    plain = GRPOTrainer(
        model=tiny_gpt2(tokenizer),
        reward_funcs=IdRecorder(),
        train_dataset=dataset,
        args=config(GRPOConfig, tmp_path),
        processing_class=tokenizer,
        callbacks=[DensityRefreshCallback(every_n_steps=1)],
    )
    with pytest.raises(InvalidInputError, match="should be used with DensityGRPOTrainer"):
        plain.train()


def test_resumed_run_trains_on_the_prompts_of_the_uninterrupted_one(
    tokenizer: Any, dataset: Any, tmp_path: Path, stepped_weights: list[int]
) -> None:
    def run(out: Path, resume: str | None = None) -> IdRecorder:
        recorder = IdRecorder()
        trainer = build(
            tokenizer,
            dataset,
            out,
            reward=recorder,
            options={"max_steps": 6, "save_strategy": "steps", "save_steps": 3},
            density_num_samples=4,
            callbacks=[DensityRefreshCallback(every_n_steps=1)],
        )
        trainer.train(resume_from_checkpoint=resume)
        return recorder

    whole = run(tmp_path / "whole")
    checkpoint = tmp_path / "whole" / "checkpoint-3"
    state = torch.load(checkpoint / SAMPLER_STATE_NAME, weights_only=True)
    # Step 3 is mid-pass (passes are steps 1-2, 3-4, 5-6): that pass draws from the weights
    # of the refresh after step 2, the next from those after step 4.
    assert [int(w.argmax()) for w in state["sampler"]["chunk_weights"]] == [12]
    assert int(state["sampler"]["weights"].argmax()) == 13
    resumed = run(tmp_path / "resumed", resume=str(checkpoint))
    assert resumed.batches == whole.batches[3:]
    assert set(whole.batches[3]) == {"p12"} and set(whole.batches[4]) == {"p14"}


def test_a_damaged_sampler_state_names_the_file(
    tokenizer: Any, dataset: Any, tmp_path: Path
) -> None:
    trainer = build(tokenizer, dataset, tmp_path, options={"max_steps": 1})
    trainer.get_train_dataloader()  # builds the density sampler
    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.mkdir()
    (checkpoint / SAMPLER_STATE_NAME).write_bytes(b"PK\x03\x04 not a whole archive")
    with pytest.raises(InvalidInputError, match=r"katdensity_sampler\.pt is a truncated"):
        trainer._load_optimizer_and_scheduler(str(checkpoint))


def test_sampler_state_from_another_structure_is_refused() -> None:
    inner = InverseDensitySampler(torch.ones(6), seed=0, distributed="replicate", group_size=2)
    state = DensityRepeatSampler(inner, batch_size=3, repeat_count=2).state_dict()
    other = DensityRepeatSampler(inner, batch_size=3, repeat_count=1)
    with pytest.raises(
        InvalidInputError, match="repeat_count=2, but this sampler has repeat_count=1"
    ):
        other.load_state_dict(state)
    with pytest.raises(InvalidInputError, match="version"):
        other.load_state_dict({**state, "version": 99})


# --- two ranks -----------------------------------------------------------------------


def _rank(rank: int, port: int, out: str) -> None:
    """One of two gloo processes, as `accelerate launch` would start them."""
    import json
    import os
    import warnings

    import torch.distributed as dist
    from datasets import Dataset

    from tests.integrations.tiny import byte_tokenizer

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )  # fmt: skip
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", FutureWarning)
    tokenizer, dataset = byte_tokenizer(), Dataset.from_dict(prompt_rows())
    recorder = IdRecorder()
    # Each rank is handed different weights; a collective that hangs fails after 60 s.
    own = torch.rand(N_PROMPTS, generator=torch.Generator().manual_seed(rank))
    options = {"per_device_train_batch_size": 2, "ddp_timeout": 60}
    trainer = build(
        tokenizer, dataset, Path(out), reward=recorder, options=options, density_weights=own
    )
    policy = build(tokenizer, dataset, Path(out), options=options, density_weights="policy")
    trainer.train()
    result = {
        "world": dist.get_world_size(),
        "weights": trainer.density_weights.tolist(),
        "policy": policy.density_weights.tolist(),
        "batches": recorder.batches,
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    # See the NOTE in examples/ddp_snippet.py: skip the teardown, where gloo may abort.
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


def test_two_ranks_take_rank_zeros_weights_and_split_one_order(tmp_path: Path) -> None:
    import json

    spawn_two_ranks(_rank, str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2
    rank_zero = torch.rand(N_PROMPTS, generator=torch.Generator().manual_seed(0))
    for result in ranks:
        assert result["weights"] == ranks[0]["weights"] and result["policy"] == ranks[0]["policy"]
    torch.testing.assert_close(
        torch.tensor(ranks[0]["weights"], dtype=torch.float64),
        rank_zero.double() / rank_zero.double().sum(),
    )
    # Each generation batch (2 prompts x 2 completions) is split between the ranks in order.
    weights = torch.tensor(ranks[0]["weights"], dtype=torch.float64)
    expected = expected_order(weights, seed=0, epoch=0, num_samples=N_PROMPTS, g=2, b=2, r=1)
    steps = zip(ranks[0]["batches"], ranks[1]["batches"], strict=True)
    trained = [i for halves in steps for half in halves for i in half]
    assert trained == [f"p{i}" for i in expected[:8]]
