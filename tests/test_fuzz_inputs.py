"""Every reader and every `katdensity` command takes any bytes.

Random bytes, truncated and mutated valid files (JSONL, parquet, torch and NumPy), JSON of
the wrong types, huge lines and other encodings either read as valid input or raise
`InvalidInputError` (the library), or exit with status 2 after one `katdensity: error:` line
and leave no output behind (the command line). Examples are derandomised, so every run tests
the same inputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import pickle
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import katdensity.io
from katdensity import HashingEmbedder
from katdensity.cli import main
from katdensity.errors import InvalidInputError
from katdensity.io import load_embeddings, load_weights, read_prompts, save_embeddings


def fuzz(max_examples: int) -> Any:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# While fuzzing, lines longer than this are "huge" (the real limit, 16 MiB, is tested once).
SMALL_LINE_LIMIT = 8000


@contextlib.contextmanager
def small_line_limit() -> Iterator[None]:
    with mock.patch.object(katdensity.io, "_MAX_LINE_BYTES", SMALL_LINE_LIMIT):
        yield


# --- strategies -------------------------------------------------------------------------

# Text with the odd characters files hold: accents, emoji, NUL, line separators, and lone
# surrogates (which JSON can escape, but which are not text).
odd_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["café", "日本語 prompt", "😀 emoji", "a\x00b", "x\u2028y", "\ud800", "a\udfffb"]
    ),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
prompt_texts = st.one_of(
    st.sampled_from(["How do I sort a list?", "Bake bread", "  ", "", "Tell me about tax"]),
    odd_text,
)
messages = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system", 3]), "content": prompt_texts}
        ),
        json_values,
    ),
    max_size=3,
)
records = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.sampled_from(["q0", "q1", "a b", "x\ny", ""]), json_values),
        "prompt": st.one_of(prompt_texts, json_values),
        "text": st.one_of(prompt_texts, json_values),
        "prefix": st.one_of(st.fixed_dictionaries({"messages": messages}), json_values),
        "chosen": st.one_of(
            st.sampled_from(["\n\nHuman: Hi there\n\nAssistant: Hello", "no turns"]), json_values
        ),
        "src": json_values,
    },
)


@st.composite
def json_lines(draw: st.DrawFn) -> bytes:
    """A JSONL-ish file: records, other JSON, raw bytes and huge lines, in one encoding."""
    line = st.one_of(
        st.fixed_dictionaries({"prompt": prompt_texts}, optional={"id": st.integers(0, 3)}).map(
            json.dumps
        ),
        records.map(lambda r: json.dumps(r, ensure_ascii=False)),
        records.map(json.dumps),
        json_values.map(json.dumps),
        st.sampled_from(
            ["", "   ", "{not json", "[" * 3000, '{"prompt": "x", "id": ' + "9" * 5000]
        ),
    )
    lines = draw(st.lists(line, max_size=6))
    if draw(st.integers(0, 4)) == 0:  # a huge line, maybe just under the limit
        size = draw(st.integers(SMALL_LINE_LIMIT - 20, 3 * SMALL_LINE_LIMIT))
        lines.insert(draw(st.integers(0, len(lines))), json.dumps({"prompt": "x" * size}))
    text = "\n".join(lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    data = text.encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace")
    if draw(st.booleans()):
        data += b"\n"
    return data


GOOD_PROMPTS = [
    {"id": f"q{i}", "prompt": text, "text": text, "src": text.split()[0]}
    for i, text in enumerate(
        [
            "How do I sort a list in Python?",
            "how to sort a python list",
            "Bake a loaf of sourdough bread",
            "A recipe for sourdough bread",
            "What causes the northern lights?",
            "Explain black holes simply",
        ]
    )
]
GOOD_JSONL = "".join(json.dumps(record) + "\n" for record in GOOD_PROMPTS).encode()


@st.composite
def damaged(draw: st.DrawFn, good: bytes) -> bytes:
    """`good` truncated, with bytes overwritten, or with bytes inserted."""
    data = bytearray(good)
    how = draw(st.sampled_from(["truncate", "overwrite", "insert"]))
    at = draw(st.integers(0, len(data) - 1))
    if how == "truncate":
        return bytes(data[:at])
    junk = draw(st.binary(min_size=1, max_size=8))
    if how == "overwrite":
        data[at : at + len(junk)] = junk
    else:
        data[at:at] = junk
    return bytes(data)


@st.composite
def good_variants(draw: st.DrawFn) -> bytes:
    """The good prompts in any order, with texts and labels of any content and type."""
    lines = []
    for record in draw(st.permutations(GOOD_PROMPTS)):
        varied = {**record, "text": draw(prompt_texts), "src": draw(json_values)}
        lines.append(json.dumps(varied, ensure_ascii=draw(st.booleans())))
    return "".join(line + "\n" for line in lines).encode("utf-8", errors="surrogatepass")


jsonl_files = st.one_of(st.binary(max_size=300), json_lines(), damaged(GOOD_JSONL), good_variants())

# Rewards of the good prompts (`katdensity weights --rewards`), and any reward at all.
GOOD_REWARDS = "".join(
    json.dumps({"id": record["id"], "reward": i % 2}) + "\n"
    for i, record in enumerate(GOOD_PROMPTS)
).encode()
reward_lines = st.lists(
    st.fixed_dictionaries(
        {"id": st.sampled_from([r["id"] for r in GOOD_PROMPTS]), "reward": json_values}
    ).map(json.dumps),
    max_size=6,
).map(lambda lines: "".join(line + "\n" for line in lines).encode())
reward_files = st.one_of(st.binary(max_size=200), damaged(GOOD_REWARDS), reward_lines)


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


# The good prompts in verl's layout: chat messages under `prompt`, ids in `extra_info.index`.
GOOD_PARQUET = parquet_bytes(
    [
        {
            "prompt": [{"role": "user", "content": record["prompt"]}],
            "src": record["src"],
            "extra_info": {"index": record["id"]},
        }
        for record in GOOD_PROMPTS
    ]
)
# Well-formed files of the wrong schema or content.
WRONG_PARQUET = [
    parquet_bytes(rows)
    for rows in (
        [{"prompt": 5}],
        [{"question": "no prompt column"}],
        [{"prompt": None}, {"prompt": "x"}],
        [{"prompt": [{"role": "user", "content": "  "}]}],
        [{"prompt": "x", "extra_info": {"index": 1.5}}],
        [{"prompt": "same"}, {"prompt": "same"}],
    )
]
parquet_files = st.one_of(
    st.binary(max_size=300),
    damaged(GOOD_PARQUET),
    st.just(GOOD_PARQUET),
    st.sampled_from(WRONG_PARQUET),
)


class Payload:
    """A pickled object that must never be rebuilt (a file holding it is refused)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """Arrays of the dtypes only NumPy has: big-endian, strings, structured."""
    rows = draw(st.integers(0, 4))
    dtype = draw(st.sampled_from([">f4", ">f8", "<U2", "f4,f4", "<M8[s]", "<u2"]))
    return np.zeros((rows, 2), dtype=dtype)


def ids_for(rows: int) -> list[str]:
    return [f"r{i}" for i in range(rows)]


ids_lists = st.one_of(
    st.lists(
        st.one_of(st.sampled_from(["r0", "r1", "", "a\nb", "\ud800", True, 1.5]), json_values)
    ),
    json_values,
)
embedder_records = st.one_of(
    st.none(),
    st.just({"spec": "hashing"}),
    st.fixed_dictionaries({"spec": st.sampled_from(["hashing", "nope", 5]), "dim": json_values}),
    st.just({"spec": "hashing", "bogus": 1}),
    st.just({"spec": "hashing", "ngram_range": "x"}),
    json_values,
)


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    """Tensors of any dtype and of 0 to 3 dimensions, mostly small 2-D float ones."""
    shape = draw(
        st.one_of(
            st.tuples(st.integers(1, 14), st.integers(1, 4)),
            st.lists(st.integers(0, 3), max_size=3).map(tuple),
        )
    )
    dtype = draw(
        st.sampled_from(
            [
                *(torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16),
                *(torch.int64, torch.bool, torch.complex64),
            ]
        )
    )
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    values = torch.randn(shape, generator=generator, dtype=torch.float64)
    if draw(st.integers(0, 9)) == 0:
        values.view(-1)[:1] = math.nan
    return values.to(dtype)


@st.composite
def valid_matrices(draw: st.DrawFn) -> torch.Tensor:
    """Small float32 matrices with distinct rows."""
    shape = draw(st.tuples(st.integers(1, 14), st.integers(1, 4)))
    return torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))


@st.composite
def pt_files(draw: st.DrawFn, keys: tuple[str, str] = ("ids", "emb")) -> bytes:
    """A `.pt` file of any content: random or damaged bytes, pickles, wrong types."""
    ids_key, data_key = keys
    tensor = draw(tensors())
    if data_key == "weights" and draw(st.booleans()):
        real = tensor.real if tensor.is_complex() else tensor
        tensor = real.double().reshape(-1).abs()  # mostly 1-D non-negative weights
    rows = int(tensor.shape[0]) if tensor.ndim else 0
    ids = draw(st.one_of(st.just(ids_for(rows)), ids_lists))
    data = draw(st.one_of(st.just(tensor), st.just(torch.eye(2).to_sparse()), json_values))
    blob = draw(
        st.one_of(
            st.fixed_dictionaries(
                {ids_key: st.just(ids), data_key: st.just(data)},
                optional={"embedder": embedder_records},
            ),
            st.fixed_dictionaries({ids_key: st.just(ids)}),
            json_values,
            st.just(tensor),
        )
    )
    kind = draw(
        st.sampled_from(["valid", "valid", "save", "save", "random", "damaged", "pickle", "global"])
    )
    if kind == "valid":
        matrix = draw(valid_matrices())
        data = matrix.reshape(-1).abs().double() if data_key == "weights" else matrix
        embedder = {"spec": "hashing", "dim": matrix.shape[1]}
        return torch_bytes({ids_key: ids_for(len(data)), data_key: data, "embedder": embedder})
    if kind == "random":
        return draw(st.binary(max_size=400))
    if kind == "pickle":
        protocol = draw(st.integers(2, pickle.HIGHEST_PROTOCOL))
        return pickle.dumps({ids_key: ["a"], data_key: Payload()}, protocol=protocol)
    if kind == "global":
        return torch_bytes({ids_key: ["a"], data_key: Payload()})
    saved = torch_bytes(blob)
    return draw(damaged(saved)) if kind == "damaged" else saved


@st.composite
def npy_files(draw: st.DrawFn) -> tuple[bytes, bytes | None]:
    """A `.npy` file and its `.ids.json` sidecar (or none), each of any content."""
    source = draw(st.sampled_from(["valid", "valid", "tensor", "numpy", "object"]))
    if source in ("valid", "tensor"):
        tensor = draw(valid_matrices() if source == "valid" else tensors())
        array = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    else:
        array = draw(arrays()) if source == "numpy" else np.array([[1, None]], dtype=object)
    saved = npy_bytes(array)
    matrix = draw(st.one_of(st.just(saved), damaged(saved), st.binary(max_size=300)))
    rows = array.shape[0] if array.ndim else 0
    columns = int(array.shape[-1]) if array.ndim else 1
    good_side = {"ids": ids_for(rows), "embedder": {"spec": "hashing", "dim": columns}}
    if source == "valid":
        return saved, json.dumps(good_side).encode()
    side = draw(
        st.one_of(
            st.just(json.dumps(good_side).encode()),
            st.just(json.dumps({"ids": ids_for(rows)}).encode()),
            st.fixed_dictionaries({"ids": ids_lists}, optional={"embedder": embedder_records}).map(
                lambda d: json.dumps(d).encode()
            ),
            json_values.map(lambda v: json.dumps(v).encode()),
            damaged(json.dumps(good_side).encode()),
            st.just(json.dumps(good_side).encode("utf-16")),
            st.binary(max_size=100),
            st.none(),
        )
    )
    return matrix, side


embeddings_files = st.one_of(
    pt_files().map(lambda pt: (".pt", pt, None)),
    npy_files().map(lambda pair: (".npy", *pair)),
)


def write_embeddings(folder: Path, drawn: tuple[str, bytes, bytes | None]) -> Path:
    suffix, data, side = drawn
    path = folder / f"in{suffix}"
    path.write_bytes(data)
    if side is not None:
        (folder / "in.ids.json").write_bytes(side)
    return path


# --- the library ------------------------------------------------------------------------


def _problem(error: Exception) -> str:
    """The kind of problem an error names, for Hypothesis' statistics."""
    return " ".join(str(error).split(" ", 1)[-1].split()[:3])


def check_ids(ids: list[str]) -> None:
    assert len(set(ids)) == len(ids)
    for identifier in ids:
        assert isinstance(identifier, str) and identifier.splitlines() == [identifier]
        identifier.encode("utf-8")


@fuzz(1000)
@given(data=jsonl_files, dedupe=st.booleans(), field=st.sampled_from([None, None, "text"]))
def test_read_prompts_returns_prompts_or_invalid_input(
    tmp_path: Path, data: bytes, dedupe: bool, field: str | None
) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(data)
    with small_line_limit():
        try:
            prompts = read_prompts(path, field=field, dedupe=dedupe)
        except InvalidInputError as error:
            assert str(path) in str(error)
            event("invalid: " + _problem(error))
            return
    event(f"read {min(len(prompts), 2)}+ prompts")
    for prompt in prompts:
        assert isinstance(prompt.text, str) and prompt.text.strip()
        prompt.text.encode("utf-8")
        assert isinstance(prompt.id, str) and prompt.id.splitlines() == [prompt.id]
        json.dumps(prompt.record, ensure_ascii=False).encode("utf-8")


@fuzz(300)
@given(data=parquet_files)
def test_read_prompts_of_parquet_returns_prompts_or_invalid_input(
    tmp_path: Path, data: bytes
) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "prompts.parquet"
    path.write_bytes(data)
    try:
        prompts = read_prompts(path)
    except InvalidInputError as error:
        assert str(path) in str(error) and "\n" not in str(error)
        event("invalid: " + _problem(error))
        return
    event(f"read {min(len(prompts), 2)}+ prompts")
    check_ids([p.id for p in prompts])
    assert all(isinstance(p.text, str) and p.text.strip() for p in prompts)


@fuzz(800)
@given(drawn=embeddings_files)
def test_load_embeddings_returns_a_matrix_or_invalid_input(
    tmp_path: Path, drawn: tuple[str, bytes, bytes | None]
) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = write_embeddings(folder, drawn)
    try:
        loaded = load_embeddings(path)
    except InvalidInputError as error:
        assert str(folder) in str(error) and "\n" not in str(error)
        event("invalid: " + _problem(error))
        return
    event("loaded")
    rows, columns = loaded.embeddings.shape
    assert rows == len(loaded.ids) >= 1 and columns >= 1
    check_ids(loaded.ids)
    assert isinstance(loaded.embedder, dict)
    assert np.asarray(loaded.embeddings[:1], dtype=np.float64).shape == (1, columns)


@fuzz(400)
@given(data=pt_files(("ids", "weights")))
def test_load_weights_returns_weights_or_invalid_input(tmp_path: Path, data: bytes) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "weights.pt"
    path.write_bytes(data)
    try:
        stored = load_weights(path)
    except InvalidInputError as error:
        assert path.name in str(error)
        event("invalid: " + _problem(error))
        return
    event("loaded")
    check_ids(stored.ids)
    assert stored.weights.shape == (len(stored.ids),) and stored.weights.is_floating_point()
    assert stored.groups is None or stored.groups.shape == stored.weights.shape


def test_real_line_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    long_prompt = json.dumps({"prompt": "x" * 2**20})  # 1 MiB: a long prompt, still fine
    path.write_text(long_prompt + "\n")
    assert len(read_prompts(path)[0].text) == 2**20
    path.write_bytes(b"a" * (16 * 2**20 + 1))
    with pytest.raises(InvalidInputError, match=r"huge.jsonl:1: the line is longer than 16 MiB"):
        read_prompts(path)


def _torch_file(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


MALFORMED_PROMPTS = [
    (b'{"prompt": "caf\xe9"}\n', r"p.jsonl:1: not UTF-8 text \(byte 0xe9 at offset 15\)"),
    ('{"prompt": "x"}\n'.encode("utf-16"), r"not UTF-8 text \(byte 0xff at offset 0\)"),
    (b"PAR1\x15\x00\x15\x8c\x01\x15\x8c\x01,\x15\x04", r"not UTF-8 text \(byte 0x8c at offset 7\)"),
    (b'{"prompt": "ok"}\n{"prompt": 5}\n', r"p.jsonl:2: 'prompt' should be a string, but is 5"),
    (b'{"prompt": "ok", "id": [1]}\n', r"'id' should be a string .* or an integer, but is \[1\]"),
    (b'{"prompt": "ok", "id": true}\n', r"'id' should be a string"),
    (b'{"prompt": "ok", "id": "a\\nb"}\n', r"'id' should be a string \(one non-empty line\)"),
    (b'{"prefix": {"messages": ["hi"]}}\n', r"'prefix' should be an object whose 'messages'"),
    (b'{"prefix": {"messages": {"role": "user"}}}\n', r"'messages' is a list of objects"),
    (b'{"prefix": {"messages": [{"role": "user", "content": [1]}]}}\n', r"\[0\]: 'content'"),
    (b'[{"prompt": "x"}]\n', r"p.jsonl:1: should be a JSON object"),
    (b'{"prompt": "\\ud800"}\n', r"p.jsonl:1: holds a lone surrogate escape"),
    (b"[" * 100_000, r"p.jsonl:1: not valid JSON \(nested too deeply\)"),
    (b'{"prompt": "x", "id": ' + b"9" * 5000 + b"}", r"a number with too many digits"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED_PROMPTS)
def test_malformed_prompt_files_get_clear_messages(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(data)
    with pytest.raises(InvalidInputError, match=message):
        read_prompts(path)


def test_byte_order_mark_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "one"}\r\n{"prompt": "two"}\r\n')
    assert [p.text for p in read_prompts(path)] == ["one", "two"]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256))),
            "is not a torch archive",
        ),
        (lambda p: p.write_bytes(b""), "is not a torch archive"),
        (
            lambda p: p.write_bytes(torch_bytes({"ids": ["a"], "emb": torch.ones(1, 2)})[:200]),
            "is a truncated or corrupted torch archive",
        ),
        (lambda p: p.write_bytes(pickle.dumps({"ids": ["a"]})), "refuses to unpickle"),
        (lambda p: _torch_file(p, {"ids": ["a"], "emb": Payload()}), "refuses to unpickle"),
        (lambda p: _torch_file(p, [1, 2]), "should hold a dict with 'ids' and 'emb'"),
        (
            lambda p: _torch_file(p, {"ids": "ab", "emb": torch.ones(2, 2)}),
            "'ids' should be a list",
        ),
        (lambda p: _torch_file(p, {"ids": [1.5], "emb": torch.ones(1, 2)}), r"ids\[0\] should be"),
        (lambda p: _torch_file(p, {"ids": [None], "emb": torch.ones(1, 2)}), r"but is null"),
        (lambda p: _torch_file(p, {"ids": ["a"], "emb": [[1.0]]}), "'emb' should be a tensor"),
        (lambda p: _torch_file(p, {"ids": ["a"], "emb": torch.ones(1)}), "should be 2-D"),
        (lambda p: _torch_file(p, {"ids": [], "emb": torch.ones(0, 2)}), r"with N, D >= 1"),
        (
            lambda p: _torch_file(p, {"ids": ["a"], "emb": torch.ones(1, 2, dtype=torch.long)}),
            "should be float16, float32 or float64",
        ),
        (
            lambda p: _torch_file(p, {"ids": ["a", "b"], "emb": torch.eye(2).to_sparse()}),
            "should be float16",
        ),
        (
            lambda p: _torch_file(p, {"ids": ["a"], "emb": torch.ones(1, 2), "embedder": "st"}),
            "'embedder' should be an object",
        ),
    ],
)
def test_malformed_pt_files_get_clear_messages(tmp_path: Path, make: Any, message: str) -> None:
    path = tmp_path / "e.pt"
    make(path)
    with pytest.raises(InvalidInputError, match=message):
        load_embeddings(path)


@pytest.mark.parametrize(
    ("matrix", "side", "message"),
    [
        (npy_bytes(np.ones((2, 2), np.float32))[:-3], b'{"ids": ["a", "b"]}', "is truncated"),
        (b"\x93NUMPY garbage", b'{"ids": ["a"]}', "is truncated or not a .npy array"),
        (b"PK\x03\x04" + bytes(40), b'{"ids": ["a"]}', "is truncated or not a .npy array"),
        (npy_bytes(np.array([[1, None]], dtype=object)), b'{"ids": ["a"]}', "Python objects"),
        (npy_bytes(np.ones(3, np.float32)), b'{"ids": ["a", "b", "c"]}', "should be 2-D"),
        (npy_bytes(np.ones((1, 2), ">f4")), b'{"ids": ["a"]}', "native byte order"),
        (npy_bytes(np.ones((1, 2), np.float32)), b"{not json", r"in.ids.json: not valid JSON"),
        (npy_bytes(np.ones((1, 2), np.float32)), b"\xff\xfe{", r"in.ids.json: not UTF-8 text"),
        (npy_bytes(np.ones((1, 2), np.float32)), b'{"embedder": {}}', "should hold a JSON object"),
        (npy_bytes(np.ones((1, 2), np.float32)), b'["a"]', "should hold a JSON object with 'ids'"),
        (npy_bytes(np.ones((1, 2), np.float32)), b'{"ids": {"a": 1}}', "'ids' should be a list"),
        (npy_bytes(np.ones((2, 2), np.float32)), b'{"ids": ["a"]}', "1 ids and 2 rows"),
    ],
)
def test_malformed_npy_files_get_clear_messages(
    tmp_path: Path, matrix: bytes, side: bytes, message: str
) -> None:
    path = tmp_path / "in.npy"
    path.write_bytes(matrix)
    (tmp_path / "in.ids.json").write_bytes(side)
    with pytest.raises(InvalidInputError, match=message):
        load_embeddings(path)


# --- the command line -------------------------------------------------------------------


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Valid inputs for the arguments that are not being fuzzed."""
    folder = tmp_path_factory.mktemp("good")
    prompts = folder / "prompts.jsonl"
    prompts.write_bytes(GOOD_JSONL)
    emb = folder / "emb.pt"
    texts = [record["prompt"] for record in GOOD_PROMPTS]
    embeddings = HashingEmbedder().embed(texts)
    save_embeddings(emb, [r["id"] for r in GOOD_PROMPTS], embeddings, embedder={"spec": "hashing"})
    return {"prompts": prompts, "emb": emb}


# Each command with the file being fuzzed ({F}, of the kind named second) and its outputs.
COMMANDS: dict[str, tuple[list[str], str]] = {
    "prompts": (["prompts", "--data", "{F}", "--out", "{O}/out.jsonl", "--dedupe"], "jsonl"),
    "embed": (["embed", "--data", "{F}", "--out", "{O}/out.npy", "--embedder", "hashing"], "jsonl"),
    "weights": (["weights", "--emb", "{F}", "--out", "{O}/w.pt", "--k", "2"], "emb"),
    "sample --emb": (["sample", "--emb", "{F}", "--budget", "2", "--out", "{O}/ids.txt"], "emb"),
    "sample --weights": (
        ["sample", "--weights", "{F}", "--budget", "2", "--out", "{O}/ids.txt"],
        "weights",
    ),
    "neighbors --query": (
        ["neighbors", "--emb", "{F}", "--query", "sort a list", "-k", "2"],
        "emb",
    ),
    "neighbors --id": (["neighbors", "--emb", "{F}", "--id", "r0"], "emb"),
    "neighbors --data": (
        ["neighbors", "--emb", "{emb}", "--data", "{F}", "--id", "q0", "--field", "text"],
        "jsonl",
    ),
    "viz --emb": (["viz", "--emb", "{F}", "--out", "{O}/v.html", "--k", "2"], "emb"),
    "viz --data": (
        [
            *("viz", "--emb", "{emb}", "--data", "{F}", "--label", "src"),
            *("--out", "{O}/v.html", "--json", "{O}/v.json", "--k", "2"),
        ],
        "jsonl",
    ),
    "diversity": (["diversity", "--data", "{F}", "--json", "{O}/d.json"], "jsonl"),
    "diversity --compare": (
        ["diversity", "--data", "{prompts}", "--compare", "{F}", "--embedder", "none"],
        "jsonl",
    ),
    "prompts --data parquet": (["prompts", "--data", "{F}", "--out", "{O}/out.jsonl"], "parquet"),
    "embed --data parquet": (["embed", "--data", "{F}", "--out", "{O}/out.pt"], "parquet"),
    "weights --write-column": (
        [
            *("weights", "--emb", "{emb}", "--data", "{F}", "--out", "{O}/w.pt", "--k", "2"),
            *("--write-column", "{O}/out.parquet"),
        ],
        "parquet",
    ),
    "weights --rewards": (
        [*("weights", "--emb", "{emb}", "--rewards", "{F}", "--out", "{O}/w.pt", "--k", "2")],
        "rewards",
    ),
}
EXAMPLES = {"viz --emb": 40, "viz --data": 40, "weights --write-column": 60}


def check_output(path: Path, argv: list[str]) -> None:
    """A complete output: every format parses to the end."""
    if path.suffix == ".jsonl":
        assert all(json.loads(line) for line in path.read_text("utf-8").splitlines())
    elif path.suffix == ".json":
        json.loads(path.read_text("utf-8"))
    elif path.suffix == ".txt":
        assert len(path.read_text("utf-8").splitlines()) == int(argv[argv.index("--budget") + 1])
    elif path.suffix == ".html":
        assert path.read_text("utf-8").rstrip().endswith("</html>")
    elif path.name == "w.pt":
        load_weights(path)
    elif path.suffix == ".parquet":  # each row holds its weight, matched by id
        assert pq.read_table(path).schema.field("katdensity_weight").type == pa.float64()
        stored = load_weights(path.parent / "w.pt")
        weight_of = dict(zip(stored.ids, stored.weights.tolist(), strict=True))
        assert {p.id: p.record["katdensity_weight"] for p in read_prompts(path)} == weight_of
    else:
        load_embeddings(path)


def run_cli(
    argv: list[str], folder: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run `katdensity` in-process; check the exit contract whatever the input."""
    outputs = [Path(a) for a in argv if a.startswith(str(folder)) and "/in." not in a]
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    assert status in (0, 2)
    assert "Traceback" not in out + err
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")], "temporary files"
    if status == 2:
        assert err.count("\n") == 1 and err.startswith("katdensity: error: "), err
        assert not caught, [str(w.message) for w in caught]  # a warning would be a 2nd line
        assert not [p for p in outputs if p.exists()], "no output on failure"
    else:
        for path in outputs:
            check_output(path, argv)
    return status, out, err


def strategy_for(kind: str) -> st.SearchStrategy[Any]:
    if kind == "jsonl":
        return jsonl_files.map(lambda data: (".jsonl", data, None))
    if kind == "weights":
        return pt_files(("ids", "weights")).map(lambda pt: (".pt", pt, None))
    if kind == "parquet":
        return parquet_files.map(lambda data: (".parquet", data, None))
    if kind == "rewards":
        return reward_files.map(lambda data: (".jsonl", data, None))
    return embeddings_files


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_takes_any_bytes(
    command: str,
    good: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    template, kind = COMMANDS[command]
    statuses: Counter[int] = Counter()

    @fuzz(EXAMPLES.get(command, 100))
    @given(drawn=strategy_for(kind))
    def check(drawn: tuple[str, bytes, bytes | None]) -> None:
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        fuzzed = write_embeddings(folder, drawn)
        argv = [
            a.format(F=fuzzed, O=folder, emb=good["emb"], prompts=good["prompts"]) for a in template
        ]
        with small_line_limit():
            statuses[run_cli(argv, folder, capsys)[0]] += 1

    check()
    assert statuses[0] > 0 and statuses[2] > 0, statuses  # both paths were exercised


@pytest.mark.parametrize(
    ("command", "data"),
    [
        ("embed", b"PAR1" + bytes(range(256)) * 4),
        ("weights", pickle.dumps({"ids": ["a"], "emb": Payload()}, protocol=4)),
        ("sample --weights", torch_bytes({"ids": ["a"], "weights": torch.ones(1)})[:-30]),
        ("diversity", '{"text": "naïve"}\n{"text": "café"}\n'.encode("latin-1")),
        ("prompts --data parquet", b"PAR1" + bytes(range(256)) + b"PAR1"),
    ],
)
def test_subprocess_prints_one_line_and_exits_2(
    command: str, data: bytes, good: dict[str, Path], tmp_path: Path
) -> None:
    template, kind = COMMANDS[command]
    fuzzed = tmp_path / {"jsonl": "in.jsonl", "parquet": "in.parquet"}.get(kind, "in.pt")
    fuzzed.write_bytes(data)
    argv = [
        a.format(F=fuzzed, O=tmp_path, emb=good["emb"], prompts=good["prompts"]) for a in template
    ]
    result = subprocess.run(
        [sys.executable, "-m", "katdensity", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("katdensity: error: ")
    assert str(fuzzed) in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [fuzzed.name]
