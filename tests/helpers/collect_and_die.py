"""Collect, and SIGKILL this process inside page N's database transaction (a real kill -9).

Usage: python collect_and_die.py SETTINGS_JSON PAGE
"""

from __future__ import annotations

import json
import os
import signal
import sys

from storage.db import open_database
from tracker.collect import run_collection
from tracker.platforms.registry import build_adapters
from tracker.settings import parse_settings
from tracker.tagging import Tagger


class DieOnPage:
    def __init__(self, tagger: Tagger, page: int, page_size: int) -> None:
        self.tagger, self.calls, self.die_at = tagger, 0, (page - 1) * page_size + 1

    def tag(self, text, hashtags, created_at):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == self.die_at:  # posts of this page are written but not committed
            os.kill(os.getpid(), signal.SIGKILL)
        return self.tagger.tag(text, hashtags, created_at)


def main() -> None:
    raw = json.loads(open(sys.argv[1]).read())
    settings = parse_settings(raw)
    db = open_database(settings.database_url)
    s = settings
    tagger = Tagger(s.tour.stops, s.campaign.timezone, s.tagging.days_before, s.tagging.days_after)
    run_collection(db, build_adapters(settings),
                   tagger=DieOnPage(tagger, int(sys.argv[2]), settings.platforms.x.page_size))


if __name__ == "__main__":
    main()
