from __future__ import annotations

import os

import pytest
import torch

from katdensity.synthetic import PromptMixture, prompt_mixture


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def mixture() -> PromptMixture:
    return prompt_mixture(n_topics=4, topic_size=400, dim=32, n_modes=2, mode_size=50, seed=3)


# CI sets this so that a test which skips for a missing package or browser fails the run:
# only tests that need CUDA may skip there.
REQUIRE_ALL_TESTS = "KATDENSITY_REQUIRE_ALL_TESTS"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(REQUIRE_ALL_TESTS) != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = [] if reporter is None else reporter.stats.get("skipped", [])
    reasons = [str(report.longrepr[-1]) for report in skipped if isinstance(report.longrepr, tuple)]
    unexpected = [reason for reason in reasons if "CUDA" not in reason]
    if unexpected:
        print(f"\n{REQUIRE_ALL_TESTS}=1: only CUDA tests may skip, but {len(unexpected)} did:")
        for reason in unexpected:
            print(f"  {reason}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
