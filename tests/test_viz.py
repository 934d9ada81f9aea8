from __future__ import annotations

import html
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from katdensity import InvalidInputError, MissingDependencyError, Neighbors, exact_knn, viz
from katdensity._viz_page import hover_texts

HAS_UMAP = importlib.util.find_spec("umap") is not None
needs_plotly = pytest.mark.skipif(
    importlib.util.find_spec("plotly") is None, reason="plotly (the viz extra) is not installed"
)
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None
)


def page_figures(page: str) -> dict[str, dict[str, Any]]:
    """The figures a browser draws: each `Plotly.newPlot(id, data, layout)` call's JSON, decoded.

    plotly may escape any non-ASCII character (`\\u00d7` for `×`), so the raw page text
    says nothing about what a reader sees; the decoded JSON does.
    """
    decoder = json.JSONDecoder()
    figures = {}
    for call in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', page):
        data, end = decoder.raw_decode(page, call.end())
        layout, _ = decoder.raw_decode(page, page.index("{", end))
        figures[call.group(1)] = {"data": data, "layout": layout}
    return figures


def layout_texts(layout: dict[str, Any]) -> list[str]:
    """The axis titles and annotations (subplot titles) a reader sees on a figure."""
    titles = [
        value["title"]["text"]
        for key, value in layout.items()
        if key.startswith(("xaxis", "yaxis")) and "text" in value.get("title", {})
    ]
    return titles + [annotation["text"] for annotation in layout.get("annotations", [])]


def structured(n: int = 400, dim: int = 12, seed: int = 0) -> np.ndarray:
    """Rows on a 3D subspace with standard deviations 3, 2, 1, plus small noise."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, 3)))[0].T  # (3, D) orthonormal rows
    latent = rng.normal(size=(n, 3)) * np.array([3.0, 2.0, 1.0])
    rows: np.ndarray = latent @ basis + 5.0 + 0.01 * rng.normal(size=(n, dim))
    return rows


def oracle_pca(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centred = rows - rows.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    return u[:, :3] * s[:3], s[:3] ** 2 / (s**2).sum()


def assert_equal_up_to_sign(actual: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    for column in range(expected.shape[1]):
        sign = np.sign(actual[:, column] @ expected[:, column])
        np.testing.assert_allclose(
            sign * actual[:, column], expected[:, column], rtol=rtol, atol=rtol
        )


@pytest.fixture(scope="module")
def prompt_set() -> dict[str, Any]:
    rows = structured(n=120, dim=8, seed=1)
    embeddings = torch.from_numpy(rows).float()
    neighbors = exact_knn(embeddings, 5, metric="euclidean")
    log_density = -torch.log(neighbors.distances[:, -1].double())
    return {
        "embeddings": embeddings,
        "log_density": log_density,
        "neighbors": neighbors,
        "texts": [f"prompt number {i} about topic {i % 3}" for i in range(120)],
        "ids": [f"id{i}" for i in range(120)],
        "labels": [["math", "code", "chat"][i % 3] for i in range(120)],
        "weights": torch.softmax(-log_density, dim=0),
    }


def test_import_katdensity_imports_no_plotting_library() -> None:
    code = (
        "import sys, katdensity, katdensity.viz; "
        "sys.exit(any(m in sys.modules for m in ('plotly', 'umap')))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_pca_matches_svd_oracle_and_finds_the_3d_structure() -> None:
    rows = structured()
    expected, expected_ratio = oracle_pca(rows)
    coords = viz.project(rows, method="pca")
    assert coords.shape == (400, 3) and coords.dtype == torch.float64
    # The input goes through float32, so agreement is to float32 precision.
    assert_equal_up_to_sign(coords.numpy(), expected, rtol=1e-4)
    total = ((rows - rows.mean(axis=0)) ** 2).sum()
    np.testing.assert_allclose((coords.numpy() ** 2).sum(axis=0) / total, expected_ratio, 1e-4)
    # Standard deviations 3, 2, 1: variance shares 9/14, 4/14, 1/14, noise aside.
    np.testing.assert_allclose(expected_ratio, np.array([9, 4, 1]) / 14, atol=0.05)
    assert expected_ratio.sum() > 0.999


def test_randomized_pca_matches_the_exact_one(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = structured(n=300, dim=40, seed=2)
    exact = viz.project(rows)
    monkeypatch.setattr(viz, "_EXACT_PCA_MAX_DIM", 8)
    randomized = viz.project(rows, seed=5)
    np.testing.assert_allclose(randomized.numpy(), exact.numpy(), rtol=1e-4, atol=1e-4)


def test_pca_signs_are_fixed_and_low_rank_is_padded() -> None:
    rows = structured(n=200, dim=6, seed=3)
    coords = viz.project(rows)
    torch.testing.assert_close(viz.project(rows), coords, rtol=0, atol=0)
    # Negating the data negates the coordinates: the sign rule does not depend on the SVD.
    torch.testing.assert_close(viz.project(-rows), -coords, rtol=1e-5, atol=1e-5)
    flat = viz.project(np.random.default_rng(0).normal(size=(50, 2)))
    assert flat.shape == (50, 3) and bool((flat[:, 2] == 0).all())


@pytest.mark.slow  # numba compiles UMAP on first use: ~30-40 s on two cores
@pytest.mark.skipif(not HAS_UMAP, reason="umap-learn is not installed")
def test_umap_projection_is_seeded() -> None:
    rows = structured(n=60, dim=8, seed=4)
    first = viz.project(rows, method="umap", seed=3)
    assert first.shape == (60, 3) and first.dtype == torch.float64
    torch.testing.assert_close(viz.project(rows, method="umap", seed=3), first)


def test_umap_without_umap_learn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "katdensity\[viz\]"'):
        viz.project(structured(n=20), method="umap")


def test_marker_sizes_fall_with_density() -> None:
    generator = torch.Generator().manual_seed(0)
    log_density = torch.randint(0, 30, (500,), generator=generator).double()  # with ties
    sizes = viz.marker_sizes(log_density, size_range=(2.0, 10.0))
    denser = log_density[:, None] > log_density[None, :]
    assert bool((sizes[:, None] < sizes[None, :])[denser].all())
    same = log_density[:, None] == log_density[None, :]
    assert bool((sizes[:, None] == sizes[None, :])[same].all())
    # Oracle on ranks: the k-th lowest distinct density gets the k-th largest size.
    distinct = sorted(set(log_density.tolist()))
    expected = [10.0 - 8.0 * distinct.index(v) / (len(distinct) - 1) for v in log_density.tolist()]
    torch.testing.assert_close(sizes, torch.tensor(expected, dtype=torch.float64))
    assert viz.marker_sizes(torch.zeros(4)).tolist() == [7.5] * 4
    with pytest.raises(InvalidInputError, match="size_range"):
        viz.marker_sizes(log_density, size_range=(5.0, 1.0))


def test_json_has_the_points_shape_and_round_trips(
    prompt_set: dict[str, Any], tmp_path: Path
) -> None:
    points = viz.view_points(**prompt_set)
    written = viz.write_view_json(tmp_path / "view.json", **prompt_set)
    document = json.loads((tmp_path / "view.json").read_text(encoding="utf-8"))
    assert list(document) == ["points"]
    assert document["points"] == written == points
    assert len(points) == 120
    first = points[0]
    assert list(first)[:6] == ["x", "y", "z", "size", "color", "prompt"]
    assert first["prompt"] == "prompt number 0 about topic 0"
    assert first["color"] == "math" and first["id"] == "id0" and first["row"] == 0
    assert first["neighbors"] == prompt_set["neighbors"].indices[0, :3].tolist()
    assert first["log_density"] == float(prompt_set["log_density"][0])
    coords = viz.project(prompt_set["embeddings"])
    np.testing.assert_allclose([[p["x"], p["y"], p["z"]] for p in points], coords, atol=1e-6)

    bare = viz.view_points(prompt_set["embeddings"], log_density=prompt_set["log_density"])
    assert bare[5]["prompt"] == "#5" and bare[5]["color"] == bare[5]["log_density"]
    assert "neighbors" not in bare[5] and "weight" not in bare[5] and "id" not in bare[5]


def test_subsample_is_seeded_capped_and_in_order(prompt_set: dict[str, Any]) -> None:
    rows = [p["row"] for p in viz.view_points(**prompt_set, max_points=50, seed=1)]
    assert len(rows) == 50 and rows == sorted(rows) and len(set(rows)) == 50
    assert rows == [p["row"] for p in viz.view_points(**prompt_set, max_points=50, seed=1)]
    assert rows != [p["row"] for p in viz.view_points(**prompt_set, max_points=50, seed=2)]
    # Sizes are ranked over all prompts, not over the subsample.
    full = {p["row"]: p["size"] for p in viz.view_points(**prompt_set)}
    sizes = [p["size"] for p in viz.view_points(**prompt_set, max_points=50, seed=1)]
    assert sizes == [full[row] for row in rows]


@needs_plotly
def test_a_subsampled_page_says_so(prompt_set: dict[str, Any], tmp_path: Path) -> None:
    summary = viz.write_view(tmp_path / "v.html", **prompt_set, max_points=50, seed=1)
    assert (summary.n_points, summary.n_shown) == (120, 50)
    assert "50 of 120 prompts (random subsample, seed 1)" in summary.html.read_text()


def test_hover_shows_the_text_and_its_neighbours(prompt_set: dict[str, Any]) -> None:
    texts = list(prompt_set["texts"])
    texts[0] = "<script>alert(1)</script> " + "long " * 100
    view_arguments = {**prompt_set, "texts": texts}
    boxes = hover_texts(
        viz._prepare(**view_arguments, modes=None, method="pca", max_points=200, seed=0)
    )
    neighbours = prompt_set["neighbors"].indices[0, :3].tolist()
    assert boxes[0].startswith("<b>id0</b> · math<br>log-density ")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in boxes[0] and "<script>" not in boxes[0]
    assert "…" in boxes[0] and boxes[0].count("long") < 100  # cut to 300 characters
    for rank, other in enumerate(neighbours, start=1):
        assert f"{rank}. {texts[other]}" in boxes[0]


@needs_plotly
def test_html_is_self_contained_with_both_figures(
    prompt_set: dict[str, Any], tmp_path: Path
) -> None:
    summary = viz.write_view(tmp_path / "view.html", **prompt_set, json_path=tmp_path / "v.json")
    page = summary.html.read_text(encoding="utf-8")
    assert "plotly.js v" in page and len(page) > 1_000_000  # the library itself, inline
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link[^>]*\bhref=\"?https?:", page)
    assert 'id="katdensity-scatter"' in page and 'id="katdensity-histogram"' in page
    figures = page_figures(page)
    assert sorted(figures) == ["katdensity-histogram", "katdensity-scatter"]
    assert "N × weight (1 = uniform)" in layout_texts(figures["katdensity-histogram"]["layout"])
    assert summary.json is not None and summary.json.is_file()
    assert summary.method == "pca" and summary.explained_variance is not None
    _, expected_ratio = oracle_pca(prompt_set["embeddings"].double().numpy())
    np.testing.assert_allclose(summary.explained_variance, expected_ratio, rtol=1e-4)


def test_without_plotly_the_html_names_the_extra_but_json_works(
    prompt_set: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "katdensity\[viz\]"'):
        viz.write_view(tmp_path / "view.html", **prompt_set)
    assert list(tmp_path.iterdir()) == []
    viz.write_view_json(tmp_path / "view.json", **prompt_set)
    assert [p.name for p in tmp_path.iterdir()] == ["view.json"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"texts": ["a"] * 119},
            r"texts should have one entry per embedding row \(120\), but got 119",
        ),
        ({"labels": ["a"] * 121}, r"labels should have one entry .* \(120\), but got 121"),
        ({"ids": ["a"] * 3}, r"ids should have one entry .* but got 3"),
        ({"log_density": torch.zeros(10)}, r"log_density should have one entry .* but got 10"),
        ({"weights": torch.ones(7)}, r"weights should have one entry .* but got 7"),
        ({"texts": "one string"}, r"texts should be a sequence"),
        ({"embeddings": torch.zeros(1, 4), "log_density": torch.zeros(1)}, r"at least 2 row"),
        ({"method": "tsne"}, r"method should be one of 'pca', 'umap', but got method='tsne'"),
        ({"max_points": 0}, r"max_points should be an integer >= 1"),
    ],
)
def test_bad_input_names_the_argument(
    prompt_set: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    arguments = {**prompt_set, **change}
    if "embeddings" in change:
        arguments = {k: v for k, v in arguments.items() if k in ("embeddings", "log_density")}
    with pytest.raises(InvalidInputError, match=message):
        viz.view_points(**arguments)


def test_neighbors_of_another_set_are_refused(prompt_set: dict[str, Any]) -> None:
    other = Neighbors(torch.zeros(120, 2), torch.full((120, 2), 500), "cosine")
    with pytest.raises(InvalidInputError, match=r"neighbors.indices should be row numbers"):
        viz.view_points(**{**prompt_set, "neighbors": other})
    short = Neighbors(torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.int64), "cosine")
    with pytest.raises(InvalidInputError, match=r"neighbors should have one entry"):
        viz.view_points(**{**prompt_set, "neighbors": short})


@needs_plotly
def test_a_failed_write_leaves_no_file(
    prompt_set: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Path.write_text

    def fail_on_json(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if data.startswith('{"points"'):
            original(self, data[:100], *args, **kwargs)
            raise OSError("disk full")
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fail_on_json)
    with pytest.raises(OSError, match="disk full"):
        viz.write_view(tmp_path / "view.html", **prompt_set, json_path=tmp_path / "view.json")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InvalidInputError, match="json_path should differ from out"):
        viz.write_view(tmp_path / "v.html", **prompt_set, json_path=tmp_path / "v.html")


@needs_plotly
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary to render the page")
def test_the_page_draws_in_headless_chromium(prompt_set: dict[str, Any], tmp_path: Path) -> None:
    page = viz.write_view(tmp_path / "view.html", **prompt_set).html
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-unsafe-swiftshader",  # software WebGL for the 3D scene
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: the page must work offline
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    tags = re.findall(r"<div [^>]*data-katdensity-drawn=\"1\"[^>]*>", dom)
    drawn = [re.search(r'id="([^"]+)"', tag).group(1) for tag in tags]  # type: ignore[union-attr]
    assert sorted(drawn) == ["katdensity-histogram", "katdensity-scatter"]
    assert dom.count('class="main-svg"') >= 4  # two per figure
    bars = re.findall(r'<g class="point"><path d="M[^"]+"', dom)
    assert len(bars) >= 10  # the histogram's bars, drawn as SVG paths
    assert "N × weight (1 = uniform)" in html.unescape(dom)  # the axis title as drawn
    if 'class="no-webgl"' in dom:  # plotly's notice in place of the 3D scene
        pytest.skip("this Chromium has no WebGL: the histogram drew, the 3D scene could not")
    scene = re.search(r'<div id="scene"[^>]*>.*?</div>', dom, flags=re.S)
    assert scene is not None and re.search(r"<canvas width=\"\d+\"", scene.group(0))


@needs_plotly
def test_many_labels_share_a_legend_entry_and_no_labels_colour_by_density(
    prompt_set: dict[str, Any], tmp_path: Path
) -> None:
    labels = [f"source{i % 25}" for i in range(120)]
    labelled = viz.write_view(tmp_path / "a.html", **{**prompt_set, "labels": labels}).html
    assert "5 other labels (20)" in labelled.read_text(encoding="utf-8")
    bare = {"embeddings": prompt_set["embeddings"], "log_density": prompt_set["log_density"]}
    page = viz.write_view(tmp_path / "b.html", **bare).html.read_text(encoding="utf-8")
    figures = page_figures(page)
    markers = [trace["marker"] for trace in figures["katdensity-scatter"]["data"]]
    assert [m["colorbar"]["title"]["text"] for m in markers] == ["log-density"]
    assert not any("weight" in t for t in layout_texts(figures["katdensity-histogram"]["layout"]))


def test_hover_names_the_mode_of_a_repeated_prompt(prompt_set: dict[str, Any]) -> None:
    modes = torch.arange(120)
    modes[[3, 40, 77]] = 3  # rows 3, 40 and 77: one mode of three rows
    view = viz._prepare(**{**prompt_set, "modes": modes}, method="pca", max_points=200, seed=0)
    by_row = {point["row"]: point for point in view.points}
    assert (by_row[40]["mode"], by_row[40]["mode_rows"]) == (3, 3)
    assert by_row[5]["mode_rows"] == 1
    boxes = dict(zip([p["row"] for p in view.points], hover_texts(view), strict=True))
    assert " · mode 3 (3 rows)" in boxes[77] and " · mode " not in boxes[5]
    with pytest.raises(InvalidInputError, match=r"modes should hold one label per row \(120\)"):
        viz.view_points(**{**prompt_set, "modes": modes[:5]})
