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


def test_repeated_prompts_are_counted_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rows 0-149: 4 prompts repeated; rows 150-299: distinct prompts.
    texts = [f"How do I bake bread, version {i % 4}?" for i in range(150)]
    texts += [f"Tell me something rare about subject {i} and {i * i}." for i in range(150, 300)]
    data = tmp_path / "prompts.jsonl"
    data.write_text(
        "".join(json.dumps({"id": f"r{i}", "prompt": t}) + "\n" for i, t in enumerate(texts))
    )
    emb, weights, ids = tmp_path / "emb.pt", tmp_path / "w.pt", tmp_path / "ids.txt"
    assert main(["--quiet", "embed", "--data", str(data), "--out", str(emb)]) == 0
    assert main(["--quiet", "weights", "--emb", str(emb), "--out", str(weights)]) == 0
    summary = capsys.readouterr().out
    assert "prompts              300 rows, 154 distinct" in summary
    assert "ESS over distinct prompts" in summary and "ESS over rows" in summary
    # The four repeated prompts are the largest modes, named by their first row's id.
    modes = summary.split("largest modes")[1].split("most weighted")[0]
    assert [line.split()[:3] for line in modes.strip().splitlines()[2:6]] == [
        ["r0", "38", "1"],
        ["r1", "38", "1"],
        ["r2", "37", "1"],
        ["r3", "37", "1"],
    ]
    data_args = ["--data", str(data)]
    assert main(["--quiet", "weights", "--emb", str(emb), "--out", str(weights), *data_args]) == 0
    assert "How do I bake bread, version 0?" in capsys.readouterr().out

    stored = torch.load(weights, weights_only=True)
    mass = torch.zeros(154, dtype=torch.float64).index_add_(
        0, stored["distinct_index"], stored["weights"]
    )
    assert float(mass.max()) <= 20.0 / 154 + 1e-12  # a prompt with its copies: one cap
    assert stored["distinct_ess"] == pytest.approx(1 / float(mass.square().sum()))

    for source in (["--weights", str(weights)], ["--emb", str(emb)]):
        assert main(["--quiet", "sample", *source, "--budget", "100", "--out", str(ids)]) == 0
        chosen = ids.read_text().split()
        assert len(chosen) == len(set(chosen)) == 100
        bread = {int(i[1:]) % 4 for i in chosen if int(i[1:]) < 150}
        assert sum(int(i[1:]) < 150 for i in chosen) == len(bread) <= 4  # each prompt once


def test_weights_smoothing_option(
    tmp_path: Path, pairs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--smoothing 0` is the plain k-NN estimate; the file records the setting; a negative
    value is a one-line error and writes nothing."""
    from katdensity import ExactKNNDensity

    emb = tmp_path / "emb.pt"
    assert main(["--quiet", "embed", "--data", str(pairs), "--out", str(emb)]) == 0
    embeddings = load_embeddings(emb).embeddings
    for steps in (0, 2):
        out = tmp_path / f"w{steps}.pt"
        argv = ["weights", "--emb", str(emb), "--out", str(out), "--k", "5"]
        assert main(["--quiet", *argv, "--estimator", "exact", "--smoothing", str(steps)]) == 0
        record = torch.load(out, weights_only=True)
        assert record["settings"]["smoothing"] == steps
        expected = ExactKNNDensity(k=5, smoothing=steps, progress=False).estimate(embeddings)
        torch.testing.assert_close(record["log_density"], expected.log_density)
    bad = tmp_path / "bad.pt"
    argv = ["weights", "--emb", str(emb), "--out", str(bad), "--smoothing", "-1"]
    assert main(["--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "smoothing" in err and not bad.exists()


def test_weights_and_sample_use_the_librarys_default_weights(tmp_path: Path) -> None:
    """`katdensity weights` and `sample --emb` give what `InverseDensityWeighting()` gives,
    mode cap included: a weights file handed to a trainer weighs a near-duplicate family
    as the sampler's own default would; `--no-mode-cap` gives `mode_cap=False`'s."""
    from katdensity import ExactKNNDensity, InverseDensityWeighting
    from katdensity.io import save_embeddings
    from katdensity.subset import select_subset

    generator = torch.Generator().manual_seed(1)
    points = torch.randn(200, 8, generator=generator)
    # A family of 30 near-duplicates: the cap gives it about one prompt's weight.
    points[:30] = points[0] + 0.01 * torch.randn(30, 8, generator=generator)
    emb = tmp_path / "emb.pt"
    save_embeddings(emb, [f"p{i}" for i in range(200)], points)
    result = ExactKNNDensity(k=10, progress=False).estimate(points)
    capped = InverseDensityWeighting()(result)
    uncapped = InverseDensityWeighting(mode_cap=False)(result)
    # Counted as one prompt, the family is one of 171: capped, it gets over half that share;
    # left to the density, almost nothing.
    assert float(capped[:30].sum()) > 0.5 / 171 > 100 * float(uncapped[:30].sum())

    for flags, expected in (([], capped), (["--no-mode-cap"], uncapped)):
        out = tmp_path / "w.pt"
        argv = ["weights", "--emb", str(emb), "--out", str(out), "--estimator", "exact"]
        assert main(["--quiet", *argv, *flags]) == 0
        record = torch.load(out, weights_only=True)
        torch.testing.assert_close(record["weights"], expected)
        assert record["settings"]["mode_cap"] is (flags == [])

    ids = tmp_path / "ids.txt"
    assert main(["--quiet", "sample", "--emb", str(emb), "--budget", "50", "--out", str(ids)]) == 0
    chosen = select_subset(capped, 50, seed=0, groups=result.distinct_index)
    assert ids.read_text().split() == [f"p{i}" for i in chosen.tolist()]


def test_defaults_and_their_help_are_the_librarys(capsys: pytest.CaptureFixture[str]) -> None:
    """Each default the command line shares with the library is the library's own."""
    import inspect

    from katdensity import AutoKNNDensity, InverseDensityWeighting
    from katdensity.cli import _parser
    from katdensity.demo import run_demo
    from katdensity.viz import write_view

    def defaults(function: object) -> dict[str, object]:
        parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
        return {p.name: p.default for p in parameters}

    estimator, weighting = defaults(AutoKNNDensity), defaults(InverseDensityWeighting)
    weights = _parser().parse_args(["weights", "--emb", "e.pt", "--out", "w.pt"])
    assert (weights.k, weights.beta) == (estimator["k"], weighting["beta"])
    assert weights.max_weight_ratio == weighting["max_weight_ratio"]
    assert weights.min_ess == weighting["min_ess_ratio"]
    assert weights.uniform_mix == weighting["uniform_mix"]
    assert weights.smoothing is None  # passed on only when given: the estimator's own applies
    viz = _parser().parse_args(["viz", "--emb", "e.pt", "--out", "v.html"])
    assert (viz.k, viz.max_points) == (estimator["k"], defaults(write_view)["max_points"])
    demo = _parser().parse_args(["demo"])
    assert {name: getattr(demo, name) for name in ("k", "beta", "sample_size")} == {
        name: defaults(run_demo)[name] for name in ("k", "beta", "sample_size")
    }
    with pytest.raises(SystemExit):
        main(["weights", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"(default {estimator['smoothing']}, the plain k-NN estimate;" in shown
    assert f"(default {weighting['min_ess_ratio']};" in shown


def test_embedder_options_are_checked_by_name_and_bugs_pass_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib.metadata import EntryPoint

    import katdensity.registry as registry
    from katdensity.cli.commands import embedder_for
    from katdensity.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"embedder 'hashing' does not take .*\['bogus'\]"):
        embedder_for("hashing", {"bogus": 1}, quiet=True)

    def fake_entry_points(group: str) -> list[EntryPoint]:
        return [EntryPoint("faulty", "tests.plugins.fake:FaultyEmbedder", group)]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    registry._plugins.cache_clear()
    try:
        with pytest.raises(TypeError, match=r"^a bug inside the plug-in \(width=3\)$"):
            embedder_for("faulty", {}, quiet=False)
    finally:
        registry._plugins.cache_clear()


def test_weights_refuses_data_with_a_repeated_id_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--data holding every id of the embeddings plus one id a second time is refused (it
    used to keep whichever row came last), as `katdensity embed` refuses it."""
    from katdensity.io import save_embeddings

    points = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    save_embeddings(tmp_path / "e.pt", [f"p{i}" for i in range(30)], points)
    rows = [{"id": f"p{i}", "prompt": f"prompt {i}"} for i in range(30)]
    rows.append({"id": "p7", "prompt": "another prompt with the same id"})
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "w.pt"
    argv = ["weights", "--emb", str(tmp_path / "e.pt"), "--data", str(data), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "should hold each id once, but id 'p7' is in rows 7 and 30" in err
    assert not out.exists()
    assert main(["embed", "--data", str(data), "--out", str(tmp_path / "e2.pt")]) == 2
    assert "id 'p7' is in rows 7 and 30" in capsys.readouterr().err


def test_weights_with_rewards_weighs_by_density_times_learnability(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from katdensity import (
        ExactKNNDensity,
        InverseDensityWeighting,
        LearnabilityTracker,
        LearnabilityWeighting,
    )
    from katdensity.io import save_embeddings

    points = torch.randn(80, 6, generator=torch.Generator().manual_seed(3))
    ids = [f"p{i}" for i in range(80)]
    save_embeddings(tmp_path / "e.pt", ids, points)
    lines = [{"id": "p1", "reward": 1.0}] * 8 + [{"id": "p2", "reward": r} for r in [0, 1] * 4]
    rewards = tmp_path / "rewards.jsonl"
    rewards.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "w.pt"
    argv = ["weights", "--emb", str(tmp_path / "e.pt"), "--out", str(out), "--estimator", "exact"]
    assert main(["--quiet", *argv, "--rewards", str(rewards)]) == 0
    shown = capsys.readouterr().out
    assert "prompts with rewards       2 of 80 distinct" in shown
    assert "learnable 0.50, solved (>0.8) 0.50" in shown
    assert "zero-variance groups of 8  expected" in shown
    record = torch.load(out, weights_only=True)
    result = ExactKNNDensity(k=10).estimate(points)
    tracker = LearnabilityTracker(80, density=result)
    tracker.update([1] * 8 + [2] * 8, [1.0] * 8 + [0.0, 1.0] * 4)
    expected = LearnabilityWeighting(tracker, density=InverseDensityWeighting())(result)
    torch.testing.assert_close(record["weights"], expected, rtol=0, atol=1e-15)
    assert record["settings"]["rewards"] == str(rewards)
    assert record["weights"][2] > record["weights"][1]

    rewards.write_text(json.dumps({"id": "p1", "reward": 3.0}) + "\n")
    assert main(["--quiet", *argv, "--rewards", str(rewards)]) == 2
    assert "reward_range [0.0, 1.0]" in capsys.readouterr().err
    assert main(["--quiet", *argv, "--rewards", str(rewards), "--reward-range", "0", "5"]) == 0
    rewards.write_text(json.dumps({"id": "q9", "reward": 1.0}) + "\n")
    out.unlink()
    assert main(["--quiet", *argv, "--rewards", str(rewards)]) == 2
    assert "id 'q9' is not there" in capsys.readouterr().err and not out.exists()
