"""Text shown to a person: one line, cut to a length."""

from __future__ import annotations

__all__ = ["shorten"]


def shorten(text: str, limit: int) -> str:
    """`text` on one line (runs of whitespace made one space), cut to `limit` characters.

    A cut text ends with "…", which counts towards `limit`.

    Args:
        text: any text.
        limit: the most characters returned, at least 1.

    Returns:
        The flattened text, or its first `limit - 1` characters and "…".

    Example:
        >>> shorten("a  long\\nprompt", 8)
        'a long …'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
