from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from katdensity.cli import main
from katdensity.io import load_embeddings

TOPICS = ["sorting lists", "cooking pasta", "tax returns", "black holes", "knitting"]


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    lines = [
        {"id": f"u{i}", "prompt": f"Tell me about {TOPICS[i % 5]}, question number {i}"}
        for i in range(40)
    ]
    lines += [{"chosen": "\n\nHuman: What is the capital of France?\n\nAssistant: Paris"}] * 10
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_pipeline_prompts_embed_weights_sample(
    tmp_path: Path, pairs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    assert (
        main(["--quiet", "prompts", "--data", str(pairs), "--out", str(prompts), "--dedupe"]) == 0
    )
    assert len(prompts.read_text().splitlines()) == 41  # 40 unique + 1 of the 10 copies

    emb = tmp_path / "emb.pt"
    assert main(["--quiet", "embed", "--data", str(prompts), "--out", str(emb)]) == 0
    stored = load_embeddings(emb)
    assert stored.ids[:2] == ["u0", "u1"] and stored.embedder["spec"] == "hashing"

    weights = tmp_path / "weights.pt"
    assert main(["--quiet", "weights", "--emb", str(emb), "--out", str(weights), "--k", "5"]) == 0
    record = torch.load(weights, weights_only=True)
    assert record["ids"] == stored.ids
    assert float(record["weights"].sum()) == pytest.approx(1.0)
    assert "ESS" in capsys.readouterr().out

    ids = tmp_path / "ids.txt"
    assert (
        main(["--quiet", "sample", "--weights", str(weights), "--budget", "10", "--out", str(ids)])
        == 0
    )
    chosen = ids.read_text().split()
    assert len(chosen) == len(set(chosen)) == 10 and set(chosen) <= set(stored.ids)
    # Same seed, same subset; --emb computes default weights on the fly.
    again = tmp_path / "again.txt"
    assert (
        main(
            ["--quiet", "sample", "--weights", str(weights), "--budget", "10", "--out", str(again)]
        )
        == 0
    )
    assert again.read_text() == ids.read_text()
    assert main(["--quiet", "sample", "--emb", str(emb), "--budget", "5", "--out", str(again)]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["embed", "--data", "missing.jsonl", "--out", "x.pt"], "does not exist"),
        (["weights", "--emb", "missing.pt", "--out", "w.pt"], "does not exist"),
        (
            ["embed", "--data", "{pairs}", "--out", "x.pt", "--embedder", "nope"],
            "embedder should be one of",
        ),
        (["embed", "--data", "{pairs}", "--out", "x.csv"], "should end in .pt or .npy"),
    ],
)
def test_errors_are_one_line_exit_2(
    tmp_path: Path, pairs: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [a.replace("{pairs}", str(pairs)) for a in argv]
    argv = [
        str(tmp_path / a) if a.endswith((".jsonl", ".pt", ".csv")) and "/" not in a else a
        for a in argv
    ]
    assert main(["--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("katdensity: error: ") and message in err
    assert not list(tmp_path.glob("x.*")), "no output file on failure"


def test_budget_too_large(tmp_path: Path, pairs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emb = tmp_path / "emb.npy"
    assert main(["--quiet", "embed", "--data", str(pairs), "--out", str(emb)]) == 0
    out = tmp_path / "ids.txt"
    assert main(["--quiet", "sample", "--emb", str(emb), "--budget", "999", "--out", str(out)]) == 2
    assert "budget should be at most" in capsys.readouterr().err
    assert not out.exists()
