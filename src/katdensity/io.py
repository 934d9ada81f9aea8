"""Reading prompt sets and reading/writing embeddings files.

Prompt JSONL formats (one JSON object per line):

- `{"id": ..., "prompt": "..."}`;
- chat prefixes `{"id": ..., "prefix": {"messages": [{"role": ..., "content": ...}, ...]}, ...}`;
- Anthropic HH-style pairs `{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}`;
- any object whose prompt sits in another field, named with `field=`.

The prompt of a conversation is its user turns: the `content` of every `user` message (or
every `Human:` turn of an HH transcript), in order, joined by a blank line. Assistant turns
are the responses being trained, not part of what the prompt asks.

Embeddings files: `.pt` holds `{"ids": list[str], "emb": Tensor (N, D), "embedder": dict}`
(the research scripts' format, plus the embedder's description) and is read with
`torch.load(weights_only=True)` only, so a pickled payload is refused. `.npy` holds the
`(N, D)` matrix (read memory-mapped) with a sidecar `<name>.ids.json` holding `ids` and
`embedder`. Every write goes to a temporary file renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from katdensity._atomic import atomic_path
from katdensity._validate import as_embeddings
from katdensity.errors import InvalidInputError

__all__ = [
    "EmbeddingsFile",
    "Prompt",
    "load_embeddings",
    "prompt_id",
    "read_prompts",
    "save_embeddings",
]

_HH_TURN = re.compile(r"\n\n(Human|Assistant):", flags=re.S)


@dataclass(frozen=True)
class Prompt:
    """One prompt of a prompt set.

    Attributes:
        id: the record's `id`, or a stable id derived from the prompt text.
        text: the prompt.
        record: the whole JSON object it came from (labels such as `src` live here).
    """

    id: str
    text: str
    record: Mapping[str, Any] = field(repr=False)


def prompt_id(text: str) -> str:
    """A stable id for a prompt: a SHA-1 of its whitespace-normalised text (16 hex digits)."""
    normalised = " ".join(text.split())
    return "p" + hashlib.sha1(normalised.encode()).hexdigest()[:16]


def read_prompts(
    path: str | os.PathLike[str], *, field: str | None = None, dedupe: bool = False
) -> list[Prompt]:
    """Read the prompts of a JSONL file in any of the formats above.

    A record without an `id` gets [`prompt_id`][katdensity.io.prompt_id] of its text; the
    second and later copies of the same text get `#2`, `#3`, ... appended, so ids stay unique.

    Args:
        path: the JSONL file.
        field: the key holding the prompt text; `None` detects the format per line.
        dedupe: drop prompts whose whitespace-normalised text was seen before (keep the first).

    Returns:
        The prompts, in file order.

    Raises:
        InvalidInputError: a line that is not JSON, has no prompt, or an empty prompt; the
            message names the file and line number.
    """
    source = Path(path)
    if not source.is_file():
        raise InvalidInputError(
            f"path should be an existing JSONL file, but {source} does not exist"
        )
    prompts: list[Prompt] = []
    seen: set[str] = set()
    derived: Counter[str] = Counter()
    with source.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InvalidInputError(
                    f"{source}:{number}: not valid JSON ({error.msg})"
                ) from None
            if not isinstance(record, dict):
                raise InvalidInputError(f"{source}:{number}: should be a JSON object")
            text = _prompt_text(record, field)
            if text is None:
                wanted = (
                    f"a {field!r} field" if field else "'prompt', 'prefix.messages' or 'chosen'"
                )
                raise InvalidInputError(f"{source}:{number}: no prompt found; expected {wanted}")
            if not text.strip():
                raise InvalidInputError(f"{source}:{number}: the prompt is empty")
            key = " ".join(text.split())
            if dedupe and key in seen:
                continue
            seen.add(key)
            raw_id = record.get("id")
            if raw_id in (None, ""):
                # Repeats of one prompt share its text, so their derived ids get #2, #3, ...
                identifier = prompt_id(text)
                derived[identifier] += 1
                if derived[identifier] > 1:
                    identifier = f"{identifier}#{derived[identifier]}"
            else:
                identifier = str(raw_id)
            prompts.append(Prompt(id=identifier, text=text, record=record))
    return prompts


def _prompt_text(record: Mapping[str, Any], field: str | None) -> str | None:
    if field is not None:
        value = record.get(field)
        return value if isinstance(value, str) else None
    if isinstance(record.get("prompt"), str):
        return str(record["prompt"])
    prefix = record.get("prefix")
    if isinstance(prefix, Mapping) and isinstance(prefix.get("messages"), list):
        turns = [
            str(message.get("content", ""))
            for message in prefix["messages"]
            if isinstance(message, Mapping) and message.get("role") == "user"
        ]
        return "\n\n".join(turns)
    transcript = record.get("chosen")
    if isinstance(transcript, str) and "Human:" in transcript:
        return "\n\n".join(_hh_human_turns(transcript))
    return None


def _hh_human_turns(transcript: str) -> list[str]:
    # Splitting "\n\nHuman: a\n\nAssistant: b" gives ["", "Human", " a", "Assistant", " b"].
    parts = _HH_TURN.split("\n\n" + transcript.lstrip("\n"))
    return [parts[i + 1].strip() for i in range(1, len(parts) - 1, 2) if parts[i] == "Human"]


@dataclass(frozen=True)
class EmbeddingsFile:
    """The content of an embeddings file.

    Attributes:
        ids: one id per row, unique.
        embeddings: `(N, D)`: a tensor (`.pt`) or a read-only memory map (`.npy`).
        embedder: how the embeddings were made (name and options), `{}` if unknown.
    """

    ids: list[str]
    embeddings: torch.Tensor | np.ndarray
    embedder: dict[str, Any]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.stem + ".ids.json")


def save_embeddings(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    embeddings: torch.Tensor | np.ndarray,
    *,
    embedder: Mapping[str, Any] | None = None,
) -> None:
    """Write ids and embeddings to `.pt` or `.npy` (+ `.ids.json`), atomically.

    Raises:
        InvalidInputError: ids and rows do not align, ids repeat, or the suffix is unknown.
    """
    target = Path(path)
    matrix = as_embeddings(embeddings).cpu()
    ids = [str(i) for i in ids]
    _check_aligned(ids, matrix.shape[0], target)
    description = dict(embedder or {})
    if target.suffix == ".pt":
        with atomic_path(target) as temporary:
            torch.save({"ids": ids, "emb": matrix, "embedder": description}, temporary)
    elif target.suffix == ".npy":
        with atomic_path(target) as temporary:
            with temporary.open("wb") as handle:
                np.save(handle, matrix.numpy())
            with atomic_path(_sidecar(target)) as side:
                side.write_text(json.dumps({"ids": ids, "embedder": description}))
    else:
        raise InvalidInputError(f"path should end in .pt or .npy, but got {target.name}")


def load_embeddings(path: str | os.PathLike[str]) -> EmbeddingsFile:
    """Read an embeddings file: `.pt` or `.npy` + `.ids.json`.

    Reads what [`save_embeddings`][katdensity.io.save_embeddings] writes and the research
    scripts' `{"ids", "emb"}` `.pt` files.

    Raises:
        InvalidInputError: a missing file, a `.pt` that holds anything but tensors, lists,
            strings and numbers (pickled objects are refused), or ids that do not align.
    """
    source = Path(path)
    if not source.is_file():
        raise InvalidInputError(
            f"path should be an existing embeddings file, but {source} does not exist"
        )
    if source.suffix == ".pt":
        try:
            blob = torch.load(source, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise InvalidInputError(
                f"{source} holds objects that are not plain tensors and lists; katdensity refuses "
                f"to unpickle them (weights_only=True): {str(error).splitlines()[0]}"
            ) from None
        if not isinstance(blob, dict) or "ids" not in blob or "emb" not in blob:
            raise InvalidInputError(f"{source} should hold a dict with 'ids' and 'emb'")
        ids, matrix = [str(i) for i in blob["ids"]], blob["emb"]
        if not isinstance(matrix, torch.Tensor):
            raise InvalidInputError(
                f"{source}: 'emb' should be a tensor, but is {type(matrix).__name__}"
            )
        embedder = dict(blob.get("embedder") or {})
    elif source.suffix == ".npy":
        side = _sidecar(source)
        if not side.is_file():
            raise InvalidInputError(f"{source} needs its ids file {side.name} beside it")
        meta = json.loads(side.read_text())
        ids, embedder = [str(i) for i in meta["ids"]], dict(meta.get("embedder") or {})
        matrix = np.load(source, mmap_mode="r")
    else:
        raise InvalidInputError(f"path should end in .pt or .npy, but got {source.name}")
    if matrix.ndim != 2:
        raise InvalidInputError(
            f"{source}: embeddings should be 2-D (N, D), but have shape {tuple(matrix.shape)}"
        )
    _check_aligned(ids, int(matrix.shape[0]), source)
    return EmbeddingsFile(ids=ids, embeddings=matrix, embedder=embedder)


def _check_aligned(ids: list[str], rows: int, path: Path) -> None:
    if len(ids) != rows:
        raise InvalidInputError(
            f"{path}: ids and embedding rows should align one to one, but there are "
            f"{len(ids)} ids and {rows} rows"
        )
    if len(set(ids)) != len(ids):
        repeated = next(i for i, count in Counter(ids).items() if count > 1)
        raise InvalidInputError(f"{path}: ids should be unique, but {repeated!r} repeats")
