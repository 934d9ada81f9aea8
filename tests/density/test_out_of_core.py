"""Memory-mapped embeddings are streamed in panels and give the in-memory result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from katdensity import ExactKNNDensity, exact_knn
from katdensity.errors import InvalidInputError


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    rows = torch.randn(700, 20, generator=generator) + 3.0  # anisotropic: "auto" centres
    rows = torch.cat([rows, rows[:25], rows[:5]])  # copies, found across panels
    path = tmp_path / "emb.npy"
    np.save(path, rows.numpy())
    return path, rows


# 4 KiB of tiles and 20 KiB panels (128 rows of 20 floats): the 730 rows span six panels.
SMALL = {"memory_budget_bytes": 20 * 1024}


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "ip"])
def test_streamed_estimate_equals_in_memory(stored: tuple[Path, torch.Tensor], metric: str) -> None:
    path, rows = stored
    if metric == "ip":
        rows = torch.nn.functional.normalize(rows, dim=1)
        np.save(path, rows.numpy())
    estimator = ExactKNNDensity(k=6, metric=metric, **SMALL)  # type: ignore[arg-type]
    expected = estimator.estimate(rows)
    for given in (path, str(path), np.load(path, mmap_mode="r")):
        result = estimator.estimate(given)  # type: ignore[arg-type]
        assert torch.equal(result.neighbors.indices, expected.neighbors.indices)
        torch.testing.assert_close(result.log_density, expected.log_density, rtol=1e-5, atol=1e-5)
        assert torch.equal(result.multiplicity, expected.multiplicity)
    assert int(expected.multiplicity.max()) == 3


def test_exact_knn_streams_a_memmap_in_panels(stored: tuple[Path, torch.Tensor]) -> None:
    path, rows = stored
    rows = rows[:700]
    np.save(path, rows.numpy())
    streamed = exact_knn(np.load(path, mmap_mode="r"), 5, **SMALL)
    whole = exact_knn(rows, 5)
    assert torch.equal(streamed.indices, whole.indices)
    torch.testing.assert_close(streamed.distances, whole.distances)


def test_bad_files_are_named(tmp_path: Path) -> None:
    bad = np.ones((50, 4), dtype=np.float32)
    bad[17, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(InvalidInputError, match=r"NaN or inf \(row 17\)"):
        ExactKNNDensity(k=3).estimate(tmp_path / "bad.npy")
    with pytest.raises(InvalidInputError, match=r"existing \.npy file"):
        ExactKNNDensity(k=3).estimate(tmp_path / "missing.npy")


def test_copies_are_the_rows_the_search_sees(tmp_path: Path) -> None:
    rows = np.random.default_rng(0).normal(size=(60, 8))
    rows[50] = rows[3] + 1e-12  # differs in float64, equal once rounded to float32
    rows[51] = rows[7]
    rows[7, 0], rows[51, 0] = 0.0, -0.0  # the two zeros are equal floats
    np.save(tmp_path / "f64.npy", rows)
    estimator = ExactKNNDensity(k=3, center=False)
    streamed = estimator.estimate(tmp_path / "f64.npy")
    in_memory = estimator.estimate(rows)
    assert streamed.multiplicity[[3, 50, 7, 51]].tolist() == [2, 2, 2, 2]
    assert torch.equal(streamed.multiplicity, in_memory.multiplicity)
    assert torch.equal(streamed.neighbors.indices, in_memory.neighbors.indices)


def test_rows_sharing_a_hash_are_regrouped_by_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = np.random.default_rng(1).normal(size=(40, 5)).astype(np.float32)
    rows[30] = rows[2]
    np.save(tmp_path / "emb.npy", rows)
    expected = ExactKNNDensity(k=3).estimate(rows)
    import katdensity.density.estimator as estimator_module

    # Every row collides: only the exact regrouping can tell them apart.
    monkeypatch.setattr(estimator_module, "fingerprint", lambda r: torch.zeros(r.shape[0]))
    result = ExactKNNDensity(k=3).estimate(tmp_path / "emb.npy")
    assert torch.equal(result.multiplicity, expected.multiplicity)
    assert torch.equal(result.neighbors.indices, expected.neighbors.indices)


def test_a_file_read_whole_is_read_by_blocks_with_progress(
    stored: tuple[Path, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The approximate search needs the rows in memory: a file is read into one tensor block
    # by block (no temporary as large as the file) and the result is the in-memory one.
    import katdensity.knn._rows
    from katdensity import ApproxKNNDensity

    path, rows = stored
    monkeypatch.setattr(katdensity.knn._rows, "_READ_BYTES", 100 * 20 * 4)  # 100 rows a block
    estimator = ApproxKNNDensity(k=6, seed=0, progress=True)
    result = estimator.estimate(path)
    err = capsys.readouterr().err
    assert "checking rows: 100%" in err and "reading rows: 100%" in err and "7/7" in err
    expected = ApproxKNNDensity(k=6, seed=0, progress=False).estimate(rows)
    assert torch.equal(result.neighbors.indices, expected.neighbors.indices)
    torch.testing.assert_close(result.log_density, expected.log_density, rtol=1e-5, atol=1e-5)
