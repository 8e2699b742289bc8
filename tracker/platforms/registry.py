"""Builds the enabled adapters from the settings and the environment's secrets."""

from __future__ import annotations

import datetime as dt

from tracker.errors import SettingsError
from tracker.platforms.base import Adapter, Policy
from tracker.settings import (
    ENV_BLUESKY_HANDLE,
    ENV_BLUESKY_PASSWORD,
    ENV_X_TOKEN,
    Settings,
)

PLATFORMS = ("x", "mastodon", "bluesky")


def build_adapter(settings: Settings, platform: str, policy: Policy | None = None) -> Adapter:
    """One platform's adapter; a missing secret is a SettingsError naming the variable."""
    tags = settings.campaign.hashtags
    secrets = settings.secrets
    if platform == "x":
        from tracker.platforms.x import XAdapter

        cfg = settings.platforms.x
        token = secrets.x_bearer_token
        if token is None:
            raise SettingsError(f"platforms.x is enabled but {ENV_X_TOKEN} is not set")
        return XAdapter(base_url=cfg.base_url, bearer_token=token.get_secret_value(), hashtags=tags,
                        include_retweets=cfg.include_retweets, page_size=cfg.page_size, policy=policy)
    if platform == "mastodon":
        from tracker.platforms.mastodon import MastodonAdapter

        mcfg = settings.platforms.mastodon
        tokens = {url: tok.get_secret_value() for url in mcfg.instances
                  if (tok := secrets.mastodon_token(url)) is not None}
        return MastodonAdapter(instances=mcfg.instances, hashtags=tags, tokens=tokens,
                               page_size=mcfg.page_size, overlap=dt.timedelta(minutes=mcfg.overlap_minutes),
                               policy=policy)
    if platform == "bluesky":
        from tracker.platforms.bluesky import BlueskyAdapter

        bcfg = settings.platforms.bluesky
        password = secrets.bluesky_app_password
        if not settings.bluesky_handle:
            raise SettingsError(f"platforms.bluesky is enabled but no handle: set {ENV_BLUESKY_HANDLE}")
        if password is None:
            raise SettingsError(f"platforms.bluesky is enabled but {ENV_BLUESKY_PASSWORD} is not set")
        return BlueskyAdapter(base_url=bcfg.base_url, handle=settings.bluesky_handle,
                              app_password=password.get_secret_value(), hashtags=tags,
                              page_size=bcfg.page_size, overlap=dt.timedelta(minutes=bcfg.overlap_minutes),
                              policy=policy)
    raise SettingsError(f"unknown platform '{platform}' (one of {', '.join(PLATFORMS)})")


def enabled_platforms(settings: Settings) -> list[str]:
    return [p for p in PLATFORMS if getattr(settings.platforms, p).enabled]


def build_adapters(settings: Settings, only: str | None = None, policy: Policy | None = None) -> list[Adapter]:
    """Adapters of the enabled platforms (or just `only`, which must be enabled)."""
    names = enabled_platforms(settings)
    if only is not None:
        if only not in PLATFORMS:
            raise SettingsError(f"unknown platform '{only}' (one of {', '.join(PLATFORMS)})")
        if only not in names:
            raise SettingsError(f"platforms.{only}.enabled is false; enable it in the settings first")
        names = [only]
    return [build_adapter(settings, name, policy) for name in names]


def close_adapters(adapters: list[Adapter]) -> None:
    for adapter in adapters:
        close = getattr(adapter, "close", None)
        if callable(close):
            close()
