"""Prompt sets held as arrow tables: parquet files and Hugging Face datasets.

The readers here open a source, check its schema and hand back its rows as dicts;
[`read_prompts`][katdensity.io.read_prompts] turns them into prompts with the same rules as
JSONL records. pyarrow (extra `parquet`) and datasets (extra `datasets`) are imported on
first use. Whatever the bytes, a source that cannot be read raises `InvalidInputError`
naming it, the problem and the fix, never a pyarrow or datasets exception.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from katdensity._atomic import atomic_folder, atomic_path
from katdensity._optional import require
from katdensity.errors import InvalidInputError

__all__ = [
    "WEIGHT_COLUMN",
    "Rows",
    "dataset_rows",
    "is_saved_dataset",
    "parquet_rows",
    "saved_dataset_rows",
    "write_with_column",
]

WEIGHT_COLUMN = "katdensity_weight"
# Detected in this order, like the JSONL rules: `prompt`, then a chat `prefix`, then `chosen`.
_PROMPT_COLUMNS = ("prompt", "prefix", "chosen")
_CHAT = '[{"role": ..., "content": "..."}, ...]'
_NAME_IT = "name the prompt column with field= (--field on the command line)"
_PARQUET_WRITER = "write it with pyarrow.parquet.write_table or Dataset.to_parquet"
_DATASET_WRITER = "write it with Dataset.save_to_disk"
T = TypeVar("T")

Kind = Literal["text", "transcript", "chat", "prefix"]


@dataclass(frozen=True)
class Rows:
    """The rows of a table, and where their prompts and ids are.

    Attributes:
        name: the source, as error messages name it (a path, or `Dataset`).
        column: the column holding the prompt.
        kind: what the column holds: `text` (the prompt), `transcript` (an HH transcript
            whose `Human:` turns are the prompt), `chat` (a list of chat messages) or
            `prefix` (an object whose `messages` is such a list).
        id_key: `extra_info.index`, `id`, or `None` (ids are derived from the texts).
        records: one dict per row, in table order.
    """

    name: str
    column: str
    kind: Kind
    id_key: str | None
    records: list[dict[str, Any]]

    def raw_id(self, record: dict[str, Any]) -> Any:
        """The row's id as stored, `None` if it has none."""
        if self.id_key == "extra_info.index":
            extra = record.get("extra_info")
            return extra.get("index") if isinstance(extra, dict) else None
        return record.get("id") if self.id_key == "id" else None


def _pyarrow() -> tuple[Any, Any]:
    # The package first: an imported pyarrow.parquet would be found even without pyarrow.
    pa = require("pyarrow", extra="parquet", purpose="reading parquet files")
    return pa, require("pyarrow.parquet", extra="parquet", purpose="reading parquet files")


def _datasets() -> Any:
    return require("datasets", extra="datasets", purpose="reading saved datasets")


def _guarded(name: str, load: Callable[[], T], problem: str, fix: str) -> T:
    """`load()`; any failure raises InvalidInputError naming `name`, `problem` and `fix`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load()
    except Exception as error:  # ArrowInvalid, OSError from a corrupt page, JSONDecodeError, ...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidInputError(f"{name} {problem} ({reason}); {fix}") from None


def _read_parquet(source: Path) -> Any:
    """The pyarrow table of a parquet file."""
    _, pq = _pyarrow()
    # Opened outside the guard, so that a missing permission is reported as itself.
    with source.open("rb") as handle:
        return _guarded(
            str(source),
            lambda: pq.ParquetFile(handle).read(),
            "is not a readable parquet file",
            _PARQUET_WRITER,
        )


def _load_saved(folder: Path) -> Any:
    """The `datasets.Dataset` saved in `folder`."""
    if not (folder / "state.json").is_file():
        if (folder / "dataset_dict.json").is_file():
            splits = _splits(folder)
            example = folder / (splits[0] if splits else "train")
            raise InvalidInputError(
                f"{folder} holds a DatasetDict (splits: {', '.join(splits) or 'none'}); "
                f"pass one split's folder, such as {example}"
            )
        raise InvalidInputError(
            f"{folder} is a folder without state.json: not one written by Dataset.save_to_disk; "
            "pass a saved dataset folder, a parquet file or a JSONL file"
        )
    datasets = _datasets()
    dataset = _guarded(
        str(folder),
        lambda: datasets.load_from_disk(str(folder)),
        "is not a readable saved dataset",
        _DATASET_WRITER,
    )
    if not isinstance(dataset, datasets.Dataset):
        raise InvalidInputError(f"{folder} should hold one Dataset, but holds a DatasetDict")
    return dataset


def _splits(folder: Path) -> list[str]:
    """The splits of a saved DatasetDict, in its own order (its index may be damaged)."""
    try:
        listed = json.loads((folder / "dataset_dict.json").read_text("utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        listed = None
    if isinstance(listed, list) and all(isinstance(split, str) for split in listed):
        return listed
    return sorted(p.name for p in folder.iterdir() if (p / "state.json").is_file())


def _dataset_table(dataset: Any, name: str) -> Any:
    # The arrow view keeps a selection's or shuffle's row order (its indices mapping).
    return _guarded(
        name, lambda: dataset.with_format("arrow")[:], "could not be read", _DATASET_WRITER
    )


def parquet_rows(source: Path, field: str | None) -> Rows:
    """The rows of a parquet file.

    Raises:
        MissingDependencyError: pyarrow is not installed.
        InvalidInputError: see `_rows`; also a file that is not parquet, truncated or corrupt.
    """
    return _rows(_read_parquet(source), str(source), field)


def saved_dataset_rows(folder: Path, field: str | None) -> Rows:
    """The rows of a folder written by `Dataset.save_to_disk`.

    Raises:
        MissingDependencyError: datasets is not installed.
        InvalidInputError: see `_rows`; also a folder that is not a saved dataset, one that
            holds a DatasetDict, or one whose files are damaged.
    """
    return _rows(_dataset_table(_load_saved(folder), str(folder)), str(folder), field)


def dataset_rows(data: object, field: str | None) -> Rows:
    """The rows of a `datasets.Dataset`.

    Raises:
        InvalidInputError: `data` is not a `datasets.Dataset` (a DatasetDict, a streaming
            dataset or anything else); see also `_rows`.
    """
    # An object of datasets' exists only once datasets is imported: no need to import it.
    datasets = sys.modules.get("datasets")
    if datasets is not None and isinstance(data, datasets.Dataset):
        return _rows(_dataset_table(data, "Dataset"), "Dataset", field)
    if datasets is not None and isinstance(
        data, (datasets.DatasetDict, datasets.IterableDatasetDict)
    ):
        splits = ", ".join(map(str, data))
        raise InvalidInputError(
            f"path should be one Dataset, but got a {type(data).__name__} of the splits "
            f"{splits or 'none'}; pass one split, such as data[{next(iter(data), 'train')!r}]"
        )
    if datasets is not None and isinstance(data, datasets.IterableDataset):
        raise InvalidInputError(
            "path should be a Dataset, but got a streaming IterableDataset, which cannot be read "
            "whole; load it without streaming=True, or save it to parquet"
        )
    raise InvalidInputError(
        "path should be a JSONL or parquet file, a folder written by Dataset.save_to_disk or a "
        f"datasets.Dataset, but got a {type(data).__name__}"
    )


def _kind(pa: Any, kind: Any, column: str, detected: bool) -> Kind | None:
    """What a column of arrow type `kind` holds, `None` if it cannot hold prompts."""
    if _is_text(pa, kind):
        # A detected `chosen` is an HH transcript; one named with field= is the prompt itself.
        return "transcript" if detected and column == "chosen" else "text"
    if _is_chat(pa, kind):
        return "chat"
    if (
        pa.types.is_struct(kind)
        and kind.get_field_index("messages") >= 0
        and _is_chat(pa, kind.field("messages").type)
    ):
        return "prefix"
    return None


def _is_text(pa: Any, kind: Any) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _is_chat(pa: Any, kind: Any) -> bool:
    """Whether `kind` is a list of structs with string `role` and `content`."""
    lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    if not any(is_list(kind) for is_list in lists) or not pa.types.is_struct(kind.value_type):
        return False
    message = kind.value_type
    return all(
        message.get_field_index(key) >= 0 and _is_text(pa, message.field(key).type)
        for key in ("role", "content")
    )


def _rows(table: Any, name: str, field: str | None) -> Rows:
    """The rows of a pyarrow table, once its schema is checked.

    Raises:
        InvalidInputError: repeated column names; no column `field`; with `field=None`, none
            of the columns `prompt`, `prefix`, `chosen`; a prompt column that holds neither
            strings nor chat-message lists; data that does not match its schema (e.g. text
            that is not UTF-8).
    """
    pa, _ = _pyarrow()
    names = list(table.column_names)
    listed = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
    repeated = next((n for n in names if names.count(n) > 1), None)
    if repeated is not None:
        raise InvalidInputError(
            f"{name}: column names should be unique, but {repeated!r} repeats; rename it"
        )
    if field is not None:
        if field not in names:
            raise InvalidInputError(
                f"{name}: no column {field!r}; the columns are {listed or 'none'}; {_NAME_IT}"
            )
        column = field
    else:
        found = next((c for c in _PROMPT_COLUMNS if c in names), None)
        if found is None:
            raise InvalidInputError(
                f"{name}: no prompt found; expected a 'prompt', 'prefix' or 'chosen' column, "
                f"but the columns are {listed or 'none'}; {_NAME_IT}"
            )
        column = found
    arrow_type = table.schema.field(column).type
    kind = _kind(pa, arrow_type, column, detected=field is None)
    if kind is None and table.num_rows:
        raise InvalidInputError(
            f"{name}: column {column!r} should hold strings or chat-message lists {_CHAT}, "
            f"but holds {arrow_type}; {_NAME_IT}"
        )
    extra = table.schema.field("extra_info").type if "extra_info" in names else None
    if extra is not None and pa.types.is_struct(extra) and extra.get_field_index("index") >= 0:
        id_key: str | None = "extra_info.index"  # verl's layout
    else:
        id_key = "id" if "id" in names else None

    def records() -> list[dict[str, Any]]:
        # A damaged file can hold offsets out of range or bytes that are not UTF-8.
        table.validate(full=True)
        return list(table.to_pylist())

    rows = _guarded(name, records, "holds data that does not match its schema", "rewrite it")
    return Rows(name=name, column=column, kind=kind or "text", id_key=id_key, records=rows)


def write_with_column(
    data: Path, out: Path, values: Sequence[float], *, progress: bool = True
) -> None:
    """Copy a parquet file or saved dataset with a float64 `katdensity_weight` column added.

    A column of that name already there is replaced. A parquet file is written to a
    temporary file renamed onto `out`; a dataset to a temporary folder beside `out`, renamed
    onto it (an existing saved dataset at `out` is replaced).

    Args:
        data: the parquet file or folder written by `Dataset.save_to_disk`.
        out: the copy: a parquet file for a parquet `data`, else a folder.
        values: `(N,)`: one value per row of `data`, in row order.
        progress: show datasets' progress bar while saving a dataset.

    Raises:
        InvalidInputError: `data` cannot be read, or has other than `len(values)` rows.
    """
    if not data.is_dir():
        pa, pq = _pyarrow()
        table = _read_parquet(data)
        _check_rows(table.num_rows, len(values), data)
        column = pa.array(values, type=pa.float64())
        index = table.schema.get_field_index(WEIGHT_COLUMN)
        table = (
            table.set_column(index, WEIGHT_COLUMN, column)
            if index >= 0
            else table.append_column(WEIGHT_COLUMN, column)
        )
        with atomic_path(out) as temporary:
            pq.write_table(table, temporary)
        return
    datasets = _datasets()
    dataset = _load_saved(data)
    _check_rows(dataset.num_rows, len(values), data)
    if WEIGHT_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(WEIGHT_COLUMN)
    dataset = dataset.add_column(
        WEIGHT_COLUMN, [float(v) for v in values], feature=datasets.Value("float64")
    )
    quiet = not progress and not datasets.are_progress_bars_disabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        with atomic_folder(out) as temporary:
            dataset.save_to_disk(str(temporary))
    finally:
        if quiet:
            datasets.enable_progress_bars()


def _check_rows(rows: int, values: int, data: Path) -> None:
    if rows != values:
        raise InvalidInputError(
            f"{data} should have one row per weight ({values}), but has {rows} rows; it changed "
            "while it was being read"
        )


def is_saved_dataset(path: Path) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk`."""
    return path.is_dir() and (path / "state.json").is_file()
