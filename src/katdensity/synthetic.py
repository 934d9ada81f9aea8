"""Synthetic prompt sets with a known answer, for the demo, tests and benchmarks.

[`generated_prompts`][katdensity.synthetic.generated_prompts] writes prompts in words (topics
of Zipf-distributed sizes plus templated near-duplicates) for the embedders to embed.

`prompt_mixture` imitates what the embeddings of a real prompt set look like to a density
estimator: topics of Zipf-distributed sizes, each a Gaussian blob of the same spread on
its own low-dimensional subspace, plus near-duplicate *modes* (many slight rewrites of one
prompt). Topics of equal spread occupy equal volumes, so an ideal inverse-density sampler
gives every topic the same share however many prompts it holds, and a mode next to nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from katdensity._validate import check_int, check_real

__all__ = ["GeneratedPrompts", "PromptMixture", "generated_prompts", "prompt_mixture"]


@dataclass(frozen=True)
class PromptMixture:
    """Embeddings with their ground-truth structure.

    Attributes:
        embeddings: `(N, D)` float32 unit rows, shuffled.
        topic: `(N,)` int64 topic id; `-1` for a near-duplicate.
        mode: `(N,)` int64 near-duplicate group id; `-1` outside the modes.
        mode_prompt: `(n_modes, D)` the prompt each mode rewrites.
    """

    embeddings: torch.Tensor
    topic: torch.Tensor
    mode: torch.Tensor
    mode_prompt: torch.Tensor


def prompt_mixture(
    n_topics: int = 8,
    topic_size: int = 1000,
    *,
    dim: int = 64,
    topic_dim: int = 8,
    zipf_exponent: float = 1.0,
    n_modes: int = 4,
    mode_size: int = 100,
    mode_spread: float = 0.05,
    seed: int = 0,
) -> PromptMixture:
    """Generate a prompt-like point set with topics, near-duplicate modes and unique points.

    Args:
        n_topics: number of topics; topic `t` holds `topic_size / (t + 1) ** zipf_exponent`
            points (at least 2).
        topic_size: size of the largest topic.
        dim: ambient dimension `D`.
        topic_dim: dimension of each topic's subspace (its intrinsic dimension).
        zipf_exponent: how fast topic sizes fall.
        n_modes: number of near-duplicate groups.
        mode_size: points per near-duplicate group.
        mode_spread: noise scale of the rewrites around their prompt.
        seed: the same seed gives the same data.

    Returns:
        The embeddings and their topic and mode labels.
    """
    for name, value, low in (
        ("n_topics", n_topics, 0),
        ("topic_size", topic_size, 2),
        ("dim", dim, 2),
        ("n_modes", n_modes, 0),
        ("mode_size", mode_size, 1),
        ("seed", seed, 0),
    ):
        check_int(name, value, low=low)
    check_int("topic_dim", topic_dim, low=1, high=dim + 1)
    check_real("zipf_exponent", zipf_exponent, low=0.0)
    check_real("mode_spread", mode_spread, low=0.0)
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    parts, topics, modes = [], [], []
    for t in range(n_topics):
        size = max(2, int(topic_size / (t + 1) ** zipf_exponent))
        center = torch.nn.functional.normalize(randn(dim), dim=0)
        basis = torch.linalg.qr(randn(dim, topic_dim)).Q  # (D, topic_dim)
        parts.append(center + 0.3 * randn(size, topic_dim) @ basis.T / topic_dim**0.5)
        topics.append(torch.full((size,), t))
        modes.append(torch.full((size,), -1))
    prompts = torch.nn.functional.normalize(randn(n_modes, dim), dim=1)
    for m in range(n_modes):
        basis = torch.linalg.qr(randn(dim, topic_dim)).Q
        parts.append(
            prompts[m] + mode_spread * randn(mode_size, topic_dim) @ basis.T / topic_dim**0.5
        )
        topics.append(torch.full((mode_size,), -1))
        modes.append(torch.full((mode_size,), m))

    embeddings = torch.nn.functional.normalize(torch.cat(parts), dim=1)
    order = torch.randperm(embeddings.shape[0], generator=generator)
    return PromptMixture(
        embeddings=embeddings[order].contiguous(),
        topic=torch.cat(topics)[order].to(torch.int64),
        mode=torch.cat(modes)[order].to(torch.int64),
        mode_prompt=prompts,
    )


_TOPIC_WORDS = {
    "cooking": "saffron risotto braise sourdough marinade shallot brisket custard "
    "caramel dumpling ginger paprika skillet broth pastry basil",
    "astronomy": "nebula quasar pulsar comet telescope galaxy eclipse orbit asteroid "
    "supernova redshift exoplanet meteor aurora parallax nova",
    "law": "contract tort statute plaintiff verdict appeal testimony jurisdiction "
    "injunction liability affidavit subpoena precedent tenancy copyright probate",
    "gardening": "compost mulch tulip pruning seedling trellis orchid perennial "
    "hydrangea aphid greenhouse loam bulb hedge lavender rhubarb",
    "music": "sonata chord tempo violin cadence harmony overture saxophone rhythm "
    "melody chorus timbre fugue ukulele syncopation octave",
    "programming": "recursion compiler pointer closure iterator mutex lambda "
    "refactoring bytecode hashmap debugger coroutine regex tuple exception generics",
    "medicine": "insulin antibiotic vaccine fracture cardiology dosage symptom "
    "diagnosis allergy migraine cholesterol anesthesia stethoscope biopsy scalpel sedative",
    "sailing": "spinnaker keel tiller regatta mooring halyard catamaran anchor "
    "jib starboard rudder buoy schooner mast dinghy lighthouse",
}

_TEMPLATES = (
    "Explain how {0} relates to {1}.",
    "Write a short story that involves {0}, {1} and {2}.",
    "What is the difference between {0} and {1}?",
    "Give three tips about {0} for a beginner who knows {1}.",
    "Why does {0} matter when dealing with {1} and {2}?",
    "Compare {0}, {1} and {2} in a table.",
    "Summarise what an expert would say about {0} and {1}.",
    "Describe a common mistake with {0} and how {1} helps.",
)

# Templated families that real prompt sets are full of: the same request with a slot changed.
_NEAR_DUPLICATE_TEMPLATES = (
    "What is {0} plus {1}? Answer with a number.",
    "Translate 'good morning number {0}' into French.",
    "Write a haiku about autumn leaves, version {0}.",
    "Rate this product review on a scale of 1 to {0}: great value.",
)


def _distinct_fillings(template: str, words: int) -> int:
    slots = template.count("{")
    return math.perm(words, slots)


# Distinct texts one topic can hold: every template filled with distinct words, in order.
_TOPIC_CAPACITY = sum(_distinct_fillings(template, 16) for template in _TEMPLATES)


@dataclass(frozen=True)
class GeneratedPrompts:
    """Prompt texts with their ground-truth structure.

    Attributes:
        texts: the prompts, shuffled.
        topic: topic name per prompt, or `"template"` for a near-duplicate.
        group: `-1`, or the near-duplicate template family of the prompt.
    """

    texts: list[str]
    topic: list[str]
    group: list[int]


def generated_prompts(
    topic_size: int = 1200,
    *,
    zipf_exponent: float = 1.0,
    n_groups: int = 4,
    group_size: int = 150,
    seed: int = 0,
) -> GeneratedPrompts:
    """Generate a skewed prompt set in words: Zipf-sized topics plus templated near-duplicates.

    There are 8 topics, each with its own vocabulary of 16 words. The `t`-th topic in the
    fixed order cooking, astronomy, law, gardening, music, programming, medicine, sailing
    holds `topic_size / (t + 1) ** zipf_exponent` distinct prompts, each one of 8 shared
    templates filled with words of the topic, so every topic spans a similar region of text
    space. Each near-duplicate family repeats one request with a number changed, like the
    templated problems of real prompt sets.

    Args:
        topic_size: prompts in the largest topic.
        zipf_exponent: how fast topic sizes fall.
        n_groups: near-duplicate families (at most 4).
        group_size: prompts per family.
        seed: the same seed gives the same prompts.

    Returns:
        The prompts, shuffled, with their topic and family.

    Raises:
        InvalidInputError: `topic_size` above the distinct prompts one topic can hold
            (11,280), or another value out of range.
    """
    check_int("topic_size", topic_size, low=2, high=_TOPIC_CAPACITY + 1)
    check_real("zipf_exponent", zipf_exponent, low=0.0)
    check_int("n_groups", n_groups, low=0, high=len(_NEAR_DUPLICATE_TEMPLATES) + 1)
    check_int("group_size", group_size, low=1)
    check_int("seed", seed, low=0)
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, int]] = []
    for rank, (topic, words) in enumerate(_TOPIC_WORDS.items()):
        vocabulary = words.split()
        size = max(2, int(topic_size / (rank + 1) ** zipf_exponent))
        seen: set[str] = set()
        while len(seen) < size:
            template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
            picks = rng.choice(len(vocabulary), size=3, replace=False)
            text = template.format(*(vocabulary[i] for i in picks))
            if text not in seen:
                seen.add(text)
                rows.append((text, topic, -1))
    for group in range(n_groups):
        template = _NEAR_DUPLICATE_TEMPLATES[group]
        for i in range(group_size):
            rows.append((template.format(i + 2, (7 * i) % 13 + 1), "template", group))
    order = rng.permutation(len(rows))
    return GeneratedPrompts(
        texts=[rows[i][0] for i in order],
        topic=[rows[i][1] for i in order],
        group=[rows[i][2] for i in order],
    )
