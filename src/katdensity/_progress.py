"""One rule for progress bars: on when asked, off when asked, by default only on long runs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["progress_bar"]

T = TypeVar("T")

# With progress=None a bar appears for runs of more steps than this, and only on a terminal.
_AUTO_MIN_STEPS = 10


def progress_bar(
    steps: Iterable[T], *, total: int, progress: bool | None, desc: str, unit: str
) -> Iterator[T]:
    """Wrap `steps` in a tqdm bar according to `progress` (`None`: automatic)."""
    if progress is None:
        # tqdm's disable=None turns the bar off when stderr is not a terminal.
        disable: bool | None = None if total > _AUTO_MIN_STEPS else True
    else:
        disable = not progress
    yield from tqdm(steps, total=total, desc=desc, unit=unit, disable=disable)
