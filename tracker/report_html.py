"""One self-contained HTML report: summary table, charts, top posts and authors.

Self-contained: CSS inline, charts as data: URIs, no scripts, no external resources, and a
Content-Security-Policy that forbids anything else should a mail client or browser try. Post text
and names come from the public, so the template autoescapes everything (Jinja2 autoescape on),
links are kept only when they are absolute http(s) URLs, and the one piece of HTML built from
post text (line breaks) is passed through nh3 with nothing but <br> allowed.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nh3
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from storage.db import Database
from tracker.charts import engagement_per_visit_png, posts_per_day_png, visit_names
from tracker.display_text import display_text
from tracker.settings import Settings
from tracker.summary import (
    AGES,
    Period,
    engagement_at_ages,
    posts_per_day,
    safe_url,
    summarise,
    top_authors,
    top_posts,
    visit_rows,
)

MAX_TEXT = 600
"""Characters of post text shown; the link leads to the rest."""
MAX_NAME = 200
"""Characters of a name, handle or visit shown."""

LABELS: dict[str, dict[str, str]] = {
    "fi": {
        "report": "Raportti", "generated": "Luotu", "period": "Aikaväli", "whole": "koko kampanja",
        "platform": "Alusta", "all_platforms": "kaikki alustat", "summary": "Yhteenveto", "visits": "Vierailut",
        "visit": "Vierailu", "date": "Päivä", "posts": "Julkaisut", "originals": "Alkuperäiset",
        "reposts": "Uudelleenjaot", "replies": "Vastaukset", "quotes": "Lainaukset",
        "unique_authors": "Kirjoittajia", "likes": "Tykkäykset", "shares": "Jaot",
        "reply_count": "Saadut vastaukset", "quote_count": "Saadut lainaukset", "engagement": "Sitoutuminen",
        "impressions": "Näyttökerrat", "potential_reach": "Potentiaalinen tavoittavuus",
        "engagement_per_post": "Sitoutuminen / julkaisu", "share_posts": "Osuus julkaisuista",
        "share_engagement": "Osuus sitoutumisesta", "rank": "Sija", "no_visit": "Ei vierailua",
        "total": "Yhteensä", "at_age": "Sitoutuminen julkaisun iän mukaan",
        "at_age_note": "Kunkin julkaisun sitoutuminen 24 tuntia ja 7 vuorokautta julkaisusta (viimeisin "
                       "mittaus ennen sitä). Mukana: julkaisut, joilta mittaus löytyy.",
        "covered": "mukana", "charts": "Kaaviot", "top_posts": "Eniten sitoutumista saaneet julkaisut",
        "open_post": "Avaa julkaisu", "top_authors_posts": "Aktiivisimmat kirjoittajat",
        "top_authors_reach": "Suurimman yleisön kirjoittajat", "author": "Kirjoittaja",
        "followers": "Seuraajia", "unknown": "ei tiedossa", "none": "Ei julkaisuja.",
        "definitions": "Luvut: sitoutuminen = tykkäykset + jaot + vastaukset + lainaukset (tuntematon = 0); "
                       "näyttökerrat vain alustoilta, jotka kertovat ne; potentiaalinen tavoittavuus = "
                       "kirjoittajien viimeisimpien seuraajamäärien summa, jokainen kirjoittaja kerran. "
                       "Poistetut julkaisut eivät ole mukana.",
        "posts_chart": "Julkaisut päivittäin ja vierailupäivät", "engagement_chart": "Sitoutuminen vierailuittain",
    },
    "sv": {
        "report": "Rapport", "generated": "Skapad", "period": "Period", "whole": "hela kampanjen",
        "platform": "Plattform", "all_platforms": "alla plattformar", "summary": "Sammanfattning",
        "visits": "Besök", "visit": "Besök", "date": "Datum", "posts": "Inlägg", "originals": "Ursprungliga",
        "reposts": "Delningar (inlägg)", "replies": "Svar", "quotes": "Citat", "unique_authors": "Skribenter",
        "likes": "Gilla-markeringar", "shares": "Delningar", "reply_count": "Mottagna svar",
        "quote_count": "Mottagna citat", "engagement": "Engagemang", "impressions": "Visningar",
        "potential_reach": "Potentiell räckvidd", "engagement_per_post": "Engagemang / inlägg",
        "share_posts": "Andel av inläggen", "share_engagement": "Andel av engagemanget", "rank": "Plats",
        "no_visit": "Inget besök", "total": "Totalt", "at_age": "Engagemang efter inläggens ålder",
        "at_age_note": "Varje inläggs engagemang 24 timmar och 7 dygn efter publiceringen (senaste mätning "
                       "före det). Med: inlägg som har en sådan mätning.",
        "covered": "med", "charts": "Diagram", "top_posts": "Inlägg med mest engagemang",
        "open_post": "Öppna inlägget", "top_authors_posts": "Mest aktiva skribenter",
        "top_authors_reach": "Skribenter med störst publik", "author": "Skribent", "followers": "Följare",
        "unknown": "okänt", "none": "Inga inlägg.",
        "definitions": "Siffror: engagemang = gilla + delningar + svar + citat (okänt = 0); visningar endast "
                       "från plattformar som anger dem; potentiell räckvidd = summan av skribenternas senaste "
                       "antal följare, varje skribent en gång. Raderade inlägg räknas inte.",
        "posts_chart": "Inlägg per dag och besöksdagar", "engagement_chart": "Engagemang per besök",
    },
    "en": {
        "report": "Report", "generated": "Generated", "period": "Period", "whole": "whole campaign",
        "platform": "Platform", "all_platforms": "all platforms", "summary": "Summary", "visits": "Visits",
        "visit": "Visit", "date": "Date", "posts": "Posts", "originals": "Originals", "reposts": "Reposts",
        "replies": "Replies", "quotes": "Quotes", "unique_authors": "Authors", "likes": "Likes",
        "shares": "Shares", "reply_count": "Replies received", "quote_count": "Quotes received",
        "engagement": "Engagement", "impressions": "Impressions", "potential_reach": "Potential reach",
        "engagement_per_post": "Engagement / post", "share_posts": "Share of posts",
        "share_engagement": "Share of engagement", "rank": "Rank", "no_visit": "No visit", "total": "Total",
        "at_age": "Engagement by post age",
        "at_age_note": "Each post's engagement 24 hours and 7 days after posting (the last measurement "
                       "before then). Covered: posts that have such a measurement.",
        "covered": "covered", "charts": "Charts", "top_posts": "Top posts by engagement",
        "open_post": "Open post", "top_authors_posts": "Most active authors",
        "top_authors_reach": "Authors with the largest audience", "author": "Author", "followers": "Followers",
        "unknown": "unknown", "none": "No posts.",
        "definitions": "Figures: engagement = likes + shares + replies + quotes (unknown = 0); impressions "
                       "only from platforms that report them; potential reach = the sum of the authors' "
                       "latest follower counts, each author once. Deleted posts are not counted.",
        "posts_chart": "Posts per day and visit days", "engagement_chart": "Engagement per visit",
    },
}

TABLE_FIGURES = ("posts", "originals", "reposts", "replies", "quotes", "unique_authors", "likes", "shares",
                 "reply_count", "quote_count", "engagement", "impressions", "potential_reach")


# -- formatting (filters) -------------------------------------------------------------------------


def _number(value: Any, language: str, decimals: int = 0) -> str:
    if value is None:
        return "–"
    text = f"{value:,.{decimals}f}"
    if language in ("fi", "sv"):
        text = text.replace(",", "\u202f").replace(".", ",")
    return text


def _percent(value: float | None, language: str) -> str:
    if value is None:
        return "–"
    number = _number(value * 100, language, 1)
    return f"{number}\u00a0%" if language in ("fi", "sv") else f"{number}%"


def _date(value: dt.date | str | None, language: str) -> str:
    if value is None:
        return "–"
    day = dt.date.fromisoformat(value) if isinstance(value, str) else value
    if isinstance(day, dt.datetime):
        day = day.date()
    if language == "en":
        return f"{day.day} {day.strftime('%b')} {day.year}"
    return f"{day.day}.{day.month}.{day.year}"


def text_html(text: Any) -> Markup:
    """Plain post text as HTML: cleaned like every shown text (display_text: no bidi overrides or
    other invisible controls), escaped, line breaks kept as <br>, sanitised by nh3.
    No text (removed by retention or forget; pandas gives NaN for NULL) renders as empty."""
    text = display_text(text, MAX_TEXT, multiline=True)
    escaped = html.escape(text, quote=True).replace("\n", "<br>")
    return Markup(nh3.clean(escaped, tags={"br"}, attributes={}, url_schemes={"http", "https"},
                            strip_comments=True))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _environment(language: str) -> Environment:
    env = Environment(
        loader=PackageLoader("tracker", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v, d=0: _number(v, language, d)
    env.filters["pct"] = lambda v: _percent(v, language)
    env.filters["day"] = lambda v: _date(v, language)
    env.filters["text_html"] = text_html
    env.filters["safe_url"] = safe_url
    env.filters["prepend_hash"] = lambda tag: f"#{tag}"
    return env


# -- the report ----------------------------------------------------------------------------------


def report_context(db: Database, settings: Settings, platform: str | None = None, period: Period | None = None,
                   now: dt.datetime | None = None, top_n: int = 10) -> dict[str, Any]:
    """Everything the template shows, computed once (also handy for the weekly email)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    language = settings.campaign.language
    names = visit_names(settings)
    summary = summarise(db, settings, platform, period)
    ages = engagement_at_ages(db, settings, platform=platform, period=period, now=now)
    rows = visit_rows(summary, settings, ages)
    for row in rows:
        row["name"] = names[row["stop"]]
    stop_names: dict[str | None, str] = {**names, None: LABELS[language]["no_visit"]}
    posts = top_posts(db, settings, top_n, platform=platform, period=period)
    for post in posts:
        post["visit_name"] = stop_names.get(post["stop"], post["stop"])
        _clean_fields(post, ("platform", "author_name", "author_handle", "visit_name"))
    authors = {order: top_authors(db, settings, order, top_n, platform=platform, period=period)
               for order in ("posts", "reach")}
    for author in (*authors["posts"], *authors["reach"]):
        _clean_fields(author, ("platform", "handle", "display_name"))
    tz = settings.campaign.tz
    start, end = period or (None, None)
    return {
        "lang": language,
        "L": LABELS[language],
        "campaign": settings.campaign.name,
        "hashtags": settings.campaign.hashtags,
        "generated": now.astimezone(tz),
        "period_start": start.astimezone(tz).date() if start else None,
        "period_end": (end - dt.timedelta(microseconds=1)).astimezone(tz).date() if end else None,
        "platform": platform,
        "figures": TABLE_FIGURES,
        "totals": summary.totals,
        "no_visit": summary.no_visit,
        "visits": rows,
        "ages": list(AGES),
        "charts": {
            "posts_per_day": data_uri(posts_per_day_png(posts_per_day(db, settings, platform, period), names,
                                                        language)),
            "engagement_per_visit": data_uri(engagement_per_visit_png(summary.visits, names, language)),
        },
        "top_posts": posts,
        "top_authors_posts": authors["posts"],
        "top_authors_reach": authors["reach"],
    }


def _clean_fields(row: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Public names shown as one clean line (display_text, as the email does); missing as None."""
    for key in keys:
        row[key] = display_text(row.get(key), MAX_NAME) or None


def render_report(db: Database, settings: Settings, platform: str | None = None, period: Period | None = None,
                  now: dt.datetime | None = None, top_n: int = 10) -> str:
    """The report as one HTML string in the campaign language."""
    context = report_context(db, settings, platform, period, now, top_n)
    return render_context(context)


def render_context(context: Mapping[str, Any]) -> str:
    """Render a `report_context` (possibly adjusted by the caller) to HTML."""
    return _environment(context["lang"]).get_template("report.html.j2").render(**context)


def write_report(db: Database, settings: Settings, out: str | Path, platform: str | None = None,
                 period: Period | None = None, now: dt.datetime | None = None, top_n: int = 10) -> Path:
    """Render and write the report atomically (a reader never sees half a file)."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    page = render_report(db, settings, platform, period, now, top_n)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
