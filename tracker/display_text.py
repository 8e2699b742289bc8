"""Untrusted text made safe to show: the one cleaning the report, the email and settings share.

Post texts, names and server messages come from the public. Shown as they are, invisible
characters do harm even when the markup is escaped: a right-to-left override (U+202E) reverses
everything after it on the line (the date, the visit, the next post's author), isolates and
embeddings (U+2066-2069, U+202A-202D) reorder text, zero-width and other format characters hide
words, control characters move the cursor. `display_text` removes them all (Unicode categories
Cc, Cf, Co, Cs), keeping only the two joiners (U+200C, U+200D) that emoji sequences and some
scripts need and that reorder nothing. Missing values (None, and pandas' NaN for SQL NULL) are
empty text, never "nan" and never a crash.

`storable_text` is the lighter cleaning for text that is stored (settings stored in the
database): no NUL (PostgreSQL refuses it), no lone surrogates (no UTF-8 encoding exists).
"""

from __future__ import annotations

import unicodedata
from typing import Any

_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs"})
_KEPT_FORMAT = frozenset({"\u200c", "\u200d"})  # ZWNJ, ZWJ: joiners, never reorder anything
ELLIPSIS = "…"


def as_text(value: Any) -> str:
    """A value from a row or a DataFrame as text: None, NaN, NaT and pd.NA are ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        if value != value:  # NaN, NaT  # noqa: PLR0124
            return ""
    except (TypeError, ValueError):  # pd.NA refuses to be a bool
        return ""
    return str(value)


def _shown(ch: str) -> bool:
    return ch in _KEPT_FORMAT or unicodedata.category(ch) not in _REMOVED_CATEGORIES


def display_text(value: Any, limit: int | None = None, *, multiline: bool = False) -> str:
    """Text for display: no control, format (bidi), private-use or surrogate characters.

    One line (every whitespace run one space) unless `multiline`, which keeps line breaks
    (`\\n`; other whitespace runs within a line become one space, blank lines at most one).
    At most `limit` characters, cut with '…'.
    """
    text = as_text(value)
    if not text:
        return ""
    if multiline:
        lines = (" ".join("".join(ch for ch in line if ch.isspace() or _shown(ch)).split())
                 for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):
                out.append(line)
        result = "\n".join(out).strip("\n")
    else:
        result = " ".join("".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or _shown(ch)).split())
    if limit is not None and len(result) > limit:
        result = result[:limit].rstrip() + ELLIPSIS
    return result


def storable_text(value: str) -> str:
    """Text any database stores as given: NUL removed, lone surrogates as U+FFFD (a pair
    written as two escapes, e.g. from JSON, becomes the character it encodes)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value
