"""Reading prompt sets, reading/writing embeddings files, and reading weights files.

Prompt JSONL formats (one JSON object per line):

- `{"id": ..., "prompt": "..."}`;
- chat prefixes `{"id": ..., "prefix": {"messages": [{"role": ..., "content": ...}, ...]}, ...}`;
- Anthropic HH-style pairs `{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}`;
- any object whose prompt sits in another field, named with `field=`.

Prompt sets as tables (one prompt per row): a parquet file, such as verl's, whose `prompt`
column holds chat messages and whose `extra_info.index` holds the ids; a
`datasets.Dataset`; or a folder written by `Dataset.save_to_disk`. The prompt column is
detected (`prompt`, then `prefix`, then `chosen`) or named with `field=`, and holds strings
or chat-message lists. pyarrow (extra `parquet`) and datasets (extra `datasets`) are
imported only when such a set is read.

The prompt of a conversation is its user turns: the `content` of every `user` message (or
every `Human:` turn of an HH transcript), in order, joined by a blank line. Assistant turns
are the responses being trained, not part of what the prompt asks.

Embeddings files: `.pt` holds `{"ids": list[str], "emb": Tensor (N, D), "embedder": dict}`
(the research scripts' format, plus the embedder's description) and is read with
`torch.load(weights_only=True)` only, so a pickled payload is refused. `.npy` holds the
`(N, D)` matrix (read memory-mapped) with a sidecar `<name>.ids.json` holding `ids` and
`embedder`. Every write goes to a temporary file renamed into place. Weights files
(`katdensity weights`) are `.pt` files holding `ids` and `weights`, read the same way.

Readers take any bytes: a file that is not UTF-8, not JSON, of the wrong JSON types, not a
torch archive or `.npy` array, truncated or of the wrong shape or dtype raises
[`InvalidInputError`][katdensity.InvalidInputError] naming the file (and line), the problem
and the fix, never a decoding, unpickling or archive error.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import torch

from katdensity import _tables
from katdensity._atomic import atomic_path
from katdensity._progress import progress_bar
from katdensity._text import shorten
from katdensity._validate import as_embeddings
from katdensity.errors import InvalidInputError

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "EmbeddingsFile",
    "Prompt",
    "WeightsFile",
    "load_embeddings",
    "load_weights",
    "prompt_id",
    "prompt_text",
    "read_prompts",
    "read_rewards",
    "save_embeddings",
]

_HH_TURN = re.compile(r"\n\n(Human|Assistant):", flags=re.S)
# A longer line is not a prompt (a binary file, or JSON without newlines): refuse to buffer it.
_MAX_LINE_BYTES = 16 * 2**20
# JSON escapes of UTF-16 surrogates: only a line holding one needs the (slower) full check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_EMBEDDINGS_WRITER = "`katdensity embed` or katdensity.io.save_embeddings"
_ID_RULE = "should be a string (one non-empty line) or an integer"
_REWARD_LINE = '{"id": ..., "reward": ...}, one per completion'
T = TypeVar("T")


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
    path: str | os.PathLike[str] | Dataset, *, field: str | None = None, dedupe: bool = False
) -> list[Prompt]:
    """Read the prompts of a JSONL file, a parquet file or a Hugging Face dataset.

    A path ending in `.parquet` is read as a parquet file, a folder as one written by
    `Dataset.save_to_disk`, any other path as JSONL in any of the formats above. A table's
    prompt column is `field`, or else the first of `prompt`, `prefix` and `chosen` there is;
    it holds strings (a detected `chosen` holds HH transcripts) or chat-message lists
    `[{"role": ..., "content": ...}, ...]` (or, for `prefix`, objects with such `messages`),
    whose prompt is the user turns joined by a blank line, as for JSONL. A table's ids come
    from `extra_info.index` (verl's layout) if that column exists, else from an `id` column.

    A record or row without an id gets [`prompt_id`][katdensity.io.prompt_id] of its text;
    the second and later copies of the same text get `#2`, `#3`, ... appended, so ids stay
    unique.

    Args:
        path: a JSONL file (UTF-8; a leading byte-order mark is skipped), a `.parquet`
            file, a folder written by `Dataset.save_to_disk`, or a `datasets.Dataset`.
        field: the key or column holding the prompt text; `None` detects it (per line for
            JSONL, per table otherwise).
        dedupe: drop prompts whose whitespace-normalised text was seen before (keep the first).

    Returns:
        The prompts, in file or row order. A table row's `record` is the row as a dict
        (struct columns as dicts, list columns as lists).

    Raises:
        InvalidInputError: a missing file, or a line that is not UTF-8, is longer than 16 MiB,
            is not a JSON object, holds a prompt field of the wrong type (e.g. a `prompt` that
            is not a string, `prefix.messages` that is not a list of objects), an `id` that is
            not a one-line string or an integer, a lone surrogate escape, no prompt or an empty
            one; the message names the file and line number. For tables: a file that is not
            parquet or is truncated or corrupt; a folder that is not a saved dataset, holds a
            `DatasetDict` (pass one split's folder) or is damaged; a `DatasetDict`,
            `IterableDataset` or other object; no column `field` (or, detecting, none of
            `prompt`, `prefix`, `chosen`); a prompt column of another type; a row whose
            prompt is null or empty or whose id is not a one-line string or an integer; the
            message names the source, column and row (counted from 0).
        MissingDependencyError: a parquet file without pyarrow installed (extra `parquet`),
            or a saved dataset folder without datasets (extra `datasets`).
    """
    if not isinstance(path, (str, os.PathLike)):
        return _table_prompts(_tables.dataset_rows(path, field), dedupe)
    if Path(path).is_dir():
        return _table_prompts(_tables.saved_dataset_rows(Path(path), field), dedupe)
    if Path(path).suffix.lower() == ".parquet":
        return _table_prompts(_tables.parquet_rows(_existing(path, "parquet file"), field), dedupe)
    collected = _Collected(dedupe)
    for where, record in _jsonl_records(_existing(path, "JSONL file"), "prompt files"):
        text = _prompt_text(record, field, where)
        if text is None:
            wanted = f"a {field!r} field" if field else "'prompt', 'prefix.messages' or 'chosen'"
            raise InvalidInputError(f"{where}: no prompt found; expected {wanted}")
        collected.add(text, record.get("id"), record, where)
    return collected.prompts


def read_rewards(path: str | os.PathLike[str]) -> tuple[list[str], torch.Tensor]:
    """Read the rewards of an earlier run: JSONL, one `{"id": ..., "reward": ...}` object per
    completion (a prompt's G completions are G lines with its id).

    Args:
        path: the JSONL file (UTF-8); other keys in a line are ignored.

    Returns:
        `(ids, rewards)`: the prompt id of each completion, and `(B,)` float64 rewards.

    Raises:
        InvalidInputError: a missing file, a line that is not a JSON object, an `id` that is
            not a one-line string or an integer, a `reward` that is not a finite number, or
            no line at all; the message names the file and line.

    Example:
        >>> import pathlib, tempfile
        >>> from katdensity.io import read_rewards
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "rewards.jsonl"
        >>> _ = path.write_text('{"id": "a", "reward": 1}\\n{"id": "a", "reward": 0.5}\\n')
        >>> read_rewards(path)
        (['a', 'a'], tensor([1.0000, 0.5000], dtype=torch.float64))
    """
    source = _existing(path, "JSONL file")
    ids, rewards = [], []
    for where, record in _jsonl_records(source, "reward files"):
        identifier = _valid_id(record.get("id"))
        if identifier is None:
            raise InvalidInputError(f"{where}: 'id' {_ID_RULE}, but is {_shown(record.get('id'))}")
        reward = record.get("reward")
        if (
            isinstance(reward, bool)
            or not isinstance(reward, (int, float))
            or not math.isfinite(reward)
        ):
            raise InvalidInputError(
                f"{where}: 'reward' should be a finite number, but is {_shown(reward)}"
            )
        ids.append(identifier)
        rewards.append(float(reward))
    if not ids:
        raise InvalidInputError(f"{source} holds no rewards; expected JSONL lines {_REWARD_LINE}")
    return ids, torch.tensor(rewards, dtype=torch.float64)


def _jsonl_records(source: Path, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """`(where, object)` for each non-blank line of a JSONL file; anything else raises."""
    with source.open("rb") as lines:
        # Bytes, so that a bad byte or an endless line is reported with its line number.
        for number, raw in enumerate(iter(lambda: lines.readline(_MAX_LINE_BYTES + 1), b""), 1):
            where = f"{source}:{number}"
            if len(raw) > _MAX_LINE_BYTES:
                raise InvalidInputError(
                    f"{where}: the line is longer than {_MAX_LINE_BYTES >> 20} MiB; {kind} "
                    "should be JSONL, one JSON object per line"
                )
            line = _decode(raw, where, f"{kind} should be UTF-8 JSONL")
            if number == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            record = _parse_json(line, where)
            if not isinstance(record, dict):
                raise InvalidInputError(f"{where}: should be a JSON object")
            if _SURROGATE_ESCAPE.search(line) and not _encodable(
                json.dumps(record, ensure_ascii=False)
            ):
                raise InvalidInputError(
                    f"{where}: holds a lone surrogate escape (such as \\ud800), which is not "
                    "text; fix or drop it"
                )
            yield where, record


class _Collected:
    """The prompts read so far: repeats dropped if `dedupe`, derived ids kept unique."""

    def __init__(self, dedupe: bool) -> None:
        self.prompts: list[Prompt] = []
        self._dedupe = dedupe
        self._seen: set[str] = set()
        self._derived: Counter[str] = Counter()

    def add(
        self, text: str, raw_id: Any, record: Mapping[str, Any], where: str, id_key: str = "id"
    ) -> None:
        """Append the prompt `text` of `record`, whose stored id is `raw_id` (`None`: none)."""
        if not text.strip():
            raise InvalidInputError(f"{where}: the prompt is empty")
        key = " ".join(text.split())
        if self._dedupe and key in self._seen:
            return
        self._seen.add(key)
        if raw_id is None or raw_id == "":
            # Repeats of one prompt share its text, so their derived ids get #2, #3, ...
            identifier = prompt_id(text)
            self._derived[identifier] += 1
            if self._derived[identifier] > 1:
                identifier = f"{identifier}#{self._derived[identifier]}"
        else:
            checked = _valid_id(raw_id)
            if checked is None:
                raise InvalidInputError(f"{where}: {id_key!r} {_ID_RULE}, but is {_shown(raw_id)}")
            identifier = checked
        self.prompts.append(Prompt(id=identifier, text=text, record=record))


def _table_prompts(rows: _tables.Rows, dedupe: bool) -> list[Prompt]:
    """The prompts of a table's rows, by the same rules as JSONL records."""
    collected = _Collected(dedupe)
    column = rows.column
    for number, record in enumerate(rows.records):
        where = f"{rows.name}: row {number}"
        value = record.get(column)
        if rows.kind == "prefix" and value is not None:
            value = value.get("messages")
        if value is None:
            raise InvalidInputError(f"{where}: no prompt found; {column!r} is null")
        if rows.kind == "transcript":
            if "Human:" not in value:
                raise InvalidInputError(
                    f"{where}: no prompt found; 'chosen' should be an HH transcript "
                    "(\\n\\nHuman: ...), or name the prompt column with field="
                )
            text = "\n\n".join(_hh_human_turns(value))
        elif rows.kind in ("chat", "prefix"):
            name = f"{column}.messages" if rows.kind == "prefix" else column
            text = _user_turns(value, where, name)
        else:
            text = value
        collected.add(text, rows.raw_id(record), record, where, rows.id_key or "id")
    return collected.prompts


def _prompt_text(record: Mapping[str, Any], field: str | None, where: str) -> str | None:
    """The prompt of `record`, `None` if it has none; a prompt field of the wrong type raises."""
    if field is not None:
        return _string(record, field, where)
    prompt = _string(record, "prompt", where)
    if prompt is not None:
        return prompt
    prefix = record.get("prefix")
    if prefix is not None:
        messages = prefix.get("messages") if isinstance(prefix, Mapping) else None
        if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
            raise InvalidInputError(
                f"{where}: 'prefix' should be an object whose 'messages' is a list of objects "
                f'{{"role": ..., "content": "..."}}, but is {_shown(prefix)}'
            )
        return _user_turns(messages, where, "prefix.messages")
    transcript = record.get("chosen")
    if isinstance(transcript, str) and "Human:" in transcript:
        return "\n\n".join(_hh_human_turns(transcript))
    return None


def prompt_text(prompt: Any, *, where: str) -> str:
    """The text of one prompt, by the rule every reader and trainer integration follows.

    A string is its own text. A conversation (a list of `{"role", "content"}` messages) is
    the content of its `user` messages, in order, joined by a blank line; a content given
    as parts (`[{"type": "text", "text": ...}, ...]`) is the text of its text parts, joined
    by a newline (image and other parts carry no text to embed).

    Args:
        prompt: a string or a list of chat messages.
        where: how messages name the prompt, e.g. `"train_dataset['prompt'][3]"`.

    Returns:
        The text to embed.

    Raises:
        InvalidInputError: another type, a message that is not an object, a content that is
            neither a string nor a list of parts, or a prompt with no text.

    Example:
        >>> from katdensity.io import prompt_text
        >>> prompt_text([{"role": "system", "content": "Be brief."},
        ...              {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        ...             where="row 0")
        'Hi'
    """
    if isinstance(prompt, str):
        text = prompt
    elif isinstance(prompt, list):
        text = _user_turns(prompt, where, "messages")
    else:
        raise InvalidInputError(
            f"{where}: should be a string or a list of "
            f'{{"role": ..., "content": ...}} messages, but is {_shown(prompt)}'
        )
    if not text.strip():
        raise InvalidInputError(f"{where}: the prompt is empty")
    return text


def _user_turns(messages: list[Any], where: str, name: str) -> str:
    """The prompt of a chat: the `content` of its `user` messages, joined by a blank line."""
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidInputError(
                f"{where}: {name}[{index}] should be an object "
                f'{{"role": ..., "content": "..."}}, but is {_shown(message)}'
            )
        if message.get("role") == "user":
            turns.append(_content(message.get("content"), f"{where}: {name}[{index}]"))
    return "\n\n".join(turns)


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or the text of its `{"type": "text", "text": ...}` parts."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(part, Mapping) for part in content):
        texts = [part.get("text") for part in content if part.get("type") == "text"]
        if all(isinstance(text, str) for text in texts):
            return "\n".join(texts)
    raise InvalidInputError(
        f"{where}: 'content' should be a string or a list of parts "
        f'{{"type": "text", "text": "..."}}, but is {_shown(content)}'
    )


def _string(record: Mapping[str, Any], key: str, where: str) -> str | None:
    """`record[key]`: a string, or `None` if absent or null; any other type raises."""
    value = record.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidInputError(f"{where}: {key!r} should be a string, but is {_shown(value)}")


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
    progress: bool | None = None,
) -> None:
    """Write ids and embeddings to `.pt` or `.npy` (+ `.ids.json`), atomically.

    A `.npy` file is written in blocks of 64 MiB, with a progress bar (`progress`; `None`
    shows one on a terminal for files over about 640 MiB).

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
            _write_npy(temporary, matrix.numpy(), progress=progress)
            with atomic_path(_sidecar(target)) as side:
                side.write_text(json.dumps({"ids": ids, "embedder": description}))
    else:
        raise InvalidInputError(f"path should end in .pt or .npy, but got {target.name}")


_WRITE_BYTES = 64 * 2**20


def _write_npy(path: Path, array: np.ndarray, *, progress: bool | None) -> None:
    # Plain writes, not a memory map: a full disk must raise OSError, not SIGBUS.
    array = np.ascontiguousarray(array)
    step = max(1, _WRITE_BYTES // max(1, array.itemsize * array.shape[1]))
    starts = range(0, array.shape[0], step)
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, np.lib.format.header_data_from_array_1_0(array)
        )
        bar = progress_bar(
            starts, total=len(starts), progress=progress, desc="writing", unit="block"
        )
        for start in bar:
            handle.write(array[start : start + step].tobytes())


def load_embeddings(path: str | os.PathLike[str]) -> EmbeddingsFile:
    """Read an embeddings file: `.pt` or `.npy` + `.ids.json`.

    Reads what [`save_embeddings`][katdensity.io.save_embeddings] writes and the research
    scripts' `{"ids", "emb"}` `.pt` files.

    Raises:
        InvalidInputError: a missing file; a `.pt` that is not a torch archive, is truncated,
            holds anything but tensors, lists, strings and numbers (pickled objects are
            refused) or lacks `ids`/`emb`; a `.npy` that is truncated or not an array, or
            whose `.ids.json` is missing, not UTF-8 JSON or lacks `ids`; ids that are not
            one-line strings or integers, repeat or do not align with the rows; embeddings
            that are not a 2-D float16/32/64 matrix with at least one row and column.
    """
    source = _existing(path, "embeddings file")
    if source.suffix == ".pt":
        blob = read_torch_file(source, ("ids", "emb"))
        ids_source, matrix = source, blob["emb"]
        raw_ids, embedder = blob["ids"], blob.get("embedder")
        if not isinstance(matrix, torch.Tensor):
            raise InvalidInputError(
                f"{source}: 'emb' should be a tensor, but is {type(matrix).__name__}"
            )
    elif source.suffix == ".npy":
        ids_source = _sidecar(source)
        if not ids_source.is_file():
            raise InvalidInputError(f"{source} needs its ids file {ids_source.name} beside it")
        meta = _parse_json(
            _decode(ids_source.read_bytes(), str(ids_source), "ids files should be UTF-8 JSON"),
            str(ids_source),
        )
        if not isinstance(meta, dict) or "ids" not in meta:
            raise InvalidInputError(
                f"{ids_source} should hold a JSON object with 'ids' (and 'embedder'); "
                f"write it with {_EMBEDDINGS_WRITER}"
            )
        raw_ids, embedder = meta["ids"], meta.get("embedder")
        matrix = _read(
            source,
            lambda npy: np.lib.format.open_memmap(npy, mode="r"),
            lambda error: f"is truncated or not a .npy array ({_first_line(error)})",
            _EMBEDDINGS_WRITER,
        )
    else:
        raise InvalidInputError(f"path should end in .pt or .npy, but got {source.name}")
    ids = _ids(raw_ids, ids_source)
    if embedder is not None and not (
        isinstance(embedder, dict) and all(isinstance(key, str) for key in embedder)
    ):
        raise InvalidInputError(
            f"{ids_source}: 'embedder' should be an object of named options, but is "
            f"{_shown(embedder)}"
        )
    floats = (
        matrix.layout == torch.strided and matrix.is_floating_point()
        if isinstance(matrix, torch.Tensor)
        else matrix.dtype in _FLOAT_DTYPES
    )
    if not floats:
        raise InvalidInputError(
            f"{source}: embeddings should be float16, float32 or float64 numbers (dense, native "
            f"byte order), but are {matrix.dtype}"
        )
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise InvalidInputError(
            f"{source}: embeddings should be 2-D (N, D) with N, D >= 1, but have shape "
            f"{tuple(matrix.shape)}"
        )
    _check_aligned(ids, int(matrix.shape[0]), source)
    return EmbeddingsFile(ids=ids, embeddings=matrix, embedder=dict(embedder or {}))


@dataclass(frozen=True)
class WeightsFile:
    """The content of a weights file written by `katdensity weights`.

    Attributes:
        ids: one id per row, unique.
        weights: `(N,)` float sampling probabilities, row-aligned with `ids`.
        groups: `(N,)` int64: the distinct prompt each row is a copy of (equal for exact
            copies); `None` in files that predate it.
    """

    ids: list[str]
    weights: torch.Tensor
    groups: torch.Tensor | None


def load_weights(path: str | os.PathLike[str]) -> WeightsFile:
    """Read the ids, weights and copy groups of a weights file written by `katdensity weights`.

    Raises:
        InvalidInputError: a missing file; a file that is not a torch archive, is truncated,
            holds pickled objects or lacks `ids`/`weights`; ids that are not one-line strings
            or integers; weights that are not a 1-D float tensor, one per id; groups that are
            not a 1-D integer tensor, one per id.
    """
    source = _existing(path, "weights file")
    record = read_torch_file(source, ("ids", "weights"), "`katdensity weights`")
    ids, weights = _ids(record["ids"], source), record["weights"]
    if not (
        isinstance(weights, torch.Tensor)
        and weights.layout == torch.strided
        and weights.is_floating_point()
        and weights.ndim == 1
    ):
        raise InvalidInputError(
            f"{source}: 'weights' should be a 1-D float tensor, but is {_shown(weights)}"
        )
    _check_aligned(ids, weights.shape[0], source, "weights")
    groups = record.get("distinct_index")
    if groups is not None and not (
        isinstance(groups, torch.Tensor)
        and groups.layout == torch.strided
        and groups.dtype == torch.int64
        and groups.shape == weights.shape
    ):
        raise InvalidInputError(
            f"{source}: 'distinct_index' should be a 1-D int64 tensor with one entry per "
            f"id, but is {_shown(groups)}"
        )
    return WeightsFile(ids=ids, weights=weights, groups=groups)


def _existing(path: str | os.PathLike[str], what: str) -> Path:
    source = Path(path)
    if not source.is_file():
        raise InvalidInputError(f"path should be an existing {what}, but {source} does not exist")
    return source


def _read(
    source: Path, load: Callable[[Path], T], problem: Callable[[Exception], str], writer: str
) -> T:
    """`load(source)`; any failure but an OSError raises InvalidInputError with `problem`."""
    try:
        with warnings.catch_warnings():
            # Such as torch's "Detected pickle protocol 4": the error below says what is wrong.
            warnings.simplefilter("ignore")
            return load(source)
    except OSError:
        raise
    except Exception as error:  # EOFError, RuntimeError, UnpicklingError, KeyError, ...
        raise InvalidInputError(f"{source} {problem(error)}; write it with {writer}") from None


def read_torch_file(
    source: Path, keys: tuple[str, ...], writer: str = _EMBEDDINGS_WRITER
) -> dict[str, Any]:
    """A dict holding `keys` from `torch.load(weights_only=True)`, or InvalidInputError."""

    def problem(error: Exception) -> str:
        with source.open("rb") as handle:
            head = handle.read(4)
        # A torch archive is a zip file holding a pickle; a bare pickle starts with PROTO (0x80).
        archive = head == b"PK\x03\x04"
        if isinstance(error, pickle.UnpicklingError) and (archive or head[:1] == b"\x80"):
            return (
                "holds objects that are not plain tensors and lists; katdensity refuses to "
                "unpickle them (weights_only=True)"
            )
        return "is a truncated or corrupted torch archive" if archive else "is not a torch archive"

    blob = _read(
        source,
        lambda pt: torch.load(pt, map_location="cpu", weights_only=True),
        problem,
        writer,
    )
    if not isinstance(blob, dict) or not all(key in blob for key in keys):
        wanted = " and ".join(repr(key) for key in keys)
        raise InvalidInputError(
            f"{source} should hold a dict with {wanted}; write it with {writer}"
        )
    return blob


def _decode(raw: bytes, where: str, expected: str) -> str:
    """`raw` as UTF-8 text; the first byte that is not UTF-8 raises InvalidInputError."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInputError(
            f"{where}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); "
            f"{expected}"
        ) from None


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        if isinstance(error, json.JSONDecodeError):
            reason = error.msg
        elif isinstance(error, RecursionError):
            reason = "nested too deeply"
        else:  # an integer beyond sys.get_int_max_str_digits()
            reason = "a number with too many digits"
        raise InvalidInputError(f"{where}: not valid JSON ({reason})") from None


def _encodable(text: str) -> bool:
    """Whether `text` is valid Unicode (a JSON escape can make a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _valid_id(value: Any) -> str | None:
    """`value` as an id if it is a string (one non-empty line of text) or an integer."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    identifier = str(value)
    return (
        identifier if identifier.splitlines() == [identifier] and _encodable(identifier) else None
    )


def _ids(raw: Any, where: Path) -> list[str]:
    if not isinstance(raw, (list, tuple)):
        raise InvalidInputError(f"{where}: 'ids' should be a list, but is {_shown(raw)}")
    ids = [_valid_id(value) for value in raw]
    if None in ids:
        row = ids.index(None)
        raise InvalidInputError(f"{where}: ids[{row}] {_ID_RULE}, but is {_shown(raw[row])}")
    return cast("list[str]", ids)


def _shown(value: Any) -> str:
    """A short description of a wrong value: its JSON text, or its type."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"a {value.dtype} {type(value).__name__} of shape {tuple(value.shape)}"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return f"a {type(value).__name__}"
    return shorten(text, 40)


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _check_aligned(ids: list[str], rows: int, path: Path, what: str = "embedding rows") -> None:
    if len(ids) != rows:
        raise InvalidInputError(
            f"{path}: ids and {what} should align one to one, but there are "
            f"{len(ids)} ids and {rows} {what.split()[-1]}"
        )
    if len(set(ids)) != len(ids):
        repeated = next(i for i, count in Counter(ids).items() if count > 1)
        raise InvalidInputError(f"{path}: ids should be unique, but {repeated!r} repeats")
