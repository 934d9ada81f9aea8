from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import katdensity
from katdensity.errors import InvalidInputError, KatDensityError, MissingDependencyError


def test_public_surface_is_sorted_and_importable() -> None:
    assert katdensity.__all__ == sorted(katdensity.__all__)
    for name in katdensity.__all__:
        assert hasattr(katdensity, name), name


def test_version_matches_distribution_metadata() -> None:
    from importlib.metadata import version

    assert katdensity.__version__ == version("katdensity")


def test_package_ships_py_typed() -> None:
    assert (Path(katdensity.__file__).parent / "py.typed").is_file()


def test_error_hierarchy() -> None:
    assert issubclass(InvalidInputError, KatDensityError)
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(MissingDependencyError, KatDensityError)
    assert issubclass(MissingDependencyError, ImportError)


@pytest.mark.parametrize(
    "heavy", ["pynndescent", "numba", "sklearn", "faiss", "scipy", "pyarrow", "datasets"]
)
def test_import_is_lazy(heavy: str) -> None:
    code = f"import sys, katdensity; sys.exit(1 if {heavy!r} in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0, (
        f"import katdensity imported {heavy}"
    )
