"""Pool the primary endpoint of several `examples.compare` reports over all their base models.

Each report's per-base rows (the `primary` table) are paired estimates of density minus
uniform, one per base model. Reports from different machines, CPU kernels or `--bases`
hold different base models, so their rows are independent draws of the same quantity:
pooled, they give one estimate with the standard error from the spread over all bases and
the same two-sided 5% t test that `compare` applies to one report.

    python -m examples.pool examples/RESULTS*.md

The reports are also pooled per machine (its CPU, its kernels and its device, as the
report's Machine line names them), and the verdicts compared: the experiment's conclusion
holds only if every machine reaches it. The same base seed on the same machine trains the
same model twice, so such a pair of rows is refused, as are reports of different setups.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from examples.compare import (
    MAX_BASES,
    PRIMARY,
    bases_needed,
    detectable,
    fmt,
    pooled,
    verdict,
)

_START, _END = "<!-- --8<-- [start:primary] -->", "<!-- --8<-- [end:primary] -->"
_POOLED_START, _POOLED_END = "<!-- --8<-- [start:pooled] -->", "<!-- --8<-- [end:pooled] -->"
_MACHINE = re.compile(
    r"^Machine: \S+ \((?P<cpu>[^)]*)\), .*\((?P<kernels>\w+) CPU kernels\), "
    r"device (?P<device>[^,;]+),",
    re.MULTILINE,
)
_SETUP = re.compile(r"^Setup: (?P<setup>.*)$", re.MULTILINE)
_BASE_COUNT = re.compile(r"\d+ base models × ")


class ReportError(ValueError):
    """A file that is not a report written by `examples.compare`, or reports that cannot pool."""


@dataclass(frozen=True)
class Report:
    """The primary endpoint of one compare report.

    Attributes:
        name: where it was read from.
        setup: the experiment, as the report's Setup line states it, less the base count.
        machine: the CPU, its kernels and the device that trained the base models.
        estimates: density − uniform per base seed.
    """

    name: str
    setup: str
    machine: str
    estimates: dict[int, float]


def per_base_estimates(text: str, name: str = "report") -> dict[int, float]:
    """The `density − uniform` estimate of every base row of a report's primary table."""
    if _START not in text or _END not in text:
        raise ReportError(f"{name}: no primary table; pass a RESULTS.md written by compare")
    table = text.split(_START, 1)[1].split(_END, 1)[0]
    estimates = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].isdigit():
            try:
                estimates[int(cells[0])] = float(cells[4].split("±")[0])
            except ValueError:
                raise ReportError(f"{name}: base {cells[0]} has no estimate") from None
    if not estimates:
        raise ReportError(f"{name}: the primary table has no per-base rows")
    return estimates


def parse_report(text: str, name: str = "report") -> Report:
    """A report's setup, machine and per-base estimates."""
    estimates = per_base_estimates(text, name)
    setup, machine = _SETUP.search(text), _MACHINE.search(text)
    if setup is None or machine is None:
        raise ReportError(f"{name}: no Setup or Machine line; pass a RESULTS.md written by compare")
    return Report(
        name=name,
        setup=_BASE_COUNT.sub("", setup["setup"]),
        machine=f"{machine['cpu']}, {machine['kernels']} kernels, device {machine['device']}",
        estimates=estimates,
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
        for base in report.estimates:
            holder = seen.setdefault((report.machine, base), report.name)
            if holder != report.name:
                raise ReportError(
                    f"base {base} on {report.machine} is in both {holder} and {report.name}: "
                    "the same model would count twice"
                )


def _outcome(estimates: Sequence[float]) -> tuple[float, float, str]:
    mean, se = pooled(estimates)
    return mean, se, verdict(mean, se, len(estimates), PRIMARY[2])


def _conclusion(text: str) -> str:
    """The verdict without its threshold and degrees of freedom: what machines must share."""
    return re.split(r" \(| beyond|:", text)[0]


def summary(reports: Sequence[Report]) -> tuple[str, float, float]:
    """The pooled tables and verdicts in Markdown, with the pooled estimate and its SE."""
    lines = ["| report | machine | bases | density − uniform |", "|---|---|---|---|"]
    for report in reports:
        values = list(report.estimates.values())
        lines.append(
            f"| {report.name} | {report.machine} | {len(values)} | {fmt(*pooled(values))} |"
        )
    by_machine: dict[str, list[float]] = {}
    for report in reports:
        by_machine.setdefault(report.machine, []).extend(report.estimates.values())
    everything = [e for values in by_machine.values() for e in values]
    mean, se, overall = _outcome(everything)
    n = len(everything)
    lines += [f"| pooled | | {n} | **{fmt(mean, se)}** |", ""]

    if len(by_machine) > 1:
        lines += ["| machine | bases | density − uniform | verdict |", "|---|---|---|---|"]
        conclusions = set()
        for machine, values in by_machine.items():
            m, s, text = _outcome(values)
            conclusions.add(_conclusion(text))
            lines.append(f"| {machine} | {len(values)} | {fmt(m, s)} | {text} |")
        agreement = "agree" if len(conclusions) == 1 else "disagree"
        lines += [
            "",
            f"The {len(by_machine)} machines {agreement}: {'; '.join(sorted(conclusions))}.",
            "",
        ]
    needed = bases_needed(mean, se * math.sqrt(n))
    lines.append(
        f"{PRIMARY[1].capitalize()}, all {n} base models: {overall}; minimal detectable "
        f"{detectable(se, n):.3f}; an effect of the observed size needs about "
        f"{needed if needed is not None else f'more than {MAX_BASES}'} base models."
    )
    return "\n".join(lines) + "\n", mean, se


def main(argv: list[str] | None = None) -> tuple[float, float]:
    parser = argparse.ArgumentParser(
        prog="python -m examples.pool",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reports", nargs="+", type=Path, help="RESULTS.md files of compare")
    parser.add_argument(
        "--out", type=Path, help="also write the tables here, as Markdown with this command"
    )
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
            "# The primary endpoint, pooled over several compare reports\n\n"
            f"Generated by `examples/pool.py`:\n\n```bash\n{command}\n```\n\n"
            f"{_POOLED_START}\n\n{text}\n{_POOLED_END}\n"
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
