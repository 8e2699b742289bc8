"""Hostile post content never becomes active content; secrets never leave the environment.

- Texts, names and links with <script>, event handlers, javascript: links and CSS are stored
  (directly, and through the fake Mastodon server with the real client) and rendered into the
  HTML report and the weekly email: both are parsed and checked for active content.
- Unique secret values planted in every secret variable are searched for in every output of a
  round of real commands (`-vv`): stdout, stderr, files written, and a dump of the database.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.db import Database, open_database
from storage.models import Base
from storage.queries import TagRow, store_tags
from storage.upserts import store_posts
from tests import test_summary as data
from tests.helpers.fake_campaign import Fakes, Sleeps, hours_ago, make_settings, start_fakes
from tracker.collect import run_collection
from tracker.platforms.base import Policy
from tracker.platforms.registry import build_adapters, close_adapters
from tracker.posts import Author, Metrics, NormalisedPost
from tracker.report_html import render_report
from tracker.weekly import Week, build_message

UTC = dt.timezone.utc
REPO = Path(__file__).resolve().parent.parent
MARK = "PWNED"

PAYLOADS = [
    f"<script>alert('{MARK}1')</script> Tampereella",
    f"<img src=x onerror=\"alert('{MARK}2')\"> Tampere",
    f"<a href=\"javascript:alert('{MARK}3')\">klikkaa</a>",
    f"<style>body{{display:none}} /* {MARK}4 */</style>",
    f"<p style=\"background:url(javascript:alert('{MARK}5'))\">tyyli</p>",
    f"<svg onload=alert('{MARK}6')><script>alert(1)</script></svg>",
    f"</textarea></title></style><script>alert('{MARK}7')</script>",
    f"<iframe src=\"javascript:alert('{MARK}8')\"></iframe>",
    f"\"><body onload=alert('{MARK}9')>",
    f"<div onmouseover=\"alert('{MARK}10')\">hover</div> javascript:alert('{MARK}11')",
    f"<math><mtext><table><mglyph><style><img src=x onerror=alert('{MARK}12')>",
    f"<<script>script>alert('{MARK}13')<</script>/script>",
]


class Inspector(HTMLParser):
    """Every start tag with its attributes, and the text inside <style> and <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.raw: dict[str, list[str]] = {"style": [], "script": []}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1] in self.raw:
            self.raw[self._open[-1]].append(data)


def assert_inert(page: str) -> None:
    """No script elements, no event handlers, no javascript: URLs, no injected CSS."""
    parser = Inspector()
    parser.feed(page)
    parser.close()
    names = [t for t, _ in parser.tags]
    for forbidden in ("script", "iframe", "object", "embed", "svg", "math", "form", "base", "link"):
        assert forbidden not in names, forbidden
    # at most the template's own stylesheet, with nothing of the posts in it
    assert names.count("style") <= 1
    style = "".join(parser.raw["style"])
    assert MARK not in style and "display:none" not in style.replace(" ", "") and "javascript" not in style
    for tag, attrs in parser.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, value)
            low = (value or "").lower().replace(" ", "")
            assert "javascript:" not in low, (tag, name, value)
            assert MARK not in (value or ""), (tag, name, value)
            if name == "style":
                assert "url(" not in low and "expression(" not in low, (tag, value)
        if tag == "a":
            assert (attrs.get("href") or "").startswith(("http://", "https://", "mailto:")), attrs
        if tag == "img":
            src = attrs.get("src") or ""
            assert src.startswith(("data:image/png;base64,", "cid:")), src[:40]
    assert "javascript:alert" not in page.lower().replace("&#x27;", "'").replace("&#39;", "'") or \
        "&lt;" in page  # only ever as escaped text


def html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return part.get_content()  # type: ignore[no-any-return]


def hostile_posts() -> list[NormalisedPost]:
    posts = []
    for i, payload in enumerate(PAYLOADS):
        created = dt.datetime(2023, 2, 9, 9, tzinfo=UTC) + dt.timedelta(minutes=i)
        posts.append(NormalisedPost(
            platform="x", platform_id=f"h{i}",
            author=Author(platform_id=f"u{i}", handle=f"h{i}<script>{MARK}</script>",
                          display_name=payload, url=f"javascript:alert('{MARK}u{i}')", followers=10_000 + i),
            text=payload + " #ihmisensote", created_at=created, fetched_at=created + dt.timedelta(hours=1),
            url=f"javascript:alert('{MARK}p{i}')" if i % 2 else f"https://x.example/h{i}\" onclick=\"alert(1)",
            hashtags=("ihmisensote",), metrics=Metrics(likes=1000 + i, reposts=5, replies=1, quotes=0, views=9),
        ))
    return posts


def test_report_and_weekly_email_are_inert(db: Database) -> None:
    settings = data.make_settings("en")
    data.build_campaign(db, settings)
    with db.write() as s:
        ids = store_posts(s, hostile_posts()).ids
        store_tags(s, [TagRow(post_id=i, areas=["pirkanmaa"], stop_id="pirkanmaa", method="area", confidence=0.9,
                              local_date=dt.date(2023, 2, 9)) for i in ids.values()], data.NOW)
    page = render_report(db, settings, now=data.NOW, top_n=20)
    assert_inert(page)
    assert "&lt;script&gt;" in page  # shown, as text
    message = build_message(db, settings, Week(2023, 6), now=dt.datetime(2023, 2, 13, 7, tzinfo=UTC), top_n=20)
    body = html_part(message)
    assert_inert(body)
    assert MARK in body  # the hostile posts are in the email, as text


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    yield from start_fakes()


def test_mastodon_html_collected_then_rendered_is_inert(fakes: Fakes, tmp_path: Path) -> None:
    settings = make_settings(fakes, f"sqlite:///{tmp_path / 't.db'}")
    alice = fakes.m1.add_account("alice", display_name=f"<img src=x onerror=alert('{MARK}')>Alice",
                                 followers=5)
    for i, payload in enumerate(PAYLOADS):
        fakes.m1.post(alice, content=f"<p>Tampereella {payload} "
                                     f"<a href=\"https://m1.example/tags/ihmisensote\">#ihmisensote</a></p>",
                      tags=["ihmisensote"], created_at=hours_ago(5 - i * 0.1))
    db = open_database(settings.database_url)
    adapters = build_adapters(settings, only="mastodon", policy=Policy(sleep=Sleeps()))
    try:
        [result] = run_collection(db, adapters)  # untagged: "no visit" posts are rendered too
        assert result.new == len(PAYLOADS), result.line()
        from storage.models import Post

        with db.read() as s:
            texts = list(s.scalars(select(Post.text)))
        assert len(texts) == len(PAYLOADS)
        for text in texts:  # plain text: tags gone, their script/style content dropped
            assert "<script" not in text and "<style" not in text and "onerror" not in text
        now = dt.datetime.now(UTC)
        assert_inert(render_report(db, settings, now=now, top_n=20))
        week = Week.of(now.astimezone(settings.campaign.tz).date())
        assert_inert(html_part(build_message(db, settings, week, now=now, top_n=20)))
    finally:
        close_adapters(adapters)
        db.dispose()


# -- secrets ------------------------------------------------------------------------------------

SECRETS = {
    "TRACKER_X_BEARER_TOKEN": "sekret-X-7f3a9c1e55d2",
    "TRACKER_BLUESKY_APP_PASSWORD": "sekret-BSKY-0b8e44aa19",
    "TRACKER_SMTP_PASSWORD": "sekret-SMTP-c61d2f7e08",
    "TRACKER_PSEUDONYM_KEY": "sekret-PSEUDO-9a0e1b2c3d",
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml(value: Any) -> str:
    return json.dumps(value)


def test_secrets_never_leave_the_environment(fakes: Fakes, tmp_path: Path) -> None:
    from tracker.settings import mastodon_token_variable

    secrets = dict(SECRETS)
    secrets[mastodon_token_variable(fakes.m1.base_url)] = "sekret-MASTO-5e6f7a8b9c"
    bob = fakes.m2.add_account("bob", followers=12)
    for i in range(4):
        fakes.m2.post(bob, f"Tampereella {i} #ihmisensote", created_at=hours_ago(3 - i * 0.5))
    x_user = fakes.x.add_user("sote", followers=5)
    fakes.x.add_tweet(x_user, "Tampere #ihmisensote", created_at=hours_ago(1))
    today = dt.datetime.now(UTC).date()
    settings = tmp_path / "settings.toml"
    settings.write_text(f"""
[campaign]
name = "Secret test"
hashtags = ["ihmisensote"]
[[tour.stops]]
area = "pirkanmaa"
date = {today.isoformat()}
[storage]
url = {toml('sqlite:///' + str(tmp_path / 'tracker.db'))}
[platforms.x]
enabled = true
base_url = {toml(fakes.x.base_url)}
[platforms.mastodon]
enabled = true
instances = [{toml(fakes.m1.base_url)}, {toml(fakes.m2.base_url)}]
[platforms.bluesky]
enabled = true
base_url = {toml(fakes.bsky.base_url)}
handle = "tracker.bsky.social"
[email]
host = "127.0.0.1"
port = {closed_port()}
security = "none"
username = "tracker@example.fi"
sender = "tracker@example.fi"
recipients = ["tiimi@example.fi"]
""", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    env.update(secrets, TRACKER_SETTINGS=str(settings), PYTHONPATH=str(REPO), NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", COLUMNS="200")
    out = tmp_path / "out"
    week = Week.of(today).label
    commands = [
        ["collect"],  # X and Bluesky refuse the planted (wrong) credentials, m1 its token; m2 works
        ["refresh-metrics"],
        ["status"],
        ["export", "--format", "csv", "--out", str(out / "csv")],
        ["export", "--out", str(out / "export.xlsx")],
        ["export", "--pseudonymise", "--format", "csv", "--out", str(out / "pseudo")],
        ["report", "html", "--out", str(out / "report.html")],
        ["report", "weekly", "--week", week, "--out", str(out / "mail")],
        ["settings", "check"],
        ["report", "weekly", "--week", week, "--send", "--force"],  # SMTP server unreachable: an error
    ]
    # one Python process runs the commands one after another (as separate `tracker -vv ...`
    # invocations would, but paying the imports once): everything they print is captured
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(commands)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    transcript = [proc.stdout, proc.stderr]
    codes = dict(line.split("\t")[1:] for line in proc.stdout.splitlines() if line.startswith("EXIT\t"))
    assert set(codes) == {" ".join(c) for c in commands}, proc.stderr[-3000:]
    log = "\n".join(transcript)
    # the round really ran: collected from m2, auth errors reported, the send failed
    assert codes["collect"] == "1" and "401" in log or "auth" in log.lower()
    assert "DEBUG" in log, log[-2000:]
    assert (out / "report.html").exists() and (out / "csv" / "posts.csv").exists()
    assert list((out / "mail").glob("*.eml")) and (out / "export.xlsx").exists()
    assert codes[" ".join(commands[-1])] == "1"  # the unreachable SMTP server
    assert "bob" in (out / "csv" / "posts.csv").read_text(encoding="utf-8-sig")

    haystacks: dict[str, str] = {"stdout+stderr": log}
    for path in tmp_path.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        haystacks[str(path)] = raw.decode("utf-8", "replace")
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as book:
                for name in book.namelist():
                    haystacks[f"{path}:{name}"] = book.read(name).decode("utf-8", "replace")
        if path.suffix == ".eml":
            message = message_from_bytes(raw, policy=policy.default)
            haystacks[f"{path}:headers"] = str(message.items())
            for part in message.walk():
                if part.get_content_maintype() in ("text",):
                    haystacks[f"{path}:{part.get_content_type()}"] = part.get_content()
    haystacks["database"] = dump_database(f"sqlite:///{tmp_path / 'tracker.db'}")
    assert "bob" in haystacks["database"]
    for name, value in secrets.items():
        for where, text in haystacks.items():
            assert value not in text, f"{name} leaked into {where}"
            assert value[7:] not in text, f"part of {name} leaked into {where}"


DRIVER = """
import json, sys
from tracker.cli import cli
for args in json.loads(sys.argv[1]):
    try:
        cli.main(["-vv", *args], prog_name="tracker", standalone_mode=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush(); sys.stderr.flush()
    print("EXIT\\t" + " ".join(args) + "\\t" + str(code), flush=True)
"""


def dump_database(url: str) -> str:
    """Every value of every row of every table, as text."""
    db = open_database(url)
    try:
        lines = []
        with db.read() as s:
            for table in Base.metadata.sorted_tables:
                for row in s.execute(select(table)):
                    lines.append(f"{table.name}: " + " | ".join(map(str, row)))
        return "\n".join(lines)
    finally:
        db.dispose()
