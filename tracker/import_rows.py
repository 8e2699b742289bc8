"""One import row (a CSV row or a JSON object) -> a NormalisedPost, or a `BadRow` saying why not.

Every check runs here, per row, so that a value one database would take and the other refuse
never reaches either: lengths are those of the schema's columns (PostgreSQL refuses a longer
value, SQLite would keep it), numbers fit a BIGINT and are not negative, dates are real, carry
a timezone (or get the campaign's) and lie between 2000 and tomorrow, and no text holds invalid
Unicode (bytes that were not UTF-8, a lone surrogate) or a NUL character.

A `BadRow` message names the column and the problem, never the cell's value: the file holds
other people's handles and texts, and the message goes to a terminal, a log or a ticket.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from storage.models import Author as AuthorRow
from storage.models import Post as PostRow
from tracker.hashtags import hashtags_in_text, is_hashtag, normalise_hashtag
from tracker.posts import Author, Metrics, NormalisedPost, PostKind

COLUMNS = ("platform", "id", "created_at", "text", "url", "author", "author_name", "followers",
           "likes", "shares", "comments", "quotes", "views", "language", "kind", "hashtags")
REQUIRED = ("platform", "id", "created_at", "author")
NUMBERS = ("followers", "likes", "shares", "comments", "quotes", "views")
IDENTIFIERS = ("platform", "id", "author")
"""Values that name something: no control characters at all, and too long is an error."""


def _column_length(column: Any) -> int:
    return int(column.type.length)


MAX_LENGTH: dict[str, int] = {
    "platform": _column_length(PostRow.__table__.c.platform),
    "id": _column_length(PostRow.__table__.c.platform_id),
    "author": _column_length(AuthorRow.__table__.c.handle),
    "author_name": _column_length(AuthorRow.__table__.c.display_name),
    "language": _column_length(PostRow.__table__.c.language),
    "url": 4096,  # a text column; longer is not a link anyone clicks
    "text": 100_000,  # a text column; Facebook's own limit is 63,206 characters
    "hashtags": 10_000,
    "created_at": 64,
}
_AUTHOR_ID_LENGTH = _column_length(AuthorRow.__table__.c.platform_id)
"""The author's id is the handle lower-cased, which may be longer (`İ` lower-cases to two)."""
MAX_NUMBER = 2**63 - 1  # BIGINT (PostgreSQL) and SQLite's INTEGER
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
LATEST_AHEAD = dt.timedelta(days=1)
"""How far after the import a post's time may lie (clock and timezone slips), no more."""

_PLATFORM = re.compile(r"[a-z0-9][a-z0-9_-]*")
_DIGITS = re.compile(r"[0-9]+")
_GROUPING = str.maketrans("", "", " \u00a0\u202f\u2009'")  # 1 234 as Excel writes it in Finnish
_SEPARATORS = re.compile(r"[\s,;]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class BadRow(ValueError):
    """A row that cannot be imported; the message is 'column: problem' without the value."""


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _checked(name: str, text: str) -> str:
    if not text.isascii() and _SURROGATE.search(text):
        raise BadRow(f"{name}: invalid Unicode (bytes that are not UTF-8, or a lone surrogate); "
                     "save the file as UTF-8")
    if "\x00" in text:
        raise BadRow(f"{name}: contains a NUL character")
    if name in IDENTIFIERS and _CONTROL.search(text):
        raise BadRow(f"{name}: contains control characters")
    limit = MAX_LENGTH.get(name)
    if limit is not None and len(text) > limit:
        raise BadRow(f"{name}: {len(text)} characters, at most {limit} fit")
    return text


def _text(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    if value.__class__ is str:
        return _checked(name, value.strip()) or None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRow(f"{name}: expected text, got {_kind_of(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRow(f"{name}: expected text, got a number that is not finite")
    text = _checked(name, str(value).strip())
    return text or None


def _int(row: Mapping[str, Any], name: str) -> int | None:
    value = row.get(name)
    if value is None:
        return None
    if value.__class__ is str and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)  # the common case: plain digits, well within range
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRow(f"{name}: expected a whole number, got {_kind_of(value)}")
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise BadRow(f"{name}: expected a whole number")
        value = int(value)
    if isinstance(value, int):
        number = value
    else:
        text = _checked(name, value).strip().translate(_GROUPING)
        negative = text.startswith("-")
        digits = text[1:] if negative else text
        if not _DIGITS.fullmatch(digits):
            raise BadRow(f"{name}: expected a whole number (digits only, e.g. 1200)")
        if negative:
            raise BadRow(f"{name}: must not be negative")
        if len(digits.lstrip("0")) > len(str(MAX_NUMBER)):
            raise BadRow(f"{name}: too large (at most {MAX_NUMBER})")
        number = int(digits)
    if number < 0:
        raise BadRow(f"{name}: must not be negative")
    if number > MAX_NUMBER:
        raise BadRow(f"{name}: too large (at most {MAX_NUMBER})")
    return number


def _created_at(value: str | None, tz: ZoneInfo, fetched_at: dt.datetime) -> dt.datetime:
    if not value:
        raise BadRow("created_at: missing")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRow("created_at: not an ISO 8601 date and time (e.g. 2023-02-09T10:15:00+02:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    try:
        moment = moment.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        raise BadRow(f"created_at: out of range (must lie between {EARLIEST:%Y-%m-%d} and tomorrow)") from None
    if moment < EARLIEST:
        raise BadRow(f"created_at: before {EARLIEST:%Y-%m-%d}")
    if moment > fetched_at + LATEST_AHEAD:
        raise BadRow("created_at: in the future")
    return moment


def _hashtags(row: Mapping[str, Any], text: str) -> tuple[str, ...]:
    """The `hashtags` column (text, or a JSON list of texts), else the #words of the text."""
    value = row.get("hashtags")
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise BadRow("hashtags: a list may hold only texts")
        entries = [_checked("hashtags", v) for v in value]
        if sum(map(len, entries)) > MAX_LENGTH["hashtags"]:
            raise BadRow(f"hashtags: more than {MAX_LENGTH['hashtags']} characters")
    else:
        listed = _text(row, "hashtags")
        if not listed:
            return tuple(hashtags_in_text(text))
        entries = _SEPARATORS.split(unicodedata.normalize("NFKC", listed))
    tags: list[str] = []
    for number, entry in enumerate((e for e in entries if e.strip().lstrip("#\uff03")), start=1):
        tag = normalise_hashtag(entry)
        if not is_hashtag(tag):
            raise BadRow(f"hashtags: entry {number} is not a hashtag (letters, digits and _ only)")
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)


def column_label(name: Any) -> str:
    """A column name fit to print: quoted when short and printable, else described."""
    if isinstance(name, str) and 0 < len(name) <= 40 and name.isprintable():
        return repr(name)
    return "a column with an unprintable or over-long name" if name else "a column without a name"


def row_to_post(row: Mapping[str, Any], tz: ZoneInfo, fetched_at: dt.datetime) -> NormalisedPost:
    """One import row to a normalised post; `BadRow` names the column and the problem."""
    unknown = [k for k in row if k not in COLUMNS and not (k == "" and row[k] in (None, ""))]
    if unknown:
        raise BadRow(f"unknown column(s) {', '.join(column_label(k) for k in unknown)}")
    required: dict[str, str] = {}
    for name in REQUIRED:
        value = _text(row, name)
        if value is None:
            raise BadRow(f"{name}: missing")
        required[name] = value
    platform = required["platform"].lower()
    if not _PLATFORM.fullmatch(platform):
        raise BadRow("platform: not a platform name (lower-case letters, digits, - or _, e.g. instagram)")
    kind_text = (_text(row, "kind") or "original").lower()
    try:
        kind = PostKind(kind_text)
    except ValueError:
        raise BadRow("kind: not one of original, repost, reply, quote") from None
    text = _text(row, "text") or ""
    url = _text(row, "url")
    if url and not url.lower().startswith(("http://", "https://")):
        raise BadRow("url: not an http(s) link")
    handle = required["author"]
    account = handle.lower()
    if len(account) > _AUTHOR_ID_LENGTH:
        raise BadRow(f"author: too long (at most {MAX_LENGTH['author']} characters fit)")
    created_at = _created_at(required["created_at"], tz, fetched_at)
    metrics = Metrics(likes=_int(row, "likes"), reposts=_int(row, "shares"), replies=_int(row, "comments"),
                      quotes=_int(row, "quotes"), views=_int(row, "views"))
    return NormalisedPost(
        platform=platform,
        platform_id=required["id"],
        author=Author(platform_id=account, handle=handle, display_name=_text(row, "author_name"),
                      followers=_int(row, "followers")),
        text=text,
        created_at=created_at,
        fetched_at=fetched_at,
        url=url,
        language=_text(row, "language"),
        hashtags=_hashtags(row, text),
        kind=kind,
        metrics=metrics,
    )
