"""Pool the primary endpoint of several `examples.compare` reports over all their base models.

Each report's per-base rows (the `primary` table) are paired estimates of its treatment
arm minus uniform, one per base model. Reports from different machines, CPU kernels or `--bases`
hold different base models, so their rows are independent draws of the same quantity:
pooled, they give one estimate with the standard error from the spread over all bases and
the same two-sided 5% t test that `compare` applies to one report: the statistics, the
verdicts' wording and the report's sections are `examples.report`'s, shared with `compare`.

    python -m examples.pool examples/results/RESULTS-*bases*.md --out examples/results/RESULTS.md

The reports are also pooled per machine (its CPU, its kernels and its device, as the
report's Machine line names them), and the verdicts compared: the experiment's conclusion
holds only if every machine reaches it. The sanity check is pooled the same way: uniform
GRPO minus its base model on the endpoint, from the same rows. The same base seed on the
same machine trains the same model twice, so such a pair of rows is refused, as are
reports of different setups or treatment arms.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from examples.report import (
    ARMS,
    MAX_BASES,
    PRIMARY,
    arm_named,
    bases_needed,
    detectable,
    fmt,
    marker,
    pooled,
    readings,
    verdict,
)

_START, _END = marker("start", "primary"), marker("end", "primary")
# The CPU's name may hold parentheses of its own: "Intel(R) Xeon(R) Processor".
_MACHINE = re.compile(
    r"^Machine: \S+ \((?P<cpu>.*?)\), \d+ torch threads, .*\((?P<kernels>\w+) CPU kernels\), "
    r"device (?P<device>[^,;]+),",
    re.MULTILINE,
)
_SETUP = re.compile(r"^Setup: (?P<setup>.*)$", re.MULTILINE)
_COMMAND = re.compile(r"^```bash\n(?P<command>.*)\n```$", re.MULTILINE)
_BASE_COUNT = re.compile(r"\d+ base models × ")
_TREATMENT = re.compile(r"^\| base \| base model \| uniform \| (?P<arm>[\w-]+) \|", re.MULTILINE)


class ReportError(ValueError):
    """A file that is not a report written by `examples.compare`, or reports that cannot pool."""


@dataclass(frozen=True)
class BaseRow:
    """One base model's row of a report's primary table (means over its GRPO seeds)."""

    base_model: float
    uniform: float
    treatment: float
    estimate: float  # treatment − uniform
    difference: str  # the estimate ± its SE over seed pairs, as the report wrote it


@dataclass(frozen=True)
class Report:
    """The primary endpoint of one compare report.

    Attributes:
        name: where it was read from.
        command: the command that wrote it.
        setup: the experiment, as the report's Setup line states it, less the base count.
        machine: the CPU, its kernels and the device that trained the base models.
        treatment: the arm the primary endpoint compares with uniform.
        rows: the primary table's row of every base seed.
    """

    name: str
    command: str
    setup: str
    machine: str
    treatment: str
    rows: dict[int, BaseRow]

    @property
    def estimates(self) -> dict[int, float]:
        """treatment − uniform per base seed."""
        return {base: row.estimate for base, row in self.rows.items()}


def _mean(cell: str) -> float:
    return float(cell.split("±")[0])


def primary_rows(text: str, name: str = "report") -> dict[int, BaseRow]:
    """Every base row of a report's primary table."""
    if _START not in text or _END not in text:
        raise ReportError(f"{name}: no primary table; pass a RESULTS-*.md written by compare")
    table = text.split(_START, 1)[1].split(_END, 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].isdigit():
            base = int(cells[0])
            if base in rows:
                raise ReportError(f"{name}: base {base} has two rows; pass an unedited report")
            try:
                numbers = [_mean(cell) for cell in cells[1:5]]
            except ValueError:
                raise ReportError(f"{name}: base {base}'s row has no numbers") from None
            rows[base] = BaseRow(*numbers, difference=cells[4])
    if not rows:
        raise ReportError(f"{name}: the primary table has no per-base rows")
    return rows


def parse_report(text: str, name: str = "report") -> Report:
    """A report's command, setup, machine and per-base rows."""
    rows = primary_rows(text, name)
    command, setup, machine = _COMMAND.search(text), _SETUP.search(text), _MACHINE.search(text)
    treatment = _TREATMENT.search(text)
    if command is None or setup is None or machine is None or treatment is None:
        raise ReportError(
            f"{name}: no command, Setup or Machine line or primary table header; pass a "
            "RESULTS-*.md written by compare"
        )
    if treatment["arm"] not in {arm.name for arm in ARMS[1:]}:
        raise ReportError(f"{name}: the primary table compares an unknown arm {treatment['arm']}")
    return Report(
        name=name,
        command=command["command"],
        setup=_BASE_COUNT.sub("", setup["setup"]),
        machine=f"{machine['cpu']}, {machine['kernels']} kernels, device {machine['device']}",
        treatment=treatment["arm"],
        rows=rows,
    )


def check_poolable(reports: Sequence[Report]) -> None:
    """Refuse reports of different setups, and a base model that two reports both hold."""
    first = reports[0]
    seen: dict[tuple[str, int], str] = {}
    for report in reports:
        if report.setup != first.setup:
            raise ReportError(
                f"{report.name} and {first.name} ran different setups; pool reports of one "
                "preset and its settings"
            )
        if report.treatment != first.treatment:
            raise ReportError(
                f"{report.name} compares {report.treatment} and {first.name} {first.treatment} "
                "with uniform; pool reports of one comparison"
            )
        for base in report.rows:
            holder = seen.setdefault((report.machine, base), report.name)
            if holder != report.name:
                raise ReportError(
                    f"base {base} on {report.machine} is in both {holder} and {report.name}: "
                    "the same model would count twice"
                )


def _conclusion(text: str) -> str:
    """The verdict without its threshold and degrees of freedom: what machines must share."""
    return re.split(r" \(| beyond|:", text)[0]


def _by_machine(reports: Sequence[Report]) -> dict[str, list[BaseRow]]:
    groups: dict[str, list[BaseRow]] = {}
    for report in reports:
        groups.setdefault(report.machine, []).extend(report.rows.values())
    return groups


def _verdict_table(
    groups: dict[str, list[float]], better: str, wording: dict[str, str]
) -> tuple[list[str], str]:
    """Per machine and over all: estimate, verdict; and whether the machines agree.

    `wording` holds `verdict`'s `good` and `bad`.
    """
    lines = ["| machine | bases | estimate | verdict |", "|---|---|---|---|"]
    conclusions = set()
    for machine, values in groups.items():
        mean, se = pooled(values)
        text = verdict(mean, se, len(values), better, **wording)
        conclusions.add(_conclusion(text))
        lines.append(f"| {machine} | {len(values)} | {fmt(mean, se)} | {text} |")
    everything = [v for values in groups.values() for v in values]
    mean, se = pooled(everything)
    overall = verdict(mean, se, len(everything), better, **wording)
    lines.append(f"| **all** | {len(everything)} | **{fmt(mean, se)}** | {overall} |")
    if len(groups) == 1:
        return lines, ""
    agreement = "agree" if len(conclusions) == 1 else "disagree"
    verdicts = f"The {len(groups)} machines {agreement}: {'; '.join(sorted(conclusions))}."
    return lines, f"{verdicts} {heterogeneity(groups)}"


def heterogeneity(groups: dict[str, list[float]]) -> str:
    """Whether the machines' estimates differ by more than their errors allow.

    Two machines: Welch's t test of the difference of their means; more: one-way ANOVA.
    A verdict can differ between machines whose estimates agree (one just misses the
    threshold), so this says whether they measure one effect.
    """
    samples = list(groups.values())
    if any(len(values) < 2 for values in samples):
        return ""
    if len(samples) == 2:
        (m1, s1), (m2, s2) = pooled(samples[0]), pooled(samples[1])
        p = float(stats.ttest_ind(samples[0], samples[1], equal_var=False).pvalue)
        first, second = (name.split(", device")[0] for name in groups)
        test = f"{first} minus {second}: {fmt(m1 - m2, math.hypot(s1, s2))}, Welch t test"
    else:
        p = float(stats.f_oneway(*samples).pvalue)
        test = "one-way ANOVA"
    reading = "consistent with one effect" if p >= 0.05 else "they measure different effects"
    return f"Between the machines ({test}, p = {p:.2f}): {reading}."


def summary(reports: Sequence[Report]) -> tuple[str, float, float]:
    """The pooled report in Markdown, with the pooled estimate and its SE."""
    reports = sorted(reports, key=lambda r: (r.machine, min(r.rows)))
    groups = _by_machine(reports)
    differences = {m: [row.estimate for row in rows] for m, rows in groups.items()}
    everything = [e for values in differences.values() for e in values]
    mean, se = pooled(everything)
    n = len(everything)
    treatment = reports[0].treatment
    table, agreement = _verdict_table(differences, PRIMARY[2], readings(treatment))
    needed = bases_needed(mean, se * math.sqrt(n))
    compared = arm_named(treatment).describe()
    lines = [
        "## Primary endpoint",
        "",
        f"**{PRIMARY[1].capitalize()}** (lower is better; fixed before the runs in",
        "`examples.report.PRIMARY`):",
        f"{compared} minus uniform, per base model the mean",
        "over its GRPO seed pairs; pooled per machine and over all base models, the SE from",
        "their spread, judged by a two-sided 5% t test.",
        "",
        marker("start", "pooled"),
        "",
        *table,
        "",
        *([agreement, ""] if agreement else []),
        f"Over all {n} base models the minimal detectable effect (80% power) is "
        f"{detectable(se, n):.3f}; an effect of the observed size would need about "
        f"{needed if needed is not None else f'more than {MAX_BASES}'} base models.",
        "",
        marker("end", "pooled"),
        "",
        "## Sanity check: does uniform GRPO over-train the dense part?",
        "",
        "Uniform GRPO minus its base model on the same endpoint, per base model from the",
        "same rows; it must rise (more collapse onto the common topics) for the question to",
        "be answerable.",
        "",
        marker("start", "sanity"),
        "",
    ]
    rises = {m: [row.uniform - row.base_model for row in rows] for m, rows in groups.items()}
    table, _ = _verdict_table(
        rises, "higher", {"good": "uniform GRPO raises it", "bad": "uniform GRPO lowers it"}
    )
    lines += [
        *table,
        "",
        marker("end", "sanity"),
        "",
        "## Per base model",
        "",
        f"| report | base | machine | base model | uniform | {treatment} | {treatment} − uniform |",
        "|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        for base, row in report.rows.items():
            lines.append(
                f"| {report.name} | {base} | {report.machine} | {row.base_model:.3f} | "
                f"{row.uniform:.3f} | {row.treatment:.3f} | {row.difference} |"
            )
    lines += ["", "## The reports", "", f"| report | command | bases | {treatment} − uniform |"]
    lines.append("|---|---|---|---|")
    for report in reports:
        values = list(report.estimates.values())
        lines.append(
            f"| {report.name} | `{report.command}` | {len(values)} | {fmt(*pooled(values))} |"
        )
    return "\n".join(lines) + "\n", mean, se


def main(argv: list[str] | None = None) -> tuple[float, float]:
    parser = argparse.ArgumentParser(
        prog="python -m examples.pool",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reports", nargs="+", type=Path, help="RESULTS-*.md files of compare")
    parser.add_argument("--out", type=Path, help="also write the pooled report here")
    args = parser.parse_args(argv)
    if len(set(map(Path.resolve, args.reports))) != len(args.reports):
        parser.error("a report is given twice: its base models would count twice")
    try:
        reports = [parse_report(p.read_text(encoding="utf-8"), str(p)) for p in args.reports]
        check_poolable(reports)
    except (OSError, UnicodeDecodeError, ReportError) as error:
        parser.error(str(error))
    text, mean, se = summary(reports)
    print(text, end="")
    if args.out is not None:
        command = "python -m examples.pool " + " ".join(sys.argv[1:] if argv is None else argv)
        document = (
            "# Does density-aware sampling reduce mode collapse in GRPO? All base models\n\n"
            "Generated by `examples/pool.py` from the reports of `examples/compare.py`:\n\n"
            f"```bash\n{command}\n```\n\nSetup: {reports[0].setup}\n\n{text}"
        )
        partial = args.out.with_name(args.out.name + ".partial")
        try:
            partial.write_text(document, encoding="utf-8")
            partial.replace(args.out)  # no half-written report, even if interrupted
        except OSError as error:
            partial.unlink(missing_ok=True)
            parser.error(f"cannot write {args.out}: {error}")
    return mean, se


if __name__ == "__main__":
    main()
