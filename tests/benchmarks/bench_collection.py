"""Benchmark: how many requests collection spends, and how much memory a big collection takes.

    .venv/bin/python tests/benchmarks/bench_collection.py [--posts N] [--no-memory]

Runs the real clients (tweepy, Mastodon.py, atproto) through the real collection loop
(`run_collection`: build_adapters -> fetch -> store -> cursor) against the local fake X, Mastodon
and Bluesky servers, counting what the servers saw (their request logs), not what the tracker says.

1. Requests, per platform, for three rounds: a first run (1 000 posts to backfill), a run after
   1 000 new posts, and an idle poll (nothing new). Each is compared with the minimum a client
   needs: ceil(posts the stream must deliver / the API's largest page) per stream, at least one
   request per stream (X 100, Mastodon 40, Bluesky 100 a page). Goal for the idle poll: exactly
   the minimum, one request per stream. Mastodon and Bluesky poll from (cursor - 30 minutes) to
   catch late-federated / late-indexed posts, so a round after new posts is also compared with the
   minimum that counts the posts of that window, which they read again by design. Bluesky's login and follower-count lookups
   (getProfiles, cached for an hour) are counted apart from its search requests.
2. Memory: a fresh subprocess that only collects N posts (default 200 000) from the fake X
   server into a new SQLite file, tagging them as `tracker collect` does, reports its peak
   resident set (getrusage ru_maxrss) and its RSS after the imports. Goal: peak < 300 MB.
   The server runs in this (parent) process, so its 200 000 tweets are not counted. The stock fake
   scans every tweet on every search request (hours at this size); the parent serves the same
   answers from an index of the query's tweets built once (IndexedXServer, checked against the
   stock search before the run).
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

UTC = dt.timezone.utc
X_TOKEN = "bench-x-token-123456"
BSKY_HANDLE = "tracker.bsky.social"
BSKY_PASSWORD = "bench-app-pass-9876"
TAG = "ihmisensote"
PAGE = {"x": 100, "mastodon": 40, "bluesky": 100}
"""The largest page each API gives (the tracker's settings are raised to it)."""
OVERLAP = dt.timedelta(minutes=30)
"""The tracker's default overlap_minutes for Mastodon and Bluesky."""
MEMORY_GOAL_MB = 300
GOAL_MISSED = 3
"""Exit code of the --requests subprocess when it ran but a goal was missed."""
WORDS = """kiertue hyvinvointialue tänään tapasimme järjestöjä ja asukkaita keskustelu sote palvelut
yhdessä kiitos kaikille mukana olleille hej tack välfärdsområdet great discussion with the team""".split()
PLACES = ["Tampereella", "Oulussa", "Rovaniemellä", "Vaasassa", "Kuopiossa", "Turussa", "Lahdessa",
          "Joensuussa", "Helsingissä", "Seinäjoella", "Kajaanissa", "Porissa"]


def proc_status_kb(field: str) -> int:
    """A /proc/self/status figure in KiB: VmRSS (resident now), VmHWM (this image's high-water mark)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def current_rss_kb() -> int:
    """Resident set now: ru_maxrss only ever shows the high-water mark."""
    return proc_status_kb("VmRSS")


def rss_mb(kb: int) -> float:
    """ru_maxrss (KiB on Linux) in MB (10^6 bytes)."""
    return kb * 1024 / 1e6


def post_text(rng: random.Random, n: int) -> str:
    words = rng.sample(WORDS, rng.randint(5, 12))
    words.insert(rng.randrange(len(words)), rng.choice(PLACES))
    return " ".join(words) + f" #{TAG} https://example.org/kuvat/{n}"


def settings_raw(db_url: str, x: str | None = None, mastodon: list[str] | None = None,
                 bluesky: str | None = None) -> dict[str, Any]:
    today = dt.date.today()
    return {
        "campaign": {"name": "Benchmark", "hashtags": [TAG]},
        "tour": {"stops": [{"area": "pirkanmaa", "date": (today - dt.timedelta(days=2)).isoformat()},
                           {"area": "lappi", "date": (today + dt.timedelta(days=20)).isoformat()}]},
        "storage": {"url": db_url},
        "platforms": {
            "x": {"enabled": x is not None, "base_url": x or "https://api.twitter.com", "page_size": PAGE["x"]},
            "mastodon": {"enabled": mastodon is not None, "instances": mastodon or [],
                         "page_size": PAGE["mastodon"]},
            "bluesky": {"enabled": bluesky is not None, "base_url": bluesky or "https://bsky.social",
                        "handle": BSKY_HANDLE, "page_size": PAGE["bluesky"]},
        },
    }


ENV = {"TRACKER_X_BEARER_TOKEN": X_TOKEN, "TRACKER_BLUESKY_APP_PASSWORD": BSKY_PASSWORD}


def times(n: int, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    """n moments spread evenly over [start, end), oldest first."""
    step = (end - start) / n
    return (start + i * step for i in range(n))


# -- 1. requests ----------------------------------------------------------------------------------


class Scenario:
    """The three servers, seeded round by round, and what each stream must deliver."""

    def __init__(self, x: Any, m1: Any, m2: Any, bsky: Any, rng: random.Random) -> None:
        self.x, self.m1, self.m2, self.bsky, self.rng = x, m1, m2, bsky, rng
        self.x_users = [x.add_user(f"xuser{i}", followers=100 + i) for i in range(50)]
        self.m_accounts = [m1.add_account(f"muser{i}", followers=10 + i) for i in range(50)]
        self.b_accounts = [bsky.add_account(f"buser{i}.bsky.social", followers=5 + i).handle for i in range(50)]
        self.count = 0
        self.made: dict[str, list[dt.datetime]] = {"m1": [], "m2": [], "bluesky": []}
        """Creation times of the posts of the streams polled with an overlap."""

    def overlap(self) -> dict[str, dict[str, int]]:
        """Per stream, the posts already stored that the next poll reads again: those made within
        OVERLAP of the newest one (Mastodon and Bluesky poll from cursor - overlap, as the platforms'
        guidance on late federation / indexing asks; X polls from since_id, no overlap)."""
        def window(made: list[dt.datetime]) -> int:
            return sum(1 for t in made if t >= max(made) - OVERLAP) if made else 0
        return {"x": {"#" + TAG: 0}, "mastodon": {"m1": window(self.made["m1"]), "m2": window(self.made["m2"])},
                "bluesky": {"#" + TAG: window(self.made["bluesky"])}}

    def add(self, n: int, start: dt.datetime, end: dt.datetime) -> dict[str, dict[str, int]]:
        """n new posts on each platform (a quarter of the toots federated to m2); per stream counts."""
        rng = self.rng
        for when in times(n, start, end):
            self.made["m1"].append(when)
            self.made["bluesky"].append(when)
            self.count += 1
            text = post_text(rng, self.count)
            self.x.add_tweet(rng.choice(self.x_users), text, created_at=when, lang="fi",
                             metrics={"like_count": rng.randrange(50)})
            sid = self.m1.post(rng.choice(self.m_accounts), text, created_at=when, language="fi",
                               favourites=rng.randrange(50))
            if self.count % 4 == 0:
                self.m1.federate(sid, self.m2)
                self.made["m2"].append(when)
            self.bsky.add_post(rng.choice(self.b_accounts), text, created_at=when, likes=rng.randrange(50))
        return {"x": {"#" + TAG: n}, "mastodon": {"m1": n, "m2": n // 4}, "bluesky": {"#" + TAG: n}}

    def clear_logs(self) -> None:
        for server in (self.x, self.m1, self.m2, self.bsky):
            server.clear_log()

    def seen(self) -> dict[str, Counter[str]]:
        """Requests each platform's servers received since the last clear, by kind."""
        from tracker.fake_platforms.bluesky_server import SEARCH

        bsky = Counter("search" if r.nsid == SEARCH else r.nsid.rsplit(".", 1)[-1] for r in self.bsky.requests)
        mastodon = Counter("timeline" if "/timelines/tag/" in r.path else r.path
                           for server in (self.m1, self.m2) for r in server.requests())
        return {"x": Counter("search" if r.path.endswith("/search/recent") else r.path for r in self.x.requests),
                "mastodon": mastodon, "bluesky": bsky}


def minimum(items: dict[str, int], page: int, reread: dict[str, int] | None = None) -> int:
    """ceil(posts / page) per stream, at least 1; with `reread`, those posts count too."""
    return sum(max(1, math.ceil((n + (reread or {}).get(stream, 0)) / page)) for stream, n in items.items())


def bench_requests() -> bool:
    from storage.db import open_database
    from tracker.collect import run_collection
    from tracker.fake_platforms.bluesky_server import BlueskyServer
    from tracker.fake_platforms.mastodon_server import MastodonServer
    from tracker.fake_platforms.x_server import XServer
    from tracker.platforms.base import Policy
    from tracker.platforms.registry import build_adapters, close_adapters
    from tracker.settings import parse_settings

    now = dt.datetime.now(UTC)
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-collection-") as folder, \
            XServer(X_TOKEN, rate_limit=100_000) as x, \
            MastodonServer("m1.example", rate_limit=100_000) as m1, \
            MastodonServer("m2.example", rate_limit=100_000) as m2, \
            BlueskyServer(rate_limit=100_000) as bsky:
        bsky.add_account(BSKY_HANDLE, BSKY_PASSWORD)
        scenario = Scenario(x, m1, m2, bsky, random.Random(7))
        raw = settings_raw(f"sqlite:///{Path(folder) / 'tracker.db'}", x=x.base_url,
                           mastodon=[m1.base_url, m2.base_url], bluesky=bsky.base_url)
        settings = parse_settings(raw, "bench settings", env=ENV)
        db = open_database(settings.database_url)
        adapters = build_adapters(settings, policy=Policy())
        rounds = [
            ("first run: 1 000 to backfill", lambda: scenario.add(1_000, now - dt.timedelta(days=6),
                                                                  now - dt.timedelta(days=3))),
            ("after 1 000 new posts", lambda: scenario.add(1_000, now - dt.timedelta(days=3),
                                                           now - dt.timedelta(hours=1))),
            ("idle poll: nothing new", lambda: {"x": {"#" + TAG: 0}, "mastodon": {"m1": 0, "m2": 0},
                                                "bluesky": {"#" + TAG: 0}}),
        ]
        print("requests the servers received, against the minimum: ceil(posts to deliver / largest page) "
              "per stream, at least 1")
        print(f"  {'round':<30} {'platform':<9} {'streams':>7} {'new':>6} {'requests':>9} {'minimum':>8} "
              f"{'per 1 000 new':>14}  other requests")
        try:
            for label, seed in rounds:
                reread = scenario.overlap()
                items = seed()
                scenario.clear_logs()
                results = {r.platform: r for r in run_collection(db, adapters)}
                seen = scenario.seen()
                for platform in ("x", "mastodon", "bluesky"):
                    result = results[platform]
                    assert result.status == "ok", (platform, result.line())
                    main = seen[platform].pop("search" if platform != "mastodon" else "timeline", 0)
                    least = minimum(items[platform], PAGE[platform])
                    with_overlap = minimum(items[platform], PAGE[platform], reread[platform])
                    other = ", ".join(f"{n} {kind}" for kind, n in sorted(seen[platform].items())) or "-"
                    per_k = (f"{main * 1000 / result.new:6.1f} ({least * 1000 / result.new:4.1f})"
                             if result.new else "-")
                    idle = label.startswith("idle")
                    verdict = ""
                    if idle:
                        verdict = f"  goal = {least}: {'OK' if main == least and not seen[platform] else 'MISSED'}"
                        ok = ok and main == least and not seen[platform]
                    elif main > least:
                        again = sum(reread[platform].values())
                        verdict = f"  +{main - least}" + (
                            f" (minimum with the {again} posts of the overlap window read again: {with_overlap})"
                            if with_overlap > least else "")
                    print(f"  {label:<30} {platform:<9} {len(items[platform]):>7} {result.new:>6} {main:>9} "
                          f"{least:>8} {per_k:>14}  {other}{verdict}")
                    if result.requests != main + sum(seen[platform].values()):
                        print(f"    note: the tracker counted {result.requests} requests for {platform}")
        finally:
            close_adapters(adapters)
            db.dispose()
    return ok


# -- 2. memory ------------------------------------------------------------------------------------


def indexed_x_server_class() -> type:
    from tracker.fake_platforms import x_server as xs

    class IndexedXServer(xs.XServer):
        """The fake X API with recent search answered from a per-query index built on first use.

        Same validation and the same answers as `XServer._search` as long as no tweet is added,
        edited or deleted after the first search (true for the memory run); only the scan of
        every tweet per request is gone."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._index: dict[str, tuple[list[int], list[Any]]] = {}

        def _search(self, query: dict[str, str]) -> dict[str, Any]:
            xs._check_params(query, xs.SEARCH_PARAMS)
            fields, user_fields, expansions = xs._requested(query)
            text = query.get("query", "")
            predicate = self._parse_query(text)
            max_results = xs._int_param(query, "max_results", 10, 10, 100)
            now = self.now()
            start = xs._time_param(query, "start_time")
            end = xs._time_param(query, "end_time")
            if start is not None and start < now - xs.RECENT_WINDOW:
                raise xs._invalid("start_time", query["start_time"], "Invalid 'start_time': must be on or after "
                                  f"{xs.format_time(now - xs.RECENT_WINDOW)}")
            if end is not None and end > now - dt.timedelta(seconds=10):
                raise xs._invalid("end_time", query["end_time"], "Invalid 'end_time': must be a minimum of 10 "
                                  "seconds prior to the request time.")
            since = xs._id_param(query, "since_id")
            until = xs._id_param(query, "until_id")
            token = query.get("next_token") or query.get("pagination_token")
            below = xs._decode_token(token) if token else None
            with self._lock:
                if text not in self._index:
                    hits = sorted((t for t in self.tweets.values() if not t.deleted and t.is_latest and predicate(t)),
                                  key=lambda t: int(t.id), reverse=True)
                    self._index[text] = ([-int(t.id) for t in hits], hits)
                keys, hits = self._index[text]
            lower = max(start or now - xs.RECENT_WINDOW, now - xs.RECENT_WINDOW)
            caps = [c for c in (until, below) if c is not None]
            first = bisect.bisect_right(keys, -min(caps)) if caps else 0  # the first id below both caps
            matches = []
            for tweet in hits[first:]:
                if since is not None and int(tweet.id) <= since:
                    break  # newest first: every later id is smaller still
                if tweet.created_at >= lower and (end is None or tweet.created_at < end):
                    matches.append(tweet)
                    if len(matches) > max_results:
                        break
            page = matches[:max_results]
            if not page:
                return {"meta": {"result_count": 0}}
            body = self._envelope(page, fields, user_fields, expansions)
            meta: dict[str, Any] = {"newest_id": page[0].id, "oldest_id": page[-1].id, "result_count": len(page)}
            if len(matches) > max_results:
                meta["next_token"] = xs._encode_token(int(page[-1].id))
            body["meta"] = meta
            return body

    return IndexedXServer


def check_index(server: Any) -> None:
    """The indexed search answers exactly as the stock one (first page, a later page, since_id)."""
    from tracker.fake_platforms.x_server import XServer

    base = {"query": f"#{TAG} -is:retweet", "max_results": "100", "expansions": "author_id",
            "tweet.fields": "created_at,author_id,lang,public_metrics,referenced_tweets,entities,"
                            "edit_history_tweet_ids", "user.fields": "name,username,public_metrics"}
    first = server._search(base)
    assert first == XServer._search(server, base)
    later = dict(base, next_token=first["meta"]["next_token"])
    assert server._search(later) == XServer._search(server, later)
    since = dict(base, since_id=first["data"][40]["id"])
    assert server._search(since) == XServer._search(server, since)


def child(base_url: str, db_path: str, expected: int, tag: bool) -> None:
    """The measured process: imports, setup, one collection of X into SQLite. Prints one JSON line."""
    from storage.db import open_database
    from tracker.collect import run_collection
    from tracker.platforms import x as _x  # noqa: F401 - the client stack, imported before the baseline
    from tracker.platforms.base import Policy
    from tracker.platforms.registry import build_adapters, close_adapters
    from tracker.settings import parse_settings
    from tracker.tagging import Tagger

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    settings = parse_settings(settings_raw(f"sqlite:///{db_path}", x=base_url), "bench settings", env=ENV)
    db = open_database(settings.database_url)
    tagger = None
    if tag:  # as `tracker collect` does; the tagger's lexicon loads with the first post
        tagger = Tagger(settings.tour.stops, settings.campaign.timezone, settings.tagging.days_before,
                        settings.tagging.days_after)
        tagger.gazetteer.warm_up()
    adapters = build_adapters(settings, policy=Policy())
    setup, setup_now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, current_rss_kb()
    marks: list[tuple[int, int]] = []
    step = max(1, expected // 8)

    def progress(_stream: str, result: Any) -> None:
        if result.fetched >= (len(marks) + 1) * step:
            marks.append((result.fetched, current_rss_kb()))

    start = time.perf_counter()
    try:
        (result,) = run_collection(db, adapters, tagger=tagger, progress=progress)  # type: ignore[arg-type]
    finally:
        close_adapters(adapters)
        db.dispose()
    print(json.dumps({
        "baseline_kb": baseline, "setup_kb": setup, "setup_now_kb": setup_now, "end_now_kb": current_rss_kb(),
        "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "hwm_kb": proc_status_kb("VmHWM"),
        "marks": marks, "status": result.status, "fetched": result.fetched, "new": result.new,
        "pages": result.pages, "requests": result.requests, "seconds": time.perf_counter() - start,
    }))


def serve(n: int) -> None:
    """The server process: N tweets on an indexed fake X server; answers `clear` / `count` on stdin."""
    rng = random.Random(11)
    server = indexed_x_server_class()(X_TOKEN, rate_limit=1_000_000)
    t0 = time.perf_counter()
    users = [server.add_user(f"user{i}", followers=rng.randrange(20, 20_000)) for i in range(max(10, n // 100))]
    now = dt.datetime.now(UTC)
    for i, when in enumerate(times(n, now - dt.timedelta(days=6, hours=20), now - dt.timedelta(minutes=5))):
        server.add_tweet(rng.choice(users), post_text(rng, i), created_at=when, lang="fi",
                         metrics={"like_count": rng.randrange(100), "retweet_count": rng.randrange(20),
                                  "impression_count": rng.randrange(5_000)})
    seeded = time.perf_counter() - t0
    with server:
        check_index(server)
        print(json.dumps({"base_url": server.base_url, "seconds": seeded, "users": len(users)}), flush=True)
        for command in sys.stdin:
            if command.strip() == "clear":
                server.clear_log()
            print(json.dumps({"requests": server.request_count()}), flush=True)


def bench_memory(n: int, variants: tuple[str, ...]) -> bool:
    """Run from a small process: a child's ru_maxrss starts at its parent's RSS at fork time (Linux
    keeps the pre-exec high-water mark), so neither the server nor the other benchmark lives here."""
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert server.stdin is not None and server.stdout is not None
    ok = True
    try:
        info = json.loads(server.stdout.readline())
        print(f"\nmemory: {n:,} tweets by {info['users']:,} accounts on the fake X server (another process; "
              f"{info['seconds']:.1f} s to create; indexed search checked against the stock one);\n"
              "a fresh subprocess per line collects them all into a new SQLite file (X page size 100)")
        with tempfile.TemporaryDirectory(prefix="bench-collection-") as folder:
            for variant in variants:
                server.stdin.write("clear\n")
                server.stdin.flush()
                server.stdout.readline()
                proc = subprocess.run([sys.executable, __file__, "--child", info["base_url"],
                                       str(Path(folder) / f"{variant}.db"), str(n), variant],
                                      capture_output=True, text=True, timeout=1800)
                if proc.returncode != 0:
                    print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
                    raise SystemExit(f"the collecting subprocess failed (exit code {proc.returncode})")
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                assert out["status"] == "ok" and out["new"] == n, out
                server.stdin.write("count\n")
                server.stdin.flush()
                requests = json.loads(server.stdout.readline())["requests"]
                ok = report_memory(variant, n, out, requests) and ok
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    return ok


def report_memory(variant: str, n: int, out: dict[str, Any], requests: int) -> bool:
    title = ("collect + store, no tagging" if variant == "store" else
             "collect + tag + store, as `tracker collect` (the tagger's lexicon loaded first)")
    baseline, setup, peak = (rss_mb(out[k]) for k in ("baseline_kb", "setup_kb", "peak_kb"))
    print(f"  [{title}]")
    print(f"    {out['new']:,} new posts in {out['pages']:,} pages, {requests:,} requests, {out['seconds']:.0f} s "
          f"({out['new'] / out['seconds']:,.0f} posts/s)")
    print(f"    RSS after imports (baseline) {baseline:6.1f} MB; peak after setup {setup:6.1f} MB")
    print(f"    resident (VmRSS) after setup {rss_mb(out['setup_now_kb']):6.1f} MB, as the posts came in: "
          + ", ".join(f"{f // 1000:,}k {rss_mb(kb):.1f}" for f, kb in out["marks"])
          + f", at the end {rss_mb(out['end_now_kb']):.1f}")
    ok = peak < MEMORY_GOAL_MB
    growth = (out["end_now_kb"] - out["setup_now_kb"]) * 1024 / n
    print(f"    peak RSS (ru_maxrss) {peak:6.1f} MB (VmHWM {rss_mb(out['hwm_kb']):.1f})   goal < {MEMORY_GOAL_MB} MB: "
          f"{'OK' if ok else 'MISSED'};  "
          f"resident growth during the collection {growth:,.0f} bytes per post")
    return ok


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2], int(argv[3]), argv[4] == "tag")
        return 0
    if argv[:1] == ["--serve"]:
        serve(int(argv[1]))
        return 0
    if argv[:1] == ["--requests"]:
        return 0 if bench_requests() else GOAL_MISSED
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=200_000, help="posts for the memory run")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-variants", default="store,tag",
                        help="store: collect + store; tag: collect + tag + store (default: both)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    # This process stays small (stdlib only): the measured children are forked from it.
    requests = subprocess.run([sys.executable, __file__, "--requests"], check=False)
    if requests.returncode not in (0, GOAL_MISSED):
        raise SystemExit(f"the request count failed (exit code {requests.returncode})")
    ok = requests.returncode == 0
    if not args.no_memory:
        ok = bench_memory(args.posts, tuple(args.memory_variants.split(","))) and ok
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
