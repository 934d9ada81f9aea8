"""Diversity metrics for generated text: is a policy collapsing onto a few modes?

Every metric takes a list of texts (or their embeddings) and returns one float. Texts are
split into tokens by [`tokens`][katdensity.metrics.tokens]: lower-cased words and single
punctuation marks, so results do not depend on a model's tokenizer.

| metric | collapse shows as | range |
|---|---|---|
| `distinct_n` | fewer distinct n-grams | 0 to 1 |
| `type_token_ratio` | texts repeating themselves | 0 to 1 |
| `token_gini` | a few tokens take most of the mass | 0 (uniform) to 1 |
| `self_bleu` | texts quote each other | 0 to 1 |
| `vendi_score` | fewer effective distinct embeddings | 1 to n |
| `em_dash_rate` | a stylistic tic of tuned models spreading | em-dashes per 1,000 words |
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from katdensity._validate import as_embeddings, check_int
from katdensity.errors import InvalidInputError

__all__ = [
    "distinct_n",
    "diversity_report",
    "em_dash_rate",
    "gini",
    "self_bleu",
    "token_gini",
    "tokens",
    "type_token_ratio",
    "vendi_score",
]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")
_EM_DASH = "\u2014"


def tokens(text: str) -> list[str]:
    """Split a text into lower-cased words and single punctuation marks.

    Example:
        >>> tokens("Don't panic — it's fine.")
        ['don', "'", 't', 'panic', '—', 'it', "'", 's', 'fine', '.']
    """
    return _TOKEN.findall(text.lower())


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def _check_texts(texts: Sequence[str]) -> list[str]:
    # Unlike prompts, generations may be empty strings, so this is not check_texts.
    if isinstance(texts, str):
        raise InvalidInputError("texts should be a sequence of strings, but got one string")
    bad = next((text for text in texts if not isinstance(text, str)), None)
    if bad is not None:
        raise InvalidInputError(
            f"texts should be a sequence of strings, but holds {type(bad).__name__} {bad!r}"
        )
    if len(texts) == 0:
        raise InvalidInputError("texts should not be empty")
    return list(texts)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (Li et al., 2016), corpus-level.

    Args:
        texts: the generations.
        n: the n-gram order (1, 2, 3, ...).

    Returns:
        Unique n-grams / total n-grams; 0.0 when no text has `n` tokens.

    Example:
        >>> distinct_n(["a b a b"], 2)  # (a b), (b a), (a b): 2 unique of 3
        0.6666666666666666
    """
    check_int("n", n, low=1)
    grams = [gram for text in _check_texts(texts) for gram in _ngrams(tokens(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def type_token_ratio(texts: Sequence[str]) -> float:
    """Mean over texts of distinct tokens / tokens within each text (texts without tokens skipped).

    Where `distinct_n(texts, 1)` sees repetition across texts, this sees it inside each one
    (a generation that loops on a phrase).

    Returns:
        The mean ratio, 0.0 when no text has a token.

    Example:
        >>> type_token_ratio(["a a a a", "a b"])  # (1/4 + 2/2) / 2
        0.625
    """
    ratios = [len(set(words)) / len(words) for words in map(tokens, _check_texts(texts)) if words]
    return float(np.mean(ratios)) if ratios else 0.0


def gini(values: Sequence[float] | np.ndarray | torch.Tensor) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, (n-1)/n when one holds all.

    `G = sum_ij |x_i - x_j| / (2 n^2 mean(x))`, computed from the sorted values. The sum runs
    over differences from the smallest value, so equal values give exactly 0.0.

    Args:
        values: `(n,)` non-negative numbers (e.g. token frequencies), not all zero.

    Returns:
        The coefficient, in `[0, (n - 1) / n]`.

    Raises:
        InvalidInputError: empty, negative, non-finite or all-zero values.

    Example:
        >>> gini([5, 5, 5, 5])
        0.0
        >>> gini([1, 2, 3, 4])
        0.25
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size == 0 or not np.all(np.isfinite(x)) or x[0] < 0 or x[-1] <= 0:
        raise InvalidInputError(
            "values should be a non-empty set of finite, non-negative numbers, not all zero"
        )
    n = x.size
    ranks = np.arange(1, n + 1, dtype=np.float64)
    # sum_ij |x_i - x_j| = 2 sum_i (2i - n - 1) x_(i); the coefficients sum to zero, so
    # shifting by x_(1) changes nothing but makes equal values cancel exactly.
    spread = float(np.dot(2.0 * ranks - n - 1.0, x - x[0]))
    return spread / (n * float(x.sum()))


def token_gini(texts: Sequence[str]) -> float:
    """Gini coefficient of the token frequencies of the texts (over the tokens that occur).

    Returns:
        0.0 when every token that occurs occurs equally often; towards 1 when a few tokens
        make up most of the text.

    Raises:
        InvalidInputError: the texts hold no token.
    """
    counts = Counter(token for text in _check_texts(texts) for token in tokens(text))
    if not counts:
        raise InvalidInputError("texts should contain at least one token")
    return gini(list(counts.values()))


def em_dash_rate(texts: Sequence[str]) -> float:
    """Em-dashes (U+2014) per 1,000 words of the texts.

    Returns:
        The rate; 0.0 when there are no words. En-dashes and hyphens do not count.
    """
    texts = _check_texts(texts)
    words = sum(len(_WORD.findall(text)) for text in texts)
    dashes = sum(text.count(_EM_DASH) for text in texts)
    return 1000.0 * dashes / words if words else 0.0


def self_bleu(texts: Sequence[str], *, max_n: int = 4) -> float:
    """Mean BLEU of each text against all the others as references (Zhu et al., 2018).

    Each text in turn is the hypothesis; BLEU is the geometric mean of its clipped n-gram
    precisions for n = 1..`max_n` times the brevity penalty against the closest reference
    length. A zero precision is smoothed to `0.1 / count` (Chen & Cherry's method 1, as in
    NLTK), orders longer than the hypothesis are left out, and texts without tokens are
    skipped. It runs in time linear in the total length: each n-gram's largest count in any
    other text comes from its two largest counts over all texts.

    Args:
        texts: at least two generations.
        max_n: highest n-gram order (default 4).

    Returns:
        1.0 when all texts are identical; near 0 when they share no n-grams.

    Example:
        >>> self_bleu(["the cat sat", "the cat sat"])
        1.0
    """
    texts = _check_texts(texts)
    check_int("max_n", max_n, low=1)
    tokenised = [tokens(text) for text in texts]
    present = [i for i, words in enumerate(tokenised) if words]
    if len(present) < 2:
        raise InvalidInputError("self_bleu needs at least two texts that contain tokens")
    counts = [[Counter(_ngrams(tokenised[i], n)) for n in range(1, max_n + 1)] for i in present]
    # For every n-gram: its largest count, the text holding it, and the second largest count.
    top: list[dict[tuple[str, ...], tuple[int, int, int]]] = [{} for _ in range(max_n)]
    for text, per_order in enumerate(counts):
        for order, counter in enumerate(per_order):
            table = top[order]
            for gram, count in counter.items():
                best, holder, second = table.get(gram, (0, -1, 0))
                if count > best:
                    table[gram] = (count, text, best)
                else:
                    table[gram] = (best, holder, max(second, count))
    lengths = sorted(len(tokenised[i]) for i in present)
    scores = []
    for text, per_order in enumerate(counts):
        length = len(tokenised[present[text]])
        log_precisions = []
        for order, counter in enumerate(per_order):
            total = sum(counter.values())
            if total == 0:
                continue
            clipped = 0
            for gram, count in counter.items():
                best, holder, second = top[order][gram]
                clipped += min(count, second if holder == text else best)
            log_precisions.append(math.log(clipped / total if clipped else 0.1 / total))
        reference = _closest_other_length(lengths, length)
        brevity = 0.0 if length >= reference else 1.0 - reference / length
        scores.append(math.exp(brevity + sum(log_precisions) / len(log_precisions)))
    return float(np.mean(scores))


def _closest_other_length(lengths: list[int], own: int) -> int:
    """The length in sorted `lengths` closest to `own` (shorter on ties), one `own` left out."""
    position = bisect.bisect_left(lengths, own)  # lengths[position] is the text's own
    neighbours = [lengths[i] for i in (position - 1, position + 1) if 0 <= i < len(lengths)]
    return min(neighbours, key=lambda length: (abs(length - own), length))


def vendi_score(embeddings: torch.Tensor | np.ndarray) -> float:
    """Vendi score (Friedman & Dieng, 2023): the effective number of distinct items.

    `exp(-sum_i lambda_i log lambda_i)` over the eigenvalues of `K / n`, with `K` the cosine
    similarity matrix of the rows. `n` identical rows score 1, `n` orthogonal rows score `n`.
    It is computed from the `(D, D)` Gram matrix when `D < n` (same non-zero eigenvalues).

    Args:
        embeddings: `(n, D)` embeddings of the generations; rows need not be normalised.

    Returns:
        The score, between 1 and `n`.

    Raises:
        InvalidInputError: NaN/inf values or an all-zero row.

    Example:
        >>> import torch
        >>> round(vendi_score(torch.eye(3)), 6)
        3.0
    """
    x = as_embeddings(embeddings, name="embeddings", min_rows=1).to(torch.float64)
    norms = x.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise InvalidInputError("embeddings should have no all-zero rows (cosine is undefined)")
    x = x / norms
    n = x.shape[0]
    gram = x.T @ x if x.shape[1] < n else x @ x.T
    eigenvalues = torch.linalg.eigvalsh(gram / n).clamp_min(0.0)
    eigenvalues = eigenvalues[eigenvalues > 0]
    return float(torch.exp(-(eigenvalues * eigenvalues.log()).sum()))


def diversity_report(
    texts: Sequence[str], embeddings: torch.Tensor | np.ndarray | None = None
) -> dict[str, float]:
    """All the metrics above for one set of generations, as a flat dict.

    Args:
        texts: the generations (at least two).
        embeddings: `(n, D)` embeddings of `texts` for the Vendi score; left out when `None`.

    Returns:
        `texts`, `mean_tokens`, `distinct_1`, `distinct_2`, `distinct_3`,
        `type_token_ratio`, `token_gini`, `self_bleu`, `em_dash_per_1k_words` and, with
        embeddings, `vendi`.
    """
    texts = _check_texts(texts)
    report = {
        "texts": float(len(texts)),
        "mean_tokens": float(np.mean([len(tokens(text)) for text in texts])),
        **{f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
        "type_token_ratio": type_token_ratio(texts),
        "token_gini": token_gini(texts),
        "self_bleu": self_bleu(texts),
        "em_dash_per_1k_words": em_dash_rate(texts),
    }
    if embeddings is not None:
        if len(embeddings) != len(texts):
            raise InvalidInputError(
                f"embeddings should have one row per text ({len(texts)}), "
                f"but got {len(embeddings)} rows"
            )
        report["vendi"] = vendi_score(embeddings)
    return report
