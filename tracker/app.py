"""What every command needs: the settings, the database (schema checked, stops synced), logging."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from storage.db import Database, open_database
from storage.queries import sync_stops
from tracker.redaction import redact, registered
from tracker.settings import Settings, load_settings
from tracker.tagging import Tagger


class RedactingFormatter(logging.Formatter):
    """Formats a record, traceback included, then removes every secret from the result, in any
    encoding (tracker.redaction): a server's error text quoted in an exception may carry one."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        from tracker.output import safe  # control characters in a server's text are shown, not obeyed

        return safe(redact(super().format(record), [*self.secrets, *registered()]), newlines=True)


def setup_logging(verbosity: int, secrets: list[str]) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "httpx", "httpcore", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@dataclass
class App:
    """Lazily loaded settings and database for one CLI invocation (or one job)."""

    settings_path: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _settings: Settings | None = None
    _db: Database | None = None
    _tagger: Tagger | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> App:
        """An App around settings built in code (the demo, tests)."""
        app = cls(settings_path=str(settings.path) if settings.path else None)
        app._settings = settings
        return app

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.settings_path, self.env)
        return self._settings

    def database(self, *, auto_upgrade: bool | None = None) -> Database:
        """The database with its schema up to date and the tour synced from the settings."""
        if self._db is None:
            storage = self.settings.storage
            upgrade = storage.auto_upgrade if auto_upgrade is None else auto_upgrade
            db = open_database(storage.url, auto_upgrade=upgrade,
                               sqlite_busy_timeout=storage.sqlite_busy_timeout)
            with db.write() as session:
                sync_stops(session, self.settings.tour.stops, dt.datetime.now(dt.timezone.utc))
            self._db = db
            from tracker.retag import retag_if_tour_changed

            retagged = retag_if_tour_changed(db, self.settings, self.tagger())
            if retagged:
                logging.getLogger("tracker").warning("the tour changed: re-tagged %d posts", retagged)
        return self._db

    def tagger(self) -> Tagger:
        """The visit tagger for the current tour (built once per invocation)."""
        if self._tagger is None:
            s = self.settings
            self._tagger = Tagger(s.tour.stops, s.campaign.timezone, s.tagging.days_before, s.tagging.days_after)
        return self._tagger

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None
