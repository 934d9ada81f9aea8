"""The statistics of examples.report, against t tables and hand computations."""

from __future__ import annotations

import math

import pytest

from examples import report


def test_pooled_standard_error_comes_from_the_spread_over_bases() -> None:
    assert report.mean_se([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0 / 3**0.5))
    # Three per-base estimates: their mean, and SD 1 / sqrt(3), however tight each one was.
    assert report.pooled([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0 / 3**0.5))


def test_t_test_thresholds_and_power() -> None:
    # t table: t(0.975, 7 df) = 2.3646, t(0.8, 7 df) = 0.8960.
    assert report.critical(8) == pytest.approx(2.3646, abs=1e-4)
    assert report.detectable(0.01, 8) == pytest.approx(0.032606, abs=1e-5)
    assert math.isnan(report.critical(1))
    # Effect 0.03, per-base SD 0.05: (t(.975, n-1) + t(.8, n-1)) / sqrt(n) <= 0.6 first at
    # n = 24 (2.0687 + 0.8575) / sqrt(24) = 0.597; n = 23 gives 0.611.
    assert report.bases_needed(0.03, 0.05) == 24
    assert report.bases_needed(1e-6, 1.0) is None


def test_verdict_needs_the_t_threshold_not_two_standard_errors() -> None:
    # 8 bases: 2.2 SE is not enough (the threshold is 2.36), 2.5 SE is.
    assert report.verdict(-0.022, 0.01, 8, "lower").startswith("no difference beyond 2.36")
    assert report.verdict(-0.025, 0.01, 8, "lower") == (
        "density is better (beyond 2.36 standard errors)"
    )
    assert report.verdict(-0.025, 0.01, 8, "higher").startswith("density is worse")
    assert report.verdict(0.5, math.nan, 1, "lower").startswith("one base model")


def test_section_markers_are_the_ones_the_docs_include() -> None:
    assert report.marker("start", "primary") == "<!-- --8<-- [start:primary] -->"
    assert report.marker("end", "sanity") == "<!-- --8<-- [end:sanity] -->"
