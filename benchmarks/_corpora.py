"""Real-text prompt corpora built offline from what the machine has, for the density benchmark.

- `stdlib`: the first sentence of every docstring of the Python standard library.
- `manpages`: the first sentence of the DESCRIPTION of every installed manual page
  (`/usr/share/man`), troff markup removed. Cloud SDKs install each command up to three
  times, once per release track (`gcloud alpha ...`, "(ALPHA) ..."): the track is removed,
  so the three pages count as the one sentence they are.

Each is deduplicated and sorted, so the same machine gives the same corpus, and holds no
near-duplicate groups but the ones a benchmark adds. Near-duplicate
groups of known sizes are added by `with_groups` (rewrites: dropped words, swapped letters,
a prefix or a suffix, case changes), so a benchmark knows what a fair weight is.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import random
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CORPORA = ("stdlib", "manpages")
GROUP_SIZES = (5, 10, 20, 30, 50, 80, 100, 150, 200, 300)

_PREFIXES = (
    "",
    "Please explain: ",
    "Question: ",
    "Can you help me understand this? ",
    "Explain briefly: ",
    "I need help. ",
    "Quick question - ",
    "Tell me about this: ",
)
_SUFFIXES = (
    "",
    " Thanks!",
    " Please answer briefly.",
    " Give an example.",
    " Why?",
    " Explain step by step.",
    " (in simple terms)",
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _first_sentence(text: str) -> str | None:
    flat = " ".join(text.split())
    first = _SENTENCE_END.split(flat)[0]
    return first if 30 <= len(first) <= 200 else None


def _stdlib_docstrings() -> Iterator[tuple[str, str]]:
    """`(name, docstring)` of the standard library's modules, classes, functions, methods."""
    skip = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in sorted(sys.stdlib_module_names):
            if module_name.startswith("_") or module_name in skip:
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception:
                continue
            yield module_name, inspect.getdoc(module) or ""
            for attr, obj in list(vars(module).items()):
                if inspect.isfunction(obj) or inspect.isbuiltin(obj):
                    yield attr, inspect.getdoc(obj) or ""
                elif inspect.isclass(obj):
                    yield attr, inspect.getdoc(obj) or ""
                    for member_name, member in list(vars(obj).items()):
                        if callable(member) or isinstance(member, (property, classmethod)):
                            yield member_name, inspect.getdoc(member) or ""


def stdlib_sentences() -> list[str]:
    """The first sentence of each paragraph of the standard library's docstrings (modules,
    classes, functions and methods)."""
    sentences: set[str] = set()
    for name, doc in _stdlib_docstrings():
        for paragraph in doc.split("\n\n"):
            first = _first_sentence(paragraph)
            if first and not first.startswith((name + "(", ">>>", "-", "*")):
                sentences.add(first)
    return sorted(sentences)


def stdlib_paragraphs(min_chars: int = 20) -> list[str]:
    """Whole paragraphs of the standard library's docstrings, whitespace flattened: real
    English of very mixed lengths (a few words to several hundred tokens)."""
    paragraphs = {
        " ".join(paragraph.split())
        for _, doc in _stdlib_docstrings()
        for paragraph in doc.split("\n\n")
    }
    return sorted(p for p in paragraphs if len(p) >= min_chars and not p.startswith(">>>"))


_TROFF_ESCAPE = re.compile(r"\\f[BIRP0-9]|\\f\(..|\\\*\(..|\\\*.|\\\(..|\\[&|^~0e-]|\\s[-+]?\d")


def _troff_text(lines: list[str]) -> str:
    words = []
    for line in lines:
        if line.startswith((".", "'")):
            # Font macros carry text (.B word); other requests carry none.
            macro, _, rest = line.partition(" ")
            if macro in (".B", ".I", ".BR", ".IR", ".RB", ".RI", ".BI", ".IB", ".SM"):
                words.append(rest.replace('"', ""))
            continue
        words.append(line)
    return _TROFF_ESCAPE.sub("", " ".join(words)).replace("\\", "")


# "(BETA) Create a ..." and "gcloud alpha compute ...": the release track of a Cloud SDK page.
_RELEASE_TRACK = re.compile(r"^\((?:ALPHA|BETA|PREVIEW)\) |(?<=gcloud )(?:alpha|beta|preview) ")


def manpage_sentences(root: str = "/usr/share/man") -> list[str]:
    """First sentences of the DESCRIPTION section of the installed manual pages."""
    sentences: set[str] = set()
    for path in sorted(Path(root).glob("man[1-8]/*.gz")):
        try:
            source = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
        except (OSError, EOFError):
            continue
        section = re.search(r"^\.S[Hh] \"?DESCRIPTION\"?\s*$(.*?)^\.S[Hh] ", source, re.M | re.S)
        if section is None:
            continue
        paragraph = []
        for line in section.group(1).strip().splitlines():
            if line.startswith((".PP", ".P ", ".LP", ".TP", ".IP", ".sp")) and paragraph:
                break
            paragraph.append(line)
        first = _first_sentence(_troff_text(paragraph))
        if first and "\\" not in first and not first.startswith("."):
            sentences.add(_RELEASE_TRACK.sub("", first))
    return sorted(sentences)


def load(name: str) -> list[str]:
    """The sentences of corpus `name` (one of `CORPORA`)."""
    if name == "stdlib":
        return stdlib_sentences()
    if name == "manpages":
        return manpage_sentences()
    raise SystemExit(f"unknown corpus {name!r}; choose from {', '.join(CORPORA)}")


def rewrite(prompt: str, rng: random.Random) -> str:
    """A near-duplicate of `prompt`: dropped words, swapped letters, case, a prefix or suffix."""
    words = []
    for word in prompt.split():
        roll = rng.random()
        if roll < 0.08:
            continue
        if roll < 0.14 and len(word) > 3:
            i = rng.randrange(len(word) - 1)
            word = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        words.append(word)
    text = rng.choice(_PREFIXES) + " ".join(words) + rng.choice(_SUFFIXES)
    return text.lower() if rng.random() < 0.2 else text


def with_groups(
    sentences: list[str], seed: int, sizes: tuple[int, ...] = GROUP_SIZES
) -> tuple[list[str], np.ndarray]:
    """The corpus with one group of rewrites per size; `group[i]` is -1 outside groups."""
    rng = random.Random(seed)
    shuffled = list(sentences)
    rng.shuffle(shuffled)
    seeds, rest = shuffled[: len(sizes)], shuffled[len(sizes) :]
    texts, group = list(rest), [-1] * len(rest)
    for number, (prompt, size) in enumerate(zip(seeds, sizes, strict=True)):
        texts += [rewrite(prompt, rng) for _ in range(size)]
        group += [number] * size
    return texts, np.array(group)
