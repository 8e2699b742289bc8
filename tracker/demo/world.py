"""A simulated campaign for the offline demo: people posting about a tour on four servers.

The plan is deterministic (a seeded random generator): for each stop, posts in Finnish, Swedish
and English in the days around the visit, mostly on the visit day, naming the city, the region
or the county's brand in inflected forms; campaign posts that name no place; retweets, replies,
quotes, toots that federate to a second Mastodon instance, and engagement that grows for days
after posting. `World.advance(now)` publishes what is due by `now` on the fake servers.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from tracker.fake_platforms.bluesky_server import BlueskyServer
from tracker.fake_platforms.mastodon_server import MastodonServer
from tracker.fake_platforms.x_server import XServer

HELSINKI = ZoneInfo("Europe/Helsinki")
GROWTH_DAYS = dt.timedelta(days=8)
"""Engagement keeps coming for about a week after posting."""

# Hand-written phrases per area: (Finnish "in <place>", Finnish genitive of the county or brand,
# Swedish place, English place). The tagger has to recognise all of these.
PLACES: dict[str, tuple[list[str], list[str], list[str], list[str]]] = {
    "pirkanmaa": (["Tampereella", "Pirkanmaalla", "Nokialla"], ["Pirhan", "Pirkanmaan hyvinvointialueen"],
                  ["i Tammerfors", "i Birkaland"], ["in Tampere", "in Pirkanmaa"]),
    "pohjois-karjala": (["Joensuussa", "Pohjois-Karjalassa", "Kiteellä"], ["Siun soten", "Pohjois-Karjalan hyvinvointialueen"],
                        ["i Joensuu", "i Norra Karelen"], ["in Joensuu", "in North Karelia"]),
    "varsinais-suomi": (["Turussa", "Varsinais-Suomessa", "Salossa"], ["Varhan", "Varsinais-Suomen hyvinvointialueen"],
                        ["i Åbo", "i Egentliga Finland"], ["in Turku", "in Southwest Finland"]),
    "pohjanmaa": (["Vaasassa", "Pohjanmaalla", "Pietarsaaressa"], ["Pohjanmaan hyvinvointialueen"],
                  ["i Vasa", "i Österbotten", "i Jakobstad"], ["in Vaasa", "in Ostrobothnia"]),
    "lappi": (["Rovaniemellä", "Lapissa", "Kemissä"], ["Lapin hyvinvointialueen"],
              ["i Rovaniemi", "i Lappland"], ["in Rovaniemi", "in Lapland"]),
    "helsinki": (["Helsingissä"], ["Helsingin kaupungin"], ["i Helsingfors"], ["in Helsinki"]),
    "pohjois-savo": (["Kuopiossa", "Pohjois-Savossa"], ["Pohjois-Savon hyvinvointialueen"],
                     ["i Kuopio", "i Norra Savolax"], ["in Kuopio", "in North Savo"]),
    "keski-suomi": (["Jyväskylässä", "Keski-Suomessa"], ["Keski-Suomen hyvinvointialueen"],
                    ["i Jyväskylä", "i Mellersta Finland"], ["in Jyväskylä", "in Central Finland"]),
}

FI_VISIT = [
    "Hyvinvointialuekiertue jatkuu: tänään {place}! Keskustelimme {county} johdon kanssa järjestöjen roolista. #ihmisensote",
    "Kiitos {county} väelle hyvästä tapaamisesta {place} 🙏 Järjestöt ovat kumppani, eivät menoerä. #ihmisensote",
    "{place_cap} puhuttiin tänään ennaltaehkäisystä ja vapaaehtoistyön merkityksestä #ihmisensote #sote",
    "Järjestöjen ääni kuului {place}. Seuraavaksi yhteistyön käytännöt kuntoon! #ihmisensote",
]
SV_VISIT = [
    "Idag besökte vi välfärdsområdet {place} – tack för ett gott samtal om organisationernas roll! #ihmisensote",
    "Turnén fortsätter {place}. Frivilligarbetet behöver långsiktig finansiering. #ihmisensote",
]
EN_VISIT = [
    "Great meeting {place} today with the wellbeing services county leadership. NGOs are partners! #ihmisensote",
    "The wellbeing county tour stopped {place}: prevention and volunteering high on the agenda #ihmisensote",
]
GENERIC = [
    ("fi", "Järjestöt mukana hyvinvointialueiden arjessa – seuraa kiertuetta! #ihmisensote"),
    ("fi", "Miten järjestöjen avustukset turvataan uusilla alueilla? Keskustelu jatkuu #ihmisensote"),
    ("fi", "Ihmisen kokoinen sote syntyy yhdessä. #ihmisensote"),
    ("sv", "Organisationerna behövs i välfärdsområdena. #ihmisensote"),
    ("en", "Civil society and the new wellbeing services counties: follow the tour #ihmisensote"),
]
REPLIES = ["Hienoa! 👏 #ihmisensote", "Tärkeä viesti #ihmisensote", "Bra jobbat! #ihmisensote",
           "Well said #ihmisensote", "Samaa mieltä, kiitos! #ihmisensote"]


@dataclass
class Planned:
    at: dt.datetime
    server: str
    """'x', 'm1', 'm2' or 'bluesky'."""
    author: int
    text: str
    lang: str
    kind: str = "original"
    """'original', 'reply', 'quote' or 'repost'."""
    ref: int | None = None
    federate: bool = False
    popularity: float = 1.0
    published_id: str | None = None
    """Id on its server once published (X tweet id, Mastodon local id, Bluesky AT-URI)."""


@dataclass
class World:
    """The fake servers, the accounts on them and the plan; `advance()` moves time forward."""

    x: XServer
    m1: MastodonServer
    m2: MastodonServer
    bsky: BlueskyServer
    plan: list[Planned]
    rng: random.Random
    accounts: dict[str, list[str]] = field(default_factory=dict)
    published: int = 0
    growing_from: int = 0
    rate_limit_at: dt.datetime | None = None
    """When the simulated clock passes this, X answers one 429 (the demo shows it is handled)."""

    def advance(self, now: dt.datetime, hours: float) -> int:
        """Publish every planned post due by `now`; grow the engagement of recent posts."""
        released = 0
        while self.published < len(self.plan) and self.plan[self.published].at <= now:
            self._publish(self.plan[self.published])
            self.published += 1
            released += 1
        while self.growing_from < self.published and now - self.plan[self.growing_from].at > GROWTH_DAYS:
            self.growing_from += 1  # the plan is in time order: older posts have stopped growing
        for post in self.plan[self.growing_from: self.published]:
            self._grow(post, now, hours)
        if self.rate_limit_at is not None and now >= self.rate_limit_at:
            self.x.rate_limit_next(reset_in=20 * 60)  # longer than the demo waits: resumes later
            self.rate_limit_at = None
        return released

    def _publish(self, p: Planned) -> None:
        ref = self.plan[p.ref] if p.ref is not None else None
        if p.server == "x":
            author = self.accounts["x"][p.author]
            if p.kind == "repost" and ref and ref.published_id:
                p.published_id = self.x.add_retweet(author, ref.published_id, created_at=p.at)
            else:
                p.published_id = self.x.add_tweet(
                    author, p.text, created_at=p.at, lang=p.lang,
                    reply_to=ref.published_id if ref and p.kind == "reply" else None,
                    quote_of=ref.published_id if ref and p.kind == "quote" else None,
                    metrics={"impression_count": int(50 * p.popularity)})
        elif p.server in ("m1", "m2"):
            server = self.m1 if p.server == "m1" else self.m2
            author = self.accounts[p.server][p.author]
            reply = ref.published_id if ref and p.kind == "reply" and ref.server == p.server else None
            local = server.post(author, p.text, created_at=p.at, language=p.lang, in_reply_to=reply)
            p.published_id = str(local)
            if p.federate:
                server.federate(local, self.m2 if p.server == "m1" else self.m1)
        else:
            author = self.accounts["bluesky"][p.author]
            reply = ref.published_id if ref and p.kind == "reply" and ref.server == "bluesky" else None
            quote = ref.published_id if ref and p.kind == "quote" and ref.server == "bluesky" else None
            p.published_id = self.bsky.add_post(author, p.text, created_at=p.at, langs=[p.lang],
                                                reply_to=reply, quote=quote)

    def _grow(self, p: Planned, now: dt.datetime, hours: float) -> None:
        """Engagement arrives mostly on the first day, a little for a week (grows between polls)."""
        if p.published_id is None or p.kind == "repost":
            return
        age_days = (now - p.at).total_seconds() / 86400
        pace = p.popularity * hours * (0.8 if age_days < 1 else 0.15 if age_days < 3 else 0.02)
        likes = int(self.rng.random() * pace * 2)
        shares = int(self.rng.random() * pace * 0.5)
        replies = int(self.rng.random() * pace * 0.3)
        if not (likes or shares or replies):
            return
        if p.server == "x":
            m = self.x.tweets[p.published_id].metrics
            self.x.set_metrics(p.published_id, like_count=m.get("like_count", 0) + likes,
                               retweet_count=m.get("retweet_count", 0) + shares,
                               reply_count=m.get("reply_count", 0) + replies,
                               impression_count=m.get("impression_count", 0) + 12 * (likes + shares) + 3)
        elif p.server in ("m1", "m2"):
            (self.m1 if p.server == "m1" else self.m2).grow(p.published_id, favourites=likes, reblogs=shares,
                                                            replies=replies)
        else:
            self.bsky.grow(p.published_id, likes=likes, reposts=shares, replies=replies)


def _phrase(rng: random.Random, area: str, lang: str) -> str:
    fi_places, fi_county, sv_places, en_places = PLACES.get(area, PLACES["helsinki"])
    if lang == "sv":
        return rng.choice(SV_VISIT).format(place=rng.choice(sv_places))
    if lang == "en":
        return rng.choice(EN_VISIT).format(place=rng.choice(en_places))
    place = rng.choice(fi_places)
    return rng.choice(FI_VISIT).format(place=place, place_cap=place, county=rng.choice(fi_county))


def plan_campaign(stops: list[tuple[str, dt.date]], start: dt.date, end: dt.date, seed: int = 2023) -> list[Planned]:
    """Posts around each visit (most on the day), generic campaign chatter, replies and reposts."""
    rng = random.Random(seed)
    plan: list[Planned] = []
    servers = ["x", "x", "m1", "m2", "bluesky"]

    def local(day: dt.date, hour: float) -> dt.datetime:
        moment = dt.datetime.combine(day, dt.time(int(hour), int(hour % 1 * 60)), tzinfo=HELSINKI)
        return moment.astimezone(dt.timezone.utc)

    for area, day in stops:
        for offset, count in ((-2, 3), (-1, 5), (0, 28), (1, 12), (2, 6), (4, 3)):
            for _ in range(count):
                lang = rng.choices(["fi", "sv", "en"], weights=[7, 2, 1])[0]
                text = _phrase(rng, area, lang)
                if rng.random() < 0.25 and offset == 0:
                    text = text.replace(" #ihmisensote", "") + " #ihmisensote #" + area.split("-")[0].capitalize()
                plan.append(Planned(local(day + dt.timedelta(days=offset), rng.uniform(7, 23.9)),
                                    rng.choice(servers), rng.randrange(12), text, lang,
                                    federate=rng.random() < 0.3, popularity=rng.uniform(0.3, 3.0)))
    day = start
    while day <= end:  # campaign chatter that names no place
        for _ in range(rng.randint(1, 3)):
            lang, text = rng.choice(GENERIC)
            plan.append(Planned(local(day, rng.uniform(6, 23.5)), rng.choice(servers), rng.randrange(12),
                                text, lang, popularity=rng.uniform(0.2, 1.5)))
        day += dt.timedelta(days=1)
    plan.sort(key=lambda p: p.at)
    extra: list[Planned] = []
    for index, post in enumerate(plan):  # reactions to some posts, shortly after them
        roll = rng.random()
        if roll < 0.12:
            kind = "reply"
        elif roll < 0.18:
            kind = "quote"
        elif roll < 0.26 and post.server == "x":
            kind = "repost"
        else:
            continue
        text = rng.choice(REPLIES) if kind != "quote" else "Tätä kannattaa lukea 👇 #ihmisensote"
        extra.append(Planned(post.at + dt.timedelta(minutes=rng.randint(5, 300)), post.server,
                             rng.randrange(12), text, "fi", kind=kind, ref=index, popularity=0.4))
    # references point into `plan`; keep them valid by appending the reactions after sorting them
    extra.sort(key=lambda p: p.at)
    merged = plan + extra
    order = sorted(range(len(merged)), key=lambda i: merged[i].at)
    position = {old: new for new, old in enumerate(order)}
    result = [merged[i] for i in order]
    for post in result:
        if post.ref is not None:
            post.ref = position[post.ref]
    return result


def build_world(x: XServer, m1: MastodonServer, m2: MastodonServer, bsky: BlueskyServer,
                plan: list[Planned], seed: int = 2023) -> World:
    """Accounts on every server (names and follower counts vary), ready to publish the plan."""
    rng = random.Random(seed + 1)
    names = ["soste", "jarjestot", "sotemuutos", "hyte_aktiivi", "vapaaehtoinen", "kansalaisareena",
             "terveys_ry", "nuorisotyo", "vanhustyo", "mielenterveys", "omaishoito", "ngo_finland"]
    world = World(x, m1, m2, bsky, plan, rng)
    world.accounts["x"] = [x.add_user(n, followers=rng.randint(40, 9000)) for n in names]
    world.accounts["m1"] = [m1.add_account(n, followers=rng.randint(10, 2500)) for n in names]
    world.accounts["m2"] = [m2.add_account(n, followers=rng.randint(10, 1200)) for n in names]
    world.accounts["bluesky"] = [bsky.add_account(f"{n.replace('_', '-')}.bsky.social", followers=rng.randint(5, 3000)).did
                                 for n in names]
    return world
