"""Smoke tests: every script runs a few steps at the tiny preset; GRPO resumes exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from examples import compare, data, pool, train_grpo
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
    assert compare.PRIMARY[1] in text and "| pooled |" in text and "minimal detectable" in text
    for arm in compare.ARMS:
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
    rare, common = compare.RARE[0], compare.COMMON[0]
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


def test_pooled_standard_error_comes_from_the_spread_over_bases() -> None:
    assert compare.mean_se([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0 / 3**0.5))
    # Three per-base estimates: their mean, and SD 1 / sqrt(3), however tight each one was.
    assert compare.pooled([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0 / 3**0.5))


def test_t_test_thresholds_and_power() -> None:
    # t table: t(0.975, 7 df) = 2.3646, t(0.8, 7 df) = 0.8960.
    assert compare.critical(8) == pytest.approx(2.3646, abs=1e-4)
    assert compare.detectable(0.01, 8) == pytest.approx(0.032606, abs=1e-5)
    assert math.isnan(compare.critical(1))
    # Effect 0.03, per-base SD 0.05: (t(.975, n-1) + t(.8, n-1)) / sqrt(n) <= 0.6 first at
    # n = 24 (2.0687 + 0.8575) / sqrt(24) = 0.597; n = 23 gives 0.611.
    assert compare.bases_needed(0.03, 0.05) == 24
    assert compare.bases_needed(1e-6, 1.0) is None


def test_verdict_needs_the_t_threshold_not_two_standard_errors() -> None:
    # 8 bases: 2.2 SE is not enough (the threshold is 2.36), 2.5 SE is.
    assert compare.verdict(-0.022, 0.01, 8, "lower").startswith("no difference beyond 2.36")
    assert compare.verdict(-0.025, 0.01, 8, "lower") == (
        "density is better (beyond 2.36 standard errors)"
    )
    assert compare.verdict(-0.025, 0.01, 8, "higher").startswith("density is worse")
    assert compare.verdict(0.5, math.nan, 1, "lower").startswith("one base model")


def _report(
    *estimates: str,
    first_base: int = 0,
    kernels: str = "AVX512",
    cpu: str = "AMD EPYC",
    steps: int = 100,
    uniform: tuple[float, ...] = (),
    treatment: str = "density",
) -> str:
    """A compare report whose base models score 0.5 and whose uniform arm scores `uniform`."""
    uniform = uniform or (0.5,) * len(estimates)
    rows = "".join(
        f"| {b} | 0.500 | {u:.3f} ± 0.1 | 0.5 ± 0.1 | {e} | 0.1 |\n"
        for b, (e, u) in enumerate(zip(estimates, uniform, strict=True), start=first_base)
    )
    return (
        "# Report\n\n```bash\npython -m examples.compare\n```\n\n"
        f"Setup: preset `cpu`, {len(estimates)} base models × 2 GRPO seeds × 4 arms, "
        f"{steps} GRPO steps per run.\n\nMachine: x86_64 ({cpu}), 2 torch threads, torch "
        f"2.13.0+cpu ({kernels} CPU kernels), device cpu, 2 parallel run(s); wall time 1 minutes.\n"
        f"<!-- --8<-- [start:primary] -->\n\n| base | base model | uniform | {treatment} "
        f"| {treatment} − uniform | minimal detectable |\n|---|---|---|---|---|---|\n"
        f"{rows}| pooled | 0.5 | 0.5 | 0.5 | **+0.000 ± 0.100** | 0.3 |\n\n"
        "<!-- --8<-- [end:primary] -->\n"
    )


def test_pool_reads_every_base_row_and_pools_over_all_bases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    first.write_text(_report("+0.100 ± 0.020", "-0.100 ± 0.050", uniform=(0.6, 0.7)))
    second.write_text(_report("+0.300 ± 0.010", first_base=2, uniform=(0.9,)))
    report = pool.parse_report(first.read_text(), "a.md")
    assert report.estimates == {0: 0.1, 1: -0.1}
    assert report.machine == "AMD EPYC, AVX512 kernels, device cpu"
    assert report.command == "python -m examples.compare"
    # Three bases 0.1, -0.1, 0.3: mean 0.1, SD 0.2, SE 0.2 / sqrt(3); the row SEs do not count.
    mean, se = pool.main([str(first), str(second)])
    assert (mean, se) == pytest.approx((0.1, 0.2 / 3**0.5))
    out = capsys.readouterr().out
    assert "| **all** | 3 | **+0.100 ± 0.115** | no difference beyond 4.30" in out
    # The sanity check: uniform − base model 0.1, 0.2, 0.4: mean 0.233, SD 0.153, SE 0.088.
    assert "| **all** | 3 | **+0.233 ± 0.088** | no difference beyond 4.30" in out
    assert f"| {first} | 1 | AMD EPYC, AVX512 kernels, device cpu | 0.500 | 0.700 |" in out
    assert "machines agree" not in out  # one machine: nothing to compare
    written = tmp_path / "POOLED.md"
    pool.main([str(first), str(second), "--out", str(written)])
    document = written.read_text()
    assert f"python -m examples.pool {first} {second} --out {written}" in document
    assert capsys.readouterr().out in document  # the tables it printed, under the command
    with pytest.raises(pool.ReportError, match="no primary table"):
        pool.parse_report(document)  # a pooled report is not a report to pool again


def test_pool_reads_a_cpu_name_with_parentheses(tmp_path: Path) -> None:
    text = _report("-0.050 ± 0.01", cpu="Intel(R) Xeon(R) Processor")
    report = pool.parse_report(text, "xeon.md")
    assert report.machine == "Intel(R) Xeon(R) Processor, AVX512 kernels, device cpu"
    assert report.estimates == {0: -0.05}


def test_pool_compares_the_verdicts_of_machines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lower = ("-0.050 ± 0.01", "-0.060 ± 0.01", "-0.040 ± 0.01")  # mean -0.05, SE 0.0058
    mixed = ("-0.050 ± 0.01", "+0.050 ± 0.01", "+0.000 ± 0.01")  # mean 0, no verdict
    for second, agreement in (
        (lower, "The 2 machines agree: density is better."),
        (mixed, "The 2 machines disagree: density is better; no difference."),
    ):
        (tmp_path / "a.md").write_text(_report(*lower))
        # The same base seeds on other kernels: other models.
        (tmp_path / "b.md").write_text(_report(*second, kernels="AVX2"))
        pool.main([str(tmp_path / "a.md"), str(tmp_path / "b.md")])
        out = capsys.readouterr().out
        assert "| AMD EPYC, AVX2 kernels, device cpu | 3 |" in out
        assert agreement in out
    # -0.05 ± 0.0058 against 0 ± 0.0289: differ by 0.05 ± 0.0294, t = 1.70 on 2.2 Welch df.
    assert "AMD EPYC, AVX2 kernels minus AMD EPYC, AVX512 kernels: +0.050 ± 0.029" in out
    assert "p = 0.22): consistent with one effect." in out


def test_pool_refuses_what_is_not_a_report_and_a_model_twice(tmp_path: Path) -> None:
    report, other = tmp_path / "a.md", tmp_path / "notes.md"
    report.write_text(_report("+0.100 ± 0.020", "-0.100 ± 0.050"))
    other.write_text("# Notes\nno table here\n")
    with pytest.raises(pool.ReportError, match="no primary table"):
        pool.parse_report(other.read_text(), "notes.md")
    rerun, longer = tmp_path / "rerun.md", tmp_path / "longer.md"
    rerun.write_text(_report("+0.200 ± 0.020", first_base=1))  # base 1 again, same machine
    longer.write_text(_report("+0.200 ± 0.020", first_base=5, steps=200))
    reports = [pool.parse_report(p.read_text(), p.name) for p in (report, rerun, longer)]
    with pytest.raises(pool.ReportError, match=r"base 1 on AMD EPYC.* both a\.md and rerun\.md"):
        pool.check_poolable(reports[:2])
    with pytest.raises(pool.ReportError, match=r"longer\.md and a\.md ran different setups"):
        pool.check_poolable([reports[0], reports[2]])
    strong = pool.parse_report(_report("-0.1 ± 0.01", first_base=7, treatment="density-strong"))
    assert strong.treatment == "density-strong"
    with pytest.raises(pool.ReportError, match=r"compares density-strong and a\.md density"):
        pool.check_poolable([reports[0], strong])
    with pytest.raises(pool.ReportError, match="compares an unknown arm density-max"):
        pool.parse_report(_report("-0.1 ± 0.01", treatment="density-max"), "max.md")
    edited = _report("+0.100 ± 0.020", "-0.100 ± 0.050").replace("| 1 | 0.500", "| 0 | 0.500")
    with pytest.raises(pool.ReportError, match="base 0 has two rows"):
        pool.parse_report(edited, "edited.md")
    for argv in (
        [str(report), str(report)],
        [str(other)],
        [str(tmp_path / "missing.md")],
        [str(report), str(rerun)],
        [str(report), "--out", str(tmp_path / "no-such-folder" / "POOLED.md")],
    ):
        with pytest.raises(SystemExit) as exit_info:
            pool.main(argv)
        assert exit_info.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.md",
        "longer.md",
        "notes.md",
        "rerun.md",
    ]


def test_pool_sanity_check_says_what_uniform_grpo_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # uniform − base model 0.1, 0.12, 0.08: mean 0.1, SE 0.0115, beyond 4.30 SE.
    path = tmp_path / "a.md"
    path.write_text(
        _report(
            "-0.01 ± 0.01",
            "+0.01 ± 0.01",
            "+0.00 ± 0.01",
            uniform=(0.6, 0.62, 0.58),
            treatment="density-strong",
        )
    )
    pool.main([str(path)])
    out = capsys.readouterr().out
    assert "| **all** | 3 | **+0.100 ± 0.012** | uniform GRPO raises it (beyond 4.30" in out
    assert "density-strong (beta 2.0, ESS floor 0.4) minus uniform, per base model" in out
    assert "| uniform | density-strong | density-strong − uniform |" in out
