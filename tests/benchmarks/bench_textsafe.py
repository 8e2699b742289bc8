"""Benchmark: what making posts storable (tracker/textsafe.py, run by `ingest` on every post) costs
next to storing them.

    .venv/bin/python tests/benchmarks/bench_textsafe.py [--posts N] [--authors N]

The posts of bench_ingest.py (default 100 000 by 10 000 authors, pages of 1 000), on SQLite:
`safe_posts` over every page, then `store_posts` of the same pages (one transaction each), both
timed in CPU seconds of this process, taking turns page by page so a busy spell hits both alike.
Printed: the ratio of the two on clean posts (nearly all posts are clean: `safe_posts` hands
them back as they are), and, for reference, the cost a post when every post of a page needs
repairing (a NUL in its text, a 600-character name). No goal: a figure to watch. Exit code 0
unless something is wrong (a clean post changed, a post not stored).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import generate  # noqa: E402

from storage.db import open_database  # noqa: E402
from storage.sqlite_tuning import memory_statistics_off  # noqa: E402
from storage.upserts import StoreResult, store_posts  # noqa: E402
from tracker.textsafe import safe_posts  # noqa: E402

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--authors", type=int, default=10_000)
    args = parser.parse_args(argv)
    data = generate(args.posts, args.authors, 1_000)
    n = sum(len(b) for b in data.batches)
    memory_statistics_off()
    folder = Path(tempfile.mkdtemp(prefix="bench-textsafe-"))
    db = open_database(f"sqlite:///{folder / 'tracker.db'}")
    check = store = 0.0
    total = StoreResult()
    try:
        for batch in data.batches:
            start = time.process_time()
            safe = safe_posts(batch)
            check += time.process_time() - start
            if len(safe.posts) != len(batch) or any(a is not b for a, b in zip(safe.posts, batch)):
                print("error: safe_posts changed a clean post", file=sys.stderr)
                return 2
            start = time.process_time()
            with db.write() as session:
                total += store_posts(session, batch)
            store += time.process_time() - start
    finally:
        db.dispose()
        for path in sorted(folder.iterdir()):
            path.unlink()
        folder.rmdir()
    if total.new != n:
        print(f"error: {total.new} posts stored, expected {n}", file=sys.stderr)
        return 2
    dirty = [[dataclasses.replace(p, text=p.text + "\x00", author=dataclasses.replace(p.author, display_name="n" * 600))
              for p in batch] for batch in data.batches[:10]]
    start = time.process_time()
    for batch in dirty:
        safe_posts(batch)
    repair = (time.process_time() - start) / sum(len(b) for b in dirty)
    ratio = check / store
    print(f"{n:,} clean posts on SQLite, CPU seconds:")
    print(f"  safe_posts   {check:6.2f} s = {check / n * 1e6:5.2f} µs a post")
    print(f"  store_posts  {store:6.2f} s = {store / n * 1e6:5.2f} µs a post")
    print(f"  safe_posts / store_posts: {ratio:.3f}")
    print(f"  every post repaired (a NUL, a 600-character name): {repair * 1e6:5.2f} µs a post")
    return 0


if __name__ == "__main__":
    sys.exit(main())
