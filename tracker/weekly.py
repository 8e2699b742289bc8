"""The weekly summary email: one ISO week of the campaign, built, sent once per recipient list.

A week is an ISO week in the campaign timezone (Monday 00:00 to the next Monday 00:00 local);
its figures come from tracker.summary with that period, so they match `tracker summary --from
--to` and the HTML report. The message is multipart: plain text and HTML (charts inline as
`cid:` images), plus the week's posts as CSV (UTF-8 with BOM, formula-safe like
`tracker export`). Post text is untrusted public text: escaped and sanitised in HTML
(report_html.text_html), control characters removed everywhere, links kept only when http(s).

Sending is idempotent (see storage/reports.py): the row is claimed before the SMTP
conversation and marked sent or failed after, so a crash never causes a silent duplicate.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined

from storage.db import Database
from storage.reports import SENDING, SENT, ReportRecord, claim_report, find_report, mark_failed, mark_sent
from storage.reports import problem_runs, recipients_key
from tracker import mailer
from tracker.charts import engagement_per_visit_png, posts_per_day_png, visit_names
from tracker.display_text import display_text
from tracker.errors import TrackerError
from tracker.redaction import redact
from tracker.export import POST_COLUMNS, post_rows, safe_cell
from tracker.health import collection_status
from tracker.report_html import text_html
from tracker.settings import Settings
from tracker.summary import Period, posts_per_day, summarise, top_posts

log = logging.getLogger(__name__)

KIND = "weekly"
"""`sent_reports.kind` of the weekly email (period: the week label, e.g. 2023-W06)."""
TOP_POSTS = 5
UPCOMING_DAYS = 14
MAX_POST_TEXT = 280
"""Characters of a top post's text shown; the link leads to the rest."""
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UTC = dt.timezone.utc


# -- weeks --------------------------------------------------------------------------------------

_WEEK = re.compile(r"^\s*(\d{4})-?[Ww](\d{1,2})\s*$")


@dataclass(frozen=True, order=True, slots=True)
class Week:
    """An ISO week (year, number); local dates and UTC bounds need the campaign timezone."""

    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Week:
        """'2023-W06' (also 2023W6, 2023-w06) -> Week; ValueError naming the problem."""
        match = _WEEK.match(text)
        if not match:
            raise ValueError(f"'{text}' is not an ISO week (write it as YYYY-Www, e.g. 2023-W06)")
        year, number = int(match.group(1)), int(match.group(2))
        try:
            dt.date.fromisocalendar(year, number, 1)
        except ValueError:
            raise ValueError(f"{year} has no week {number}") from None
        return cls(year, number)

    @classmethod
    def of(cls, day: dt.date) -> Week:
        iso = day.isocalendar()
        return cls(iso.year, iso.week)

    @classmethod
    def last_complete(cls, now: dt.datetime, tz: ZoneInfo) -> Week:
        """The week before the one `now` falls in (local time): the last one that is over."""
        return cls.of(now.astimezone(tz).date()).previous()

    @property
    def label(self) -> str:
        return f"{self.year}-W{self.number:02d}"

    @property
    def monday(self) -> dt.date:
        return dt.date.fromisocalendar(self.year, self.number, 1)

    @property
    def sunday(self) -> dt.date:
        return self.monday + dt.timedelta(days=6)

    def previous(self) -> Week:
        return Week.of(self.monday - dt.timedelta(days=7))

    def next(self) -> Week:
        return Week.of(self.monday + dt.timedelta(days=7))

    def period(self, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """(Monday 00:00, next Monday 00:00) local, as aware UTC datetimes (end exclusive)."""
        start = dt.datetime.combine(self.monday, dt.time(), tz)
        end = dt.datetime.combine(self.monday + dt.timedelta(days=7), dt.time(), tz)
        return start.astimezone(UTC), end.astimezone(UTC)

    def __str__(self) -> str:
        return self.label


def send_moment(settings: Settings, week: Week) -> dt.datetime:
    """When, in `week`, the email about the week before is due (aware UTC)."""
    schedule = settings.schedule
    hour, minute = (int(p) for p in schedule.weekly_report_time.split(":"))
    day = week.monday + dt.timedelta(days=DAYS.index(schedule.weekly_report_day))
    return dt.datetime.combine(day, dt.time(hour, minute), settings.campaign.tz).astimezone(UTC)


def due_week(settings: Settings, now: dt.datetime) -> Week | None:
    """The week whose email is due at `now`: the previous week once this week's send time has
    passed, else None. Only ever the latest week: downtime never queues older ones."""
    current = Week.of(now.astimezone(settings.campaign.tz).date())
    return current.previous() if now.astimezone(UTC) >= send_moment(settings, current) else None


# -- formatting ---------------------------------------------------------------------------------

WEEKDAYS = {"fi": ("ma", "ti", "ke", "to", "pe", "la", "su"), "sv": ("må", "ti", "on", "to", "fr", "lö", "sö"),
            "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MINUS = "\u2212"


def format_day(day: dt.date | None, lang: str, weekday: bool = True) -> str:
    """'ma 6.2.2023' / 'må 6.2.2023' / 'Mon 6 Feb 2023' (without weekday: '6.2.2023')."""
    if day is None:
        return "–"
    if isinstance(day, dt.datetime):
        day = day.date()
    text = f"{day.day} {MONTHS_EN[day.month - 1]} {day.year}" if lang == "en" else f"{day.day}.{day.month}.{day.year}"
    return f"{WEEKDAYS[lang][day.weekday()]} {text}" if weekday else text


def format_moment(moment: dt.datetime | None, tz: ZoneInfo, lang: str) -> str:
    """'ma 6.2.2023 klo 14.05' / 'må 6.2.2023 kl. 14.05' / 'Mon 6 Feb 2023 14:05' (local time)."""
    if moment is None:
        return "–"
    local = moment.astimezone(tz)
    clock = {"fi": f"klo {local:%H.%M}", "sv": f"kl. {local:%H.%M}"}.get(lang, f"{local:%H:%M}")
    return f"{format_day(local.date(), lang)} {clock}"


def format_range(first: dt.date, last: dt.date, lang: str) -> str:
    """'6.–12.2.2023' / '6–12.2.2023' / '6–12 Feb 2023'; months and years only where they differ."""
    if lang == "en":
        if (first.year, first.month) == (last.year, last.month):
            return f"{first.day}–{format_day(last, lang, weekday=False)}"
        if first.year == last.year:
            return f"{first.day} {MONTHS_EN[first.month - 1]} – {format_day(last, lang, weekday=False)}"
        return f"{format_day(first, lang, weekday=False)} – {format_day(last, lang, weekday=False)}"
    dot = "." if lang == "fi" else ""  # Finnish ordinal dot: 6.–12.2.
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}{dot}–{last.day}.{last.month}.{last.year}"
    if first.year == last.year:
        return f"{first.day}.{first.month}{dot}–{last.day}.{last.month}.{last.year}"
    return f"{format_day(first, lang, weekday=False)}–{format_day(last, lang, weekday=False)}"


def format_number(value: float | None, lang: str, decimals: int = 0) -> str:
    """Thousands separated as each language writes them; None (unknown) as '–'."""
    if value is None:
        return "–"
    text = f"{abs(value):,.{decimals}f}"
    if lang in ("fi", "sv"):
        text = text.replace(",", "\u202f").replace(".", ",")
    return (MINUS if value < 0 else "") + text


def format_change(this: int, previous: int, lang: str) -> str:
    """'+4 (+50 %)', '−3 (−10 %)', '±0'; no percentage when last week had nothing."""
    diff = this - previous
    sign = "+" if diff > 0 else MINUS if diff < 0 else "±"
    text = sign + format_number(abs(diff), lang)
    if previous:
        pct = format_number(abs(diff) / previous * 100, lang)
        text += f" ({sign if diff else '±'}{pct}{chr(0xA0) + '%' if lang in ('fi', 'sv') else '%'})"
    return text


def clean_text(text: Any, limit: int = MAX_POST_TEXT) -> str:
    """Untrusted text for the email: one line, no control or format characters (bidi overrides,
    zero-width tricks), at most `limit` characters; missing (None, NaN) is ''. The report shows
    the same text through the same function (tracker.display_text)."""
    return display_text(text, limit)


# -- labels -------------------------------------------------------------------------------------

LABELS: dict[str, dict[str, str]] = {
    "fi": {
        "subject": "Viikkokatsaus", "title": "Viikkokatsaus", "week": "Viikko", "generated": "Koottu",
        "this_week": "Viikon luvut", "figure": "Luku", "current": "Tämä viikko", "previous": "Edellinen viikko",
        "change": "Muutos", "visits": "Viikon vierailut", "visit": "Vierailu", "date": "Vierailupäivä",
        "posts": "Julkaisut", "unique_authors": "Kirjoittajat", "engagement": "Sitoutuminen",
        "impressions": "Näyttökerrat", "potential_reach": "Potentiaalinen tavoittavuus",
        "no_visit": "Ei vierailua", "no_visits": "Tällä viikolla ei ollut vierailuja eikä julkaisuja.",
        "visit_in_week": "vierailu tällä viikolla", "no_date": "ei päivää",
        "posts_chart": "Julkaisut päivittäin", "engagement_chart": "Sitoutuminen vierailuittain",
        "top_posts": "Viikon eniten sitoutumista saaneet julkaisut", "no_posts": "Ei julkaisuja tällä viikolla.",
        "open_post": "Avaa julkaisu", "unknown": "tuntematon", "likes": "tykkäykset", "shares": "jaot",
        "replies": "vastaukset", "quotes": "lainaukset", "so_far": "Kampanja tähän mennessä",
        "so_far_note": "Kaikki julkaisut kampanjan alusta viikon loppuun.", "visits_with_posts": "Vierailuja, joilla julkaisuja",
        "upcoming": "Tulevat vierailut (seuraavat 14 päivää)", "no_upcoming": "Ei vierailuja seuraavan 14 päivän aikana.",
        "undated": "Vierailuja ilman päivämäärää", "health": "Keruun tila",
        "health_ok": "Kaikki keruut onnistuivat viikon aikana, eikä keruussa ole avoimia aukkoja.",
        "last_collection": "Viimeisin keruu", "failed_runs": "Epäonnistuneet keruut viikon aikana",
        "last": "viimeksi", "open_gaps": "Avoimet aukot keruussa (jaksot, joita ei saatu haettua)",
        "gap_open": "avoin", "attachment": "Viikon julkaisut ovat liitteenä CSV-tiedostona (avautuu Excelissä).",
        "definitions": "Sitoutuminen = tykkäykset + jaot + vastaukset + lainaukset viimeisimmän mittauksen "
                       "mukaan. Näyttökerrat vain alustoilta, jotka kertovat ne (– = ei tiedossa). Potentiaalinen "
                       "tavoittavuus = kirjoittajien seuraajamäärien summa, jokainen kirjoittaja kerran. Viikon "
                       "luvut koskevat viikon aikana tehtyjä julkaisuja.",
        "automatic": "Tämä viesti on lähetetty automaattisesti kampanjaseurannasta.",
        "csv_name": "julkaisut",
    },
    "sv": {
        "subject": "Veckoöversikt", "title": "Veckoöversikt", "week": "Vecka", "generated": "Sammanställd",
        "this_week": "Veckans siffror", "figure": "Siffra", "current": "Den här veckan",
        "previous": "Föregående vecka", "change": "Förändring", "visits": "Veckans besök", "visit": "Besök",
        "date": "Besöksdag", "posts": "Inlägg", "unique_authors": "Skribenter", "engagement": "Engagemang",
        "impressions": "Visningar", "potential_reach": "Potentiell räckvidd", "no_visit": "Inget besök",
        "no_visits": "Den här veckan fanns inga besök och inga inlägg.", "visit_in_week": "besök den här veckan",
        "no_date": "inget datum", "posts_chart": "Inlägg per dag", "engagement_chart": "Engagemang per besök",
        "top_posts": "Veckans inlägg med mest engagemang", "no_posts": "Inga inlägg den här veckan.",
        "open_post": "Öppna inlägget", "unknown": "okänd", "likes": "gilla", "shares": "delningar",
        "replies": "svar", "quotes": "citat", "so_far": "Kampanjen hittills",
        "so_far_note": "Alla inlägg från kampanjens början till veckans slut.",
        "visits_with_posts": "Besök med inlägg", "upcoming": "Kommande besök (de närmaste 14 dagarna)",
        "no_upcoming": "Inga besök under de närmaste 14 dagarna.", "undated": "Besök utan datum",
        "health": "Insamlingens status",
        "health_ok": "Alla insamlingar lyckades under veckan och det finns inga öppna luckor i insamlingen.",
        "last_collection": "Senaste insamling", "failed_runs": "Misslyckade insamlingar under veckan",
        "last": "senast", "open_gaps": "Öppna luckor i insamlingen (perioder som inte kunde hämtas)",
        "gap_open": "öppen", "attachment": "Veckans inlägg finns bifogade som CSV-fil (öppnas i Excel).",
        "definitions": "Engagemang = gilla + delningar + svar + citat enligt den senaste mätningen. Visningar "
                       "endast från plattformar som anger dem (– = okänt). Potentiell räckvidd = summan av "
                       "skribenternas antal följare, varje skribent en gång. Veckans siffror gäller inlägg som "
                       "gjorts under veckan.",
        "automatic": "Detta meddelande skickades automatiskt av kampanjuppföljningen.",
        "csv_name": "inlagg",
    },
    "en": {
        "subject": "Weekly summary", "title": "Weekly summary", "week": "Week", "generated": "Compiled",
        "this_week": "The week in figures", "figure": "Figure", "current": "This week",
        "previous": "Previous week", "change": "Change", "visits": "Visits this week", "visit": "Visit",
        "date": "Visit date", "posts": "Posts", "unique_authors": "Authors", "engagement": "Engagement",
        "impressions": "Impressions", "potential_reach": "Potential reach", "no_visit": "No visit",
        "no_visits": "There were no visits and no posts this week.", "visit_in_week": "visit this week",
        "no_date": "no date", "posts_chart": "Posts per day", "engagement_chart": "Engagement per visit",
        "top_posts": "Top posts of the week by engagement", "no_posts": "No posts this week.",
        "open_post": "Open post", "unknown": "unknown", "likes": "likes", "shares": "shares",
        "replies": "replies", "quotes": "quotes", "so_far": "The campaign so far",
        "so_far_note": "All posts from the start of the campaign to the end of the week.",
        "visits_with_posts": "Visits with posts", "upcoming": "Upcoming visits (next 14 days)",
        "no_upcoming": "No visits in the next 14 days.", "undated": "Visits without a date",
        "health": "Collection health",
        "health_ok": "Every collection succeeded this week and there are no open gaps in the collection.",
        "last_collection": "Last collection", "failed_runs": "Failed collections this week", "last": "last",
        "open_gaps": "Open gaps in the collection (periods that could not be fetched)", "gap_open": "open",
        "attachment": "The week's posts are attached as a CSV file (opens in Excel).",
        "definitions": "Engagement = likes + shares + replies + quotes, as last measured. Impressions only "
                       "from platforms that report them (– = unknown). Potential reach = the sum of the "
                       "authors' follower counts, each author once. The week's figures cover posts made "
                       "during the week.",
        "automatic": "This message was sent automatically by the campaign tracker.",
        "csv_name": "posts",
    },
}
FIGURES = ("posts", "unique_authors", "engagement", "impressions", "potential_reach")
"""The figures shown per visit and for the week, in this order."""


# -- content ------------------------------------------------------------------------------------


def weekly_content(db: Database, settings: Settings, week: Week, now: dt.datetime | None = None,
                   top_n: int = TOP_POSTS) -> dict[str, Any]:
    """Everything the email shows, as plain data (figures unformatted, charts as PNG bytes)."""
    now = now or dt.datetime.now(UTC)
    tz, lang = settings.campaign.tz, settings.campaign.language
    period = week.period(tz)
    names = visit_names(settings)
    stops = {s.id: s for s in settings.tour.stops}
    this = summarise(db, settings, period=period)
    before = summarise(db, settings, period=week.previous().period(tz))
    so_far = summarise(db, settings, period=(None, period[1]))

    visits = []
    for v in this.visits:
        stop = stops[v["stop"]]
        in_week = stop.date is not None and week.monday <= stop.date <= week.sunday
        if v["posts"] or in_week:
            visits.append({**v, "name": names[v["stop"]], "date": stop.date, "in_week": in_week,
                           "venue": stop.venue})

    stop_names: dict[str | None, str] = {**names, None: LABELS[lang]["no_visit"]}
    posts = []
    for p in top_posts(db, settings, top_n, period=period):
        posts.append({**p, "visit_name": stop_names.get(p["stop"], LABELS[lang]["no_visit"]),
                      "platform": clean_text(p["platform"], 40),
                      "text": clean_text(p["text"]),
                      "author": clean_text(p["author_name"], 80) or clean_text(p["author_handle"], 80) or None,
                      "handle": clean_text(p["author_handle"], 80) or None})

    horizon = week.sunday + dt.timedelta(days=UPCOMING_DAYS)
    upcoming = sorted(({"stop": s.id, "name": names[s.id], "date": s.date, "venue": s.venue}
                       for s in settings.tour.stops if s.date and week.sunday < s.date <= horizon),
                      key=lambda u: (u["date"], u["name"]))

    charts = {"posts_per_day": posts_per_day_png(posts_per_day(db, settings, period=period), names, lang)}
    with_posts = [v for v in visits if v["posts"]]
    if with_posts:
        charts["engagement_per_visit"] = engagement_per_visit_png(with_posts, names, lang)

    return {
        "lang": lang, "tz": tz, "campaign": settings.campaign.name, "hashtags": settings.campaign.hashtags,
        "week": week, "period": period, "generated": now,
        "visits": visits, "no_visit": this.no_visit, "totals": this.totals, "previous": before.totals,
        "so_far": so_far.totals,
        "so_far_visits": sum(1 for v in so_far.visits if v["posts"]), "visit_count": len(so_far.visits),
        "top_posts": posts, "upcoming": upcoming,
        "undated": [names[s.id] for s in settings.tour.stops if s.date is None],
        "health": _health(db, settings, period, now),
        "charts": charts,
    }


def _health(db: Database, settings: Settings, period: tuple[dt.datetime, dt.datetime],
            now: dt.datetime) -> dict[str, Any]:
    """Open gaps, failed runs of the week (grouped per platform and kind), last collection."""
    status = collection_status(db, settings, now)
    with db.read() as session:
        problems = problem_runs(session, *period)
    failed: dict[tuple[str, str], dict[str, Any]] = {}
    for run in problems:
        entry = failed.setdefault((run.platform, run.kind), {"platform": run.platform, "kind": run.kind,
                                                             "count": 0, "last": None, "error": None})
        entry["count"] += 1
        entry["last"] = run.started_at
        entry["error"] = clean_text(run.error, 200) or run.status
    gaps = [{**g, "reason": clean_text(g["reason"], 200)} for g in status["gaps"]]
    last = [p for p in status["platforms"] if p["kind"] == "collect" and p["enabled"]]
    return {"failed": list(failed.values()), "gaps": gaps, "last": last,
            "ok": not failed and not gaps}


def posts_csv(db: Database, settings: Settings, period: Period) -> bytes:
    """The period's posts in `tracker export`'s columns: UTF-8 with BOM, formula-safe cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(POST_COLUMNS)
    rows = post_rows(db, settings, period=period)
    try:
        for row in rows:
            writer.writerow([_csv_cell(row.get(c)) for c in POST_COLUMNS])
    finally:
        rows.close()
    return buffer.getvalue().encode("utf-8-sig")


def _csv_cell(value: Any) -> Any:
    """As tracker/export.py writes CSV cells: UTC timestamps, ISO dates, safe text."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return safe_cell(value)


# -- rendering ----------------------------------------------------------------------------------


def _environment(lang: str, tz: ZoneInfo) -> Environment:
    env = Environment(
        loader=PackageLoader("tracker", "templates"),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters["num"] = lambda v, d=0: format_number(v, lang, d)
    env.filters["day"] = lambda v, weekday=True: format_day(v, lang, weekday)
    env.filters["moment"] = lambda v: format_moment(v, tz, lang)
    env.filters["change"] = lambda pair: format_change(pair[0], pair[1], lang)
    env.filters["text_html"] = text_html
    return env


def subject(content: Mapping[str, Any]) -> str:
    """'Viikkokatsaus 6.–12.2.2023: <campaign>' (one line whatever the campaign name holds)."""
    week: Week = content["week"]
    lang = content["lang"]
    text = f"{LABELS[lang]['subject']} {format_range(week.monday, week.sunday, lang)}: {content['campaign']}"
    return " ".join(text.split())


def render(content: Mapping[str, Any], cids: Mapping[str, str]) -> tuple[str, str]:
    """(plain text, HTML) of the email; `cids` maps chart name -> Content-ID (without <>)."""
    env = _environment(content["lang"], content["tz"])
    context = {**content, "L": LABELS[content["lang"]], "subject": subject(content), "cids": cids,
               "figures": FIGURES,
               "range": format_range(content["week"].monday, content["week"].sunday, content["lang"])}
    return (env.get_template("weekly.txt.j2").render(**context),
            env.get_template("weekly.html.j2").render(**context))


def _domain(settings: Settings) -> str:
    """The sender's domain for Message-IDs and Content-IDs; at most 200 characters, so that a
    Message-ID fits `sent_reports.message_id` (256) on PostgreSQL as on SQLite."""
    address = settings.email.sender or settings.email.username or ""
    return (address.rpartition("@")[2] or "localhost")[:200]


def build_message(db: Database, settings: Settings, week: Week, now: dt.datetime | None = None,
                  top_n: int = TOP_POSTS) -> EmailMessage:
    """The complete email: mixed[alternative[text, related[html, charts]], posts.csv]."""
    now = now or dt.datetime.now(UTC)
    content = weekly_content(db, settings, week, now, top_n)
    lang = content["lang"]
    domain = _domain(settings)
    cids = {name: f"{name}.{secrets.token_hex(6)}@{domain}" for name in content["charts"]}  # short: no folding
    text, html = render(content, cids)
    email = settings.email

    message = EmailMessage()
    message["Subject"] = subject(content)
    message["From"] = email.sender or email.username or f"tracker@{domain}"
    message["To"] = ", ".join(email.recipients) or "undisclosed-recipients:;"
    message["Date"] = format_datetime(now.astimezone(settings.campaign.tz))
    message["Message-ID"] = f"<weekly.{week.label}.{secrets.token_hex(8)}@{domain}>"  # short: never folded
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(text, cte="quoted-printable")  # 7-bit safe for any server (no 8BITMIME needed)
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    html_part = message.get_payload()[1]  # type: ignore[index]
    for name, png in content["charts"].items():
        html_part.add_related(png, "image", "png", cid=f"<{cids[name]}>", filename=f"{name}.png")
    message.add_attachment(posts_csv(db, settings, content["period"]), maintype="text", subtype="csv",
                           filename=f"{LABELS[lang]['csv_name']}-{week.label}.csv", params={"charset": "utf-8"})
    message["Content-Language"] = lang  # after the parts: making multiparts moves Content-* headers down
    return message


def write_eml(message: EmailMessage, out_dir: str | Path, week: Week) -> Path:
    """Save the message as `weekly-<week>.eml` in `out_dir`, atomically. Records nothing."""
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"weekly-{week.label}.eml"
        partial = folder / f".{target.name}.{os.getpid()}.part"
        try:
            partial.write_bytes(message.as_bytes())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    except OSError as exc:
        raise TrackerError(f"cannot write the email to {folder}: {exc.strerror or exc}") from None
    return target


# -- sending, once ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendOutcome:
    status: Literal["sent", "already-sent", "in-progress"]
    week: Week
    text: str
    """One line for people (CLI output, logs)."""
    message_id: str | None = None
    refused: tuple[str, ...] = ()


def report_state(db: Database, settings: Settings, week: Week) -> ReportRecord | None:
    """The sent_reports row of this week for the configured recipients, if any."""
    with db.read() as session:
        return find_report(session, KIND, week.label, recipients_key(settings.email.recipients))


def in_progress_text(week: Week) -> str:
    return (f"the email for {week.label} may have been sent already (a previous run stopped while "
            "sending); use --force to send again")


def _blocked(record: ReportRecord, week: Week, settings: Settings) -> SendOutcome:
    if record.status == SENDING:
        return SendOutcome("in-progress", week, in_progress_text(week), record.message_id)
    when = record.sent_at.astimezone(settings.campaign.tz).strftime("%Y-%m-%d %H:%M") if record.sent_at else "?"
    return SendOutcome("already-sent", week,
                       f"the email for {week.label} was already sent to these recipients on {when} "
                       f"({settings.campaign.timezone}, {record.message_id}); use --force to send it again",
                       record.message_id)


def send_weekly(db: Database, settings: Settings, week: Week, *, now: dt.datetime | None = None,
                force: bool = False, timeout: float = mailer.TIMEOUT) -> SendOutcome:
    """Send the week's email to the configured recipients unless it was sent (or may have been).

    Raises MailError (one line; the row is marked 'failed' so a later run retries) when the
    server did not take the message, TrackerError for configuration problems (nothing recorded).
    """
    clock = (lambda: now) if now is not None else (lambda: dt.datetime.now(UTC))
    email, password = settings.email, settings.secrets.smtp_password
    mailer.check_config(email, password)
    if not force:
        existing = report_state(db, settings, week)
        if existing is not None and existing.status in (SENT, SENDING):
            return _blocked(existing, week, settings)
    message = build_message(db, settings, week, clock())
    message_id = str(message["Message-ID"])
    with db.write() as session:  # committed before a single byte goes to the server
        claim = claim_report(session, KIND, week.label, email.recipients, clock(), message_id=message_id,
                             force=force)
    if not claim.claimed:
        return _blocked(claim.report, week, settings)
    try:
        refused = mailer.send(message, email, password, timeout=timeout)
    except Exception as exc:
        error = str(exc) if isinstance(exc, TrackerError) else f"unexpected {type(exc).__name__}: {exc}"
        with db.write() as session:  # in every encoding, whatever the server quoted back
            mark_failed(session, claim.report.id, redact(error, [password, *settings.secrets.values()]))
        raise
    note = redact("; ".join(f"refused {addr}: {code} {text.decode('utf-8', 'replace')}"
                            for addr, (code, text) in refused.items()), [password]) or None
    with db.write() as session:
        mark_sent(session, claim.report.id, clock(), message_id, note)
    delivered = len(email.recipients) - len(refused)
    text = f"sent the weekly email for {week.label} to {delivered} recipient{'s' if delivered != 1 else ''}"
    if refused:
        text += f" (refused: {', '.join(refused)})"
    return SendOutcome("sent", week, text + f" ({message_id})", message_id, tuple(refused))
