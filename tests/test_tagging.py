"""Tagging posts with areas and tour stops: the labelled set, each rule, windows, time zones,
JSON lines in and out, and properties."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.gazetteer import Gazetteer
from tracker.settings import Stop as SettingsStop
from tracker.tagging import Attribution, TagResult, Tagger, tag_jsonl

LABELLED = Path(__file__).parent / "data" / "labelled_posts.jsonl"
UTC = dt.timezone.utc


@dataclass(frozen=True)
class Stop:
    id: str
    area: str
    date: dt.date | None
    aliases: tuple[str, ...] = ()


D = dt.date
TOUR = [
    Stop("pirkanmaa", "pirkanmaa", D(2023, 2, 9), ("Tampere-talo", "#pirhakiertue")),
    Stop("varsinais-suomi", "varsinais-suomi", D(2023, 2, 14)),
    Stop("satakunta", "satakunta", D(2023, 2, 16)),              # window overlaps the one above
    Stop("helsinki", "helsinki", D(2023, 3, 26)),                # summer time starts
    Stop("pohjois-karjala", "pohjois-karjala", D(2023, 3, 28)),
    Stop("kainuu", "kainuu", D(2023, 3, 30)),
    Stop("lappi", "lappi", D(2023, 4, 20)),
    Stop("pirkanmaa-2", "pirkanmaa", D(2023, 5, 10)),            # second visit to an area
    Stop("vantaa-kerava", "vantaa-kerava", D(2023, 6, 1), ("Tikkurila",)),
    Stop("etela-pohjanmaa", "etela-pohjanmaa", D(2023, 9, 5), ("Frami",)),
    Stop("pohjanmaa", "pohjanmaa", D(2023, 9, 7)),
    Stop("keski-suomi", "keski-suomi", D(2023, 10, 29)),         # summer time ends
    Stop("keski-uusimaa", "keski-uusimaa", D(2023, 11, 15)),     # two visits on one day
    Stop("lansi-uusimaa", "lansi-uusimaa", D(2023, 11, 15)),
    Stop("kymenlaakso", "kymenlaakso", None),                    # not scheduled yet
    Stop("pohjois-pohjanmaa", "pohjois-pohjanmaa", D(2023, 12, 5)),
]
BEFORE, AFTER = 2, 3


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger(TOUR, "Europe/Helsinki", BEFORE, AFTER)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# --- the labelled set --------------------------------------------------------------------------

def load_labelled() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text("utf-8").splitlines() if line.strip()]


def test_labelled_posts(tagger: Tagger, capsys: pytest.CaptureFixture[str]) -> None:
    posts = load_labelled()
    assert len(posts) >= 180
    area_ok = stop_ok = 0
    failures = []
    for post in posts:
        result = tagger.tag(post["text"], post.get("hashtags", []), at(post["created_at"]))
        area_ok += result.areas == post["expected_areas"]
        stop_ok += result.attribution.stop_id == post["expected_stop"]
        if (result.areas, result.attribution.stop_id) != (post["expected_areas"],
                                                          post["expected_stop"]):
            failures.append(f"{post['id']} {post['text']!r}: got {result.areas} "
                            f"{result.attribution}, expected {post['expected_areas']} "
                            f"{post['expected_stop']}")
    with capsys.disabled():
        print(f"\nlabelled posts: {len(posts)}; areas right {area_ok / len(posts):.1%}, "
              f"stops right {stop_ok / len(posts):.1%}")
    assert failures == []


def test_labelled_set_covers_every_method(tagger: Tagger) -> None:
    methods = {tagger.tag(p["text"], p.get("hashtags", []), at(p["created_at"])).attribution.method
               for p in load_labelled()}
    assert methods == {"area", "date", "none"}


# --- rule 1: an area named in window -----------------------------------------------------------

def test_area_named_in_window_goes_to_its_stop(tagger: Tagger) -> None:
    result = tagger.tag("Tänään Tampereella!", [], at("2023-02-09T10:00:00+02:00"))
    assert result == TagResult(["pirkanmaa"], D(2023, 2, 9), Attribution("pirkanmaa", "area", 1.0))


@pytest.mark.parametrize("day, stop_id", [
    (D(2023, 2, 6), None), (D(2023, 2, 7), "pirkanmaa"), (D(2023, 2, 12), "pirkanmaa"),
    (D(2023, 2, 13), None),
])
def test_window_ends_are_inclusive(tagger: Tagger, day: dt.date, stop_id: str | None) -> None:
    noon = dt.datetime.combine(day, dt.time(12), ZoneInfo("Europe/Helsinki"))
    assert tagger.tag("Pirkanmaalla", [], noon).attribution.stop_id == stop_id


def test_zero_day_window_is_the_visit_day_only() -> None:
    tagger = Tagger(TOUR, "Europe/Helsinki", 0, 0)
    for day, expected in ((8, None), (9, "pirkanmaa"), (10, None)):
        moment = dt.datetime(2023, 2, day, 12, tzinfo=UTC)
        assert tagger.tag("Tampere", [], moment).attribution.stop_id == expected


def test_names_and_hashtag_list_both_count(tagger: Tagger) -> None:
    result = tagger.tag("Hieno päivä!", ["#Tampere"], at("2023-02-09T10:00:00+02:00"))
    assert result.attribution.stop_id == "pirkanmaa"
    no_tags = tagger.tag("Tampere", None, at("2023-02-09T10:00:00+02:00"))  # type: ignore[arg-type]
    assert no_tags.areas == ["pirkanmaa"]  # stored posts may have None for hashtags


def test_stop_aliases_name_the_stops_area(tagger: Tagger) -> None:
    for text in ("Tampere-talossa tänään", "#pirhakiertue", "Tikkurilassa"):
        assert tagger.tag(text, [], at("2023-02-09T10:00:00+02:00")).areas in (
            ["pirkanmaa"], ["vantaa-kerava"])
    assert tagger.tag("Tikkurilassa", [], at("2023-06-01T10:00:00+03:00")).attribution.stop_id \
        == "vantaa-kerava"


def test_given_gazetteer_is_used_and_gets_the_stop_aliases() -> None:
    custom = Gazetteer.default({"pirkanmaa": ["Kalevan kirkko"]})
    tagger = Tagger(TOUR, "Europe/Helsinki", BEFORE, AFTER, gazetteer=custom)
    moment = at("2023-02-09T10:00:00+02:00")
    assert tagger.tag("Kalevan kirkossa", [], moment).areas == ["pirkanmaa"]
    assert tagger.tag("Tampere-talossa", [], moment).areas == ["pirkanmaa"]


# --- rule 2: several areas, an area visited twice ----------------------------------------------

def test_nearest_visit_wins(tagger: Tagger) -> None:
    result = tagger.tag("Turun jälkeen tänään Satakunnassa", [], at("2023-02-16T12:00:00+02:00"))
    assert result.areas == ["varsinais-suomi", "satakunta"]
    assert result.attribution == Attribution("satakunta", "area", 0.85)


def test_tie_goes_to_the_area_named_first(tagger: Tagger) -> None:
    moment = at("2023-02-15T12:00:00+02:00")
    assert tagger.tag("Turusta Poriin", [], moment).attribution.stop_id == "varsinais-suomi"
    assert tagger.tag("Kiertue Porista Turkuun", [], moment).attribution.stop_id == "satakunta"


def test_area_visited_twice_takes_the_visit_in_window(tagger: Tagger) -> None:
    assert tagger.tag("Tampere", [], at("2023-02-10T12:00:00+02:00")).attribution.stop_id \
        == "pirkanmaa"
    assert tagger.tag("Tampere", [], at("2023-05-11T12:00:00+03:00")).attribution.stop_id \
        == "pirkanmaa-2"


def test_overlapping_visits_of_one_area_take_the_nearest_then_the_earlier() -> None:
    stops = [Stop("a", "pirkanmaa", D(2023, 5, 1)), Stop("b", "pirkanmaa", D(2023, 5, 5))]
    tagger = Tagger(stops, "Europe/Helsinki", 7, 7)
    def stop_on(day: int) -> str | None:
        moment = dt.datetime(2023, 5, day, 12, tzinfo=ZoneInfo("Europe/Helsinki"))
        return tagger.tag("Tampereella", [], moment).attribution.stop_id
    assert [stop_on(day) for day in (1, 2, 3, 4, 5)] == ["a", "a", "a", "b", "b"]


def test_unscheduled_stop_never_attracts_posts(tagger: Tagger) -> None:
    result = tagger.tag("Kotkan kaupunki", [], at("2023-07-01T12:00:00+03:00"))
    assert result.areas == ["kymenlaakso"]
    assert result.attribution == Attribution(None, "none", 0.0)


# --- rule 3: no area named, one visit that day -------------------------------------------------

def test_post_naming_no_area_goes_to_the_days_only_visit(tagger: Tagger) -> None:
    result = tagger.tag("Hieno päivä! #ihmisensote", [], at("2023-03-28T11:00:00+03:00"))
    assert result.areas == []
    assert result.attribution == Attribution("pohjois-karjala", "date", 0.5)


def test_two_visits_that_day_means_no_date_attribution(tagger: Tagger) -> None:
    result = tagger.tag("#ihmisensote", [], at("2023-11-15T10:00:00+02:00"))
    assert result.attribution == Attribution(None, "none", 0.0)


def test_date_rule_needs_the_visit_day_not_the_window(tagger: Tagger) -> None:
    assert tagger.tag("#ihmisensote", [], at("2023-03-29T11:00:00+03:00")).attribution.method \
        == "none"


# --- rule 4: nothing fits ----------------------------------------------------------------------

def test_area_without_stop_in_window_on_a_visit_day_gets_none(tagger: Tagger) -> None:
    result = tagger.tag("Nähdään Kuopiossa", [], at("2023-03-28T10:00:00+03:00"))
    assert result.areas == ["pohjois-savo"]
    assert result.attribution == Attribution(None, "none", 0.0)


def test_no_stops_at_all() -> None:
    result = Tagger([], "Europe/Helsinki", 3, 7).tag("Tampere", [], at("2023-02-09T10:00:00Z"))
    assert (result.areas, result.attribution.method) == (["pirkanmaa"], "none")


# --- confidence --------------------------------------------------------------------------------

def test_confidence_falls_with_distance_and_competition() -> None:
    tagger = Tagger(TOUR, "Europe/Helsinki", 2, 3)
    def confidence(text: str, day: int) -> float:
        moment = dt.datetime(2023, 2, day, 12, tzinfo=ZoneInfo("Europe/Helsinki"))
        return tagger.tag(text, [], moment).attribution.confidence
    assert [confidence("Tampere", day) for day in (7, 8, 9, 10, 11, 12)] == [
        0.733, 0.867, 1.0, 0.9, 0.8, 0.7]
    assert confidence("Tänään Satakunnassa, eilen Turussa", 16) == 0.85  # Turku also in window
    assert 0.6 <= confidence("Tampere", 12) < confidence("Tampere", 11)


# --- local date, time zones, summer time -------------------------------------------------------

@pytest.mark.parametrize("utc, local", [
    ("2023-02-08T21:59:00Z", D(2023, 2, 8)), ("2023-02-08T22:00:00Z", D(2023, 2, 9)),
    ("2023-03-25T21:59:00Z", D(2023, 3, 25)), ("2023-03-25T22:00:00Z", D(2023, 3, 26)),
    ("2023-03-26T20:59:00Z", D(2023, 3, 26)), ("2023-03-26T21:00:00Z", D(2023, 3, 27)),
    ("2023-10-28T20:59:00Z", D(2023, 10, 28)), ("2023-10-28T21:00:00Z", D(2023, 10, 29)),
    ("2023-10-29T21:59:00Z", D(2023, 10, 29)), ("2023-10-29T22:00:00Z", D(2023, 10, 30)),
    ("2023-02-09T03:00:00-05:00", D(2023, 2, 9)), ("2023-02-09T23:30:00+05:30", D(2023, 2, 9)),
])
def test_local_date_follows_helsinki_time(tagger: Tagger, utc: str, local: dt.date) -> None:
    assert tagger.tag("", [], at(utc)).local_date == local


def test_timezone_may_be_given_as_zoneinfo() -> None:
    tagger = Tagger(TOUR, ZoneInfo("America/New_York"), 0, 0)
    assert tagger.tag("", [], at("2023-02-10T03:00:00Z")).local_date == D(2023, 2, 9)


def test_naive_datetime_is_refused(tagger: Tagger) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tagger.tag("Tampere", [], dt.datetime(2023, 2, 9, 12))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="days_before"):
        Tagger(TOUR, "Europe/Helsinki", -1, 3)
    with pytest.raises(ValueError, match="pirkanmea"):
        Tagger([Stop("x", "pirkanmea", D(2023, 2, 9))], "Europe/Helsinki", 1, 1)


def test_settings_stops_work_as_they_are() -> None:
    stops = [SettingsStop(area="pirkanmaa", date=D(2023, 2, 9), aliases=["Tampere-talo"]),
             SettingsStop(area="lappi")]
    tagger = Tagger(stops, "Europe/Helsinki", 3, 7)
    result = tagger.tag("Tampere-talossa", [], at("2023-02-10T10:00:00+02:00"))
    assert result.attribution.stop_id == "pirkanmaa"


# --- tag_jsonl ---------------------------------------------------------------------------------

def run_jsonl(tagger: Tagger, lines: list[str]) -> tuple[tuple[int, int], list[dict], list[str]]:
    out, err = io.StringIO(), io.StringIO()
    counts = tag_jsonl(lines, tagger, out, err)
    return counts, [json.loads(line) for line in out.getvalue().splitlines()], \
        err.getvalue().splitlines()


def post(**fields: object) -> str:
    base = {"id": "1", "platform": "x", "created_at": "2023-02-09T10:00:00+02:00",
            "text": "Tänään Tampereella"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}, ensure_ascii=False)


def test_tag_jsonl_writes_one_result_a_line(tagger: Tagger) -> None:
    lines = [post(), "\n", post(id=2, text="Hieno päivä Åbossa", hashtags=["pirha"]),
             post(id="3", text="Ei paikkaa", created_at="2023-07-01T10:00:00Z")]
    counts, results, errors = run_jsonl(tagger, lines)
    assert counts == (3, 0) and errors == []
    assert results == [
        {"id": "1", "stop": "pirkanmaa", "areas": ["pirkanmaa"], "method": "area",
         "confidence": 1.0},
        {"id": 2, "stop": "pirkanmaa", "areas": ["varsinais-suomi", "pirkanmaa"],
         "method": "area", "confidence": 1.0},
        {"id": "3", "stop": None, "areas": [], "method": "none", "confidence": 0.0},
    ]


def test_tag_jsonl_keeps_non_ascii_readable(tagger: Tagger) -> None:
    out, err = io.StringIO(), io.StringIO()
    tag_jsonl([post(id="ä")], tagger, out, err)
    assert '"id": "ä"' in out.getvalue()


@pytest.mark.parametrize("line, problem", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object, got an array"),
    (post(text=...), "missing field 'text'"),
    (post(platform=...), "missing field 'platform'"),
    (post(created_at="2023-02-09T10:00:00"), "has no UTC offset"),
    (post(created_at="9.2.2023 klo 10"), "is not an ISO 8601 timestamp"),
    (post(created_at=1675929600), "field 'created_at' must be a string, not a number"),
    (post(text=42), "field 'text' must be a string, not a number"),
    (post(id=True), "field 'id' must be a string or an integer, not a boolean"),
    (post(id=None), "field 'id' must be a string or an integer, not null"),
    (post(hashtags="pirha"), "field 'hashtags' must be an array of strings"),
    (post(hashtags=[1]), "field 'hashtags' must be an array of strings"),
])
def test_tag_jsonl_reports_bad_lines_and_goes_on(tagger: Tagger, line: str, problem: str) -> None:
    counts, results, errors = run_jsonl(tagger, [post(id="a"), "", line, post(id="b")])
    assert counts == (2, 1)
    assert [r["id"] for r in results] == ["a", "b"]
    assert len(errors) == 1 and errors[0].startswith("line 3: ") and problem in errors[0]


def test_tag_jsonl_accepts_null_hashtags_and_z_times(tagger: Tagger) -> None:
    counts, results, _ = run_jsonl(tagger, [post(hashtags=None, created_at="2023-02-09T08:00:00Z")])
    assert counts == (1, 0) and results[0]["stop"] == "pirkanmaa"


# --- properties --------------------------------------------------------------------------------

AWARE = st.datetimes(timezones=st.timezones()) | st.datetimes(
    timezones=st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59),
                                                   max_value=dt.timedelta(hours=23, minutes=59))))


@settings(max_examples=300, deadline=None)
@given(text=st.text(), hashtags=st.lists(st.text(max_size=20), max_size=4), moment=AWARE)
def test_tag_never_raises(text: str, hashtags: list[str], moment: dt.datetime) -> None:
    result = TAGGER.tag(text, hashtags, moment)
    assert result.attribution.method in ("area", "date", "none")
    assert 0.0 <= result.attribution.confidence <= 1.0
    assert (result.attribution.stop_id is None) == (result.attribution.method == "none")


@settings(max_examples=200, deadline=None)
@given(moment=st.datetimes(min_value=dt.datetime(2023, 1, 1), max_value=dt.datetime(2024, 1, 1),
                           timezones=st.timezones()),
       words=st.lists(st.sampled_from(["Tampereella", "Turussa", "Porissa", "Helsinki", "#pirha",
                                       "Joensuussa", "Kajaani", "ja", "Suomessa", "🎉"]),
                      max_size=6))
def test_attributed_stop_is_named_and_in_window(moment: dt.datetime, words: list[str]) -> None:
    result = TAGGER.tag(" ".join(words), [], moment)
    stops = {stop.id: stop for stop in TOUR}
    if result.attribution.method == "area":
        stop = stops[result.attribution.stop_id]
        assert stop.area in result.areas
        assert -BEFORE <= (result.local_date - stop.date).days <= AFTER
    if result.attribution.method == "date":
        assert result.areas == [] and stops[result.attribution.stop_id].date == result.local_date


TAGGER = Tagger(TOUR, "Europe/Helsinki", BEFORE, AFTER)
