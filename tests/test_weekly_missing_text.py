"""Top posts without stored text (retention, forget, `store_post_text = false`) next to posts with
text: the weekly email is built and sent through the real SMTP server, the report renders, and no
missing value shows up as "nan" (pandas reads SQL NULL as NaN), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from sqlalchemy import select

from storage.models import Author, Post
from tests.test_weekly import NOW, W06, Sink, make_app, parts, smtp  # noqa: F401 - fixtures
from tracker.privacy import run_retention
from tracker.report_html import render_report
from tracker.weekly import send_weekly


class Texts(HTMLParser):
    """Every text node of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def words(page: str) -> list[str]:
    parser = Texts()
    parser.feed(page)
    return " ".join(parser.chunks).split()


def test_week_whose_top_posts_mix_text_and_no_text(db_url: str, smtp: tuple[Sink, int], make_app: Any) -> None:
    sink, port = smtp
    app = make_app(db_url, port)
    db = app.database()
    # retention of 3 days on Monday 13.2. 09:00: the posts before Friday 10.2. 07:00 UTC lose their
    # text, and authors without a later post their handle and name
    settings = app.settings.model_copy(update={"privacy": app.settings.privacy.model_copy(
        update={"retention_days": 3})})
    assert settings.secrets.smtp_password is not None  # the copy keeps the environment
    result = run_retention(db, settings, now=NOW)
    assert result.counts.posts_minimised >= 3
    with db.read() as s:
        texts = dict(s.execute(select(Post.platform_id, Post.text)).all())
        handles = dict(s.execute(select(Author.platform_id, Author.handle)).all())
    assert texts["x-1"] is None and texts["m-2"] is None and texts["x-4"] is None  # no text ...
    assert texts["b-3"] and "klikkaa" in texts["b-3"]  # ... next to a post with text
    assert handles["d-1"] is None and handles["https://m1.example/users/bob"] is None

    outcome = send_weekly(db, settings, W06, now=NOW)
    assert outcome.status == "sent" and len(sink.messages) == 1
    text, html, *_ = parts(sink.parsed())
    assert "klikkaa" in text and "klikkaa" in html
    assert "nan" not in text.lower().split() and "nan" not in [w.lower() for w in words(html)]
    top = text.split("== Viikon eniten")[1].split("==")[1]
    # the four posts, best first; those without text are listed with an empty text line
    assert [line.split(". ", 1)[0] for line in top.splitlines() if line[:2] in ("1.", "2.", "3.", "4.")] == \
        ["1", "2", "3", "4"]
    assert "tuntematon" in top  # an author whose name and handle were removed

    page = render_report(db, settings, now=NOW)
    shown = [w.lower() for w in words(page)]
    assert "nan" not in shown and "klikkaa</a>" in " ".join(shown)  # the post with text, as text
    assert "ei tiedossa" in " ".join(shown)  # "unknown", for authors without name and handle
