"""The weekly email, end to end: a real SMTP server (aiosmtpd on 127.0.0.1) receives it and the
tests read it back with the `email` package.

The dataset is small and computed by hand (comments next to each post). The week under test is
2023-W06 (Monday 6.2.2023 00:00 to Monday 13.2.2023 00:00, Helsinki = UTC+2), and its previous
week 2023-W05. Post text, names and links carry injection attempts.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import smtplib
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import click
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from sqlalchemy import select

from storage.db import Database
from storage.models import CollectionRun, Gap, SentReport
from storage.queries import TagRow, store_tags
from storage.reports import claim_report, list_reports, mark_failed, recipients_key
from storage.upserts import store_posts
from tracker.app import App
from tracker.cli import TrackerGroup
from tracker.cli_report import weekly as weekly_command
from tracker.errors import TrackerError
from tracker.mailer import MailError
from tracker.posts import Author, Metrics, NormalisedPost, PostKind
from tracker.summary import visit_summaries
from tracker.weekly import (
    KIND,
    Week,
    build_message,
    due_week,
    format_change,
    format_day,
    format_number,
    format_range,
    send_weekly,
    write_eml,
)

UTC = dt.timezone.utc
W06 = Week(2023, 6)
NOW = dt.datetime(2023, 2, 13, 7, 0, tzinfo=UTC)  # Monday 13.2.2023 09:00 in Helsinki
PASSWORD = "s3cret-Smtp-pa55word"
RECIPIENTS = ["Viestinta@example.fi", "tiimi@example.fi"]


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- a real SMTP server ---------------------------------------------------------------------------


class Sink:
    """aiosmtpd handler keeping every message it accepted (envelope and raw bytes)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse: set[str] = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.lower() in self.refuse:
            return "550 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted"

    def parsed(self, n: int = -1) -> EmailMessage:
        return message_from_bytes(self.messages[n][2], policy=policy.default)  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Authenticator:
    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        ok = getattr(auth_data, "password", b"") == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    """A plain SMTP server (no STARTTLS offered), with AUTH allowed without TLS."""
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, authenticator=_Authenticator(),
                            auth_require_tls=False)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


# -- the dataset ----------------------------------------------------------------------------------

TOUR = [
    ("varsinais-suomi", "2023-02-07", "Turku", None),   # visit day in W06, no posts
    ("pirkanmaa", "2023-02-09", "Tampere", "Tampereen <b>talo</b>"),  # in W06, 2 posts
    ("satakunta", "2023-02-13", "Pori", None),          # next Monday: 1 W06 post in its window; upcoming
    ("kainuu", "2023-02-26", None, None),               # upcoming (last day of the 14)
    ("lappi", "2023-02-27", None, None),                # 15 days after W06: not upcoming
    ("helsinki", None, None, None),                     # no date yet
]

AUTHORS = {
    "alice": ("x", "a-1", "alice", "Alice Ä", 12000),
    "bob": ("mastodon", "https://m1.example/users/bob", "bob@m1.example", "<img src=x onerror=alert(1)>", 40),
    "carol": ("bluesky", "did:plc:carol", "carol.bsky.social", None, 10),
    "dave": ("x", "d-1", "=dave", "@SUM(1+1)", 5),
}
LONG = "Pitkä teksti " * 40  # 520 characters: truncated in the email

# (id, author, created UTC, likes, reposts, replies, quotes, views, stop, text, url)
POSTS = [
    # W06 -----------------------------------------------------------------------------------------
    ("x-1", "alice", "2023-02-09 08:00", 10, 3, 1, 1, 500, "pirkanmaa",  # engagement 15
     "Hieno päivä Tampereella <script>alert('x')</script> #ihmisensote", None),
    ("m-2", "bob", "2023-02-09 12:00", 4, 1, 2, None, None, "pirkanmaa",  # 7
     '<img src=x onerror="alert(2)"> kiitos! #ihmisensote', "javascript:alert(document.cookie)"),
    ("b-3", "carol", "2023-02-11 10:00", 2, 0, 0, 0, None, "satakunta",  # 2
     '<a href="javascript:alert(3)">klikkaa</a> ' + LONG, None),
    ("x-4", "dave", "2023-02-05 22:30", 1, 0, 0, 0, None, None,  # 1; 00:30 local on Monday 6.2.: W06
     '=HYPERLINK("http://evil.example","x")', None),
    # outside W06 ------------------------------------------------------------------------------
    ("x-5", "alice", "2023-02-12 22:30", 50, 0, 0, 0, 100, "satakunta",  # 00:30 Monday 13.2.: W07
     "Seuraava viikko #ihmisensote", None),
    ("x-6", "alice", "2023-02-03 10:00", 3, 1, 0, 0, 20, None, "Edellinen viikko #ihmisensote", None),  # W05: 4
    ("x-7", "dave", "2023-02-05 21:30", 2, 0, 0, 0, None, None, "Sunnuntai-ilta #ihmisensote", None),  # W05: 2
]
WEEK_POSTS = {"x-1", "m-2", "b-3", "x-4"}
# W06 by hand: pirkanmaa 2 posts, 2 authors, engagement 22, impressions 500, reach 12000 + 40;
# satakunta 1 post, 1 author, engagement 2, impressions unknown, reach 10; no visit: x-4 (1, 1, 5).
# Week totals: 4 posts, engagement 25, 4 authors, impressions 500, reach 12055.
# W05: 2 posts (x-6, x-7), engagement 6. Change: posts +2 (+100 %), engagement +19 (+317 %).
# Up to the end of W06: 6 posts, engagement 31.
HAND = {
    "pirkanmaa": {"posts": 2, "unique_authors": 2, "engagement": 22, "impressions": 500, "potential_reach": 12040},
    "satakunta": {"posts": 1, "unique_authors": 1, "engagement": 2, "impressions": None, "potential_reach": 10},
    "varsinais-suomi": {"posts": 0, "unique_authors": 0, "engagement": 0, "impressions": None, "potential_reach": 0},
}


def settings_toml(db_url: str, port: int, language: str = "fi", security: str = "none",
                  username: str | None = "tracker", recipients: list[str] | None = None) -> str:
    lines = ['[campaign]', 'name = "Ihmisen <kokoinen> sote"', 'hashtags = ["ihmisensote"]',
             f'language = "{language}"', '']
    for area, date, city, venue in TOUR:
        lines.append("[[tour.stops]]")
        lines.append(f'area = "{area}"')
        if date:
            lines.append(f"date = {date}")
        if city:
            lines.append(f'city = "{city}"')
        if venue:
            lines.append(f'venue = "{venue}"')
        lines.append("")
    lines += ["[storage]", f'url = "{db_url}"', "", "[email]", 'host = "127.0.0.1"', f"port = {port}",
              f'security = "{security}"', 'sender = "seuranta@example.fi"',
              f"recipients = {json.dumps(RECIPIENTS if recipients is None else recipients)}"]
    if username:
        lines.append(f'username = "{username}"')
    return "\n".join(lines) + "\n"


def post(pid: str, who: str, created: str, likes: int | None, reposts: int | None, replies: int | None,
         quotes: int | None, views: int | None, text: str, url: str | None) -> NormalisedPost:
    platform, author_id, handle, name, followers = AUTHORS[who]
    return NormalisedPost(
        platform=platform, platform_id=pid,
        author=Author(platform_id=author_id, handle=handle, display_name=name, followers=followers,
                      url=f"https://{platform}.example/{handle}"),
        text=text, created_at=t(created), fetched_at=t("2023-02-13 06:00"),
        url=url if url is not None else f"https://{platform}.example/{pid}", hashtags=("ihmisensote",),
        kind=PostKind.ORIGINAL, metrics=Metrics(likes=likes, reposts=reposts, replies=replies, quotes=quotes,
                                                views=views),
    )


def fill(db: Database) -> None:
    """Store and tag the posts; one failed run and one open gap in W06, a failed run in W05."""
    with db.write() as s:
        result = store_posts(s, [post(p[0], p[1], p[2], *p[3:8], p[9], p[10]) for p in POSTS])
        ids = {pid: result.ids[(AUTHORS[who][0], pid)] for pid, who, *_ in POSTS}
        store_tags(s, [TagRow(ids[p[0]], [p[8]] if p[8] else [], p[8], "area" if p[8] else "none",
                              0.9 if p[8] else 0.0, t(p[2]).date()) for p in POSTS], NOW)
        s.add(CollectionRun(platform="mastodon", kind="collect", started_at=t("2023-02-10 12:00"),
                            finished_at=t("2023-02-10 12:01"), status="failed",
                            error="HTTP 503 <b>Service Unavailable</b>"))
        s.add(CollectionRun(platform="x", kind="collect", started_at=t("2023-02-02 12:00"), status="failed",
                            error="old failure in W05"))
        s.add(Gap(platform="bluesky", stream="#ihmisensote", start_at=t("2023-02-10 00:00"),
                  end_at=t("2023-02-10 06:00"), reason="server error 502", recorded_at=t("2023-02-10 06:00")))


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    """make_app(db_url, port, **settings) -> an App on a filled database (filled once per URL)."""
    apps: list[App] = []
    filled: set[str] = set()

    def make(db_url: str, port: int, env: dict[str, str] | None = None, **options: Any) -> App:
        path = tmp_path / f"settings-{len(apps)}.toml"
        path.write_text(settings_toml(db_url, port, **options), encoding="utf-8")
        app = App(settings_path=str(path), env={"TRACKER_SMTP_PASSWORD": PASSWORD, **(env or {})})
        apps.append(app)
        if db_url not in filled:
            fill(app.database())
            filled.add(db_url)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def quick_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stub charts (drawing them is most of a message's build time) where only sending matters."""
    import tracker.weekly

    png = b"\x89PNG\r\n\x1a\nstub"
    monkeypatch.setattr(tracker.weekly, "posts_per_day_png", lambda *a, **k: png)
    monkeypatch.setattr(tracker.weekly, "engagement_per_visit_png", lambda *a, **k: png)


def sent_rows(app: App) -> list[SentReport]:
    with app.database().read() as s:
        return list(s.scalars(select(SentReport).order_by(SentReport.id)))


# -- reading the email back -----------------------------------------------------------------------


class Cells(HTMLParser):
    """Collects table cells marked data-stop/data-figure, every href and src, and all text."""

    def __init__(self) -> None:
        super().__init__()
        self.stop: str | None = None
        self.figure: str | None = None
        self.row_figure: str | None = None
        self.visits: dict[str, dict[str, str]] = {}
        self.week: dict[str, dict[str, str]] = {}
        self.value: str | None = None
        self.table: str | None = None
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self.table = a.get("id")
        if tag == "tr":
            self.stop = a.get("data-stop")
            self.row_figure = a.get("data-figure")
        if tag == "td":
            self.figure, self.value = a.get("data-figure"), a.get("data-value")
        if tag == "a":
            self.hrefs.append(a.get("href") or "")
        if tag == "img":
            self.srcs.append(a.get("src") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.table == "visits" and self.stop is not None and self.figure:
            self.visits.setdefault(self.stop, {})[self.figure] = data.strip()
        if self.table == "week" and self.row_figure and self.value:
            self.week.setdefault(self.row_figure, {})[self.value] = data.strip()

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self.figure = self.value = None


def parts(message: EmailMessage) -> tuple[str, str, EmailMessage, dict[str, bytes], EmailMessage]:
    """(text, html, the related part, {content-id: png}, the CSV attachment)."""
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.get_payload()  # type: ignore[misc]
    assert alternative.get_content_type() == "multipart/alternative"
    plain, related = alternative.get_payload()
    assert plain.get_content_type() == "text/plain" and related.get_content_type() == "multipart/related"
    html_part, *images = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    pngs = {img["Content-ID"].strip().strip("<>"): img.get_content() for img in images}
    assert all(img.get_content_type() == "image/png" for img in images)
    text, html = (p.get_content().replace("\r\n", "\n") for p in (plain, html_part))
    return text, html, related, pngs, attachment


def csv_rows(attachment: EmailMessage) -> list[dict[str, str]]:
    raw = attachment.get_payload(decode=True)  # the bytes as attached
    assert isinstance(raw, bytes) and raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def num(value: int | None, lang: str = "fi") -> str:
    return format_number(value, lang)


# -- weeks and formatting ---------------------------------------------------------------------------


def test_weeks_in_the_campaign_timezone() -> None:
    from zoneinfo import ZoneInfo

    hel = ZoneInfo("Europe/Helsinki")
    assert Week.parse("2023-W06") == Week.parse("2023w6") == W06
    assert W06.label == "2023-W06" and (W06.monday, W06.sunday) == (dt.date(2023, 2, 6), dt.date(2023, 2, 12))
    assert W06.period(hel) == (t("2023-02-05 22:00"), t("2023-02-12 22:00"))
    assert Week(2023, 12).period(hel) == (t("2023-03-19 22:00"), t("2023-03-26 21:00"))  # DST on its Sunday
    assert W06.previous() == Week(2023, 5) and Week(2023, 1).previous() == Week(2022, 52)
    assert Week(2020, 53).next() == Week(2021, 1)
    for bad, why in (("2023-06", "not an ISO week"), ("2023-W54", "no week 54"), ("2023-W53", "no week 53")):
        with pytest.raises(ValueError, match=why):
            Week.parse(bad)
    # the last complete week: Monday 00:30 in Helsinki is still Sunday in UTC
    assert Week.last_complete(t("2023-02-12 22:30"), hel) == W06
    assert Week.last_complete(t("2023-02-12 21:30"), hel) == Week(2023, 5)


def test_dates_numbers_and_subject_per_language() -> None:
    day = dt.date(2023, 2, 6)
    assert [format_day(day, lang) for lang in ("fi", "sv", "en")] == ["ma 6.2.2023", "må 6.2.2023", "Mon 6 Feb 2023"]
    assert [format_range(day, dt.date(2023, 2, 12), lang) for lang in ("fi", "sv", "en")] == [
        "6.–12.2.2023", "6–12.2.2023", "6–12 Feb 2023"]
    assert format_range(dt.date(2023, 2, 27), dt.date(2023, 3, 5), "fi") == "27.2.–5.3.2023"
    assert format_range(dt.date(2022, 12, 26), dt.date(2023, 1, 1), "en") == "26 Dec 2022 – 1 Jan 2023"
    assert format_number(12055, "fi") == "12\u202f055" and format_number(12055, "en") == "12,055"
    assert format_number(None, "fi") == "–"
    assert format_change(4, 2, "fi") == "+2 (+100\u00a0%)"
    assert format_change(1, 4, "en") == "\u22123 (\u221275%)"
    assert format_change(3, 0, "sv") == "+3" and format_change(2, 2, "en") == "±0 (±0%)"


def test_due_week_follows_the_schedule() -> None:
    from tracker.settings import parse_settings

    settings = parse_settings({"campaign": {"name": "T", "hashtags": ["x"]},
                               "schedule": {"weekly_report_day": "mon", "weekly_report_time": "08:00"}})
    assert due_week(settings, t("2023-02-13 05:59")) is None  # 07:59 Monday in Helsinki
    assert due_week(settings, t("2023-02-13 06:00")) == W06
    assert due_week(settings, t("2023-02-19 21:59")) == W06  # Sunday 23:59: still W06 (not W05 + W06)
    assert due_week(settings, t("2023-02-20 06:00")) == Week(2023, 7)


# -- the email ------------------------------------------------------------------------------------


def test_weekly_email_content(db_url: str, smtp: tuple[Sink, int], make_app: Any) -> None:
    sink, port = smtp
    app = make_app(db_url, port)
    db, settings = app.database(), app.settings
    outcome = send_weekly(db, settings, W06, now=NOW)
    assert outcome.status == "sent" and len(sink.messages) == 1
    mail_from, rcpt, _ = sink.messages[0]
    assert mail_from == "seuranta@example.fi" and sorted(rcpt) == sorted(RECIPIENTS)
    message = sink.parsed()
    assert message["Subject"] == "Viikkokatsaus 6.–12.2.2023: Ihmisen <kokoinen> sote"
    assert message["Message-ID"] == outcome.message_id and message["Auto-Submitted"] == "auto-generated"
    text, html, related, pngs, attachment = parts(message)

    # the inline images: every cid: in the HTML is a PNG in the related part, and vice versa
    page = Cells()
    page.feed(html)
    cids = [src.removeprefix("cid:") for src in page.srcs]
    assert all(src.startswith("cid:") for src in page.srcs) and sorted(cids) == sorted(pngs)
    assert len(pngs) == 2 and all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs.values())

    # figures per visit: equal to visit_summaries for the week and to the hand-computed ones
    expected = {v["stop"]: v for v in visit_summaries(db, settings, period=W06.period(settings.campaign.tz))}
    assert set(page.visits) == {"pirkanmaa", "satakunta", "varsinais-suomi", ""}  # "" = no visit
    for stop, figures in HAND.items():
        assert {k: expected[stop][k] for k in figures} == figures
        assert page.visits[stop] == {k: num(v) for k, v in figures.items()}
    assert page.visits[""] == {"posts": "1", "unique_authors": "1", "engagement": "1", "impressions": "–",
                               "potential_reach": "5"}
    assert page.week["posts"] == {"current": "4", "previous": "2", "change": "+2 (+100\u00a0%)"}
    assert page.week["engagement"] == {"current": "25", "previous": "6", "change": "+19 (+317\u00a0%)"}
    assert page.week["potential_reach"]["current"] == "12\u202f055"
    assert "Pirkanmaa (Tampere) – to 9.2.2023 (vierailu tällä viikolla)" in text
    assert "Satakunta (Pori) – ma 13.2.2023\n  Julkaisut 1 · Kirjoittajat 1 · Sitoutuminen 2 · Näyttökerrat – · " \
           "Potentiaalinen tavoittavuus 10" in text
    assert "Julkaisut: 4 (edellinen viikko 2, muutos +2 (+100\u00a0%))" in text
    assert "Sitoutuminen: 25 (edellinen viikko 6, muutos +19 (+317\u00a0%))" in text
    assert "Julkaisut: 6\n" in text and "Sitoutuminen: 31\n" in text  # campaign so far (to the end of W06)
    assert "Vierailuja, joilla julkaisuja: 2 / 6" in text

    # upcoming visits: the 14 days after the week; undated stops counted
    assert "* ma 13.2.2023: Satakunta (Pori)" in text and "* su 26.2.2023: Kainuu" in text
    assert "Lappi" not in text.split("== Tulevat")[1].split("==")[1]
    assert "Vierailuja ilman päivämäärää: 1" in text

    # collection health: the week's failed run (not last week's) and the open gap
    assert "mastodon (collect) ×1, viimeksi pe 10.2.2023 klo 14.00: HTTP 503 <b>Service Unavailable</b>" in text
    assert "old failure" not in text and "old failure" not in html
    assert "HTTP 503 &lt;b&gt;Service Unavailable&lt;/b&gt;" in html
    assert "bluesky #ihmisensote: pe 10.2.2023 klo 02.00 – pe 10.2.2023 klo 08.00 (server error 502)" in text

    # top posts, best first; the post text and names are inert
    assert text.index("Hieno päivä") < text.index("kiitos!") < text.index("klikkaa")
    assert "ma 6.2.2023 klo 00.30" in text  # x-4, local time
    assert [tag for tag, _ in page.tags if tag in ("script", "style", "iframe", "object", "svg")] == ["style"]
    assert all(not k.startswith("on") for _, attrs in page.tags for k in attrs)
    assert "<script>" not in html and "&lt;script&gt;alert('x')&lt;/script&gt;" in html
    assert '&lt;img src=x onerror="alert(2)"&gt; kiitos!' in html  # shown as text, not an element
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the display name too
    assert all(href.startswith("https://") for href in page.hrefs)
    assert "javascript:" not in "".join(page.hrefs) and "javascript:alert(document" not in text
    assert "&lt;kokoinen&gt;" in html and "Tampereen &lt;b&gt;talo&lt;/b&gt;" in html
    assert ("Pitkä teksti " * 40).strip() not in text and "…" in text  # truncated
    long_line = next(line for line in text.splitlines() if "klikkaa" in line)
    assert len(long_line.strip()) <= 281

    # the CSV attachment: the week's posts, formula-safe
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_filename() == "julkaisut-2023-W06.csv"
    rows = csv_rows(attachment)
    assert {r["platform_id"] for r in rows} == WEEK_POSTS
    dave = next(r for r in rows if r["platform_id"] == "x-4")
    assert dave["text"].startswith("'=HYPERLINK") and dave["author_handle"] == "'=dave"
    assert dave["author_name"] == "'@SUM(1+1)" and dave["local_date"] == "2023-02-06"
    assert next(r for r in rows if r["platform_id"] == "m-2")["url"] == ""  # javascript: dropped

    # recorded once, with the Message-ID
    [row] = sent_rows(app)
    assert (row.kind, row.period, row.status, row.message_id) == (KIND, "2023-W06", "sent", outcome.message_id)
    assert row.recipients_key == recipients_key(["TIIMI@example.fi", "viestinta@example.fi"])


@pytest.mark.parametrize("language,subject,words", [
    ("sv", "Veckoöversikt 6–12.2.2023: Ihmisen <kokoinen> sote",
     ["Veckans siffror", "Inlägg: 4 (föregående vecka 2, förändring +2 (+100\u00a0%))", "Birkaland (Tampere) – to 9.2.2023",
      "Kommande besök", "* må 13.2.2023: Satakunta (Pori)", "* sö 26.2.2023: Kajanaland", "Insamlingens status", "Kampanjen hittills",
      "bifogade som CSV-fil"]),
    ("en", "Weekly summary 6–12 Feb 2023: Ihmisen <kokoinen> sote",
     ["The week in figures", "Posts: 4 (previous week 2, change +2 (+100%))", "Pirkanmaa (Tampere) – Thu 9 Feb 2023",
      "Upcoming visits", "* Mon 13 Feb 2023: Satakunta (Pori)", "Collection health", "The campaign so far",
      "Potential reach: 12,055"]),
])
def test_swedish_and_english(smtp: tuple[Sink, int], make_app: Any, tmp_path: Path, language: str,
                             subject: str, words: list[str]) -> None:
    sink, port = smtp
    app = make_app(f"sqlite:///{tmp_path / 'tracker.db'}", port, language=language)
    assert send_weekly(app.database(), app.settings, W06, now=NOW).status == "sent"
    message = sink.parsed()
    assert message["Subject"] == subject and message["Content-Language"] == language
    text, html, *_ , attachment = parts(message)
    for word in words:
        assert word in text, word
    assert f'<html lang="{language}">' in html
    assert "Viikko" not in text and "Julkaisut" not in text and "Julkaisut" not in html  # nothing left in Finnish
    assert attachment.get_filename() == {"sv": "inlagg-2023-W06.csv", "en": "posts-2023-W06.csv"}[language]


def test_empty_week(smtp: tuple[Sink, int], make_app: Any, tmp_path: Path) -> None:
    sink, port = smtp
    app = make_app(f"sqlite:///{tmp_path / 'tracker.db'}", port, language="en")
    send_weekly(app.database(), app.settings, Week(2023, 30), now=NOW)
    text, html, _, pngs, attachment = parts(sink.parsed())
    assert "There were no visits and no posts this week." in text and "No posts this week." in html
    assert len(pngs) == 1 and len(csv_rows(attachment)) == 0


# -- sending once --------------------------------------------------------------------------------


@pytest.mark.usefixtures("quick_charts")
def test_idempotent_sending(db_url: str, smtp: tuple[Sink, int], make_app: Any) -> None:
    sink, port = smtp
    app = make_app(db_url, port)
    db, settings = app.database(), app.settings
    assert send_weekly(db, settings, W06, now=NOW).status == "sent"
    again = send_weekly(db, settings, W06, now=NOW)
    assert again.status == "already-sent" and "already sent" in again.text and len(sink.messages) == 1
    # the same recipients in another order and case are the same audience
    other = make_app(db_url, port, recipients=["TIIMI@example.fi", "viestinta@EXAMPLE.fi"])
    assert send_weekly(db, other.settings, W06, now=NOW).status == "already-sent"
    # another recipient list gets its own email
    third = make_app(db_url, port, recipients=["johto@example.fi"])
    assert send_weekly(db, third.settings, W06, now=NOW).status == "sent" and len(sink.messages) == 2
    # --force sends again and keeps one row per week and list
    forced = send_weekly(db, settings, W06, now=NOW, force=True)
    assert forced.status == "sent" and len(sink.messages) == 3
    rows = sent_rows(app)
    assert [(r.period, r.status) for r in rows] == [("2023-W06", "sent"), ("2023-W06", "sent")]
    assert rows[0].message_id == forced.message_id != again.message_id


@pytest.mark.usefixtures("quick_charts")
def test_interrupted_send_is_not_repeated(db_url: str, smtp: tuple[Sink, int], make_app: Any) -> None:
    sink, port = smtp
    app = make_app(db_url, port)
    db, settings = app.database(), app.settings
    with db.write() as s:  # a previous run claimed the week, then died before marking it
        assert claim_report(s, KIND, "2023-W06", settings.email.recipients, NOW, message_id="<old@x>").claimed
    outcome = send_weekly(db, settings, W06, now=NOW)
    assert outcome.status == "in-progress" and sink.messages == []
    assert outcome.text == ("the email for 2023-W06 may have been sent already (a previous run stopped while "
                            "sending); use --force to send again")
    assert send_weekly(db, settings, W06, now=NOW, force=True).status == "sent" and len(sink.messages) == 1
    assert [r.status for r in sent_rows(app)] == ["sent"]


def test_claims_are_exclusive(db: Database) -> None:
    """The SQL itself: a new row, a blocked second claim, a failed row claimed by one retry only."""
    recipients = ["a@example.fi"]
    with db.write() as s:
        first = claim_report(s, KIND, "2023-W06", recipients, NOW)
    with db.write() as s:
        second = claim_report(s, KIND, "2023-W06", ["A@example.fi"], NOW)
    assert first.claimed and not second.claimed and second.previous_status == "sending"
    with db.write() as s:
        mark_failed(s, first.report.id, "boom")
    with db.write() as s:
        retry = claim_report(s, KIND, "2023-W06", recipients, NOW)
        again = claim_report(s, KIND, "2023-W06", recipients, NOW)
    assert retry.claimed and retry.previous_status == "failed" and not again.claimed
    with db.read() as s:
        [record] = list_reports(s, KIND)
    assert (record.status, record.error) == ("sending", None)


@pytest.mark.usefixtures("quick_charts")
def test_failure_is_recorded_and_retried(smtp: tuple[Sink, int], make_app: Any, tmp_path: Path) -> None:
    sink, port = smtp
    app = make_app(f"sqlite:///{tmp_path / 'tracker.db'}", port)
    sink.refuse = {r.lower() for r in RECIPIENTS}  # every recipient refused: nothing delivered
    with pytest.raises(MailError, match=r"SMTP server 127.0.0.1:\d+ refused every recipient: .*550"):
        send_weekly(app.database(), app.settings, W06, now=NOW)
    [row] = sent_rows(app)
    assert row.status == "failed" and "refused every recipient" in (row.error or "")
    sink.refuse = {"tiimi@example.fi"}  # one refused: the other gets it; recorded as sent with a note
    outcome = send_weekly(app.database(), app.settings, W06, now=NOW)
    assert outcome.status == "sent" and outcome.refused == ("tiimi@example.fi",)
    [row] = sent_rows(app)
    assert row.status == "sent" and "refused tiimi@example.fi: 550" in (row.error or "")
    assert sink.messages[0][1] == ["Viestinta@example.fi"]


@pytest.mark.usefixtures("quick_charts")
def test_unreachable_server_is_one_line_without_the_password(make_app: Any, tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'tracker.db'}", free_port())  # nothing listens there
    with pytest.raises(MailError) as caught:
        send_weekly(app.database(), app.settings, W06, now=NOW, timeout=5)
    message = str(caught.value)
    assert message.startswith("cannot reach SMTP server 127.0.0.1:") and "\n" not in message
    assert PASSWORD not in message and PASSWORD not in repr(caught.value)
    [row] = sent_rows(app)
    assert row.status == "failed" and PASSWORD not in (row.error or "") and PASSWORD not in row.recipients


@pytest.mark.usefixtures("quick_charts")
def test_wrong_password_and_tls_problems(smtp: tuple[Sink, int], make_app: Any, tmp_path: Path) -> None:
    sink, port = smtp
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    wrong = make_app(url, port, env={"TRACKER_SMTP_PASSWORD": "not-the-" + PASSWORD})
    with pytest.raises(MailError, match=r"refused the login of tracker: 535") as caught:
        send_weekly(wrong.database(), wrong.settings, W06, now=NOW)
    assert PASSWORD not in str(caught.value)
    starttls = make_app(url, port, security="starttls")
    with pytest.raises(MailError, match=r"^SMTP server 127.0.0.1:\d+ does not offer STARTTLS"):
        send_weekly(starttls.database(), starttls.settings, W06, now=NOW)
    ssl_mode = make_app(url, port, security="ssl")
    with pytest.raises(MailError, match=r"^TLS with SMTP server 127.0.0.1:\d+ failed: "):
        send_weekly(ssl_mode.database(), ssl_mode.settings, W06, now=NOW, timeout=5)
    nopass = make_app(url, port, env={"TRACKER_SMTP_PASSWORD": ""})
    with pytest.raises(TrackerError, match="TRACKER_SMTP_PASSWORD is not"):
        send_weekly(nopass.database(), nopass.settings, W06, now=NOW)
    assert sink.messages == [] and {r.status for r in sent_rows(wrong)} == {"failed"}


@pytest.mark.usefixtures("quick_charts")
def test_login_succeeds_with_the_password(smtp: tuple[Sink, int], make_app: Any, tmp_path: Path) -> None:
    sink, port = smtp
    app = make_app(f"sqlite:///{tmp_path / 'tracker.db'}", port)
    assert send_weekly(app.database(), app.settings, W06, now=NOW).status == "sent"
    assert len(sink.messages) == 1


# -- the command ------------------------------------------------------------------------------------


@click.group(cls=TrackerGroup)
def cli() -> None:
    """Like tracker's own group (errors as one line)."""


@cli.group("report")
def report() -> None:
    """Reports."""


report.add_command(weekly_command)


def invoke(app: App, *args: str) -> Any:
    return CliRunner().invoke(cli, ["report", "weekly", *args], obj=app, catch_exceptions=False)


@pytest.mark.usefixtures("quick_charts")
def test_cli(smtp: tuple[Sink, int], make_app: Any, tmp_path: Path) -> None:
    sink, port = smtp
    app = make_app(f"sqlite:///{tmp_path / 'tracker.db'}", port)
    # --out writes the .eml and records nothing: a later --send still sends
    result = invoke(app, "--week", "2023-W06", "--out", str(tmp_path / "mail"))
    assert result.exit_code == 0, result.output
    eml = tmp_path / "mail" / "weekly-2023-W06.eml"
    assert result.output.strip() == f"wrote {eml}"
    saved = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert saved["Subject"].startswith("Viikkokatsaus 6.–12.2.2023") and sent_rows(app) == []
    preview = invoke(app, "--week", "2023-W06")
    assert preview.exit_code == 0 and "== Viikon luvut ==" in preview.output and "not sent yet" in preview.output
    sent = invoke(app, "--week", "2023-W06", "--send")
    assert sent.exit_code == 0 and sent.output.startswith("sent the weekly email for 2023-W06 to 2 recipients")
    again = invoke(app, "--week", "2023-W06", "--send")
    assert again.exit_code == 0 and "was already sent" in again.output and len(sink.messages) == 1
    with app.database().write() as s:
        s.execute(SentReport.__table__.update().values(status="sending"))
    stuck = invoke(app, "--week", "2023-W06", "--send")
    assert stuck.exit_code == 1 and "may have been sent already" in stuck.output and len(sink.messages) == 1
    forced = invoke(app, "--week", "2023-W06", "--send", "--force")
    assert forced.exit_code == 0 and len(sink.messages) == 2
    bad = invoke(app, "--week", "2023-W60")
    assert bad.exit_code == 2 and "2023 has no week 60" in bad.output
    both = invoke(app, "--send", "--out", str(tmp_path))
    assert both.exit_code == 2 and "not both" in both.output
    this_week = invoke(app, "--week", Week.of(dt.date.today() + dt.timedelta(days=7)).label, "--send")
    assert this_week.exit_code == 1 and "is not over yet" in this_week.output


@pytest.mark.usefixtures("quick_charts")
def test_cli_unreachable_server(make_app: Any, tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'tracker.db'}", free_port())
    result = invoke(app, "--week", "2023-W06", "--send")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach SMTP server 127.0.0.1:")
    assert PASSWORD not in result.output
    assert [r.status for r in sent_rows(app)] == ["failed"]


def test_write_eml_is_a_complete_message(make_app: Any, tmp_path: Path) -> None:
    app = make_app(f"sqlite:///{tmp_path / 'tracker.db'}", 25, recipients=[], username=None)
    message = build_message(app.database(), app.settings, W06, NOW)
    path = write_eml(message, tmp_path / "out", W06)
    again = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert again["To"] == "undisclosed-recipients:;"
    text, html, *_ = parts(again)  # type: ignore[arg-type]
    assert "Viikkokatsaus" in text and "<h1>Ihmisen &lt;kokoinen&gt; sote</h1>" in html
    with pytest.raises(TrackerError, match="no recipients"):
        send_weekly(app.database(), app.settings, W06, now=NOW)


def test_smtplib_is_not_reached_when_configuration_is_incomplete(make_app: Any, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtplib, "SMTP", None)  # any connection attempt would fail loudly
    app = make_app(f"sqlite:///{tmp_path / 'tracker.db'}", 25, recipients=[])
    with pytest.raises(TrackerError, match=r"^no recipients: set \[email\] recipients"):
        send_weekly(app.database(), app.settings, W06, now=NOW)
    assert sent_rows(app) == []


@pytest.mark.usefixtures("quick_charts")
def test_long_sender_domain_is_recorded_on_both_databases(db_url: str, smtp: tuple[Sink, int],
                                                          make_app: Any) -> None:
    """The Message-ID carries the sender's domain; sent_reports.message_id is 256 characters, which
    PostgreSQL enforces and SQLite does not: a long domain must not fail the send on one of them."""
    sink, port = smtp
    app = make_app(db_url, port)
    domain = ".".join(["a" * 60] * 4)  # 243 characters
    settings = app.settings.model_copy(update={"email": app.settings.email.model_copy(
        update={"sender": f"tracker@{domain}"})})
    outcome = send_weekly(app.database(), settings, W06, now=NOW)
    assert outcome.status == "sent" and len(sink.messages) == 1
    [row] = sent_rows(app)
    assert row.status == "sent" and row.message_id == outcome.message_id and len(row.message_id) <= 256
