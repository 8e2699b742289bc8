"""Invisible direction controls never reach a reader: the HTML report strips them as the weekly
email does (one function, tracker.display_text), from post text, names and settings text alike.

A right-to-left override (U+202E) in a post reverses everything after it on the line: the date,
the visit, the next author. The report and the email are rendered from the same database (SQLite
and PostgreSQL) and checked character by character; the stops are stored with the cleaned text.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from storage.db import Database
from storage.models import Stop
from storage.queries import TagRow, store_tags, sync_stops
from storage.upserts import store_posts
from tracker.display_text import as_text, display_text, storable_text
from tracker.posts import Author, Metrics, NormalisedPost
from tracker.report_html import render_report
from tracker.settings import parse_settings
from tracker.weekly import Week, build_message

UTC = dt.timezone.utc
NOW = dt.datetime(2023, 2, 13, 7, tzinfo=UTC)
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
"""Embeddings, overrides, isolates, LRM/RLM and the Arabic letter mark."""
RLO, PDF, RLI, PDI, RLM = "\u202e", "\u202c", "\u2067", "\u2069", "\u200f"


def hostile_settings(url: str):  # noqa: ANN201
    return parse_settings({
        "campaign": {"name": f"Kiertue {RLO}3202", "hashtags": ["ihmisensote"], "language": "en"},
        "tour": {"stops": [{"area": "pirkanmaa", "date": "2023-02-09", "city": f"Tam{RLI}pere{PDI}",
                            "venue": f"Sali {RLO}2 [/i]\x00", "notes": f"huom{RLM}!\nrivi 2"}]},
        "storage": {"url": url},
    }, env={"TRACKER__CAMPAIGN__TIMEZONE": "Europe/Helsinki"})


def hostile_post(n: int, text: str, name: str, handle: str) -> NormalisedPost:
    created = dt.datetime(2023, 2, 9, 9, n, tzinfo=UTC)
    return NormalisedPost(
        platform="mastodon", platform_id=f"https://m.example/@x/{n}",
        author=Author(platform_id=f"https://m.example/users/u{n}", handle=handle, display_name=name, followers=5),
        text=text, created_at=created, fetched_at=created + dt.timedelta(hours=1), url=f"https://m.example/@x/{n}",
        hashtags=("ihmisensote",), metrics=Metrics(likes=10 - n, reposts=0, replies=0, quotes=0))


def test_report_and_email_strip_direction_controls(db: Database) -> None:
    settings = hostile_settings(str(db.engine.url))
    posts = [
        hostile_post(1, f"Hyvä päivä Tampereella {RLO}!gnisu{PDF} #ihmisensote\nToinen rivi {RLI}x{PDI}",
                     f"{RLO}Eve{PDF}", f"eve{RLM}@m.example"),
        hostile_post(2, f"Kiitos {RLM}kaikille #ihmisensote", f"Bob{RLO}", "bob@m.example"),
    ]
    with db.write() as s:
        ids = store_posts(s, posts).ids
        store_tags(s, [TagRow(i, ["pirkanmaa"], "pirkanmaa", "area", 1.0, dt.date(2023, 2, 9))
                       for i in ids.values()], NOW)
        sync_stops(s, settings.tour.stops, NOW)
    with db.read() as s:  # the stop as stored: cleaned, no NUL (PostgreSQL would refuse it)
        [stop] = s.scalars(select(Stop))
    assert (stop.city, stop.venue, stop.notes) == ("Tampere", "Sali 2 [/i]", "huom!\nrivi 2")

    page = render_report(db, settings, now=NOW)
    assert BIDI.findall(page) == []
    assert "Tampereella !gnisu #ihmisensote<br>Toinen rivi x" in page and "Eve" in page and "Kiertue 3202" in page
    assert "Pirkanmaa (Tampere)" in page

    message = build_message(db, settings, Week(2023, 6), NOW)
    bodies = [part.get_content() for part in message.walk() if part.get_content_type() in ("text/plain", "text/html")]
    assert len(bodies) == 2 and [BIDI.findall(body) for body in bodies] == [[], []]  # (the CSV keeps the data)
    assert BIDI.findall(str(message["Subject"])) == []


def test_display_text_cleans_and_never_crashes() -> None:
    assert display_text(f"a{RLO}b\x00c\u200bd\u200de\ue000f") == "abcd\u200def"  # ZWJ kept: emoji sequences
    assert display_text(" one\n\ttwo  ") == "one two"
    assert display_text("one\r\n\n\n  two \n", multiline=True) == "one\n\ntwo"
    assert display_text("x" * 10, limit=4) == "xxxx…"
    for missing in (None, float("nan"), ""):
        assert display_text(missing) == "" and as_text(missing) == ""
    assert storable_text("a\x00b\ud800c\ud83d\ude00") == "ab\ufffdc\U0001f600"
