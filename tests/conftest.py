from __future__ import annotations

import pytest
import torch

from katdensity.synthetic import PromptMixture, prompt_mixture


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="session")
def mixture() -> PromptMixture:
    return prompt_mixture(n_topics=4, topic_size=400, dim=32, n_modes=2, mode_size=50, seed=3)
