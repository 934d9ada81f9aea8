"""Optional dependencies, imported on first use with one error naming what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from katdensity._text import shorten
from katdensity.errors import MissingDependencyError

__all__ = ["require"]

# The import error's own text, which names the module that really failed, kept to one line.
_REASON_CHARS = 200


def require(
    module: str, *, extra: str | None, purpose: str, package: str | None = None
) -> ModuleType:
    """Import `module`, or raise `MissingDependencyError` saying what to install.

    Args:
        module: the dotted module to import, e.g. `"pyarrow.parquet"`.
        extra: the katdensity extra that installs it (`"viz"` gives
            `pip install "katdensity[viz]"`); `None` for a core dependency, whose fix is
            `pip install "katdensity"`.
        purpose: what needs it, as the start of a sentence ("the HTML view").
        package: the distribution to name, when it differs from the top-level module
            (`"umap-learn"` for `umap`).

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: the import failed. The message names `purpose`, the
            package, the import error, the extra and the `pip install` line.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        name = package or module.split(".")[0]
        reason = shorten(str(error), _REASON_CHARS)
        via = "katdensity's dependencies" if extra is None else f"the {extra!r} extra"
        target = "katdensity" if extra is None else f"katdensity[{extra}]"
        raise MissingDependencyError(
            f"{purpose} needs {name}, which could not be imported ({reason}); install it "
            f'with {via}: pip install "{target}"'
        ) from error
