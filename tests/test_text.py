"""The one shortening of text shown to a person."""

from __future__ import annotations

import pytest

from katdensity._text import shorten


@pytest.mark.parametrize(
    ("text", "limit", "shown"),
    [
        ("short", 10, "short"),
        ("exactly 10", 10, "exactly 10"),
        ("one\n\ttwo   three", 40, "one two three"),
        ("eleven char", 10, "eleven ch…"),
        ("  padded  ", 3, "pa…"),
    ],
)
def test_flattens_then_cuts_with_an_ellipsis(text: str, limit: int, shown: str) -> None:
    assert shorten(text, limit) == shown
    assert len(shorten(text, limit)) <= limit
