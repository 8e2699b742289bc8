"""A small campaign on the local fake platforms, shared by collection and scheduler tests."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from tracker.fake_platforms.bluesky_server import BlueskyServer
from tracker.fake_platforms.mastodon_server import MastodonServer
from tracker.fake_platforms.x_server import XServer
from tracker.settings import Settings, parse_settings
from tracker.tagging import Tagger

UTC = dt.timezone.utc
X_TOKEN = "x-test-token-123456"
BSKY_PASSWORD = "bsky-app-pass-9876"


@dataclass
class Fakes:
    x: XServer
    m1: MastodonServer
    m2: MastodonServer
    bsky: BlueskyServer


def start_fakes() -> Iterator[Fakes]:
    """Generator for a pytest fixture: X, two Mastodon instances and Bluesky, all started."""
    with XServer(X_TOKEN) as x, MastodonServer("m1.example") as m1, MastodonServer("m2.example") as m2, \
            BlueskyServer() as bsky:
        bsky.add_account("tracker.bsky.social", BSKY_PASSWORD)
        yield Fakes(x, m1, m2, bsky)


def settings_raw(fakes: Fakes, db_url: str) -> dict:
    today = dt.datetime.now(ZoneInfo("Europe/Helsinki")).date()
    return {
        "campaign": {"name": "Test", "hashtags": ["ihmisensote"]},
        "tour": {"stops": [{"area": "pirkanmaa", "date": today.isoformat()},
                           {"area": "lappi", "date": (today + dt.timedelta(days=30)).isoformat()}]},
        "storage": {"url": db_url},
        "platforms": {
            "x": {"enabled": True, "base_url": fakes.x.base_url, "page_size": 10},
            "mastodon": {"enabled": True, "instances": [fakes.m1.base_url, fakes.m2.base_url], "page_size": 5},
            "bluesky": {"enabled": True, "base_url": fakes.bsky.base_url, "handle": "tracker.bsky.social",
                        "page_size": 10},
        },
    }


ENV = {"TRACKER_X_BEARER_TOKEN": X_TOKEN, "TRACKER_BLUESKY_APP_PASSWORD": BSKY_PASSWORD}


def write_settings_file(path: Path, raw: dict, *, platforms: tuple[str, ...] | None = None,
                        schedule: dict[str, int] | None = None, storage: dict[str, object] | None = None) -> Path:
    """`raw` (from settings_raw) as the settings.toml a person would write, for CLI and scheduler
    tests; `platforms` limits the enabled ones, `schedule` and `storage` add keys."""
    def value(v: object) -> str:
        return str(v).lower() if isinstance(v, bool) else json.dumps(v)

    lines = ['[campaign]\nname = "Test"\nhashtags = ["ihmisensote"]\n']
    for stop in raw["tour"]["stops"]:
        lines.append(f'[[tour.stops]]\narea = "{stop["area"]}"\ndate = {stop["date"]}\n')
    lines.append("[storage]\n" + "".join(f"{k} = {value(v)}\n"
                                          for k, v in {"url": raw["storage"]["url"], **(storage or {})}.items()))
    for name, cfg in raw["platforms"].items():
        if platforms is not None:
            cfg = {**cfg, "enabled": name in platforms}
        lines.append(f"[platforms.{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in cfg.items()))
    if schedule:
        lines.append("[schedule]\n" + "".join(f"{k} = {v}\n" for k, v in schedule.items()))
    path.write_text("\n".join(lines))
    return path


def make_settings(fakes: Fakes, db_url: str) -> Settings:
    return parse_settings(settings_raw(fakes, db_url), env=ENV)


def tagger_for(settings: Settings) -> Tagger:
    return Tagger(settings.tour.stops, settings.campaign.timezone, settings.tagging.days_before,
                  settings.tagging.days_after)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def hours_ago(n: float) -> dt.datetime:
    return dt.datetime.now(UTC) - dt.timedelta(hours=n)


def seed(fakes: Fakes, n_x: int = 25, n_m: int = 12, n_b: int = 15) -> dict[str, str]:
    ids = {}
    user = fakes.x.add_user("sote_fi", followers=1200)
    for i in range(n_x):
        ids[f"x{i}"] = fakes.x.add_tweet(user, f"Hyvinvointialuekiertue Tampereella {i} #ihmisensote",
                                         created_at=hours_ago(40 - i), lang="fi", metrics={"like_count": i})
    fakes.x.add_tweet(user, "Something else entirely #other", created_at=hours_ago(1))
    alice = fakes.m1.add_account("alice", followers=300)
    for i in range(n_m):
        sid = fakes.m1.post(alice, f"Kiertue Rovaniemellä {i} #ihmisensote", created_at=hours_ago(30 - i),
                            language="fi", favourites=i)
        ids[f"m{i}"] = fakes.m1.uri_of(sid)
        if i % 4 == 0:
            fakes.m1.federate(sid, fakes.m2)
    bob = fakes.bsky.add_account("bob.bsky.social", followers=55)
    for i in range(n_b):
        ids[f"b{i}"] = fakes.bsky.add_post(bob.handle, f"Tour stop in Tampere {i} #ihmisensote",
                                           created_at=hours_ago(20 - i), likes=i)
    return ids


