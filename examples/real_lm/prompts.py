"""The prompt set: arithmetic and word problems with exact answers, skewed like scraped sets.

Three regions, each with its own held-out prompts that no training prompt shares (the same
number per region, so the rare region counts as much as the others):

- `easy`, the dense block: one-digit sums, each rewritten `rewrites` times with trivial
  changes of case, punctuation and politeness ("What is 3 plus 4?", "what's 3 plus 4?",
  "What is 3 plus 4, please?"), as templated prompts dominate scraped sets. The easiest
  problems: SmolLM2-135M-Instruct solves a quarter to a third of them at first and learns
  them first, and a group of completions that all agree (all right or all wrong) teaches
  GRPO nothing.
- `arithmetic`, the common region: sums and differences in five phrasings, one to three
  digits.
- `word`, the rare region: short word problems (a name, a thing, a sum or a difference),
  one to three digits, few of them.

A problem's `digits` is the number of digits of its larger operand: its difficulty. The
reward checks the answer exactly (`is_correct`): see `parse_answer` for how a completion
is read.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

REGIONS = ("easy", "arithmetic", "word")
RARE = "word"

EASY_REWRITES = (
    "What is {a} plus {b}?",
    "what is {a} plus {b}?",
    "What is {a} plus {b}",
    "WHAT IS {a} PLUS {b}?",
    "What is {a} plus {b}??",
    "What's {a} plus {b}?",
    "Please, what is {a} plus {b}?",
    "What is {a} plus {b}, please?",
    "What is {a} plus {b}? Thanks!",
    "Quick question: what is {a} plus {b}?",
    "Hey, what is {a} plus {b}?",
    "Tell me: what is {a} plus {b}?",
)
# (phrasing, operation): the operation is "+" or "-", the larger operand first.
ARITHMETIC = (
    ("Compute {a} + {b}.", "+"),
    ("Add {a} and {b}.", "+"),
    ("What is {a} minus {b}?", "-"),
    ("Subtract {b} from {a}.", "-"),
    ("Calculate {a} - {b}.", "-"),
)
WORD = (
    ("{name} has {a} {things} and gets {b} more. How many {things} does {name} have now?", "+"),
    ("There are {a} {things} in one box and {b} in another. How many {things} are there?", "+"),
    ("{name} had {a} {things} and gave {b} away. How many {things} are left?", "-"),
    ("A shop had {a} {things} and sold {b}. How many {things} does it have left?", "-"),
)
NAMES = ("Sam", "Mia", "Omar", "Lena", "Ravi", "Chloe", "Tom", "Aiko")
THINGS = ("apples", "pencils", "marbles", "stickers", "books", "coins", "cards", "shells")


@dataclass(frozen=True)
class Problem:
    """One prompt: the user's question, its exact answer, and where it lies in the set.

    Attributes:
        prompt: the question, the only user turn of the conversation.
        answer: the exact integer answer.
        region: one of `REGIONS`.
        digits: the number of digits of the larger operand (1 to 3), its difficulty.
        family: the operands and the operation: rewrites of one problem share it.
    """

    prompt: str
    answer: int
    region: str
    digits: int
    family: str


def _distinct(draw: Callable[[], Problem], count: int, taken: set[str]) -> list[Problem]:
    """`count` problems from `draw` whose families are not in `taken` (which it extends)."""
    problems: list[Problem] = []
    while len(problems) < count:
        problem = draw()
        if problem.family not in taken:
            taken.add(problem.family)
            problems.append(problem)
    return problems


def _easy(rng: random.Random, phrasings: tuple[str, ...]) -> Callable[[], Problem]:
    """A one-digit sum, in one of `phrasings`, drawn by each call."""

    def draw() -> Problem:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        text = rng.choice(phrasings).format(a=a, b=b)
        return Problem(text, a + b, "easy", 1, f"{a}+{b}")

    return draw


def _phrased(
    rng: random.Random, region: str, templates: tuple[tuple[str, str], ...]
) -> Callable[[], Problem]:
    """A problem of `region` in one of `templates`, drawn by each call; digits 1, 2 and 3
    in turn."""
    digits = itertools.cycle((1, 2, 3))

    def draw() -> Problem:
        template, operation = rng.choice(templates)
        d = next(digits)
        a = rng.randint(10 ** (d - 1), 10**d - 1)  # the larger operand has d digits
        b = rng.randint(1, a)
        answer = a + b if operation == "+" else a - b
        text = template.format(a=a, b=b, name=rng.choice(NAMES), things=rng.choice(THINGS))
        return Problem(text, answer, region, d, f"{template}|{a}|{b}")

    return draw


def make_problems(
    *,
    easy_pairs: int = 16,
    rewrites: int = 12,
    arithmetic: int = 96,
    word: int = 24,
    heldout: int = 24,
    seed: int = 0,
) -> tuple[list[Problem], list[Problem]]:
    """The training problems and the held-out ones, generated from `seed`.

    Args:
        easy_pairs: distinct one-digit sums in the dense block.
        rewrites: phrasings of each (1 to 12): the block holds `easy_pairs * rewrites`.
        arithmetic: training problems in the common region.
        word: training problems in the rare region.
        heldout: held-out problems per region, each in one phrasing. No held-out problem
            shares its family (its operands, and for `arithmetic` and `word` its template)
            with a training one.
        seed: the generator's seed.

    Returns:
        `(train, heldout)`, both in region order, `heldout` problems per region.

    Raises:
        ValueError: `rewrites` out of range, or more one-digit sums asked for than exist.
    """
    if not 1 <= rewrites <= len(EASY_REWRITES):
        raise ValueError(
            f"rewrites should be between 1 and {len(EASY_REWRITES)}, but got rewrites={rewrites}"
        )
    if easy_pairs + heldout > 81:
        raise ValueError(
            "easy_pairs + heldout should be at most 81, the one-digit sums, but got "
            f"easy_pairs={easy_pairs} and heldout={heldout}"
        )
    rng = random.Random(seed)
    taken: set[str] = set()
    pairs = _distinct(_easy(rng, EASY_REWRITES[:1]), easy_pairs, taken)
    train = [
        replace(pair, prompt=phrasing.format(a=a, b=b))
        for pair in pairs
        for a, b in [pair.family.split("+")]
        for phrasing in EASY_REWRITES[:rewrites]
    ]
    held = _distinct(_easy(rng, EASY_REWRITES), heldout, taken)
    for region, templates, count in (("arithmetic", ARITHMETIC, arithmetic), ("word", WORD, word)):
        train += _distinct(_phrased(rng, region, templates), count, taken)
        held += _distinct(_phrased(rng, region, templates), heldout, taken)
    return train, held


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def parse_answer(completion: str) -> float | None:
    """The last number in `completion`, or None if it holds none.

    A number is an optional minus sign, digits with optional thousands separators and an
    optional decimal part: "17 + 25 = 42." reads 42, "It is 1,042" 1042, "42.0" 42, and
    "-5" -5 (but "10 - 5" 5). A model that states its answer last is read right; one that
    rambles on after it is read at its last number.

    Example:
        >>> parse_answer("17 + 25 = 42.")
        42.0
        >>> parse_answer("no idea") is None
        True
    """
    numbers = _NUMBER.findall(completion)
    return float(numbers[-1].replace(",", "")) if numbers else None


def is_correct(completion: str, answer: int) -> bool:
    """Whether `completion`'s last number (`parse_answer`) equals `answer` exactly."""
    return parse_answer(completion) == answer


def completion_text(completion: str | list[dict[str, str]]) -> str:
    """A completion as TRL hands it to a reward function: text, or a list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(message["content"] for message in completion)
