from __future__ import annotations

import re
import subprocess
import sys

from katdensity.cli import main
from katdensity.demo import demo_report


def test_demo_equalises_topics_and_suppresses_modes() -> None:
    report = demo_report(seed=0)
    rows = re.findall(
        r"^(topic \d+|near-duplicate mode \d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", report, re.M
    )
    topics = [
        (int(count), float(uniform), float(dense))
        for name, count, uniform, dense in rows
        if name.startswith("topic")
    ]
    modes = [float(dense) for name, _, _, dense in rows if name.startswith("near")]
    assert len(topics) == 8 and len(modes) == 4
    # Uniform shares follow the Zipf sizes; inverse-density shares are within 2x of equal.
    assert topics[0][1] > 5 * topics[-1][1]
    assert all(1 / 16 < dense < 2 / 8 for _, _, dense in topics)
    assert all(share < 0.01 for share in modes)


def test_cli_demo_runs_as_module() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "katdensity", "demo", "--seed", "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "inverse-density share" in completed.stdout


def test_cli_bad_input_is_one_line_and_exit_2(capsys: object) -> None:
    assert main(["demo", "--k", "0"]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert err.strip().count("\n") == 0
    assert err.startswith("katdensity: error: k should be an integer >= 1, but got k=0")
    assert "Traceback" not in err
