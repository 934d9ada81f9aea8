"""One rule for progress bars: on when asked, off when asked, by default only on long runs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["progress_bar", "progress_counter"]

T = TypeVar("T")

# With progress=None a bar appears for runs of more steps than this, and only on a terminal.
_AUTO_MIN_STEPS = 10


def progress_bar(
    steps: Iterable[T], *, total: int, progress: bool | None, desc: str, unit: str
) -> Iterator[T]:
    """Wrap `steps` in a tqdm bar according to `progress` (`None`: automatic)."""
    with progress_counter(total=total, progress=progress, desc=desc, unit=unit) as bar:
        for step in steps:
            yield step
            bar.update()


def progress_counter(*, total: int, progress: bool | None, desc: str, unit: str) -> tqdm:
    """A tqdm bar advanced by hand (`bar.update()`), under the same rule as `progress_bar`."""
    # tqdm's disable=None turns the bar off when stderr is not a terminal.
    automatic = None if total > _AUTO_MIN_STEPS else True
    disable = automatic if progress is None else not progress
    return tqdm(total=total, desc=desc, unit=unit, disable=disable)
