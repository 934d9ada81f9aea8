"""Rare and learnable: which prompts still teach, learned from GRPO rewards, and the weights
that combine it with inverse density."""

from katdensity.learnability.tracker import LearnabilityTracker
from katdensity.learnability.weighting import PASS_RATE_BANDS, LearnabilityWeighting

__all__ = ["PASS_RATE_BANDS", "LearnabilityTracker", "LearnabilityWeighting"]
