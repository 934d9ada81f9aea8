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
    # The uniform sample follows the Zipf sizes (8x from largest to smallest topic, 7.3x in
    # this draw); the inverse-density one, held to distinct ESS/N >= 0.65, narrows that to
    # under 5x (4.6x at seed 0).
    uniform = [s[1] for s in topics.values()]
    dense = [s[2] for s in topics.values()]
    assert max(uniform) > 5 * min(uniform) and max(dense) < 5 * min(dense)
    assert templated[1] > 0.1 and templated[2] < templated[1] / 5
    assert "inverse-density sample" in result.report
    assert "beta 1 -> 0." in result.report and "ESS/N >= 0.65" in result.report
    summary = result.weights
    assert summary.beta_used is not None and summary.beta_used < 1.0
    assert summary.ess_prompts >= 0.65 * summary.n_prompts and summary.n_prompts == 3861
    assert "largest modes" in result.report and "least weighted" in result.report


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
