"""Bounding untrusted text: the one implementation of "at most N characters, marked when cut"."""

from __future__ import annotations

import re

ELLIPSIS = "\u2026"
_WS = re.compile(r"\s+")


def clip(value: object, limit: int) -> str:
    """``str(value)`` (``None``: empty) of at most ``limit`` characters; an ellipsis marks a cut."""
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


def one_line(value: object, limit: int) -> str:
    """:func:`clip` of ``value`` with every run of whitespace (newlines too) folded to a space."""
    return clip(_WS.sub(" ", "" if value is None else str(value)).strip(), limit)


def clip_bytes(value: object, limit: int) -> str:
    """:func:`clip` by UTF-8 size: at most ``limit`` bytes, never splitting a character."""
    text = "" if value is None else str(value)
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[: max(0, limit - len(ELLIPSIS.encode()))].decode(errors="ignore")
    return cut + ELLIPSIS
