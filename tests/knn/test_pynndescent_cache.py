"""The disk cache of pynndescent's compiled kernels, across fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from katdensity.knn import _pynndescent_cache

# One approximate search in a fresh process: its graph's digest, whether the cache is on,
# and how nn_descent was obtained (compiled, or loaded from the disk cache).
_SCRIPT = """
import hashlib, json
import numpy as np, torch
from katdensity.knn.approx import approx_knn
from katdensity.knn import _pynndescent_cache
import pynndescent

points = torch.from_numpy(np.random.default_rng(0).standard_normal((3000, 16)).astype(np.float32))
found = approx_knn(points, 5, seed=0)
nn_descent = pynndescent.pynndescent_.nn_descent
print(json.dumps({
    "digest": hashlib.sha256(
        found.indices.numpy().tobytes() + found.distances.numpy().tobytes()
    ).hexdigest(),
    "enabled": _pynndescent_cache.enable_pynndescent_cache(),
    "hits": sum(nn_descent._cache_hits.values()),
    "misses": sum(nn_descent._cache_misses.values()),
}))
"""


def _run(cache_home: Path, **env: str) -> dict[str, object]:
    environment = {**os.environ, "XDG_CACHE_HOME": str(cache_home), **env}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_second_process_loads_nn_descent_and_finds_the_same_graph(tmp_path: Path) -> None:
    first = _run(tmp_path)
    second = _run(tmp_path)
    assert second["digest"] == first["digest"]
    if not _pynndescent_cache._supported():
        # Another numba or pynndescent: the cache stays off and pynndescent compiles.
        assert first["enabled"] is False and second["hits"] == 0
        return
    assert first["enabled"] is True and first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0
    assert any((tmp_path / "katdensity" / "numba").rglob("*.nbi"))


def test_the_environment_switch_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KATDENSITY_NUMBA_CACHE", "0")
    assert not _pynndescent_cache._supported()
