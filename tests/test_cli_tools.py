"""The inspection subcommands: neighbors and diversity (viz has its own tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from katdensity.cli import main
from katdensity.io import save_embeddings
from katdensity.metrics import diversity_report

PROMPTS = [
    "How do I sort a list in Python?",
    "how to sort a python list",
    "Sorting a list in Python, how?",
    "Bake a loaf of sourdough bread",
    "A recipe for sourdough bread",
    "What causes the northern lights?",
]


@pytest.fixture
def embedded(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "prompts.jsonl"
    data.write_text(
        "".join(json.dumps({"id": f"q{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS))
    )
    emb = tmp_path / "emb.pt"
    assert main(["--quiet", "embed", "--data", str(data), "--out", str(emb)]) == 0
    return data, emb


def _ranked_ids(output: str) -> list[str]:
    return [line.split()[2] for line in output.strip().splitlines()]


def test_neighbors_of_a_query_use_the_recorded_embedder(
    embedded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, emb = embedded
    capsys.readouterr()
    args = ["neighbors", "--emb", str(emb), "--data", str(data), "-k", "3"]
    assert main([*args, "--query", "sort a list in python"]) == 0
    out = capsys.readouterr().out
    assert set(_ranked_ids(out)) == {"q0", "q1", "q2"}
    assert "How do I sort a list in Python?" in out
    similarities = [float(line.split()[1]) for line in out.strip().splitlines()]
    assert similarities == sorted(similarities, reverse=True) and similarities[0] <= 1.0


def test_neighbors_of_a_stored_prompt_leave_it_out(
    embedded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, emb = embedded
    capsys.readouterr()
    assert main(["neighbors", "--emb", str(emb), "--id", "q3", "-k", "1"]) == 0
    assert _ranked_ids(capsys.readouterr().out) == ["q4"]
    assert main(["neighbors", "--emb", str(emb), "--id", "nope"]) == 2
    assert "--id should be an id of" in capsys.readouterr().err


def test_neighbors_of_a_query_need_a_recorded_embedder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emb = tmp_path / "bare.pt"
    save_embeddings(emb, ["a", "b"], torch.eye(2))
    assert main(["neighbors", "--emb", str(emb), "--query", "hello"]) == 2
    err = capsys.readouterr().err
    assert "does not record the embedder" in err and err.count("\n") == 1


def _generations(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    return path


def test_diversity_report_with_compare_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    varied = ["the cat sat on the mat", "a dog chased a red ball", "rain fell over the hills"]
    collapsed = ["the cat sat on the mat"] * 2 + ["the cat sat on a mat \u2014 yes"]
    before = _generations(tmp_path / "before.jsonl", varied)
    after = _generations(tmp_path / "after.jsonl", collapsed)
    report = tmp_path / "report.json"
    args = ["diversity", "--data", str(after), "--compare", str(before), "--json", str(report)]
    assert main(args) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["metric", "before.jsonl", "after.jsonl", "delta"]
    record = json.loads(report.read_text())
    expected = diversity_report(collapsed)
    assert record["files"][str(after)]["self_bleu"] == pytest.approx(expected["self_bleu"])
    assert record["delta"]["distinct_2"] < 0 < record["delta"]["self_bleu"]
    assert record["delta"]["vendi"] < 0
    assert record["delta"]["em_dash_per_1k_words"] > 0


def test_diversity_needs_the_text_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gen.jsonl"
    path.write_text(json.dumps({"completion": "hello there"}) + "\n")
    assert main(["diversity", "--data", str(path)]) == 2
    assert "expected a 'text' field" in capsys.readouterr().err


def test_quiet_is_accepted_after_the_subcommand(
    embedded: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, emb = embedded
    assert main(["neighbors", "--emb", str(emb), "--id", "q0", "--quiet"]) == 0


def test_viz_colours_by_a_record_field_and_writes_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("plotly")
    data = tmp_path / "prompts.jsonl"
    records = [
        {"id": f"r{i}", "prompt": f"{topic} question {i}", "src": topic}
        for i, topic in enumerate(["cooking", "astronomy", "tax law"] * 10)
    ]
    data.write_text("".join(json.dumps(record) + "\n" for record in records))
    emb, html, points = tmp_path / "emb.pt", tmp_path / "view.html", tmp_path / "view.json"
    assert main(["--quiet", "embed", "--data", str(data), "--out", str(emb)]) == 0
    args = ["viz", "--emb", str(emb), "--out", str(html), "--json", str(points), "--k", "3"]
    assert main([*args, "--data", str(data), "--label", "src", "--quiet"]) == 0
    shown = json.loads(points.read_text())["points"]
    assert [p["color"] for p in shown] == [r["src"] for r in records]
    assert [p["prompt"] for p in shown] == [r["prompt"] for r in records]
    assert "<html" in html.read_text()[:500].lower()
    capsys.readouterr()
    assert (
        main(["viz", "--emb", str(emb), "--out", str(tmp_path / "x.html"), "--label", "src"]) == 2
    )
    assert "--label needs --data" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
