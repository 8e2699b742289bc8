"""Secrets quoted back by servers never reach a terminal, a log or the database, in any encoding.

- `redact` itself: plain, base64 at each of the three alignments (AUTH PLAIN is base64 of
  "\\0user\\0password"), URL-safe base64, base64 wrapped over lines, percent-encoded, JSON-escaped.
- A real SMTP server (aiosmtpd) that refuses every login and quotes the client's AUTH argument
  back: the error raised, the row in `sent_reports` (SQLite and PostgreSQL) and everything the
  real `tracker` command prints with `-vv` hold no form of the password.
- The fake Bluesky server refusing the login with the credentials quoted in its error: the run
  and the gap stored (both databases) and the log hold none of them.
- The log formatter removes them from tracebacks too.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from storage.db import open_database
from storage.models import CollectionRun, Gap, SentReport
from tests.helpers.fake_campaign import BSKY_PASSWORD, Fakes, Sleeps, make_settings, start_fakes
from tests.test_weekly import NOW, PASSWORD, W06, free_port, make_app  # noqa: F401 - make_app: fixture
from tracker.app import setup_logging
from tracker.collect import run_collection
from tracker.mailer import MailError
from tracker.platforms.base import Policy
from tracker.platforms.registry import build_adapters, close_adapters
from tracker.redaction import base64_cores, redact
from tracker.weekly import send_weekly

REPO = Path(__file__).resolve().parent.parent


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def leaks(text: str, secret: str) -> list[str]:
    """Every form of `secret` still in `text` (empty when it is clean)."""
    found = [form for form in (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
                               json.dumps(secret)[1:-1]) if form in text]
    compact = "".join(text.split())  # base64 wrapped over lines, too
    found += [core for core in base64_cores(secret) if core in compact]
    found += [core.replace("+", "-").replace("/", "_") for core in base64_cores(secret)
              if core.replace("+", "-").replace("/", "_") in compact]
    return found


# -- redact --------------------------------------------------------------------------------------

SECRET = "s3cret/Pa55+wörd&x"


@pytest.mark.parametrize("user", ["u", "us", "use", "tracker@example.fi"])
def test_auth_plain_at_every_alignment(user: str) -> None:
    argument = b64(f"\0{user}\0{SECRET}")
    assert leaks(argument, SECRET)  # the check sees it before ...
    text = f"535 5.7.8 Error: authentication failed: {argument} (AUTH PLAIN)"
    clean = redact(text, [SECRET])
    assert clean == "535 5.7.8 Error: authentication failed: *** (AUTH PLAIN)"  # ... and not after
    assert leaks(clean, SECRET) == []


@pytest.mark.parametrize("text", [
    f"AUTH LOGIN answer {b64(SECRET)} refused",
    f"token {base64.urlsafe_b64encode(('ab' + SECRET).encode()).decode().rstrip('=')} refused",
    f"GET /login?user=u&password={urllib.parse.quote(SECRET, safe='')} -> 401",
    "GET /login?password=" + re.sub("%..", lambda m: m.group().lower(), urllib.parse.quote_plus(SECRET)),
    f"body was {json.dumps({'password': SECRET})}",
    "wrapped:\n" + base64.encodebytes(("\0user\0" + SECRET * 6).encode()).decode(),
    f"plain {SECRET} and again {SECRET}",
])
def test_every_encoding(text: str) -> None:
    clean = redact(text, [SECRET])
    assert "***" in clean and leaks(clean, SECRET) == [] and "%c3%b6" not in clean


def test_other_text_is_left_alone() -> None:
    text = f"535 5.7.8 {b64('nothing secret here')} user tracker@example.fi at 127.0.0.1:587"
    assert redact(text, [SECRET, "pw", None]) == text  # "pw": too short to be searched for
    assert redact("", [SECRET]) == ""


# -- SMTP: a server that quotes the AUTH argument -----------------------------------------------


class QuotingServer:
    """aiosmtpd handler: refuses every login, quoting what the client sent (base64, as sent)."""

    def __init__(self) -> None:
        self.quoted: list[str] = []

    async def auth_PLAIN(self, server: Any, args: list[str]) -> AuthResult:  # noqa: N802 - aiosmtpd's name
        argument = args[1] if len(args) > 1 else b64(await server.challenge_auth("", encode_to_b64=False))
        self.quoted.append(argument)
        return AuthResult(success=False, handled=False,
                          message=f"535 5.7.8 Authentication credentials invalid: AUTH PLAIN {argument}")

    async def auth_LOGIN(self, server: Any, args: list[str]) -> AuthResult:  # noqa: N802
        user = args[1] if len(args) > 1 else b64(await server.challenge_auth("Username:"))
        password = b64(await server.challenge_auth("Password:"))
        self.quoted.append(password)
        return AuthResult(success=False, handled=False,
                          message=f"535 5.7.8 Login {user} with password {password} refused")


@pytest.fixture(params=["PLAIN", "LOGIN"])
def quoting_smtp(request: pytest.FixtureRequest) -> Iterator[tuple[QuotingServer, int, str]]:
    """A plain SMTP server offering one AUTH mechanism, which always refuses and quotes."""
    mechanism = request.param
    handler = QuotingServer()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, auth_require_tls=False,
                            authenticator=lambda *args: AuthResult(success=False),
                            auth_exclude_mechanism=["LOGIN" if mechanism == "PLAIN" else "PLAIN"])
    controller.start()
    try:
        yield handler, port, mechanism
    finally:
        controller.stop()


@pytest.mark.usefixtures("quick_charts")
@pytest.mark.parametrize(("quoting_smtp", "username"), [
    ("PLAIN", "tracker"), ("PLAIN", "tracker1"), ("PLAIN", "tracker12"),  # the password at offsets 0, 1, 2 mod 3
    ("LOGIN", "tracker"),  # AUTH LOGIN sends the password base64'd on its own
], indirect=["quoting_smtp"])
def test_smtp_refusal_quoting_the_credentials(db_url: str, quoting_smtp: tuple[QuotingServer, int, str],
                                              make_app: Any, username: str) -> None:
    server, port, mechanism = quoting_smtp
    app = make_app(db_url, port, username=username)
    with pytest.raises(MailError) as caught:
        send_weekly(app.database(), app.settings, W06, now=NOW)
    # the server did quote the password, base64'd as the client sent it
    [quoted] = server.quoted
    sent = base64.b64decode(quoted)
    assert sent.split(b"\0")[-1] == PASSWORD.encode() if mechanism == "PLAIN" else sent == PASSWORD.encode()
    message = str(caught.value)
    assert f"refused the login of {username}: 535 5.7.8" in message and "***" in message
    assert leaks(message, PASSWORD) == [] and quoted not in message
    with app.database().read() as s:
        [row] = s.scalars(select(SentReport))
    assert row.status == "failed" and "535" in (row.error or "")
    assert leaks(row.error or "", PASSWORD) == [] and quoted not in (row.error or "")


@pytest.fixture
def quick_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    import tracker.weekly

    png = b"\x89PNG\r\n\x1a\nstub"
    monkeypatch.setattr(tracker.weekly, "posts_per_day_png", lambda *a, **k: png)
    monkeypatch.setattr(tracker.weekly, "engagement_per_visit_png", lambda *a, **k: png)


def test_the_command_prints_and_logs_no_form_of_the_password(quoting_smtp: tuple[QuotingServer, int, str],
                                                              make_app: Any, tmp_path: Path) -> None:
    server, port, mechanism = quoting_smtp
    app = make_app(f"sqlite:///{tmp_path / 'tracker.db'}", port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    env.update(TRACKER_SMTP_PASSWORD=PASSWORD, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "tracker", "-vv", "--settings", app.settings_path,
                           "report", "weekly", "--week", "2023-W06", "--send"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "refused the login of tracker: 535" in proc.stderr, output[-2000:]
    [quoted] = server.quoted
    assert leaks(output, PASSWORD) == [] and quoted not in output
    db = open_database(f"sqlite:///{tmp_path / 'tracker.db'}")
    try:
        with db.read() as s:
            assert [leaks(r.error or "", PASSWORD) for r in s.scalars(select(SentReport))] == [[]]
    finally:
        db.dispose()


# -- collection errors: a platform server quoting the credentials --------------------------------


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    yield from start_fakes()


def test_platform_error_quoting_the_credentials(fakes: Fakes, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    handle = "tracker.bsky.social"
    quoted = (f"Invalid identifier or password: Basic {b64(f'{handle}:{BSKY_PASSWORD}')}, "
              f"form identifier={handle}&password={urllib.parse.quote(BSKY_PASSWORD + '&')}")
    fakes.bsky.fail_next(401, nsid="com.atproto.server.createSession", error="AuthenticationRequired",
                         message=quoted, count=5)
    settings = make_settings(fakes, db_url)
    db = open_database(db_url)
    adapters = build_adapters(settings, only="bluesky", policy=Policy(sleep=Sleeps()))
    try:
        with caplog.at_level(logging.DEBUG):
            [result] = run_collection(db, adapters)
        assert result.status == "failed" and "Invalid identifier or password" in result.line()
        with db.read() as s:
            errors = [r.error or "" for r in s.scalars(select(CollectionRun))]
            reasons = [g.reason or "" for g in s.scalars(select(Gap))]
    finally:
        close_adapters(adapters)
        db.dispose()
    assert any("Invalid identifier or password" in e for e in errors) and reasons
    for text in (*errors, *reasons, result.line(), *result.errors):
        assert leaks(text, BSKY_PASSWORD) == [], text
    formatted = "\n".join(logging.Formatter().format(r) for r in caplog.records)  # as any log handler gets it
    assert "Invalid identifier" in formatted and leaks(formatted, BSKY_PASSWORD) == []


# -- logging ---------------------------------------------------------------------------------------


def test_log_lines_and_tracebacks_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging(2, [SECRET])
        log = logging.getLogger("tracker.test")
        try:
            raise RuntimeError(f"server said: AUTH PLAIN {b64(chr(0) + 'u' + chr(0) + SECRET)}")
        except RuntimeError:
            log.exception("sending failed with %s", urllib.parse.quote(SECRET))
        err = capsys.readouterr().err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "sending failed with ***" in err and "RuntimeError: server said: AUTH PLAIN ***" in err
    assert "Traceback" in err and leaks(err, SECRET) == []
