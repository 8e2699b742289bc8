"""Settings: one validated model loaded from `settings.toml`, with environment overrides.

Where the file is: `--settings PATH`, else `$TRACKER_SETTINGS`, else `./settings.toml`.
Environment overrides (deployment-specific values, applied after the file):
- `TRACKER_DATABASE_URL` replaces `[storage] url`;
- `TRACKER__SECTION__KEY=value` replaces any key, e.g. `TRACKER__EMAIL__HOST=smtp.example.org`,
  `TRACKER__PLATFORMS__X__ENABLED=true` (the value is read as a TOML value when it parses as one,
  otherwise as a string).
Secrets are read from the environment only (see `Secrets`); a secret-like key in the file is an
error that names the variable to use instead. Every problem becomes a `SettingsError` whose one
line names the key and the problem.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Mapping
import datetime as dt
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from tracker.areas import AREAS, unknown_area_message
from tracker.display_text import display_text, storable_text
from tracker.errors import SettingsError
from tracker.hashtags import is_hashtag, normalise_hashtag
from tracker.settings_errors import describe_toml_error, one_line, refuse_secrets, validation_problems
from tracker.redaction import register as register_secrets

ENV_SETTINGS = "TRACKER_SETTINGS"
ENV_DATABASE_URL = "TRACKER_DATABASE_URL"
ENV_OVERRIDE_PREFIX = "TRACKER__"
ENV_X_TOKEN = "TRACKER_X_BEARER_TOKEN"
ENV_BLUESKY_HANDLE = "TRACKER_BLUESKY_HANDLE"
ENV_BLUESKY_PASSWORD = "TRACKER_BLUESKY_APP_PASSWORD"
ENV_SMTP_PASSWORD = "TRACKER_SMTP_PASSWORD"
ENV_MASTODON_TOKEN_PREFIX = "TRACKER_MASTODON_TOKEN_"
ENV_PSEUDONYM_KEY = "TRACKER_PSEUDONYM_KEY"
ENV_PRIVACY_KEY = "TRACKER_PRIVACY_KEY"

# Keys that look like secrets: refused in the file, with the variable to use instead.
_SECRET_KEYS = {
    ("platforms", "x"): ENV_X_TOKEN,
    ("platforms", "bluesky"): ENV_BLUESKY_PASSWORD,
    ("platforms", "mastodon"): ENV_MASTODON_TOKEN_PREFIX + "<HOST>",
    ("email",): ENV_SMTP_PASSWORD,
    ("privacy",): ENV_PSEUDONYM_KEY,
    ("privacy", "privacy_key"): ENV_PRIVACY_KEY,
}
_STOP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def mastodon_token_variable(base_url: str) -> str:
    """`https://mastodon.social` -> `TRACKER_MASTODON_TOKEN_MASTODON_SOCIAL`."""
    host = urlsplit(base_url).netloc or base_url
    return ENV_MASTODON_TOKEN_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", host).upper()


class _Section(BaseModel):
    """Strict: unknown keys and wrong types are errors, not silently ignored or coerced.

    Every text is made storable on both databases first (stops are stored): NUL removed, lone
    surrogates (from an environment variable that was not UTF-8) replaced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return _storable_strings(data)


def _storable_strings(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, Mapping):
        return {k: _storable_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable_strings(v) for v in value]
    return value


def _shown(value: str | None, multiline: bool = False) -> str | None:
    """Settings text that reports, the email and the terminal show, cleaned as post text is
    (display_text: no bidi overrides or other invisible controls); nothing left is None."""
    return display_text(value, multiline=multiline) or None


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"'{value}' is not an http(s) URL")
    return value.rstrip("/")


class Campaign(_Section):
    name: str = Field(min_length=1, max_length=200)
    hashtags: list[str] = Field(min_length=1)
    """Without '#'; normalised as collected and imported tags are (tracker.hashtags: NFKC, lower
    case, fullwidth '＃' and Turkish 'İ' allowed), so `＃İhmisenSote` is `ihmisensote`."""
    timezone: str = "Europe/Helsinki"
    language: Literal["fi", "sv", "en"] = "fi"

    @field_validator("hashtags")
    @classmethod
    def _hashtags(cls, tags: list[str]) -> list[str]:
        out: list[str] = []
        for tag in tags:
            clean = normalise_hashtag(tag)
            if not is_hashtag(clean):
                raise ValueError(f"'{tag}' is not a hashtag (letters, digits and _ only)")
            if clean not in out:
                out.append(clean)
        return out

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        shown = _shown(name)
        if shown is None:
            raise ValueError("the name is empty (or only invisible characters)")
        return shown

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone '{name}' (use an IANA name such as Europe/Helsinki)")
        return name

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Tagging(_Section):
    days_before: int = Field(3, ge=0, le=90)
    days_after: int = Field(7, ge=0, le=90)


class Stop(_Section):
    """One tour stop (a visit). `date` may be left out until the team knows it."""

    area: str
    date: dt.date | None = None
    id: str = Field("", max_length=64)
    city: str | None = Field(None, max_length=256)
    venue: str | None = Field(None, max_length=512)
    notes: str | None = Field(None, max_length=10_000)
    """Lengths: those of the `stops` table's columns, so both databases store them alike."""
    aliases: list[str] = []
    """Extra names that identify this visit in posts (a venue, a local hashtag)."""

    @field_validator("city", "venue")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return _shown(value)

    @field_validator("notes")
    @classmethod
    def _notes(cls, value: str | None) -> str | None:
        return _shown(value, multiline=True)

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if isinstance(value, str):  # also accept "2023-02-09" quoted (and env overrides)
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"'{value}' is not a date (write it as YYYY-MM-DD)") from None
        if hasattr(value, "date") and callable(value.date):  # a TOML datetime: a date was meant
            raise ValueError("give a date (YYYY-MM-DD), not a date and time")
        return value

    @field_validator("area")
    @classmethod
    def _area(cls, area: str) -> str:
        if area not in AREAS:
            raise ValueError(unknown_area_message(area))
        return area

    @model_validator(mode="after")
    def _default_id(self) -> Stop:
        if not self.id:
            object.__setattr__(self, "id", self.area)
        elif not _STOP_ID.match(self.id):
            raise ValueError(f"stop id '{self.id}' must be lower-case letters, digits, '-' or '_'")
        return self


class Tour(_Section):
    stops: list[Stop] = []

    @field_validator("stops")
    @classmethod
    def _unique_ids(cls, stops: list[Stop]) -> list[Stop]:
        seen: dict[str, int] = {}
        for number, stop in enumerate(stops, start=1):
            if stop.id in seen:
                raise ValueError(
                    f"duplicate stop id '{stop.id}' (stops {seen[stop.id]} and {number}); "
                    "give a second visit to the same area its own `id`"
                )
            seen[stop.id] = number
        return stops

    def get(self, stop_id: str) -> Stop:
        for stop in self.stops:
            if stop.id == stop_id:
                return stop
        raise KeyError(stop_id)


class Storage(_Section):
    url: str = "sqlite:///tracker.db"
    """SQLAlchemy URL. A relative SQLite path is relative to the settings file."""
    auto_upgrade: bool = True
    """Migrate the schema automatically when a command finds it behind; else refuse."""
    sqlite_busy_timeout: float = Field(60.0, gt=0)
    """Seconds a SQLite writer waits for another writer before giving up."""

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError(f"'{url}' is not a database URL (e.g. sqlite:///tracker.db)") from None
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database '{parsed.get_backend_name()}' (sqlite or postgresql)")
        return url


class XPlatform(_Section):
    enabled: bool = False
    base_url: str = "https://api.twitter.com"
    include_retweets: bool = False
    page_size: int = Field(100, ge=10, le=100)

    _url = field_validator("base_url")(classmethod(lambda cls, v: _http_url(v)))


class MastodonPlatform(_Section):
    enabled: bool = False
    instances: list[str] = []
    page_size: int = Field(40, ge=1, le=40)
    overlap_minutes: int = Field(30, ge=0, le=24 * 60)
    """Re-read this much before the cursor: late-federated posts arrive with older ids."""

    @field_validator("instances")
    @classmethod
    def _instances(cls, urls: list[str]) -> list[str]:
        out = [_http_url(u) for u in urls]
        if len(set(out)) != len(out):
            raise ValueError("an instance is listed twice")
        return out

    @model_validator(mode="after")
    def _needs_instances(self) -> MastodonPlatform:
        if self.enabled and not self.instances:
            raise ValueError("enabled but no `instances` listed")
        return self


class BlueskyPlatform(_Section):
    enabled: bool = False
    base_url: str = "https://bsky.social"
    handle: str | None = None
    """Login handle; may also come from TRACKER_BLUESKY_HANDLE. The app password is env-only."""
    page_size: int = Field(100, ge=1, le=100)
    overlap_minutes: int = Field(30, ge=0, le=24 * 60)

    _url = field_validator("base_url")(classmethod(lambda cls, v: _http_url(v)))


class Platforms(_Section):
    x: XPlatform = XPlatform()
    mastodon: MastodonPlatform = MastodonPlatform()
    bluesky: BlueskyPlatform = BlueskyPlatform()


class Email(_Section):
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    sender: str | None = None
    recipients: list[str] = []

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            if "@" not in address or address.strip() != address or " " in address:
                raise ValueError(f"'{address}' is not an email address")
        return addresses

    @field_validator("sender")
    @classmethod
    def _sender(cls, address: str | None) -> str | None:
        if address is not None and "@" not in address:
            raise ValueError(f"'{address}' is not an email address")
        return address


class Schedule(_Section):
    """How often the scheduler (`tracker run`) polls and refreshes."""

    collect_every_minutes: int = Field(60, ge=1, le=24 * 60)
    visit_collect_every_minutes: int = Field(10, ge=1, le=24 * 60)
    """Denser polling on a visit day and the day after it (local dates)."""
    refresh_every_minutes: int = Field(180, ge=5, le=7 * 24 * 60)
    refresh_max_age_days: int = Field(14, ge=0, le=365)
    """Refresh the metrics of posts younger than this, so engagement curves exist."""
    weekly_report_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    weekly_report_time: str = "08:00"
    """Local time (campaign timezone) the weekly email about the previous week is sent."""

    @field_validator("weekly_report_time")
    @classmethod
    def _time(cls, value: str) -> str:
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value)
        if not match:
            raise ValueError(f"'{value}' is not a time of day (HH:MM)")
        return f"{int(match.group(1)):02d}:{match.group(2)}"


class Privacy(_Section):
    """Data protection: how long post texts and author details are kept, and what is stored at all.

    See docs/privacy.md. `retention_days` absent: keep everything until erased by hand.
    """

    retention_days: int | None = Field(None, ge=1, le=36500)
    """Posts older than this keep only ids, dates, tags and metrics (text, url, language removed);
    authors without a post this recent lose handle, name and profile URL (`tracker retention`)."""
    store_author_names: bool = True
    """False: author handles, display names, profile URLs and post URLs (which contain the handle
    on X and Bluesky) are not stored at ingest; counts and reach still are."""
    store_post_text: bool = True
    """False: post texts are not stored (they are still read once to tag the visit)."""


def _url_password(url: str) -> str | None:
    """The password in a database URL (`postgresql://user:PASSWORD@host/db`), if any."""
    try:
        password = urlsplit(url.strip()).password
    except ValueError:
        return None
    return unquote(password) if password else None


class Secrets:
    """Secrets from the environment only. Never printed, logged or stored."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        register_secrets(self.values())  # so that every log line, error and stored message drops them

    def _get(self, name: str) -> SecretStr | None:
        value = self._env.get(name, "").strip()
        return SecretStr(value) if value else None

    @property
    def x_bearer_token(self) -> SecretStr | None:
        return self._get(ENV_X_TOKEN)

    @property
    def bluesky_app_password(self) -> SecretStr | None:
        return self._get(ENV_BLUESKY_PASSWORD)

    @property
    def smtp_password(self) -> SecretStr | None:
        return self._get(ENV_SMTP_PASSWORD)

    def mastodon_token(self, base_url: str) -> SecretStr | None:
        return self._get(mastodon_token_variable(base_url))

    @property
    def pseudonym_key(self) -> SecretStr | None:
        """Key of the keyed hash that replaces author identities in pseudonymised exports."""
        return self._get(ENV_PSEUDONYM_KEY)

    @property
    def privacy_key(self) -> SecretStr | None:
        """Key of the keyed hashes in the list of forgotten authors (`tracker forget`)."""
        return self._get(ENV_PRIVACY_KEY)

    def values(self) -> list[str]:
        """Every secret value present, for scrubbing outputs in tests and logs."""
        names = [ENV_X_TOKEN, ENV_BLUESKY_PASSWORD, ENV_SMTP_PASSWORD, ENV_PSEUDONYM_KEY, ENV_PRIVACY_KEY]
        names += [k for k in self._env if k.startswith(ENV_MASTODON_TOKEN_PREFIX)]
        values = [s.get_secret_value() for s in map(self._get, names) if s is not None]
        database_password = _url_password(self._env.get(ENV_DATABASE_URL, ""))
        return values + [database_password] if database_password else values

    def __repr__(self) -> str:
        return "Secrets(<hidden>)"


class Settings(_Section):
    campaign: Campaign
    tagging: Tagging = Tagging()
    tour: Tour = Tour()
    storage: Storage = Storage()
    platforms: Platforms = Platforms()
    email: Email = Email()
    schedule: Schedule = Schedule()
    privacy: Privacy = Privacy()

    _path: Path | None = PrivateAttr(default=None)
    _secrets: Secrets = PrivateAttr(default_factory=lambda: Secrets({}))
    _bluesky_handle_env: str | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        """The settings file these came from (None when built in code)."""
        return self._path

    @property
    def secrets(self) -> Secrets:
        return self._secrets

    @property
    def bluesky_handle(self) -> str | None:
        return self._bluesky_handle_env or self.platforms.bluesky.handle

    @property
    def database_url(self) -> str:
        return self.storage.url

    def missing_secrets(self) -> list[str]:
        """Environment variables an enabled platform or the email needs but that are unset."""
        missing: list[str] = []
        if self.platforms.x.enabled and not self.secrets.x_bearer_token:
            missing.append(ENV_X_TOKEN)
        if self.platforms.bluesky.enabled:
            if not self.bluesky_handle:
                missing.append(f"{ENV_BLUESKY_HANDLE} (or [platforms.bluesky] handle)")
            if not self.secrets.bluesky_app_password:
                missing.append(ENV_BLUESKY_PASSWORD)
        if self.email.username and not self.secrets.smtp_password:
            missing.append(ENV_SMTP_PASSWORD)
        return missing


# ---------------------------------------------------------------------------------------------
# Loading


def find_settings_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit)
    if env.get(ENV_SETTINGS):
        return Path(env[ENV_SETTINGS])
    return Path("settings.toml")


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read, override from the environment, and validate. Raises SettingsError (one line)."""
    env = os.environ if env is None else env
    settings_path = find_settings_path(path, env)
    label = str(settings_path)
    try:
        text = settings_path.read_text(encoding="utf-8-sig")  # a BOM (Notepad's "UTF-8 with BOM") is fine
    except FileNotFoundError:
        raise SettingsError(
            f"{label}: settings file not found (give --settings PATH or set {ENV_SETTINGS})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{label}: cannot read settings file: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{label}: {describe_toml_error(exc, text, _known_keys(), _SECRET_KEYS)}") from None
    refuse_secrets(raw, label, _SECRET_KEYS)
    raw = _apply_env_overrides(raw, env, settings_path)
    return parse_settings(raw, label, env=env, path=settings_path)


def parse_settings(
    raw: Mapping[str, Any],
    label: str = "settings",
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Settings:
    """Validate an already-parsed mapping (used by load_settings and by tests/demo)."""
    env = os.environ if env is None else env
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{label}: {p}" for p in validation_problems(exc)]
        raise SettingsError(one_line(problems), problems=problems) from None
    settings._path = path
    settings._secrets = Secrets(env)
    settings._bluesky_handle_env = env.get(ENV_BLUESKY_HANDLE) or None
    return settings


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env_overrides(
    raw: dict[str, Any], env: Mapping[str, str], settings_path: Path
) -> dict[str, Any]:
    data = _deep_copy(raw)
    storage = data.setdefault("storage", {})
    if isinstance(storage, dict):
        url = storage.get("url")
        if isinstance(url, str):
            storage["url"] = resolve_sqlite_path(url, settings_path.parent)
        elif url is None:
            storage["url"] = resolve_sqlite_path("sqlite:///tracker.db", settings_path.parent)
    for name in sorted(env):
        if not name.startswith(ENV_OVERRIDE_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_OVERRIDE_PREFIX):].split("__") if k]
        if not keys:
            continue
        node: Any = data
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise SettingsError(f"{name}: '{key}' is not a section, cannot override inside it")
            node = child
        node[keys[-1]] = _parse_env_value(env[name])
    if env.get(ENV_DATABASE_URL):
        data.setdefault("storage", {})["url"] = resolve_sqlite_path(env[ENV_DATABASE_URL], Path.cwd())
    return data


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def resolve_sqlite_path(url: str, base: Path) -> str:
    """Make a relative SQLite path absolute against `base`; other URLs are returned unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    rest = url[len(prefix):]
    path_part, sep, query = rest.partition("?")
    if not path_part or path_part == ":memory:" or path_part.startswith("/"):
        return url
    return f"{prefix}{(base / path_part).resolve()}{sep}{query}"


@functools.cache
def _known_keys() -> frozenset[str]:
    """Every key and section name the settings know."""
    names: set[str] = set()
    models: list[type[BaseModel]] = [Settings]
    while models:
        model = models.pop()
        for name, info in model.model_fields.items():
            names.add(name)
            for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
                if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in models:
                    models.append(arg)
    return frozenset(names)
