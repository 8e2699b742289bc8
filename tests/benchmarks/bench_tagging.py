"""Benchmark: how many posts per second Tagger.tag handles (target: 100 000 posts in < 10 s).

Run with `.venv/bin/python tests/benchmarks/bench_tagging.py [N]`. Not a pytest test (no test_
functions, file name not test_*). Builds N varied posts (default 100 000): Finnish, Swedish and
English words, inflected place names, brands, hashtags, mentions, URLs, emoji, words never seen
before, times over 200 days. Reports the one-off start-up (building the gazetteer,
loading the lexicon, tracker/data/lexicon.xz) apart, then tags all posts three times: the first
pass analyses every new word (as a fresh `tracker tag-file` run would), later passes show the
steady state of a long-running collector. Wall time suffers when other processes share the CPU;
CPU time is printed next to it. Ends with the process's peak RSS (ru_maxrss), which includes the
N posts themselves.
"""

from __future__ import annotations

import datetime as dt
import random
import resource
import sys
import time
from dataclasses import dataclass, field

from tracker.gazetteer import Gazetteer
from tracker.tagging import Tagger

PLACES = """Tampereella Pirkanmaalla Pirhan Turussa Varhalla Åbo Porissa Satakunnassa
Hämeenlinnassa Oman_Hämeen Lahdessa Kotkassa Kouvolassa Lappeenrannassa Mikkelissä Eloisan
Kuopiossa Joensuussa Siun_soten Jyväskylässä Seinäjoella Etelä-Pohjanmaalla Vaasassa Vasa
Kokkolassa Soitessa Oulussa Pohteen Kajaanissa Kainuussa Rovaniemellä Lapissa Helsingissä
Helsingfors Espoossa Vantaalla Keravalla Porvoossa Hyvinkäällä Keusoten Uudessakaupungissa
Kauniaisissa Virroilla Pihtiputaalla Nurmeksessa Iissä Sotkamossa Raahessa Närpes Jakobstad
Itä-Uudellamaalla Keski-Suomessa Varsinais-Suomen North_Karelia Lapland in_Tampere""".split()
FILLER = """tänään eilen huomenna kiitos hieno päivä keskustelu järjestöt sote palvelut ihmiset
yhdessä tilaisuus kiertue vierailu hyvinvointialue mukana paljon hyvää ajatuksia ja on oli
että kun myös nyt sitten vielä osallisuus asukkaat kuntalaiset vapaaehtoiset tavata teemme
hej tack idag välfärdsområdet thanks great day with the team""".split()
TAGS = ["#ihmisensote", "#sote", "#hyvinvointialueet", "#Tampere", "#SiunSote", "#pirha",
        "#Pirkanmaalla", "#järjestöt", "#Oulu", "#vaasa"]
EXTRAS = ["https://example.fi/kiertue?x=1", "@Pirha_fi", "@matti@mastodon.social", "🎉", "💚👏",
          "pirha.fi/uutiset", "(kuva: Jani Lahti)", "Suomessa", "Länsi-Suomi", "lahdella"]


@dataclass(frozen=True)
class BenchStop:
    id: str
    area: str
    date: dt.date | None
    aliases: list[str] = field(default_factory=list)


STOPS = [BenchStop(f"stop-{i}", area, dt.date(2023, 2, 9) + dt.timedelta(days=7 * i))
         for i, area in enumerate(["pirkanmaa", "varsinais-suomi", "satakunta", "kanta-hame",
                                   "paijat-hame", "kymenlaakso", "etela-karjala", "etela-savo",
                                   "pohjois-savo", "pohjois-karjala", "keski-suomi",
                                   "etela-pohjanmaa", "pohjanmaa", "keski-pohjanmaa",
                                   "pohjois-pohjanmaa", "kainuu", "lappi", "helsinki",
                                   "lansi-uusimaa", "vantaa-kerava", "keski-uusimaa"])]
STOPS.append(BenchStop("ita-uusimaa", "ita-uusimaa", None, ["Taidetehdas"]))


Post = tuple[str, list[str], dt.datetime]
"""text, hashtags, created_at"""


def nonce(rng: random.Random) -> str:
    """A word never seen before, to keep the cache honest."""
    return "".join(rng.choice("aeiouyäklmnprstvh") for _ in range(rng.randint(5, 11)))


def make_post(rng: random.Random) -> Post:
    words = rng.sample(FILLER, rng.randint(6, 18))
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        words.insert(rng.randrange(len(words) + 1), rng.choice(PLACES).replace("_", " "))
    if rng.random() < 0.5:
        words.append(rng.choice(EXTRAS))
    if rng.random() < 0.05:
        words.insert(rng.randrange(len(words) + 1), nonce(rng))
    words[0] = words[0].capitalize()
    tags = rng.sample(TAGS, rng.randint(0, 3))
    text = " ".join(words) + ". " + " ".join(tags)
    created = dt.datetime(2023, 2, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
        minutes=rng.randrange(60 * 24 * 200))
    return text, [t.lstrip("#").lower() for t in tags], created


def timed_pass(tagger: Tagger, posts: list[Post]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, posts attributed to a stop) for tagging every post once."""
    start, cpu_start = time.perf_counter(), time.process_time()
    attributed = sum(tagger.tag(text, tags, created).attribution.stop_id is not None
                     for text, tags, created in posts)
    return time.perf_counter() - start, time.process_time() - cpu_start, attributed


def machine_check() -> float:
    """Seconds for a plain 10-million-step Python loop: tells a slow or busy machine apart."""
    start = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - start


def main(n: int = 100_000, passes: int = 3) -> None:
    rng = random.Random(2023)
    posts = [make_post(rng) for _ in range(n)]
    start = time.perf_counter()
    tagger = Tagger(STOPS, "Europe/Helsinki", 3, 7, Gazetteer.default())
    tagger.gazetteer.warm_up()
    print(f"start-up (gazetteer + lexicon): {time.perf_counter() - start:.2f} s")
    print(f"machine check: a 10M-step Python loop takes {machine_check():.2f} s here")
    for number in range(1, passes + 1):
        wall, cpu, attributed = timed_pass(tagger, posts)
        state = "cold word cache" if number == 1 else "warm word cache"
        print(f"pass {number} ({state}): {n} posts in {wall:.2f} s = {n / wall:,.0f} posts/s "
              f"(CPU {cpu:.2f} s = {n / cpu:,.0f} posts/s; {attributed} attributed to a stop)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB -> MB
    print(f"peak RSS {peak:.0f} MB ({n:,} posts held in memory; simplemma imported: "
          f"{'simplemma' in sys.modules})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
