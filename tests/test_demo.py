from __future__ import annotations

import subprocess
import sys

from katdensity.cli import main
from katdensity.demo import run_demo


def test_demo_equalises_topics_and_starves_templated_near_duplicates() -> None:
    result = run_demo(seed=0)
    topics = {
        group: s for group, s in result.shares.items() if group != "templated near-duplicates"
    }
    templated = result.shares["templated near-duplicates"]
    assert len(topics) == 8 and not result.files
    # The uniform sample follows the Zipf sizes; the inverse-density one is within 2x of equal.
    assert max(s[1] for s in topics.values()) > 5 * min(s[1] for s in topics.values())
    assert all(1 / 16 < s[2] < 2 / 8 for s in topics.values())
    assert templated[1] > 0.1 and templated[2] < 0.01
    assert "inverse-density sample" in result.report


def test_cli_demo_runs_as_module(tmp_path: object) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "katdensity", "demo", "--seed", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "inverse-density sample" in completed.stdout
    assert "report.md" in completed.stdout


def test_cli_bad_input_is_one_line_and_exit_2(capsys: object) -> None:
    assert main(["demo", "--k", "0"]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert err.strip().count("\n") == 0
    assert err.startswith("katdensity: error: k should be an integer >= 1, but got k=0")
    assert "Traceback" not in err
