from __future__ import annotations

import pytest
import torch

from katdensity import ExactKNNDensity, InvalidInputError, InverseDensityWeighting
from katdensity.density.modes import find_modes
from katdensity.report import weight_report


def _result_with_copies() -> tuple[object, torch.Tensor]:
    points = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    rows = torch.cat([points[:1].repeat(6, 1), points[1:2].repeat(3, 1), points[2:]])
    return ExactKNNDensity(k=5).estimate(rows), rows


def test_report_counts_copies_once_and_matches_oracles() -> None:
    result, _ = _result_with_copies()
    weights = torch.rand(47, generator=torch.Generator().manual_seed(2)).double()
    weights = weights / weights.sum()
    report = weight_report(result, weights, top=3)
    assert (report.n_rows, report.n_prompts) == (47, 40)
    groups = result.distinct_index
    mass = torch.zeros(40, dtype=torch.float64).index_add_(0, groups, weights)
    assert report.ess_prompts == pytest.approx(1 / float(mass.square().sum()))
    assert report.ess_rows == pytest.approx(1 / float(weights.square().sum()))
    # The two repeated prompts are the largest modes: 6 rows and 3 rows, one prompt each.
    assert [(m.rows, m.prompts, m.example) for m in report.modes[:2]] == [(6, 1, 0), (3, 1, 6)]
    assert report.modes[0].uniform_share == pytest.approx(6 / 47)
    assert report.modes[0].weighted_share == pytest.approx(float(weights[:6].sum()))
    # Most and least weighted distinct prompts, with their copies together, times M.
    order = torch.argsort(mass, descending=True)
    assert [p.times_uniform for p in report.most_weighted] == pytest.approx(
        (mass[order[:3]] * 40).tolist()
    )
    assert report.least_weighted[0].times_uniform == pytest.approx(float(mass.min()) * 40)


def test_format_shows_texts_the_strength_and_refuses_misaligned_texts() -> None:
    result, _ = _result_with_copies()
    weighting = InverseDensityWeighting(min_ess_ratio=0.99)
    weights = weighting(result)
    report = weight_report(
        result, weights, beta=1.0, beta_used=weighting.beta_used_, min_ess_ratio=0.99
    )
    texts = ["the repeated prompt"] * 6 + ["another one"] * 3 + [f"prompt {i}" for i in range(38)]
    shown = report.format(texts)
    assert "largest modes" in shown and "the repeated prompt" in shown
    assert "to keep distinct ESS/N >= 0.99" in shown
    assert "#0" in report.format()  # rows are named by number without texts or ids
    with pytest.raises(InvalidInputError, match=r"texts should have one entry per row \(47\)"):
        report.format(texts[:3])
    with pytest.raises(InvalidInputError, match=r"weights should have one entry per row"):
        weight_report(result, weights[:5])


def test_a_weight_result_reports_itself_like_the_explicit_call() -> None:
    result, _ = _result_with_copies()
    weighting = InverseDensityWeighting(min_ess_ratio=0.99)
    weighted = weighting.weigh(result)
    explicit = weight_report(
        result,
        weighted.probabilities,
        beta=1.0,
        beta_used=weighting.beta_used_,
        min_ess_ratio=0.99,
        modes=find_modes(result),
        top=2,
    )
    assert weight_report(weighted, top=2) == explicit
    assert explicit.beta_used is not None and explicit.beta_used < 1.0
    with pytest.raises(InvalidInputError, match="carries its weights and modes"):
        weight_report(weighted, weighted.probabilities)


def test_the_deprecated_result_report_still_reports_its_weights() -> None:
    result, _ = _result_with_copies()
    weights = InverseDensityWeighting()(result)
    with pytest.warns(DeprecationWarning, match="use katdensity.report.weight_report"):
        reported = result.report(weights, top=2)
    assert reported == weight_report(result, weights, top=2)
