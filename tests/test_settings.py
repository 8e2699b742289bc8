"""Settings: the shipped file is valid, every bad case is one clear line naming the key."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracker.errors import SettingsError
from tracker.settings import load_settings, mastodon_token_variable

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """
[campaign]
name = "Test tour"
hashtags = ["ihmisensote"]

[[tour.stops]]
area = "pirkanmaa"
date = 2023-02-09
"""


def write(tmp_path: Path, body: str, name: str = "settings.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def load(tmp_path: Path, body: str, env: dict[str, str] | None = None):
    return load_settings(write(tmp_path, body), env=env or {})


def error_of(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        load(tmp_path, body, env)
    message = str(info.value)
    assert "\n" not in message, "one line"
    assert info.value.exit_code == 2
    return message


def test_shipped_settings_are_the_2023_tour() -> None:
    settings = load_settings(REPO / "settings.toml", env={})
    stops = settings.tour.stops
    assert len(stops) == 22
    assert {s.area for s in stops} == {s.id for s in stops}  # one stop per area, ids default to area
    first = settings.tour.get("pirkanmaa")
    assert first.date == dt.date(2023, 2, 9)
    assert [s.id for s in stops if s.date is not None] == ["pirkanmaa"]
    assert settings.campaign.hashtags == ["ihmisensote"]
    assert settings.campaign.timezone == "Europe/Helsinki"
    assert settings.campaign.language == "fi"
    assert (settings.tagging.days_before, settings.tagging.days_after) == (3, 7)
    # the default SQLite file lives next to the settings file, wherever the command runs
    assert settings.database_url == f"sqlite:///{(REPO / 'tracker.db').resolve()}"


def test_defaults_and_normalisation(tmp_path: Path) -> None:
    settings = load(tmp_path, """
        [campaign]
        name = "T"
        hashtags = ["#IhmisenSote", "ihmisensote", "SoteUudistus"]
        [[tour.stops]]
        area = "lappi"
        date = "2023-05-02"
        [[tour.stops]]
        area = "lappi"
        id = "lappi-2"
        aliases = ["#RovaniemiSote", "Lappia-talo"]
        """)
    assert settings.campaign.hashtags == ["ihmisensote", "soteuudistus"]
    assert settings.campaign.language == "fi"
    assert settings.tour.stops[0].date == dt.date(2023, 5, 2)
    assert settings.tour.stops[1].id == "lappi-2" and settings.tour.stops[1].date is None
    assert settings.storage.url == f"sqlite:///{(tmp_path / 'tracker.db').resolve()}"
    assert settings.platforms.x.enabled is False
    assert settings.email.security == "starttls"


def test_campaign_hashtags_are_normalised_as_collected_ones_are(tmp_path: Path) -> None:
    from tracker.hashtags import campaign_tags, carries_campaign_tag, hashtags_in_text

    settings = load(tmp_path, """
        [campaign]
        name = "T"
        hashtags = ["İhmisenSote", "＃İHMISENSOTE", "ＳｏｔｅＴｕｒｎé", "#Sote_2023"]
        """)
    assert settings.campaign.hashtags == ["ihmisensote", "soteturné", "sote_2023"]
    # the same form as a collected or imported post's tags: they match
    ours = campaign_tags(settings.campaign.hashtags)
    assert carries_campaign_tag(hashtags_in_text("Hienoa! #İhmisenSote"), ours)
    assert carries_campaign_tag(["ＳＯＴＥＴＵＲＮÉ"], ours) and not carries_campaign_tag(["ihmisen"], ours)
    assert "'#ihmisen sote' is not a hashtag" in error_of(
        tmp_path, '[campaign]\nname = "T"\nhashtags = ["#ihmisen sote"]\n')


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[[tour.stops]]\narea = "pirkanma"\ndate = 2023-02-09',
         "tour.stops[2].area: unknown area id 'pirkanma' (did you mean 'pirkanmaa'?)"),
        ('[[tour.stops]]\narea = "atlantis"', "tour.stops[2].area: unknown area id 'atlantis'; known ids:"),
        ('[[tour.stops]]\narea = "pirkanmaa"\ndate = 2023-09-01',
         "tour.stops: duplicate stop id 'pirkanmaa' (stops 1 and 2)"),
        ('[[tour.stops]]\narea = "lappi"\ndate = "1.5.2023"',
         "tour.stops[2].date: '1.5.2023' is not a date (write it as YYYY-MM-DD)"),
        ('[[tour.stops]]\narea = "lappi"\ndate = 2023-05-01T10:00:00',
         "tour.stops[2].date: give a date (YYYY-MM-DD), not a date and time"),
        ('[[tour.stops]]\narea = "lappi"\ndate = 20230501', "tour.stops[2].date: "),
        ('[[tour.stops]]\narea = "lappi"\nid = "Lappi 2"', "stop id 'Lappi 2' must be lower-case"),
        ('[[tour.stops]]\narea = "lappi"\ncolour = "red"', "tour.stops[2].colour: unknown key"),
        ('[tagging]\ndays_before = "3"', "tagging.days_before: input should be a valid integer, got '3'"),
        ('[tagging]\ndays_after = -1', "tagging.days_after: input should be greater than or equal to 0"),
        ('[tagging]\nwindow = 3', "tagging.window: unknown key"),
        ('[storage]\nurl = "mysql://localhost/x"', "storage.url: unsupported database 'mysql'"),
        ('[storage]\nurl = "not a url"', "storage.url: 'not a url' is not a database URL"),
        ('[storage]\nauto_upgrade = "yes"', "storage.auto_upgrade: input should be a valid boolean"),
        ('[platforms.x]\nenabled = 1', "platforms.x.enabled: input should be a valid boolean"),
        ('[platforms.x]\nbase_url = "ftp://x"', "platforms.x.base_url: 'ftp://x' is not an http(s) URL"),
        ('[platforms.x]\npage_size = 500', "platforms.x.page_size: input should be less than or equal to 100"),
        ('[platforms.mastodon]\nenabled = true', "platforms.mastodon: enabled but no `instances` listed"),
        ('[platforms.mastodon]\ninstances = "https://a.example"', "platforms.mastodon.instances: input should be a valid list"),
        ('[platforms.threads]\nenabled = true', "platforms.threads: unknown key"),
        ('[email]\nsecurity = "tls"', "email.security: input should be 'starttls', 'ssl' or 'none'"),
        ('[email]\nport = 70000', "email.port: input should be less than or equal to 65535"),
        ('[email]\nrecipients = ["team at example.org"]', "email.recipients: 'team at example.org' is not an email address"),
        ('[email]\npassword = "hunter2"', "email.password: secrets are not read from the settings file; set the environment variable TRACKER_SMTP_PASSWORD"),
        ('[platforms.x]\nbearer_token = "AAAA"', "platforms.x.bearer_token: secrets are not read from the settings file; set the environment variable TRACKER_X_BEARER_TOKEN"),
        ('[reporting]\nday = "monday"', "reporting: unknown key"),
    ],
)
def test_each_bad_setting_is_one_line_naming_key(tmp_path: Path, body: str, expected: str) -> None:
    message = error_of(tmp_path, MINIMAL + "\n" + body)
    assert expected in message
    assert message.startswith(str(tmp_path / "settings.toml"))


@pytest.mark.parametrize(
    ("campaign", "expected"),
    [
        ('name = "T"\nhashtags = ["ihmisensote"]\ntimezone = "Europe/Helsingfors"',
         "campaign.timezone: unknown timezone 'Europe/Helsingfors'"),
        ('name = "T"\nhashtags = ["ihmisensote"]\nlanguage = "de"', "campaign.language: input should be 'fi', 'sv' or 'en'"),
        ('name = "T"\nhashtags = []', "campaign.hashtags: list should have at least 1 item"),
        ('name = "T"\nhashtags = ["ihmisen sote"]', "campaign.hashtags: 'ihmisen sote' is not a hashtag"),
        ('name = "T"\nhashtags = "ihmisensote"', "campaign.hashtags: input should be a valid list"),
        ('hashtags = ["ihmisensote"]', "campaign.name: missing (required)"),
    ],
)
def test_bad_campaign(tmp_path: Path, campaign: str, expected: str) -> None:
    assert expected in error_of(tmp_path, f"[campaign]\n{campaign}\n")


def test_missing_campaign_and_several_problems_are_counted(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load(tmp_path, '[tagging]\ndays_before = "x"\n[[tour.stops]]\narea = "nowhere"\n')
    assert "campaign: missing (required)" in str(info.value)
    assert "(and 2 more problems)" in str(info.value)
    assert len(info.value.problems) == 3


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "\n[[tour.stops]]\narea = \"lappi\"\ndate = 2023-02-30\n")
    assert "line 12 `date = 2023-02-30`: invalid TOML" in message


PASTED = "Hunter2-Paste-9f8e"


@pytest.mark.parametrize(("body", "expected"), [
    # pasted unquoted: a TOML syntax error on the secret's own line
    (f"[email]\npassword = {PASTED}", "line 2: password: invalid TOML: "),
    (f"[platforms.x]\nbearer_token = {PASTED} ", "line 2: bearer_token: invalid TOML: "),
    (f"[privacy]\nkey = {PASTED}", "line 2: key: invalid TOML: "),
    (f"[email]\nusername = {PASTED}", "line 2: username: invalid TOML: "),  # the wrong key: still not shown
    (f"[email]\n{PASTED}", "line 2: invalid TOML: "),  # a line that is only the secret
    (f"[email]\nsmtp_pasword = {PASTED}x", "line 2: invalid TOML: "),  # an unknown key is not named either
    # quoted: valid TOML, refused wherever it is, without its value
    (f'[campaign]\nname = "T"\nhashtags = ["x"]\napi_key = "{PASTED}"', "campaign.api_key: secrets are not read"),
    (f'[storage]\ndb_password = "{PASTED}"', "storage.db_password: secrets are not read"),
    (f'[[tour.stops]]\narea = "lappi"\nsecret = "{PASTED}"', "tour.stops.secret: secrets are not read"),
    (f'[email]\nPassword = "{PASTED}"', "email.Password: secrets are not read from the settings file; set the "
                                          "environment variable TRACKER_SMTP_PASSWORD instead"),
    # each privacy key names its own variable (the forgotten list's key is not the exports' key)
    (f'[privacy]\nprivacy_key = "{PASTED}"', "privacy.privacy_key: secrets are not read from the settings file; "
                                             "set the environment variable TRACKER_PRIVACY_KEY instead"),
    (f'[privacy]\npseudonym_key = "{PASTED}"', "set the environment variable TRACKER_PSEUDONYM_KEY instead"),
    (f"[privacy]\nprivacy_key = {PASTED}", "the value is not shown: secrets are not read from the settings "
                                           "file, set the environment variable TRACKER_PRIVACY_KEY instead"),
])
def test_settings_errors_never_echo_a_secret(tmp_path: Path, body: str, expected: str) -> None:
    message = error_of(tmp_path, body + "\n")
    assert expected in message, message
    assert PASTED not in message and PASTED[:8] not in message and PASTED[-6:] not in message


def test_settings_errors_echo_no_value_of_a_secret_like_key_from_the_environment(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL, {"TRACKER__EMAIL__API_TOKEN": PASTED})
    assert "email.api_token: unknown key" in message and PASTED not in message


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(MINIMAL).encode("utf-8"))  # Notepad's "UTF-8 with BOM"
    assert load_settings(path, env={}).campaign.name == "Test tour"
    path.write_bytes(b"\xef\xbb\xbf" + b"[campaign]\nname = \"T\"\nhashtags = [\"x\"]\n\xef\xbb\xbfoops = 1\n")
    with pytest.raises(SettingsError) as info:  # one in the middle is still an error, named by code point
        load_settings(path, env={})
    assert "line 4: invalid TOML: Invalid statement" in str(info.value)
    assert "invisible character U+FEFF" in str(info.value)


def test_shown_settings_text_is_cleaned_and_storable(tmp_path: Path) -> None:
    """Venue and city are shown (tour, report, email): no bidi override may reverse what follows;
    stops are stored, so no NUL (PostgreSQL refuses it) and no lone surrogate (no UTF-8 form)."""
    settings = load(tmp_path, """
        [campaign]
        name = "Kiertue\u202e 2023\\u0000"
        hashtags = ["ihmisensote"]
        [[tour.stops]]
        area = "lappi"
        city = "Rova\u2066niemi\u2069"
        venue = "Sali \u202e[/i] 2\u200f"
        notes = "rivi 1\\nrivi\\u0000 2"
        """)
    stop = settings.tour.stops[0]
    assert settings.campaign.name == "Kiertue 2023"
    assert (stop.city, stop.venue, stop.notes) == ("Rovaniemi", "Sali [/i] 2", "rivi 1\nrivi 2")
    surrogate = load(tmp_path, MINIMAL, {"TRACKER__CAMPAIGN__NAME": "Kierto\udcfc"})  # undecodable env bytes
    assert surrogate.campaign.name == "Kierto\ufffd"
    assert "venue: string should have at most 512 characters" in error_of(
        tmp_path, MINIMAL + f'venue = "{"x" * 600}"\n')


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="settings file not found .*TRACKER_SETTINGS"):
        load_settings(tmp_path / "nope.toml", env={})


def test_settings_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL, "elsewhere.toml")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env={"TRACKER_SETTINGS": str(path)})
    assert settings.path == path


def test_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {
        "TRACKER_DATABASE_URL": "postgresql://tracker@db.example/tracker",
        "TRACKER__EMAIL__PORT": "2525",
        "TRACKER__EMAIL__HOST": "smtp.example.org",
        "TRACKER__EMAIL__RECIPIENTS": '["a@example.org", "b@example.org"]',
        "TRACKER__PLATFORMS__MASTODON__ENABLED": "true",
        "TRACKER__PLATFORMS__MASTODON__INSTANCES": '["http://127.0.0.1:9999"]',
        "TRACKER__CAMPAIGN__LANGUAGE": "sv",
    }
    settings = load(tmp_path, MINIMAL, env)
    assert settings.database_url == "postgresql://tracker@db.example/tracker"
    assert settings.email.port == 2525 and settings.email.host == "smtp.example.org"
    assert settings.email.recipients == ["a@example.org", "b@example.org"]
    assert settings.platforms.mastodon.enabled is True
    assert settings.platforms.mastodon.instances == ["http://127.0.0.1:9999"]
    assert settings.campaign.language == "sv"
    # a relative SQLite path from the environment is relative to where the command runs
    relative = load(tmp_path, MINIMAL, {"TRACKER_DATABASE_URL": "sqlite:///data/t.db"})
    assert relative.database_url == f"sqlite:///{(tmp_path / 'data' / 't.db').resolve()}"


def test_bad_environment_override_names_the_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL, {"TRACKER__EMAIL__PORT": "many"})
    assert "email.port: input should be a valid integer, got 'many'" in message
    message = error_of(tmp_path, MINIMAL, {"TRACKER__EMAIL__SMTP_HOST": "x"})
    assert "email.smtp_host: unknown key" in message


def test_secrets_only_from_environment(tmp_path: Path) -> None:
    body = MINIMAL + '\n[platforms.x]\nenabled = true\n[platforms.bluesky]\nenabled = true\n[email]\nusername = "u"\n'
    bare = load(tmp_path, body, {})
    assert bare.missing_secrets() == [
        "TRACKER_X_BEARER_TOKEN",
        "TRACKER_BLUESKY_HANDLE (or [platforms.bluesky] handle)",
        "TRACKER_BLUESKY_APP_PASSWORD",
        "TRACKER_SMTP_PASSWORD",
    ]
    env = {
        "TRACKER_X_BEARER_TOKEN": "x-secret-token",
        "TRACKER_BLUESKY_HANDLE": "team.bsky.social",
        "TRACKER_BLUESKY_APP_PASSWORD": "abcd-efgh",
        "TRACKER_SMTP_PASSWORD": "smtp-pass",
        mastodon_token_variable("https://some.fi"): "masto-token",
    }
    settings = load(tmp_path, body, env)
    assert settings.missing_secrets() == []
    assert settings.secrets.x_bearer_token.get_secret_value() == "x-secret-token"
    assert settings.secrets.mastodon_token("https://some.fi").get_secret_value() == "masto-token"
    assert settings.bluesky_handle == "team.bsky.social"
    dumped = settings.model_dump_json() + repr(settings) + repr(settings.secrets)
    for secret in env.values():
        if secret != "team.bsky.social":
            assert secret not in dumped
    assert sorted(settings.secrets.values()) == sorted(["x-secret-token", "abcd-efgh", "smtp-pass", "masto-token"])


def test_mastodon_token_variable_name() -> None:
    assert mastodon_token_variable("https://mastodon.social") == "TRACKER_MASTODON_TOKEN_MASTODON_SOCIAL"
    assert mastodon_token_variable("http://127.0.0.1:8080") == "TRACKER_MASTODON_TOKEN_127_0_0_1_8080"


def run_cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "tracker", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_invalid_settings_exit_2_one_line_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[[tour.stops]]\narea = "pirkanmaa"\n')
    result = run_cli("--settings", str(path), "tour", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr
    assert "duplicate stop id 'pirkanmaa'" in result.stderr
    assert result.stdout == ""


def test_cli_settings_check_lists_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, '[campaign]\nname = "T"\nhashtags = ["a b"]\ntimezone = "Mars/Olympus"\n')
    result = run_cli("--settings", str(path), "settings", "check", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "campaign.hashtags" in lines[0] and "campaign.timezone" in lines[1]


def test_cli_settings_check_ok_warns_about_missing_dates_and_secrets(tmp_path: Path) -> None:
    result = run_cli("--settings", str(REPO / "settings.toml"), "settings", "check", cwd=tmp_path,
                     env_extra={"TRACKER__PLATFORMS__X__ENABLED": "true"})
    assert result.returncode == 0, result.stderr
    assert "22 stops, 1 with a date" in result.stdout
    assert "21 stops have no date yet" in result.stdout
    assert "TRACKER_X_BEARER_TOKEN is not set" in result.stderr
    assert "settings OK" in result.stdout
