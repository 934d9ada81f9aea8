"""Exceptions raised by katdensity.

Every error the library raises on purpose derives from
[`KatDensityError`][katdensity.errors.KatDensityError], so callers can catch the library's
errors in one place while still catching them as the standard `ValueError` /
`ImportError` they also are.
"""

from __future__ import annotations

__all__ = ["InvalidInputError", "KatDensityError", "MissingDependencyError"]


class KatDensityError(Exception):
    """Base class of every exception katdensity raises on purpose."""


class InvalidInputError(KatDensityError, ValueError):
    """An argument has the wrong shape, type, range or content.

    The message names the argument, what was expected and the value received.
    """


class MissingDependencyError(KatDensityError, ImportError):
    """An optional dependency is not installed.

    The message names the extra to install, e.g. `pip install "katdensity[st]"`.
    """
