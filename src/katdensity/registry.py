"""Find embedders, estimators and weightings by name: built-ins and plug-ins.

Third-party packages register their own under the entry-point groups
`katdensity.embedders`, `katdensity.estimators` and `katdensity.weightings`, e.g. in their
`pyproject.toml`:

    [project.entry-points."katdensity.embedders"]
    my-encoder = "my_package.embedding:MyEmbedder"

The entry point must name a class or factory; `get_embedder("my-encoder", **options)` calls
it with the options. Entry points are read once per process and loaded only when asked
for: a broken plug-in never affects the others or katdensity itself; asking for it warns
and raises `InvalidInputError` with the reason.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, TypeVar

from katdensity.density.result import DensityEstimator
from katdensity.embedders.base import Embedder
from katdensity.errors import InvalidInputError
from katdensity.weights import Weighting

__all__ = ["available", "get_embedder", "get_estimator", "get_weighting"]

T = TypeVar("T")

# Built-ins as dotted paths, imported on first use (their optional dependencies with them).
_BUILTINS: dict[str, dict[str, str]] = {
    "katdensity.embedders": {
        "hashing": "katdensity.embedders.hashing:HashingEmbedder",
        "sentence-transformers": "katdensity.embedders.loaders:sentence_transformer_embedder",
        "hf-hidden": "katdensity.embedders.loaders:hf_hidden_state_embedder",
        "hf-logits": "katdensity.embedders.loaders:hf_logit_embedder",
    },
    "katdensity.estimators": {
        "exact": "katdensity.density.exact:ExactKNNDensity",
        "approx": "katdensity.density.approx:ApproxKNNDensity",
        "auto": "katdensity.density.auto:AutoKNNDensity",
    },
    "katdensity.weightings": {
        "inverse-density": "katdensity.weights:InverseDensityWeighting",
    },
}
# Short forms accepted in "name:argument" specs, e.g. "st:/models/minilm".
_ALIASES = {"st": "sentence-transformers"}


@functools.cache
def _plugins(group: str) -> dict[str, Any]:
    """Entry points of `group`, read once; a name already built in is not overridden."""
    found: dict[str, Any] = {}
    for entry in entry_points(group=group):
        if entry.name in _BUILTINS[group]:
            warnings.warn(
                f"plug-in {entry.name!r} ({entry.value}) shadows a built-in and is ignored",
                stacklevel=3,
            )
            continue
        found[entry.name] = entry
    return found


def available(group: str) -> list[str]:
    """Names usable with the `get_*` function of `group` (e.g. `"katdensity.embedders"`)."""
    if group not in _BUILTINS:
        raise InvalidInputError(f"group should be one of {sorted(_BUILTINS)}, but got {group!r}")
    return sorted({*_BUILTINS[group], *_plugins(group)})


def _factory(group: str, name: str) -> Callable[..., Any]:
    name = _ALIASES.get(name, name)
    plugins = _plugins(group)
    if name in _BUILTINS[group]:
        module, _, attribute = _BUILTINS[group][name].partition(":")
        return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]
    entry = plugins.get(name)
    if entry is not None:
        try:
            return entry.load()  # type: ignore[no-any-return]
        except Exception as error:  # any failure inside third-party code
            message = f"plug-in {name!r} ({entry.value}) failed to load: {error}"
            warnings.warn(message, stacklevel=4)
            raise InvalidInputError(message) from error
    raise InvalidInputError(
        f"{group.rsplit('.', 1)[1][:-1]} should be one of {available(group)} or an object, "
        f"but got {name!r}"
    )


def _get(group: str, spec: Any, protocol: type[T], kwargs: dict[str, Any]) -> T:
    if isinstance(spec, str):
        name, _, argument = spec.partition(":")
        if argument:
            kwargs = {"model": argument, **kwargs}
        factory = _factory(group, name)
        _check_options(factory, f"{group.rsplit('.', 1)[1][:-1]} {spec!r}", kwargs)
        built = factory(**kwargs)
    else:
        if kwargs:
            raise InvalidInputError(
                f"options {sorted(kwargs)} apply only when the {protocol.__name__} is given "
                "by name; configure the object itself instead"
            )
        built = spec
    if not isinstance(built, protocol):
        raise InvalidInputError(
            f"{spec!r} should give a {protocol.__name__}, but gave a {type(built).__name__}"
        )
    return built


def _check_options(factory: Callable[..., Any], what: str, options: dict[str, Any]) -> None:
    """Raise `InvalidInputError` if `factory`'s signature refuses `options` by name.

    Only the names are checked, never by calling: an error raised while building is the
    factory's own and reaches the caller unchanged. A `**kwargs` parameter takes any name.
    """
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some compiled callables)
        return
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes = {p.name for p in parameters if p.kind in named}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        takes |= set(options)
    unknown = sorted(set(options) - takes)
    if unknown:
        raise InvalidInputError(
            f"{what} does not take the options {unknown}; it takes {sorted(takes) or 'none'}"
        )
    missing = sorted(
        p.name
        for p in parameters
        if p.kind in named and p.default is inspect.Parameter.empty and p.name not in options
    )
    if missing:
        raise InvalidInputError(f"{what} needs the options {missing}, but got {sorted(options)}")


def get_embedder(spec: str | Embedder, **kwargs: Any) -> Embedder:
    """An [`Embedder`][katdensity.Embedder] from a registered name or an object.

    Args:
        spec: an embedder object (returned as is), a registered name (`"hashing"`,
            `"sentence-transformers"`, `"hf-hidden"`, `"hf-logits"`, or a plug-in's), or
            `"name:model"`, short for `get_embedder(name, model=model)`; `"st"` abbreviates
            `"sentence-transformers"`.
        **kwargs: options for the named embedder.

    Raises:
        InvalidInputError: an unknown name (the message lists the available ones), or
            options that the named embedder's signature does not take or requires and lacks;
            an error raised while it is built passes unchanged.
        MissingDependencyError: the embedder's optional dependency is not installed.

    Example:
        >>> from katdensity import get_embedder
        >>> get_embedder("hashing", dim=64).dim
        64
    """
    return _get("katdensity.embedders", spec, Embedder, kwargs)  # type: ignore[type-abstract]


def get_estimator(spec: str | DensityEstimator, **kwargs: Any) -> DensityEstimator:
    """A [`DensityEstimator`][katdensity.DensityEstimator] from a registered name (`"exact"`,
    `"approx"`, `"auto"`, or a plug-in's) or an object; see
    [`get_embedder`][katdensity.get_embedder]."""
    return _get("katdensity.estimators", spec, DensityEstimator, kwargs)  # type: ignore[type-abstract]


def get_weighting(spec: str | Weighting, **kwargs: Any) -> Weighting:
    """A [`Weighting`][katdensity.Weighting] from a registered name (`"inverse-density"`, or a
    plug-in's) or an object; see [`get_embedder`][katdensity.get_embedder]."""
    return _get("katdensity.weightings", spec, Weighting, kwargs)  # type: ignore[type-abstract]
