"""Prompt sets as parquet files (verl's layout), `datasets.Dataset` objects and saved folders."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from katdensity.cli import main
from katdensity.errors import InvalidInputError, MissingDependencyError
from katdensity.io import load_embeddings, prompt_id, read_prompts

TOPICS = ["sorting lists", "baking bread", "tax returns", "black holes", "knitting"]


@pytest.fixture(autouse=True)
def _no_progress_bars() -> Iterator[None]:
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def verl_rows(n: int = 24) -> list[dict[str, Any]]:
    """Rows as verl's preprocessing scripts write them; indices out of order on purpose."""
    rows = []
    for i in range(n):
        messages = [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": f"Tell me about {TOPICS[i % 5]}, question {i}"},
        ]
        if i % 4 == 0:
            messages += [
                {"role": "assistant", "content": "Which part?"},
                {"role": "user", "content": f"The history, part {i}"},
            ]
        rows.append(
            {
                "data_source": "katdensity/test",
                "prompt": messages,
                "ability": "math" if i % 3 else "chat",
                "reward_model": {"style": "rule", "ground_truth": str(i)},
                "extra_info": {"split": "train", "index": (7 * i) % n + 1000},
            }
        )
    return rows


def oracle(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The ids and texts `read_prompts` should give, built without the library."""
    ids = [str(row["extra_info"]["index"]) for row in rows]
    texts = [
        "\n\n".join(m["content"] for m in row["prompt"] if m["role"] == "user") for row in rows
    ]
    return ids, texts


def write_parquet(path: Path, rows: list[dict[str, Any]], writer: str = "pyarrow") -> Path:
    if writer == "datasets":  # how verl's scripts write it
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("writer", ["pyarrow", "datasets"])
def test_verl_parquet_keeps_ids_texts_and_order(tmp_path: Path, writer: str) -> None:
    rows = verl_rows()
    prompts = read_prompts(write_parquet(tmp_path / "train.parquet", rows, writer))
    ids, texts = oracle(rows)
    assert [p.id for p in prompts] == ids
    assert [p.text for p in prompts] == texts
    assert [dict(p.record) for p in prompts] == rows
    assert prompts[0].text == "Tell me about sorting lists, question 0\n\nThe history, part 0"


def test_ids_from_an_id_column_else_derived(tmp_path: Path) -> None:
    with_ids = write_parquet(
        tmp_path / "ids.parquet",
        [{"id": "b", "prompt": "one"}, {"id": None, "prompt": "two"}, {"id": "a", "prompt": "3"}],
    )
    assert [p.id for p in read_prompts(with_ids)] == ["b", prompt_id("two"), "a"]
    integers = write_parquet(tmp_path / "int.parquet", [{"id": 7, "prompt": "x"}])
    assert read_prompts(integers)[0].id == "7"
    # extra_info without an index is not verl's id: the id column is used.
    other = write_parquet(
        tmp_path / "other.parquet", [{"id": "z", "prompt": "x", "extra_info": {"split": "t"}}]
    )
    assert read_prompts(other)[0].id == "z"
    derived = write_parquet(
        tmp_path / "none.parquet", [{"prompt": "same"}, {"prompt": "same"}, {"prompt": "else"}]
    )
    assert [p.id for p in read_prompts(derived)] == [
        prompt_id("same"),
        prompt_id("same") + "#2",
        prompt_id("else"),
    ]
    assert [p.text for p in read_prompts(derived, dedupe=True)] == ["same", "else"]


def test_field_names_the_column_and_detection_follows_the_jsonl_rules(tmp_path: Path) -> None:
    rows = [{"question": f"Q{i}", "answer": f"A{i}", "id": f"r{i}"} for i in range(3)]
    path = write_parquet(tmp_path / "qa.parquet", rows)
    assert [p.text for p in read_prompts(path, field="question")] == ["Q0", "Q1", "Q2"]
    assert [p.text for p in read_prompts(path, field="answer")] == ["A0", "A1", "A2"]
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    # `prompt` comes before `prefix`, `prefix` before `chosen`, as for JSONL lines.
    both = write_parquet(
        tmp_path / "both.parquet",
        [{"prompt": "plain", "prefix": {"messages": chat}, "chosen": chat}],
    )
    assert read_prompts(both)[0].text == "plain"
    assert read_prompts(both, field="prefix")[0].text == "Hi"
    assert read_prompts(both, field="chosen")[0].text == "Hi"
    prefix = write_parquet(tmp_path / "prefix.parquet", [{"prefix": {"messages": chat}}])
    assert read_prompts(prefix)[0].text == "Hi"
    hh = write_parquet(
        tmp_path / "hh.parquet",
        [{"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4", "rejected": "..."}],
    )
    assert read_prompts(hh)[0].text == "What is 2+2?"


def test_dataset_object_and_saved_folder(tmp_path: Path) -> None:
    rows = verl_rows()
    dataset = datasets.Dataset.from_list(rows)
    ids, texts = oracle(rows)
    assert [(p.id, p.text) for p in read_prompts(dataset)] == list(zip(ids, texts, strict=True))
    # A shuffled selection is read in its own order.
    picked = dataset.shuffle(seed=0).select(range(10))
    picked_ids, picked_texts = oracle(picked.to_list())
    assert [p.id for p in read_prompts(picked)] == picked_ids
    assert [p.text for p in read_prompts(picked)] == picked_texts
    assert picked_ids != ids[:10]
    folder = tmp_path / "saved"
    picked.save_to_disk(str(folder))
    from_disk = read_prompts(folder)
    assert [p.id for p in from_disk] == picked_ids
    assert [dict(p.record) for p in from_disk] == picked.to_list()
    questions = datasets.Dataset.from_dict({"question": ["a?", "b?"], "id": [1, 2]})
    assert [(p.id, p.text) for p in read_prompts(questions, field="question")] == [
        ("1", "a?"),
        ("2", "b?"),
    ]
    assert read_prompts(datasets.Dataset.from_dict({"prompt": []})) == []


def _saved(folder: Path) -> Path:
    datasets.Dataset.from_list(verl_rows(4)).save_to_disk(str(folder))
    return folder


def _damage(folder: Path, name: str, data: bytes) -> Path:
    _saved(folder)
    (folder / name).write_bytes(data)
    return folder


def _invalid_utf8(path: Path) -> Path:
    column = pa.array([b"ok", b"caf\xe9"], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"prompt": column}), path)
    return path


BAD_SOURCES: list[tuple[str, Any, dict[str, Any], str]] = [
    (
        "random bytes",
        lambda d: d.joinpath("x.parquet").write_bytes(bytes(range(256)) * 3),
        {},
        r"x.parquet is not a readable parquet file \(.*magic bytes.*\); write it with",
    ),
    ("empty file", lambda d: d.joinpath("x.parquet").write_bytes(b""), {}, r"not a readable"),
    (
        "truncated",
        lambda d: d.joinpath("x.parquet").write_bytes(
            write_parquet(d / "good.parquet", verl_rows()).read_bytes()[:-40]
        ),
        {},
        r"x.parquet is not a readable parquet file",
    ),
    ("missing", lambda d: None, {}, r"should be an existing parquet file, but .* does not exist"),
    (
        "not UTF-8",
        lambda d: _invalid_utf8(d / "x.parquet"),
        {},
        r"x.parquet holds data that does not match its schema \(.*UTF8",
    ),
    (
        "missing column",
        lambda d: write_parquet(d / "x.parquet", [{"prompt": "a", "src": "b"}]),
        {"field": "question"},
        r"x.parquet: no column 'question'; the columns are 'prompt', 'src'; name the prompt",
    ),
    (
        "no prompt column",
        lambda d: write_parquet(d / "x.parquet", [{"question": "a"}]),
        {},
        r"no prompt found; expected a 'prompt', 'prefix' or 'chosen' column, but the columns "
        r"are 'question'",
    ),
    (
        "integer prompts",
        lambda d: write_parquet(d / "x.parquet", [{"prompt": 5}]),
        {},
        r"column 'prompt' should hold strings or chat-message lists .*, but holds int64",
    ),
    (
        "messages without role",
        lambda d: write_parquet(d / "x.parquet", [{"prompt": [{"content": "a"}]}]),
        {},
        r"column 'prompt' should hold strings or chat-message lists",
    ),
    (
        "content not text",
        lambda d: write_parquet(d / "x.parquet", [{"prompt": [{"role": "user", "content": 1}]}]),
        {},
        r"but holds list<\w+: struct<role: string, content: int64>>",
    ),
    (
        "null prompt",
        lambda d: write_parquet(d / "x.parquet", [{"prompt": "a"}, {"prompt": None}]),
        {},
        r"x.parquet: row 1: no prompt found; 'prompt' is null",
    ),
    (
        "null message",
        lambda d: write_parquet(
            d / "x.parquet", [{"prompt": [{"role": "user", "content": "a"}, None]}]
        ),
        {},
        r"row 0: prompt\[1\] should be an object",
    ),
    (
        "empty prompt",
        lambda d: write_parquet(
            d / "x.parquet", [{"prompt": [{"role": "system", "content": "s"}]}]
        ),
        {},
        r"x.parquet: row 0: the prompt is empty",
    ),
    (
        "multi-line id",
        lambda d: write_parquet(d / "x.parquet", [{"prompt": "a", "id": "a\nb"}]),
        {},
        r"row 0: 'id' should be a string \(one non-empty line\) or an integer",
    ),
    (
        "float index",
        lambda d: write_parquet(d / "x.parquet", [{"prompt": "a", "extra_info": {"index": 1.5}}]),
        {},
        r"row 0: 'extra_info.index' should be a string .* or an integer, but is 1.5",
    ),
    (
        "repeated column",
        lambda d: pq.write_table(
            pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["prompt", "prompt"]),
            d / "x.parquet",
        ),
        {},
        r"column names should be unique, but 'prompt' repeats",
    ),
    (
        "HH column without turns",
        lambda d: write_parquet(d / "x.parquet", [{"chosen": "no turns here"}]),
        {},
        r"row 0: no prompt found; 'chosen' should be an HH transcript",
    ),
    (
        "plain folder",
        lambda d: d.joinpath("x.parquet").mkdir(),
        {},
        r"x.parquet is a folder without state.json: not one written by Dataset.save_to_disk",
    ),
    (
        "DatasetDict folder",
        lambda d: datasets.DatasetDict(
            {"train": datasets.Dataset.from_list(verl_rows(2))}
        ).save_to_disk(str(d / "x.parquet")),
        {},
        r"holds a DatasetDict \(splits: train\); pass one split's folder, such as .*/train",
    ),
    (
        "damaged arrow file",
        lambda d: _damage(d / "x.parquet", "data-00000-of-00001.arrow", bytes(range(200))),
        {},
        r"x.parquet is not a readable saved dataset \(.*\); write it with Dataset.save_to_disk",
    ),
    (
        "damaged state.json",
        lambda d: _damage(d / "x.parquet", "state.json", b"{not json"),
        {},
        r"x.parquet is not a readable saved dataset",
    ),
    (
        "missing arrow file",
        lambda d: (_saved(d / "x.parquet") / "data-00000-of-00001.arrow").unlink(),
        {},
        r"x.parquet is not a readable saved dataset \(.*No such file",
    ),
]


@pytest.mark.parametrize(
    ("make", "options", "message"),
    [case[1:] for case in BAD_SOURCES],
    ids=[case[0] for case in BAD_SOURCES],
)
def test_bad_sources_get_clear_messages(
    tmp_path: Path, make: Any, options: dict[str, Any], message: str
) -> None:
    # Folders are named x.parquet too: a folder is read as a saved dataset whatever its name.
    make(tmp_path)
    with pytest.raises(InvalidInputError, match=message):
        read_prompts(tmp_path / "x.parquet", **options)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            datasets.DatasetDict({"train": datasets.Dataset.from_dict({"prompt": ["a"]})}),
            r"got a DatasetDict of the splits train; pass one split, such as data\['train'\]",
        ),
        (
            datasets.Dataset.from_dict({"prompt": ["a"]}).to_iterable_dataset(),
            r"got a streaming IterableDataset",
        ),
        ([{"prompt": "a"}], r"or a datasets.Dataset, but got a list"),
        (datasets.Dataset.from_dict({"prompt": [1]}), r"Dataset: column 'prompt' should hold"),
        (datasets.Dataset.from_dict({"prompt": [""]}), r"Dataset: row 0: the prompt is empty"),
    ],
)
def test_bad_objects_get_clear_messages(data: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        read_prompts(data)


def test_missing_dependencies_name_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parquet = write_parquet(tmp_path / "p.parquet", verl_rows(3))
    folder = _saved(tmp_path / "saved")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "katdensity\[datasets\]"'):
        read_prompts(folder)
    assert len(read_prompts(parquet)) == 3  # parquet needs pyarrow only
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "katdensity\[parquet\]"'):
        read_prompts(parquet)
    assert main(["--quiet", "prompts", "--data", str(parquet), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "katdensity[parquet]"' in err
    assert not (tmp_path / "o").exists()


def test_import_katdensity_imports_neither_pyarrow_nor_datasets() -> None:
    code = (
        "import sys, katdensity, katdensity.io, katdensity.cli; "
        "sys.exit(sorted({'pyarrow', 'datasets'} & set(sys.modules)) or 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _weights_by_id(path: Path) -> dict[str, float]:
    record = torch.load(path, weights_only=True)
    assert record["weights"].dtype == torch.float64
    return dict(zip(record["ids"], record["weights"].tolist(), strict=True))


def _run(argv: list[str]) -> int:
    return main(["--quiet", *[str(a) for a in argv]])


def test_cli_writes_the_weight_column_of_a_parquet_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = verl_rows()
    data = write_parquet(tmp_path / "train.parquet", rows, "datasets")
    emb, weights, out = tmp_path / "emb.pt", tmp_path / "w.pt", tmp_path / "out.parquet"
    assert _run(["embed", "--data", data, "--out", emb]) == 0
    ids, _ = oracle(rows)
    assert load_embeddings(emb).ids == ids
    argv = ["weights", "--emb", emb, "--data", data, "--out", weights, "--k", "3"]
    assert _run([*argv, "--write-column", out]) == 0
    summary = capsys.readouterr().out
    assert summary.rstrip().endswith(f"wrote {data} with a katdensity_weight column to {out}")
    assert "Tell me about" in summary  # --data still shows the texts
    written = pq.read_table(out)
    assert written.schema.field("katdensity_weight").type == pa.float64()
    assert written.drop_columns("katdensity_weight").to_pylist() == rows
    by_id = _weights_by_id(weights)
    assert written.column("katdensity_weight").to_pylist() == [by_id[i] for i in ids]
    # verl reads its data with datasets' parquet loader.
    loaded = datasets.load_dataset(
        "parquet", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded["katdensity_weight"] == [by_id[i] for i in ids]
    # Weighting the copy again replaces its column instead of adding a second one.
    again = tmp_path / "again.parquet"
    assert _run([*argv[:3], "--data", out, "--out", weights, "--write-column", again]) == 0
    assert pq.read_table(again).column_names == written.column_names


def test_cli_writes_the_weight_column_of_a_saved_dataset(tmp_path: Path) -> None:
    rows = verl_rows()
    data = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(data))
    emb, weights, out = tmp_path / "emb.npy", tmp_path / "w.pt", tmp_path / "weighted"
    assert _run(["embed", "--data", data, "--out", emb]) == 0
    argv = ["weights", "--emb", emb, "--data", data, "--out", weights, "--k", "3"]
    for _ in range(2):  # the second run replaces the saved dataset it wrote
        assert _run([*argv, "--write-column", out]) == 0
        written = datasets.load_from_disk(str(out))
        assert written.features["katdensity_weight"] == datasets.Value("float64")
        by_id = _weights_by_id(weights)
        ids, _ = oracle(rows)
        assert written["katdensity_weight"] == [by_id[i] for i in ids]
        assert written.remove_columns("katdensity_weight").to_list() == rows
    # Weighting the copy again replaces its column instead of adding a second one.
    twice = tmp_path / "twice"
    assert _run([*argv[:3], "--data", out, "--out", weights, "--write-column", twice]) == 0
    assert datasets.load_from_disk(str(twice)).column_names == written.column_names
    # No temporary folder is left beside the copies.
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["emb.ids.json", "emb.npy", "saved", "twice", "w.pt", "weighted"]


def test_cli_write_column_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = verl_rows()
    data = write_parquet(tmp_path / "train.parquet", rows)
    emb = tmp_path / "emb.pt"
    assert _run(["embed", "--data", data, "--out", emb]) == 0
    more = write_parquet(
        tmp_path / "more.parquet", [*rows, {**rows[0], "extra_info": {"index": 5}}]
    )
    repeated = write_parquet(tmp_path / "repeated.parquet", [*rows, rows[0]])
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps({"prompt": "a"}) + "\n" for _ in range(3)))
    saved = _saved(tmp_path / "saved")
    cases = [
        ([], "x.parquet", "--write-column needs --data"),
        (["--data", jsonl], "x.parquet", "but --data .*p.jsonl is neither"),
        (["--data", data], data, "should be a new path, but .* is --data itself"),
        (["--data", saved], tmp_path, "should be a new path, but .* is --data itself or holds"),
        (["--data", data], "x.csv", "should be a .parquet file for a parquet --data"),
        (["--data", saved], emb, "exists and is not a saved dataset folder"),
        (["--data", more], "x.parquet", r"emb.pt should hold every id of --data .*\['5'\]"),
        (["--data", repeated], "x.parquet", "id '1000' is in rows 0 and 24"),
    ]
    for data_args, target, message in cases:
        out = tmp_path / "w.pt"
        target_path = tmp_path / target if isinstance(target, str) else target
        argv = ["weights", "--emb", emb, "--out", out, *data_args, "--write-column", target_path]
        assert _run(argv) == 2, message
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert re.search(message, err), err
        assert not out.exists() and not (tmp_path / "x.parquet").exists()


def test_cli_commands_take_parquet_and_saved_datasets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = verl_rows()
    ids, texts = oracle(rows)
    data = write_parquet(tmp_path / "train.parquet", rows)
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))
    for source in (data, saved):
        out = tmp_path / "prompts.jsonl"
        assert _run(["prompts", "--data", source, "--out", out]) == 0
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert lines == [{"id": i, "prompt": t} for i, t in zip(ids, texts, strict=True)]
    emb = tmp_path / "emb.pt"
    assert _run(["embed", "--data", saved, "--out", emb]) == 0
    capsys.readouterr()
    assert _run(["neighbors", "--emb", emb, "--data", data, "--id", ids[1], "-k", "2"]) == 0
    assert "Tell me about" in capsys.readouterr().out
    view = tmp_path / "view.html"
    argv = ["viz", "--emb", emb, "--data", saved, "--label", "ability", "--out", view]
    assert _run([*argv, "--json", tmp_path / "view.json", "--k", "3"]) == 0
    points = json.loads((tmp_path / "view.json").read_text())["points"]
    assert {p["id"]: (p["color"], p["prompt"]) for p in points} == {
        i: (row["ability"], text) for i, row, text in zip(ids, rows, texts, strict=True)
    }
