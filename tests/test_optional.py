"""One message for every missing optional dependency: what needs it, the extra, the pip line."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from katdensity._optional import require
from katdensity.errors import MissingDependencyError


def test_a_present_module_is_returned() -> None:
    assert require("json", extra="viz", purpose="anything") is sys.modules["json"]


def test_a_missing_module_names_the_purpose_the_package_the_extra_and_the_pip_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)  # importing it raises ImportError
    with pytest.raises(MissingDependencyError) as caught:
        require("umap", extra="viz", purpose="the UMAP projection", package="umap-learn")
    message = str(caught.value)
    assert message.startswith("the UMAP projection needs umap-learn, which could not be imported")
    assert message.endswith("""install it with the 'viz' extra: pip install "katdensity[viz]\"""")
    assert "\n" not in message
    assert isinstance(caught.value.__cause__, ImportError)


def test_the_package_defaults_to_the_top_level_module() -> None:
    with pytest.raises(
        MissingDependencyError,
        match=r"^reading it needs katdensity_missing_x, which could not be imported "
        r"\(No module named 'katdensity_missing_x'\); .*pip install \"katdensity\[parquet\]\"$",
    ):
        require("katdensity_missing_x.sub", extra="parquet", purpose="reading it")


def test_a_core_dependency_names_katdensity_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynndescent", None)
    with pytest.raises(MissingDependencyError) as caught:
        require("pynndescent", extra=None, purpose="approximate kNN")
    assert re.search(r"katdensity's dependencies: pip install \"katdensity\"$", str(caught.value))


def test_every_builtin_check_uses_the_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    from katdensity import approx_knn
    from katdensity._tables import _datasets

    monkeypatch.setitem(sys.modules, "pynndescent", None)
    with pytest.raises(MissingDependencyError, match=r"^approximate kNN needs pynndescent"):
        approx_knn(torch.randn(10, 4), 2)
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingDependencyError, match=r"^reading saved datasets needs datasets"):
        _datasets()
