"""Every entry point gives the library's default weights: `weigh()`'s, for the same embeddings.

The CLI's `weights`, `sample --emb` and `viz`, the demo, and verl's embeddings route are
compared here with [`weigh`][katdensity.weigh]; TRL's policy route is compared in
tests/integrations/test_trl.py (it needs TRL's trainer).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from katdensity import ExactKNNDensity, HashingEmbedder, weigh
from katdensity.cli import main
from katdensity.io import save_embeddings
from katdensity.subset import select_subset
from katdensity.synthetic import generated_prompts

N = 160


@pytest.fixture(scope="module")
def points() -> torch.Tensor:
    generator = torch.Generator().manual_seed(4)
    rows = torch.randn(N, 8, generator=generator)
    rows[:25] = rows[0] + 0.01 * torch.randn(25, 8, generator=generator)  # a family
    rows[30:34] = rows[30]  # one prompt, four times
    return rows


@pytest.fixture(scope="module")
def emb(points: torch.Tensor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("agree") / "emb.pt"
    save_embeddings(path, [f"p{i}" for i in range(N)], points)
    return path


def test_cli_weights_and_sample_give_weigh(emb: Path, points: torch.Tensor, tmp_path: Path) -> None:
    expected = weigh(points, estimator=ExactKNNDensity(k=10))
    out = tmp_path / "w.pt"
    argv = ["--quiet", "weights", "--emb", str(emb), "--out", str(out), "--estimator", "exact"]
    assert main(argv) == 0
    record = torch.load(out, weights_only=True)
    torch.testing.assert_close(record["weights"], expected.probabilities, rtol=0, atol=1e-15)
    assert record["settings"]["beta_used"] == expected.beta_used
    assert torch.equal(record["distinct_index"], expected.distinct_index)

    ids = tmp_path / "ids.txt"
    assert main(["--quiet", "sample", "--emb", str(emb), "--budget", "40", "--out", str(ids)]) == 0
    chosen = select_subset(expected.probabilities, 40, seed=0, groups=expected.distinct_index)
    assert ids.read_text().split() == [f"p{i}" for i in chosen.tolist()]


def test_the_view_shows_weigh(emb: Path, points: torch.Tensor, tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    expected = weigh(points, estimator=ExactKNNDensity(k=10))
    page, data = tmp_path / "view.html", tmp_path / "view.json"
    argv = ["--quiet", "viz", "--emb", str(emb), "--out", str(page), "--json", str(data)]
    assert main([*argv, "--estimator", "exact", "--projection", "pca"]) == 0
    shown = {p["id"]: p["weight"] for p in json.loads(data.read_text())["points"]}
    assert len(shown) == N
    weights = torch.tensor([shown[f"p{i}"] for i in range(N)], dtype=torch.float64)
    torch.testing.assert_close(weights, expected.probabilities, rtol=1e-12, atol=0)


def test_the_demo_weighs_its_prompts_with_weigh(tmp_path: Path) -> None:
    from katdensity.demo import run_demo

    result = run_demo(tmp_path, seed=1, k=10, sample_size=100)
    texts = generated_prompts(seed=1).texts
    expected = weigh(HashingEmbedder().embed(texts), estimator=ExactKNNDensity(k=10))
    assert result.weights.beta_used == expected.beta_used
    assert result.weights.ess_prompts == pytest.approx(expected.distinct_ess, rel=1e-12)
    shown = json.loads((tmp_path / "view.json").read_text())["points"]
    weights = torch.tensor([p["weight"] for p in shown], dtype=torch.float64)
    assert len(shown) == len(texts)
    torch.testing.assert_close(weights, expected.probabilities, rtol=1e-12, atol=0)


def test_verl_weighs_embeddings_with_weigh(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    from datasets import Dataset

    from katdensity.integrations.verl import create_rl_sampler

    texts = [f"question {i} about topic {i % 5}" for i in range(60)]
    embeddings = HashingEmbedder().embed(texts)
    ids = [str(1000 + i) for i in range(60)]
    save_embeddings(tmp_path / "e.pt", ids, embeddings)

    class Rows:  # what verl's RLHFDataset shows of its rows
        def __init__(self) -> None:
            prompts = [[{"role": "user", "content": text}] for text in texts]
            extra = [{"index": int(identifier)} for identifier in ids]
            self.dataframe = Dataset.from_dict({"prompt": prompts, "extra_info": extra})

        def __len__(self) -> int:
            return len(texts)

    section = {"embeddings": str(tmp_path / "e.pt"), "k": 10}
    sampler = create_rl_sampler({"density": section}, Rows())
    expected = weigh(embeddings, estimator=ExactKNNDensity(k=10))
    torch.testing.assert_close(sampler.weights, expected.probabilities, rtol=0, atol=1e-15)
