"""The one place where user inputs are checked and converted.

Every public entry point funnels its arguments through these helpers, so each kind of bad
input gets the same message everywhere: the argument's name, what was expected, and the value.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import torch

from katdensity.errors import InvalidInputError

__all__ = [
    "as_embeddings",
    "as_groups",
    "as_log_density",
    "as_probabilities",
    "check_choice",
    "check_int",
    "check_real",
]


def _describe(value: Any) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)


def check_int(name: str, value: Any, *, low: int = 0, high: int | None = None) -> int:
    """Return `value` if it is an integer in `[low, high)`, else raise `InvalidInputError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} should be an integer, but got {name}={value!r}")
    if value < low or (high is not None and value >= high):
        upper = "" if high is None else f" and smaller than {high}"
        raise InvalidInputError(
            f"{name} should be an integer >= {low}{upper}, but got {name}={value}"
        )
    return int(value)


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """Return `value` as a float if it is finite and within the bounds, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name} should be a real number, but got {name}={value!r}")
    result = float(value)
    too_low = low is not None and (result <= low if low_open else result < low)
    too_high = high is not None and result > high
    if not np.isfinite(result) or too_low or too_high:
        bound = "" if low is None else (f" > {low}" if low_open else f" >= {low}")
        bound += "" if high is None else f" and <= {high}"
        raise InvalidInputError(f"{name} should be a finite number{bound}, but got {name}={value}")
    return result


def check_choice(name: str, value: Any, choices: Collection[str]) -> str:
    """Return `value` if it is one of `choices`, else raise `InvalidInputError`."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise InvalidInputError(f"{name} should be one of {options}, but got {name}={value!r}")
    return str(value)


def _as_tensor(name: str, value: Any, *, sequences: bool = False) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiub":
            raise InvalidInputError(
                f"{name} should hold numbers, but got an array of dtype {value.dtype}"
            )
        array = np.ascontiguousarray(value)
        if not array.flags.writeable:
            # A read-only memory map: katdensity only reads its inputs, so sharing is safe.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return torch.from_numpy(array)
        return torch.from_numpy(array)
    if sequences and isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        try:
            return torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidInputError(
                f"{name} should be a tensor, an array or a sequence of numbers, but got a "
                f"{type(value).__name__} that does not convert to a numeric tensor"
            ) from None
    expected = (
        "a tensor, an array or a sequence of numbers"
        if sequences
        else ("a torch.Tensor or numpy.ndarray")
    )
    raise InvalidInputError(f"{name} should be {expected}, but got {type(value).__name__}")


_FINITE_CHECK_ROWS = 65_536


def finite_rows(tensor: torch.Tensor) -> torch.Tensor:
    """`(N,)` bool: which rows of a 2-D tensor hold only finite values.

    Checked by blocks of rows: a whole `(N, D)` mask of a million wide rows would be a
    gigabyte.
    """
    blocks = torch.split(tensor, _FINITE_CHECK_ROWS)
    return torch.cat([torch.isfinite(block).all(dim=1) for block in blocks])


def as_embeddings(value: Any, *, name: str = "embeddings", min_rows: int = 1) -> torch.Tensor:
    """Check a `(N, D)` matrix of embeddings and return it as float32 (device unchanged).

    Raises:
        InvalidInputError: if it is not 2-D, has fewer than `min_rows` rows, no columns,
            or holds NaN/inf (the message gives the first bad row).
    """
    tensor = _as_tensor(name, value)
    if tensor.ndim != 2:
        raise InvalidInputError(f"{name} should be a 2-D (N, D) matrix, but got {_describe(value)}")
    if tensor.shape[0] < min_rows or tensor.shape[1] == 0:
        raise InvalidInputError(
            f"{name} should have at least {min_rows} row(s) and one column, "
            f"but got {_describe(value)}"
        )
    if tensor.is_complex():
        raise InvalidInputError(f"{name} should be real, but got {_describe(value)}")
    tensor = tensor.to(torch.float32)
    finite = finite_rows(tensor)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise InvalidInputError(
            f"{name} should be finite, but row {bad} holds NaN or inf "
            f"({int((~finite).sum())} bad row(s) in all); drop or fix those rows"
        )
    return tensor


def as_log_density(value: Any, *, name: str = "log_density") -> torch.Tensor:
    """Check a 1-D vector of finite log-densities and return it as float64 on the CPU."""
    tensor = _as_tensor(name, value)
    if tensor.ndim != 1 or tensor.numel() == 0:
        raise InvalidInputError(
            f"{name} should be a non-empty 1-D vector, but got {_describe(value)}"
        )
    tensor = tensor.to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).nonzero()[0, 0])
        raise InvalidInputError(f"{name} should be finite, but {name}[{bad}]={float(tensor[bad])}")
    return tensor


def as_probabilities(value: Any, *, name: str = "weights") -> torch.Tensor:
    """Check non-negative weights and return them normalised to float64 probabilities on the CPU.

    Raises:
        InvalidInputError: if not a non-empty 1-D vector, if any weight is negative, NaN or
            inf, or if all weights are zero.
    """
    tensor = _as_tensor(name, value, sequences=True)
    if tensor.ndim != 1 or tensor.numel() == 0:
        raise InvalidInputError(
            f"{name} should be a non-empty 1-D vector, but got {_describe(value)}"
        )
    tensor = tensor.to(device="cpu", dtype=torch.float64)
    bad = ~torch.isfinite(tensor) | (tensor < 0)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise InvalidInputError(
            f"{name} should be finite and non-negative, but {name}[{first}]={float(tensor[first])}"
        )
    total = float(tensor.sum())
    if total <= 0.0:
        raise InvalidInputError(
            f"{name} should have a positive sum, but all {tensor.numel()} are zero"
        )
    return tensor / total


def as_groups(value: Any, n: int, *, name: str = "groups") -> tuple[torch.Tensor, int]:
    """Check `(n,)` integer group labels (rows with equal labels are copies of one prompt).

    Returns:
        `(labels, M)`: the labels renumbered `0 .. M-1` (int64, CPU) and the number of groups.
    """
    tensor = _as_tensor(name, value, sequences=True)
    if tensor.ndim != 1 or tensor.shape[0] != n:
        raise InvalidInputError(
            f"{name} should hold one label per row ({n}), but got {_describe(value)}"
        )
    if tensor.is_floating_point() and not bool((tensor == tensor.round()).all()):
        raise InvalidInputError(f"{name} should hold integer labels, but got {_describe(value)}")
    _, labels = torch.unique(tensor.to(device="cpu", dtype=torch.int64), return_inverse=True)
    return labels, int(labels.max()) + 1 if n else 0
