"""Smoke tests: every script runs a few steps at the tiny preset; GRPO resumes exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from examples import compare, data, pool, report, train_grpo
from examples.common import load_checkpoint
from examples.train_rm import load_reward_model


def grpo(base: tuple[Path, Path], out: Path, *extra: str) -> dict:
    sft, rm = base
    argv = ["--preset", "tiny", "--device", "cpu", "--sft", str(sft), "--rm", str(rm)]
    path = train_grpo.main([*argv, "--out-dir", str(out), *extra])
    return load_checkpoint(path)


def test_data_script_writes_both_splits(tmp_path: Path) -> None:
    data.main(["--out", str(tmp_path), "--topic-size", "30"])
    train = data.load_examples(tmp_path / "train.jsonl")
    heldout = data.load_examples(tmp_path / "heldout.jsonl")
    assert len(train) > 50 and len(heldout) == 64


def test_sft_and_reward_model_checkpoints_load(tiny_base: tuple[Path, Path]) -> None:
    sft, rm = tiny_base
    assert load_checkpoint(sft)["config"]["n_layer"] == 1
    checkpoint = load_checkpoint(rm)
    assert 0.0 <= checkpoint["accuracy"] <= 1.0
    model = load_reward_model(checkpoint)
    scores = model.score([[256, 97, 10], [256, 98, 99, 10]], [[100, 257], [101, 102, 257]], 258)
    assert scores.shape == (2,) and bool(torch.isfinite(scores).all())


@pytest.mark.parametrize(
    "sampler",
    [["--sampler", "uniform"], ["--sampler", "density"], ["--embedder", "logits"]],
    ids=["uniform", "density-hidden", "density-logits"],
)
def test_grpo_runs_and_draws_whole_groups(
    tiny_base: tuple[Path, Path], tmp_path: Path, sampler: list[str]
) -> None:
    checkpoint = grpo(tiny_base, tmp_path, *sampler, "--max-steps", "2")
    assert checkpoint["step"] == 2 and len(checkpoint["draws"]) == 2 * 2  # P = 2 per step
    assert [h["step"] for h in checkpoint["history"]] == [1, 2]
    policy = checkpoint["model"]
    start = load_checkpoint(tiny_base[0])["model"]
    assert any(not torch.equal(policy[name], start[name]) for name in start)  # it trained


def test_grpo_with_no_kl_still_updates_the_policy(
    tiny_base: tuple[Path, Path], tmp_path: Path
) -> None:
    # With kl_coef = 0 only the advantage-weighted term is left to move the weights.
    checkpoint = grpo(tiny_base, tmp_path, "--kl-coef", "0", "--max-steps", "1")
    start = load_checkpoint(tiny_base[0])["model"]
    assert any(not torch.equal(checkpoint["model"][name], start[name]) for name in start)


REFRESHING = ["--sampler", "density", "--refresh-every", "3", "--updates-per-batch", "2"]


@pytest.mark.parametrize(
    "extra", [["--sampler", "uniform"], REFRESHING], ids=["uniform", "density-refresh-mu2"]
)
def test_resume_continues_the_same_prompts_and_weights(
    tiny_base: tuple[Path, Path], tmp_path: Path, extra: list[str]
) -> None:
    straight = grpo(tiny_base, tmp_path / "straight", *extra, "--max-steps", "4")
    grpo(tiny_base, tmp_path / "half", *extra, "--max-steps", "2")
    resumed = grpo(
        tiny_base, tmp_path / "resumed", *extra, "--max-steps", "4",
        "--resume", str(tmp_path / "half" / "ckpt.pt"),
    )  # fmt: skip
    assert resumed["draws"] == straight["draws"] and len(straight["draws"]) == 8
    for name, tensor in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=1e-6)
    torch.testing.assert_close(resumed["sampler"]["weights"], straight["sampler"]["weights"])


def test_resume_refuses_other_data(tiny_base: tuple[Path, Path], tmp_path: Path) -> None:
    # Same row count, other prompts: without the check the run would go on silently.
    grpo(tiny_base, tmp_path / "half", "--max-steps", "1")
    with pytest.raises(SystemExit, match="--templates 8 in the checkpoint, 2 now"):
        grpo(
            tiny_base, tmp_path / "resumed", "--max-steps", "2", "--templates", "2",
            "--resume", str(tmp_path / "half" / "ckpt.pt"),
        )  # fmt: skip


def test_refresh_needs_the_density_sampler(tiny_base: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        grpo(tiny_base, tmp_path, "--sampler", "uniform", "--refresh-every", "2")


def test_grpo_with_the_learned_reward_model(tiny_base: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint = grpo(tiny_base, tmp_path, "--reward", "model", "--max-steps", "1")
    assert checkpoint["args"]["reward"] == "model" and len(checkpoint["history"]) == 1
    with pytest.raises(SystemExit):  # --reward model without --rm
        train_grpo.parse_args(["--sft", "x.pt", "--reward", "model"])


def test_compare_writes_the_endpoint_first_then_the_checks(tmp_path: Path) -> None:
    results = compare.main([
        "--preset", "smoke", "--device", "cpu", "--bases", "0", "1", "--seeds", "0", "1",
        "--out-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "RESULTS.md"),
    ])  # fmt: skip
    text = results.read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:3] == [
        "## Primary endpoint",
        "## The endpoint against the strength of the weights",
        "## Sanity check: does uniform GRPO over-train the dense part?",
    ]
    assert report.PRIMARY[1] in text and "| pooled |" in text and "minimal detectable" in text
    for arm in report.ARMS:
        assert f"| {arm.name} |" in text
    for needle in ("distinct-2", "self-BLEU", "Vendi", "KL to base", "dup:cats",
                   "python -m examples.compare --preset smoke"):  # fmt: skip
        assert needle in text
    assert "± " in text  # two seeds: a spread
    assert "(t test, 1 df)" in text or "beyond 12.71 standard errors" in text  # two bases
    assert list(pool.parse_report(text).estimates) == [0, 1]  # what examples.pool reads


def test_compare_phrases_every_stage_s_data_as_its_preset_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(compare.EXPERIMENTS["smoke"], "data", dict(templates=2, modifiers=1))
    runs = tmp_path / "runs"
    results = compare.main(["--preset", "smoke", "--device", "cpu", "--out-dir", str(runs)])
    assert "(182 distinct: 2 templates, no ending)" in results.read_text()  # Setup line
    sft = load_checkpoint(runs / "sft0" / "sft.pt")["args"]
    grpo = load_checkpoint(runs / "base0" / "density-seed0" / "ckpt.pt")["args"]
    assert (sft["templates"], sft["modifiers"]) == (grpo["templates"], grpo["modifiers"]) == (2, 1)


def test_collapse_means_answering_with_a_common_topic() -> None:
    rare, common = report.RARE[0], report.COMMON[0]
    own = data.TOPICS[rare].nouns[0]
    other = data.TOPICS[common].nouns[0]
    assert compare.collapsed(f"the {other} sleeps.", rare)
    assert not compare.collapsed(f"the {own} and the {other}.", rare)  # on its own topic
    assert not compare.collapsed("nothing here at all.", rare)  # off topic, but not collapsed


def test_the_cpu_preset_phrases_every_stage_s_data_alike(
    capsys: pytest.CaptureFixture[str],
) -> None:
    phrasing = compare.EXPERIMENTS["cpu"]["data"]
    train, _ = data.load_data(None, topic_size=300, seed=0, **phrasing)
    assert compare._phrasing(phrasing, train) == " (537 distinct: 2 templates, no ending)"
    assert compare._phrasing({}, train) == ""  # the full phrasing: the Setup line says nothing
    args = train_grpo.parse_args(["--sft", "x.pt", "--templates=2", "--modifiers=1"])
    assert (args.templates, args.modifiers) == (2, 1)
    with pytest.raises(SystemExit) as exit_info:
        train_grpo.parse_args(["--sft", "x.pt", "--templates", "9"])
    assert exit_info.value.code == 2
    assert "--templates: invalid choice: 9" in capsys.readouterr().err
