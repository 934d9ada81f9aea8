"""A small prompt set in verl's layout, and its katdensity files, for the verl tests.

verl's parquet files hold one prompt per row: `prompt` is a list of chat messages and
`extra_info.index` the row's id. The set here has a dense topic of near-duplicates, and ids
that are not row numbers, so that matching by id and by row position give different
weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from katdensity.cli import main

# The modules whose trainers call verl's create_rl_sampler by the name they imported.
IMPORTERS = [
    "verl.trainer.ppo.utils",
    "verl.trainer.ppo.ray_trainer",
    "verl.trainer.main_ppo_v0",
    "verl.trainer.ppo.v1.trainer_base",
    "verl.experimental.fully_async_policy.fully_async_rollouter",
    "verl.experimental.one_step_off_policy.main_ppo",
]
N_PROMPTS = 48
FIRST_ID = 1000  # ids are FIRST_ID + row


def prompt_text(row: int) -> str:
    if row % 3 == 0:  # a third of the set: one question, reworded only by its number
        return f"What is the capital of France? (asked {row} times)"
    topic = ["sorting lists", "black holes", "knitting", "tax returns", "volcanoes"][row % 5]
    return f"Explain {topic} to a child, example {row} of {N_PROMPTS}"


def write_prompts(path: Path, n: int = N_PROMPTS) -> Path:
    """Write `n` prompts in verl's layout to the parquet file `path`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = [
        {
            "data_source": "katdensity/test",
            "prompt": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": prompt_text(row)},
            ],
            "ability": "qa",
            "reward_model": {"style": "rule", "ground_truth": str(row)},
            "extra_info": {"split": "train", "index": FIRST_ID + row},
        }
        for row in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_density_files(parquet: Path, folder: Path) -> tuple[Path, Path]:
    """`katdensity embed` and `katdensity weights` of `parquet`: `(embeddings, weights)`."""
    embeddings, weights = folder / "embeddings.pt", folder / "weights.pt"
    embed = ["--quiet", "embed", "--data", str(parquet), "--out", str(embeddings)]
    assert main(embed) == 0
    assert main(["--quiet", "weights", "--emb", str(embeddings), "--out", str(weights)]) == 0
    return embeddings, weights
