"""examples.pool: reading compare's reports, pooling them, and refusing what cannot pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples import pool
from examples.report import marker

RESULTS = Path(__file__).parents[2] / "examples" / "results"


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


@pytest.mark.parametrize(
    ("batches", "pooled"),
    [
        ("RESULTS-xeon-bases*.md", "RESULTS-xeon.md"),
        ("RESULTS-*bases*.md", "RESULTS.md"),
        ("varied/RESULTS-*.md", "varied/RESULTS.md"),
    ],
)
def test_the_committed_pooled_reports_follow_from_their_batches(
    batches: str, pooled: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every figure of the pooled tables, as committed; only the report names and the
    # command, which name the files' paths, may differ.
    paths = sorted(str(p) for p in RESULTS.glob(batches))
    assert len(paths) >= 3
    pool.main(paths)
    out = capsys.readouterr().out

    def tables(text: str) -> str:
        return text.split(marker("start", "pooled"))[1].split(marker("end", "sanity"))[0]

    assert tables(out) == tables((RESULTS / pooled).read_text(encoding="utf-8"))
