"""Hashtags compared the way people read them: `＃İhmisenSote` is the campaign's `#ihmisensote`.

The platforms' adapters and the settings store hashtags lower-cased; a person typing a hashtag
into a spreadsheet may use a fullwidth `＃` (U+FF03, a Japanese or Chinese keyboard), fullwidth
letters, or a Turkish keyboard's dotted capital `İ`. `normalise_hashtag` maps all of these to the
plain lower-case form:

1. NFKC: compatibility forms become their plain letters (`＃` -> `#`, `Ｓ` -> `S`, `ﬁ` -> `fi`);
2. `str.lower()`, not `casefold()`: collected tags and the settings' tags are lower-cased, and
   `casefold()` would part from them (`ß` -> `ss`; Cherokee folds to upper case);
3. the combining dot above that lower-casing `İ` leaves (`"İ".lower()` is `i` + U+0307) is
   dropped, so `İhmisenSote` -> `ihmisensote`;
4. NFC, so that a letter typed as base + accent equals the precomposed one (`a` + U+0308 = `ä`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_HASH = "#\uff03"  # '#' and the fullwidth '＃'
_MARKS = "\u0300-\u036f"  # combining diacritics: part of a tag typed as base letter + accent
_IN_TEXT = re.compile(rf"(?<![\w&{_MARKS}])[{_HASH}](\w[\w{_MARKS}]*)")
_WORD = re.compile(r"\w+")


def normalise_hashtag(tag: str) -> str:
    """The comparable form of one hashtag, without '#' (see the module docstring)."""
    text = unicodedata.normalize("NFKC", tag).strip().lstrip("#")
    text = text.lower().replace("i\u0307", "i")
    return unicodedata.normalize("NFC", text)


def is_hashtag(tag: str) -> bool:
    """True for a normalised tag made only of letters, digits and '_' (what the platforms link)."""
    return bool(tag) and _WORD.fullmatch(tag) is not None


def hashtags_in_text(text: str) -> list[str]:
    """The normalised `#words` in a text, in order, each once (`&#39;` is not a hashtag)."""
    found: list[str] = []
    for raw in _IN_TEXT.findall(unicodedata.normalize("NFC", text)):
        word = _WORD.match(normalise_hashtag(raw))
        if word and word.group() not in found:
            found.append(word.group())
    return found


def campaign_tags(tags: Iterable[str]) -> frozenset[str]:
    """The settings' hashtags in the same normalised form, for `carries_campaign_tag`."""
    return frozenset(normalise_hashtag(t) for t in tags)


def carries_campaign_tag(hashtags: Iterable[str], campaign: frozenset[str]) -> bool:
    return any(normalise_hashtag(t) in campaign for t in hashtags)
