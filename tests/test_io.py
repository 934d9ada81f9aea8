from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import katdensity.io
from katdensity import InvalidInputError
from katdensity.io import load_embeddings, prompt_id, read_prompts, save_embeddings


def _jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_reads_every_prompt_format(tmp_path: Path) -> None:
    records = [
        {"id": "a", "prompt": "Plain prompt"},
        {
            "id": 7,
            "prefix": {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "First question"},
                    {"role": "assistant", "content": "An answer"},
                    {"role": "user", "content": "Follow-up"},
                ]
            },
            "chosen": "x",
            "rejected": "y",
            "src": "chat",
        },
        {
            "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4",
            "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5",
        },
    ]
    prompts = read_prompts(_jsonl(tmp_path / "p.jsonl", records))
    assert [p.text for p in prompts] == [
        "Plain prompt",
        "First question\n\nFollow-up",
        "What is 2+2?",
    ]
    assert [p.id for p in prompts[:2]] == ["a", "7"]
    assert prompts[2].id == prompt_id("What is 2+2?") and prompts[1].record["src"] == "chat"


def test_stable_ids_ignore_whitespace_and_dedupe(tmp_path: Path) -> None:
    assert prompt_id("a  b\n c") == prompt_id("a b c")
    path = _jsonl(
        tmp_path / "d.jsonl",
        [{"prompt": "same  text"}, {"prompt": "same text"}, {"prompt": "other"}],
    )
    assert len(read_prompts(path)) == 3
    assert [p.text for p in read_prompts(path, dedupe=True)] == ["same  text", "other"]


def test_named_field(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "f.jsonl", [{"question": "Why?"}])
    assert read_prompts(path, field="question")[0].text == "Why?"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad.jsonl:2: not valid JSON"),
        ('{"text": "no prompt key"}', r"bad.jsonl:2: no prompt found"),
        ('{"prompt": "   "}', r"bad.jsonl:2: the prompt is empty"),
        ("[1, 2]", r"bad.jsonl:2: should be a JSON object"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(InvalidInputError, match=message):
        read_prompts(path)


@pytest.mark.parametrize("suffix", [".pt", ".npy"])
def test_embeddings_round_trip(tmp_path: Path, suffix: str) -> None:
    matrix = torch.randn(5, 3)
    path = tmp_path / f"emb{suffix}"
    save_embeddings(path, ["a", "b", "c", "d", "e"], matrix, embedder={"name": "hashing", "dim": 3})
    loaded = load_embeddings(path)
    assert loaded.ids == ["a", "b", "c", "d", "e"]
    assert loaded.embedder == {"name": "hashing", "dim": 3}
    np.testing.assert_array_equal(np.asarray(loaded.embeddings), matrix.numpy())
    if suffix == ".npy":
        assert isinstance(loaded.embeddings, np.memmap)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_reads_the_research_scripts_format(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"ids": ["x", "y"], "emb": torch.ones(2, 4)}, path)
    loaded = load_embeddings(path)
    assert loaded.ids == ["x", "y"] and loaded.embedder == {}


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"ids": ["a"], "emb": Payload()}, handle)
    with pytest.raises(InvalidInputError, match="refuses to unpickle"):
        load_embeddings(path)


def test_misaligned_or_repeated_ids(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="2 ids and 3 rows"):
        save_embeddings(tmp_path / "e.pt", ["a", "b"], torch.zeros(3, 2))
    with pytest.raises(InvalidInputError, match="'a' repeats"):
        save_embeddings(tmp_path / "e.pt", ["a", "b", "a"], torch.zeros(3, 2))
    torch.save({"ids": ["a"], "emb": torch.zeros(2, 2)}, tmp_path / "bad.pt")
    with pytest.raises(InvalidInputError, match="1 ids and 2 rows"):
        load_embeddings(tmp_path / "bad.pt")


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        save_embeddings(tmp_path / "out.pt", ["a"], torch.zeros(1, 2))
    assert list(tmp_path.iterdir()) == []


def test_repeated_prompts_get_distinct_derived_ids(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "r.jsonl", [{"prompt": "same"}, {"prompt": "same"}, {"prompt": "same"}]
    )
    ids = [p.id for p in read_prompts(path)]
    assert ids == [prompt_id("same"), prompt_id("same") + "#2", prompt_id("same") + "#3"]


def test_npy_is_written_in_blocks_with_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(katdensity.io, "_WRITE_BYTES", 3 * 4 * 4)  # 3 rows of 4 floats
    matrix = torch.randn(10, 4)
    save_embeddings(tmp_path / "e.npy", [str(i) for i in range(10)], matrix, progress=True)
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), matrix.numpy())
    err = capsys.readouterr().err
    assert "writing: 100%" in err and "4/4" in err, "a bar over the 4 blocks of rows"


def test_failed_npy_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array_header_1_0", explode)
    with pytest.raises(OSError, match="disk full"):
        save_embeddings(tmp_path / "out.npy", ["a"], torch.zeros(1, 2))
    assert list(tmp_path.iterdir()) == []


def test_one_rule_turns_a_prompt_into_text() -> None:
    from katdensity.integrations._weights import prompt_texts
    from katdensity.io import prompt_text

    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Add"}, {"type": "image"}]},
        {"role": "assistant", "content": "Sure."},
        {"role": "user", "content": "2 and 3"},
    ]
    assert prompt_text(chat, where="row 0") == "Add\n\n2 and 3"
    assert prompt_text("What is 2 plus 3?", where="row 0") == "What is 2 plus 3?"
    # The JSONL reader follows the same rule for a chat record.
    assert prompt_texts(["a", chat]) == ["a", "Add\n\n2 and 3"]
    refused = [
        ("   ", "the prompt is empty"),
        ([{"role": "assistant", "content": "only an answer"}], "the prompt is empty"),
        (7, "should be a string or a list of"),
        ([{"role": "user", "content": 3}], "'content' should be a string or a list of parts"),
    ]
    for prompt, message in refused:
        with pytest.raises(InvalidInputError, match=message) as direct:
            prompt_text(prompt, where="train_dataset['prompt'][1]")
        # The TRL route refuses it with the same message.
        with pytest.raises(InvalidInputError) as trl_route:
            prompt_texts(["fine", prompt])
        assert str(trl_route.value) == str(direct.value)


def test_the_reader_takes_content_parts_as_the_trl_route_does(tmp_path: Path) -> None:
    from katdensity.integrations._weights import prompt_texts

    messages = [{"role": "user", "content": [{"type": "text", "text": "Name a colour"}]}]
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"id": "a", "prefix": {"messages": messages}}) + "\n")
    assert [p.text for p in read_prompts(path)] == prompt_texts([messages])
