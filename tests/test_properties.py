"""Property-based tests: the normalisers and the tagger accept anything the outside world sends.

- `html_to_text` takes any string (or None) and returns plain text with no markup that could
  come alive again, idempotent on its own output's escape;
- `row_to_post` either returns a valid post or raises BadRow/ValueError (never anything else);
- `Tagger.tag` takes any text and any aware datetime.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings, strategies as st

from tracker.importer import COLUMNS, BadRow, row_to_post
from tracker.platforms.html_text import html_to_text
from tracker.posts import NormalisedPost
from tracker.privacy import Pseudonymiser, pseudonym
from tracker.settings import parse_settings
from tracker.tagging import Tagger

SETTINGS = parse_settings({
    "campaign": {"name": "P", "hashtags": ["ihmisensote"]},
    "tour": {"stops": [{"area": "pirkanmaa", "date": "2023-02-09", "aliases": ["Tampere-talo"]},
                       {"area": "lappi", "date": "2023-03-27"}, {"area": "kainuu"}]},
}, env={})
TAGGER = Tagger(SETTINGS.tour.stops, SETTINGS.campaign.timezone, 3, 7)  # loads its dictionary once
TZ = ZoneInfo("Europe/Helsinki")
FETCHED = dt.datetime(2023, 3, 1, tzinfo=dt.timezone.utc)

PROPS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

TAGS = ["p", "br", "a", "span", "script", "style", "img", "iframe", "svg", "b", "div", "textarea", "!--", "math"]
html_fragments = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(TAGS).map(lambda t: f"<{t}>"),
        st.sampled_from(TAGS).map(lambda t: f"</{t}>"),
        st.sampled_from(['<a href="javascript:alert(1)">', '<img src=x onerror=alert(1)>', "<!--", "-->",
                         "&lt;", "&amp;", "&#0;", "&#x110000;", "&nbsp;", "<![CDATA[", "\x00", "\r\n", "\u2028",
                         '<span class="invisible">', "Tampereella", "#ihmisensote", "<p style='x:url(y)'>"]),
    ),
    max_size=25,
).map("".join)

ANY_TIME = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                        timezones=st.one_of(st.timezones(),
                                            st.sampled_from([dt.timezone.utc, TZ, ZoneInfo("America/St_Johns"),
                                                             dt.timezone(dt.timedelta(hours=14)),
                                                             dt.timezone(dt.timedelta(hours=-12))])))


@PROPS
@given(st.one_of(st.none(), st.text(), html_fragments))
def test_html_to_text_never_raises_and_leaves_no_tags(content: str | None) -> None:
    text = html_to_text(content)
    assert isinstance(text, str)
    assert text == text.strip()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
    assert "\n\n\n" not in text
    # nothing the sanitiser let through survives as a live tag: any '<' left came from text
    # (an entity or a lone '<'), never an element nh3 kept
    if content and "&" not in content and "<" not in content:
        assert "<" not in text


@PROPS
@given(html_fragments)
def test_html_to_text_drops_script_and_style_content(content: str) -> None:
    marked = f"<p>ok<script>SCRIPTMARK</script><style>STYLEMARK</style>{content}</p>"
    text = html_to_text(marked)
    if "SCRIPTMARK" not in content:
        assert "SCRIPTMARK" not in text
    if "STYLEMARK" not in content:
        assert "STYLEMARK" not in text


cell = st.one_of(st.none(), st.text(max_size=40), st.sampled_from([
    "x", "instagram", "LinkedIn", "2023-02-09T10:00:00+02:00", "2023-02-09 12:00", "2023-02-30", "9999-12-31T23:59",
    "0001-01-01", "12", "-1", "1e3", "1,5", "99999999999999999999999", "reply", "quote", "https://x.example/1",
    "javascript:alert(1)", " ", "#a #b", "=cmd", "\x00",
]))
rows = st.dictionaries(st.sampled_from([*COLUMNS, "extra", ""]), cell, max_size=len(COLUMNS) + 2)
valid_rows = st.fixed_dictionaries(
    {"platform": st.sampled_from(["instagram", "linkedin", "tiktok"]), "id": st.text(min_size=1, max_size=20),
     "created_at": st.sampled_from(["2023-02-09T10:00:00+02:00", "2023-02-09 12:00", "2023-02-09T10:00:00Z"]),
     "author": st.text(min_size=1, max_size=20)},
    optional={c: cell for c in COLUMNS if c not in ("platform", "id", "created_at", "author")},
)


@PROPS
@given(st.one_of(rows, valid_rows))
def test_row_to_post_returns_a_post_or_a_bad_row(row: dict) -> None:
    try:
        post = row_to_post(row, TZ, FETCHED)
    except (BadRow, ValueError):
        return
    assert isinstance(post, NormalisedPost)
    assert post.created_at.tzinfo is not None and post.created_at.utcoffset() == dt.timedelta(0)
    assert post.platform and post.platform == post.platform.lower()
    assert all(tag == tag.lower() and not tag.startswith("#") for tag in post.hashtags)
    assert post.url is None or post.url.lower().startswith(("http://", "https://"))
    for value in (post.metrics.likes, post.metrics.reposts, post.metrics.replies, post.metrics.quotes):
        assert value is None or isinstance(value, int)


words = st.sampled_from(["Tampereella", "Tampere", "Pirkanmaa", "Rovaniemellä", "Lappi", "Kainuu", "Kajaani",
                         "Tampere-talo", "#ihmisensote", "ja", "kiertue", "Åbo", "Helsingissä", "sote"])
texts = st.one_of(st.text(), st.lists(st.one_of(words, st.text(max_size=8)), max_size=30).map(" ".join))


@PROPS
@given(texts, st.lists(st.text(max_size=15), max_size=5), ANY_TIME)
def test_tagger_accepts_any_text_and_any_aware_time(text: str, hashtags: list[str], when: dt.datetime) -> None:
    result = TAGGER.tag(text, hashtags, when)
    stop_ids = {s.id for s in SETTINGS.tour.stops}
    a = result.attribution
    assert a.stop_id is None or a.stop_id in stop_ids
    assert 0.0 <= a.confidence <= 1.0
    assert isinstance(result.local_date, dt.date)


handle_chars = string.ascii_letters + string.digits + "_.@-"


@PROPS
@given(st.dictionaries(st.tuples(st.sampled_from(["x", "mastodon", "bluesky"]),
                                 st.text(handle_chars, min_size=1, max_size=20).map(str.lower)),
                       st.text(min_size=1, max_size=20), max_size=8),
       st.text(max_size=200))
def test_pseudonymiser_never_raises_and_is_stable(identities: dict, text: str) -> None:
    p = Pseudonymiser("k", identities)
    once = p.text(text)
    assert once == p.text(text)
    for (platform, handle), platform_id in identities.items():
        assert p.author(platform, handle) == pseudonym("k", platform, platform_id)
