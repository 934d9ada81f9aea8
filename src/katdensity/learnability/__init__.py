"""Rare and learnable: which prompts still teach, learned from GRPO rewards, and the weights
that combine it with inverse density."""

from katdensity.learnability.tracker import LearnabilityTracker
from katdensity.learnability.weighting import (
    LEARNABILITY_MIN_ESS_RATIO,
    PASS_RATE_BANDS,
    LearnabilityWeighting,
)

__all__ = [
    "LEARNABILITY_MIN_ESS_RATIO",
    "PASS_RATE_BANDS",
    "LearnabilityTracker",
    "LearnabilityWeighting",
]
