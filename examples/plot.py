"""The A/B experiment's plot: the primary endpoint against the strength of the weights.

Left, per base model, each arm's endpoint (mean ± SE over its GRPO seeds) at the ESS/N of
its weights (1 for uniform, smaller for stronger weights); right, each density arm minus
uniform pooled over bases with its 95% interval (the t test's threshold times the SE).
`examples.compare` draws it beside its report, which links it; matplotlib is optional
(the `examples` extra), and without it there is no plot.
"""

from __future__ import annotations

import math
from pathlib import Path

from examples.report import ARMS, PRIMARY, Runs, critical, mean_se


def write_plot(path: Path, runs: Runs) -> bool:
    """The endpoint against each arm's ESS/N, per base and pooled; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    key, label, _ = PRIMARY
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for number, base in enumerate(runs.bases):
        points = [(runs.ess(a.name), *mean_se(runs.values(a.name, key, base))) for a in ARMS]
        x, y, se = zip(*points, strict=True)
        left.errorbar(
            x,
            y,
            yerr=[0 if math.isnan(e) else e for e in se],
            marker="o",
            capsize=3,
            color=f"C{number}",
            label=f"base {base}",
        )
    left.set(xlabel="ESS/N of the weights (1 = uniform)", ylabel=label, title="per base")
    left.invert_xaxis()
    left.legend(fontsize=8)
    for number, arm in enumerate(ARMS[1:], start=1):
        mean, se = runs.pooled_difference(key, arm.name)
        right.errorbar(
            [runs.ess(arm.name)],
            [mean],
            yerr=[0 if math.isnan(se) else critical(len(runs.bases)) * se],
            marker="o",
            capsize=3,
            color=f"C{number}",
            label=arm.name,
        )
    right.axhline(0, color="grey", lw=1, ls="--")
    right.set(
        xlabel="ESS/N of the weights",
        ylabel=f"{key}: arm - uniform (95% interval)",
        title="pooled over bases",
    )
    right.invert_xaxis()
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
