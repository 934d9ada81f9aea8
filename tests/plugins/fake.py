"""A third-party embedder, as a plug-in package would ship it."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class ConstantEmbedder:
    def __init__(self, width: int = 3) -> None:
        self.width = width

    @property
    def dim(self) -> int:
        return self.width

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.ones(len(texts), self.width)


class FaultyEmbedder:
    """A plug-in with a bug: its constructor raises TypeError whatever it is given."""

    def __init__(self, width: int = 3) -> None:
        raise TypeError(f"a bug inside the plug-in (width={width})")
