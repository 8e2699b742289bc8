"""Tag posts with the areas they name and the tour stop (visit) they belong to.

The areas a post names come from tracker.gazetteer (names in its text, its hashtags and the
stops' aliases). The rules, in plain language:

* A post's day is its local date: the moment it was posted, read on a clock in the campaign's
  time zone (Europe/Helsinki), not in UTC. A post at 23:30 UTC on 8 February is a post of
  9 February in Finland; the switches to and from summer time come from the time zone database.
* A stop's window runs from `days_before` days before its visit date to `days_after` days after
  it, both ends included. Stops without a date are not scheduled yet and never attract posts.
1. A post that names an area is given to that area's stop when the post's day lies in the
   stop's window (method "area").
2. When it names several areas whose stops are in window, the stop whose visit date is nearest
   to the post's day wins; on a tie, the area named first in the post; then the earlier visit
   (a post between two visits more often reports on the one that happened); then the order of
   the stops in the settings. An area visited twice works the same way: the in-window visit
   nearest in date.
3. A post that names no area at all is given to the stop visited on its day, if exactly one
   stop is (method "date"). Hashtags such as #ihmisensote name no area, so the campaign's posts
   of a visit day land here.
4. Otherwise the post belongs to no stop (method "none"); the areas it names are still kept.
   This includes a post that names areas none of which has a stop in window, even on a visit
   day: it talks about somewhere else, so rule 3 does not apply to it.

Confidence (0..1) says how sure an attribution is:
* "area": 1.0 on the visit day, less for each day away: 0.6 + 0.4 * (1 - days / (side + 1)),
  where side is days_before for a post before the visit and days_after after it (so 0.7 at the
  edge of a 3-day side); times 0.85 when another stop (of another named area, or another visit
  to the same one) was in window too.
* "date": 0.5: the post only shares its day with a visit.
* "none": 0.0.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO
from zoneinfo import ZoneInfo

from tracker.areas import AREAS, unknown_area_message
from tracker.gazetteer import Gazetteer

DATE_CONFIDENCE = 0.5
COMPETITION_FACTOR = 0.85
EDGE_CONFIDENCE = 0.6


class StopLike(Protocol):
    """What the tagger needs of a stop (tracker.settings.Stop fits)."""

    @property
    def id(self) -> str: ...

    @property
    def area(self) -> str: ...

    @property
    def date(self) -> dt.date | None:
        """None: not scheduled yet."""

    @property
    def aliases(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class Attribution:
    """Which stop a post belongs to, how that was decided and how sure it is."""

    stop_id: str | None
    method: str
    """'area', 'date' or 'none'."""
    confidence: float


@dataclass(frozen=True, slots=True)
class TagResult:
    """What tagging found out about one post."""

    areas: list[str]
    """Area ids the post names, in order of first appearance."""
    local_date: dt.date
    attribution: Attribution


NO_STOP = Attribution(None, "none", 0.0)


class Tagger:
    """Tags posts for one tour; build once, then call tag() often.

    The stops' aliases (a venue, a local hashtag) become names of their stop's area in the
    tagger's own copy of the gazetteer (the default one unless another is given)."""

    def __init__(self, stops: Iterable[StopLike], timezone: str | ZoneInfo, days_before: int,
                 days_after: int, gazetteer: Gazetteer | None = None) -> None:
        if days_before < 0 or days_after < 0:
            raise ValueError("days_before and days_after must be 0 or more")
        self.stops: tuple[StopLike, ...] = tuple(stops)
        for stop in self.stops:
            if stop.area not in AREAS:
                raise ValueError(f"stop '{stop.id}': {unknown_area_message(stop.area)}")
        self.timezone = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
        self.days_before = days_before
        self.days_after = days_after
        aliases: dict[str, list[str]] = {}
        for stop in self.stops:
            aliases.setdefault(stop.area, []).extend(stop.aliases or ())
        base = gazetteer if gazetteer is not None else Gazetteer.default()
        self.gazetteer = base.with_aliases(aliases)
        self._by_area: dict[str, list[tuple[int, int, str]]] = {}  # (day number, order, id)
        self._by_date: dict[dt.date, list[str]] = {}
        for order, stop in enumerate(self.stops):
            if stop.date is not None:
                self._by_area.setdefault(stop.area, []).append(
                    (stop.date.toordinal(), order, stop.id))
                self._by_date.setdefault(stop.date, []).append(stop.id)
        self._attributions: dict[tuple[str, str, float], Attribution] = {}

    def local_date(self, created_at: dt.datetime) -> dt.date:
        """The post's day in the campaign time zone; naive datetimes are refused."""
        if not isinstance(created_at, dt.datetime):
            raise TypeError(f"created_at must be a datetime, not {type(created_at).__name__}")
        if created_at.tzinfo is None or created_at.utcoffset() is None:
            raise ValueError("created_at must be timezone-aware (naive datetimes are ambiguous)")
        try:
            return created_at.astimezone(self.timezone).date()
        except OverflowError:  # year 1 or 9999 pushed over the edge: no tour runs there
            return created_at.date()

    def tag(self, text: str, hashtags: Iterable[str], created_at: dt.datetime) -> TagResult:
        """Areas named, local date and stop of one post."""
        day = self.local_date(created_at)
        areas = self.gazetteer.find_areas(text, hashtags)
        return TagResult(areas, day, self.attribute(areas, day))

    def attribute(self, areas: Sequence[str], day: dt.date) -> Attribution:
        """Rules 1-4 of the module docstring, for areas already found."""
        candidates = self._in_window(areas, day.toordinal()) if areas else []
        if candidates:
            # (distance, area order, visit day, stop order, stop id, offset): rule 2's order
            best = min(candidates)
            competed = any(c[4] != best[4] for c in candidates)
            return self._attribution(best[4], "area", self._confidence(best[0], best[5], competed))
        if not areas:
            visits = self._by_date.get(day, ())
            if len(visits) == 1:
                return self._attribution(visits[0], "date", DATE_CONFIDENCE)
        return NO_STOP

    def _in_window(self, areas: Sequence[str],
                   day: int) -> list[tuple[int, int, int, int, str, int]]:
        """Stops of the named areas whose window holds the day, as rule 2 compares them."""
        found = []
        for area_order, area in enumerate(areas):
            for visit, stop_order, stop_id in self._by_area.get(area, ()):
                offset = day - visit
                if -self.days_before <= offset <= self.days_after:
                    found.append((abs(offset), area_order, visit, stop_order, stop_id, offset))
        return found

    def _confidence(self, distance: int, offset: int, competed: bool) -> float:
        side = self.days_before if offset < 0 else self.days_after
        closeness = 1.0 - distance / (side + 1)
        value = EDGE_CONFIDENCE + (1.0 - EDGE_CONFIDENCE) * closeness
        if competed:
            value *= COMPETITION_FACTOR
        return round(value, 3)

    def _attribution(self, stop_id: str, method: str, confidence: float) -> Attribution:
        """Attributions are immutable: share one per (stop, method, confidence)."""
        key = (stop_id, method, confidence)
        found = self._attributions.get(key)
        if found is None:
            found = self._attributions[key] = Attribution(stop_id, method, confidence)
        return found


# ----------------------------------------------------------------------------------------------
# JSON lines in, JSON lines out
# ----------------------------------------------------------------------------------------------

class _BadLine(Exception):
    """A problem with one input line, reported and skipped."""


def _field(obj: dict[str, Any], name: str, kinds: tuple[type, ...], what: str) -> Any:
    if name not in obj:
        raise _BadLine(f"missing field '{name}'")
    value = obj[name]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise _BadLine(f"field '{name}' must be {what}, not {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _timestamp(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _BadLine(f"created_at '{value}' is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _BadLine(f"created_at '{value}' has no UTC offset (add Z or +02:00)")
    return moment


def _hashtags(obj: dict[str, Any]) -> list[str]:
    value = obj.get("hashtags")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise _BadLine("field 'hashtags' must be an array of strings")
    return value


def _tag_line(line: str, tagger: Tagger) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise _BadLine(f"expected a JSON object, got {_json_type(obj)}")
    post_id = _field(obj, "id", (str, int), "a string or an integer")
    _field(obj, "platform", (str,), "a string")
    created_at = _timestamp(_field(obj, "created_at", (str,), "a string"))
    text = _field(obj, "text", (str,), "a string")
    result = tagger.tag(text, _hashtags(obj), created_at)
    return {"id": post_id, "stop": result.attribution.stop_id, "areas": result.areas,
            "method": result.attribution.method, "confidence": result.attribution.confidence}


def tag_jsonl(lines: Iterable[str], tagger: Tagger, out: TextIO, err: TextIO) -> tuple[int, int]:
    """Tag posts read one JSON object a line; write one result a line, problems to err.

    A bad line (invalid JSON, missing or mistyped field, timestamp without offset) is reported
    as 'line N: problem' and skipped; blank lines are ignored. Returns (tagged, errors)."""
    ok = errors = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = _tag_line(line, tagger)
        except _BadLine as problem:
            err.write(f"line {number}: {problem}\n")
            errors += 1
            continue
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        ok += 1
    return ok, errors
