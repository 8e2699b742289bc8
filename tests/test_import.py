"""`tracker import`: one bad row never stops an import, on SQLite and on PostgreSQL alike.

Every bad row is reported by its line (as a spreadsheet numbers it: the header is line 1) with
the column and the problem, never the cell's value, and skipped; the good rows are stored.
`--strict` refuses the whole file instead. The checks are the schema's limits, so a value that
SQLite would keep and PostgreSQL refuse is reported the same way on both.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from storage.db import Database
from storage.models import Author as AuthorRow
from storage.models import Post
from storage.upserts import store_posts
from tracker.cli import cli
from tracker.hashtags import hashtags_in_text, normalise_hashtag
from tracker.importer import read_import_file, store_import
from tracker.pipeline import ingest
from tracker.posts import Author, Metrics, NormalisedPost
from tracker.settings import parse_settings
from tracker.tagging import Tagger

TZ = ZoneInfo("Europe/Helsinki")
SETTINGS_TOML = ('[campaign]\nname = "T"\nhashtags = ["ihmisensote"]\n'
                 '[[tour.stops]]\narea = "pirkanmaa"\ndate = 2023-02-09\n')
HEADER = "platform,id,created_at,text,author,author_name,likes"
WHEN = "2023-02-09T10:00:00+02:00"
SECRET = "Zyxwv"
"""In every value of every bad row: no message may repeat it."""


def tracker_import(tmp_path: Path, db_url: str, content: str | bytes, *args: str, name: str = "posts.csv") -> Result:
    """`tracker import` through the real command group, as a user runs it."""
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(SETTINGS_TOML, encoding="utf-8")
    data_file = tmp_path / name
    if isinstance(content, str):
        data_file.write_text(content, encoding="utf-8")
    else:
        data_file.write_bytes(content)
    return CliRunner().invoke(cli, ["--settings", str(settings_file), "import", *args, str(data_file)],
                              env={"TRACKER_DATABASE_URL": db_url}, catch_exceptions=False)


def stored(db: Database) -> dict[str, Post]:
    with db.read() as s:
        return {p.platform_id: p for p in s.scalars(select(Post))}


def error_lines(result: Result, name: str = "posts.csv") -> list[str]:
    """stderr's 'line N: ...' messages without the file's path."""
    return [line.split(f"{name}: ", 1)[1] for line in result.stderr.splitlines() if f"{name}: line" in line]


# -- CSV: every kind of bad row, the good ones kept ----------------------------------------------

BAD_CSV_ROWS = [  # (row, the message expected for it)
    (f"instagram,B1,0001-01-01T00:00:00+14:00,{SECRET},{SECRET}a,{SECRET},1",
     "created_at: out of range (must lie between 2000-01-01 and tomorrow)"),
    (f"instagram,B2,{WHEN},{SECRET},{SECRET}b,{SECRET},{10**30}", "likes: too large (at most 9223372036854775807)"),
    (f"instagram,B3,{WHEN},{SECRET},{SECRET}c,{SECRET},-4", "likes: must not be negative"),
    (f"instagram,B4,{WHEN},{SECRET},{SECRET * 60},{SECRET},1", "author: 300 characters, at most 256 fit"),
    (f"instagram,B5,{WHEN},{SECRET},{SECRET}e,{SECRET * 110},1", "author_name: 550 characters, at most 512 fit"),
    (f"instagram,B6,{WHEN},{SECRET},,{SECRET},1", "author: missing"),
    (f"instagram,B7,not a date {SECRET},{SECRET},{SECRET}f,{SECRET},1",
     "created_at: not an ISO 8601 date and time (e.g. 2023-02-09T10:15:00+02:00)"),
    (f"instagram,B8,{WHEN},{SECRET},{SECRET}g,{SECRET},many {SECRET}",
     "likes: expected a whole number (digits only, e.g. 1200)"),
    (f"instagram,B9,2999-01-01T00:00:00Z,{SECRET},{SECRET}h,{SECRET},1", "created_at: in the future"),
    (f"instagram,B10,{WHEN},{SECRET},{SECRET}i,{SECRET},1,{SECRET}", "more values than the header has columns (7)"),
    (f"{SECRET}!,B11,{WHEN},{SECRET},{SECRET}j,{SECRET},1",
     "platform: not a platform name (lower-case letters, digits, - or _, e.g. instagram)"),
    (f"instagram,{'I' * 513},{WHEN},{SECRET},{SECRET}k,{SECRET},1", "id: 513 characters, at most 512 fit"),
    (f"instagram,B13,{WHEN},{SECRET}\x00,{SECRET}l,{SECRET},1", "text: contains a NUL character"),
    (f"instagram,B14,{WHEN},{SECRET},{SECRET}\x1b[2J,{SECRET},1", "author: contains control characters"),
    (f"instagram,B15,{WHEN},{SECRET}\r{SECRET},{SECRET}n,{SECRET},1",
     "a line break (CR) inside a cell that is not in double quotes"),
    (f'instagram,B16,{WHEN},"{"x" * 131_073}",{SECRET}o,{SECRET},1', "a cell is longer than 131072 characters"),
]


def hostile_csv() -> tuple[bytes, dict[int, str], set[str]]:
    """A file mixing good rows, every bad row above, a blank line, a cell over two lines and a
    byte that is not UTF-8: (the bytes, {line: expected message}, ids of the good rows)."""
    lines = [HEADER, f"instagram,G1,{WHEN},Tampereella #ihmisensote,alice,Alice,3"]
    expected: dict[int, str] = {}
    for row, message in BAD_CSV_ROWS:
        lines.append(row)
        expected[len(lines)] = message
        lines.append(f"instagram,G{len(lines) + 1},{WHEN},ok #ihmisensote,user{len(lines)},User,{len(lines)}")
    lines.append("")  # a blank row: skipped, but it is a line of the sheet
    lines.append(f'linkedin,G-multi,{WHEN},"two\nlines #ihmisensote",bob,Bob,1')
    lines.append(f"linkedin,G-last,{WHEN},after the two-line cell #ihmisensote,carol,Carol,2")
    data = ("\n".join(lines) + "\n").encode()
    data += f"instagram,B-bytes,{WHEN},".encode() + b"caf\xe9 (Latin-1)" + f",{SECRET}m,{SECRET},1\n".encode()
    expected[len(lines) + 1] = ("text: invalid Unicode (bytes that are not UTF-8, or a lone surrogate); "
                                "save the file as UTF-8")
    good = {"G1", *(f"G{n + 1}" for n in expected if n <= len(BAD_CSV_ROWS) * 2 + 1), "G-multi", "G-last"}
    return data, expected, good


def test_bad_csv_rows_are_reported_by_line_and_the_rest_stored(tmp_path: Path, db_url: str, db: Database) -> None:
    data, expected, good = hostile_csv()
    result = tracker_import(tmp_path, db_url, data)
    assert result.exit_code == 1, result.output
    assert "unexpected" not in result.output and "Traceback" not in result.output
    reported = error_lines(result)
    # the last row is the sheet's line N; the cell over two lines makes it the file's line N+1
    last = max(expected)
    assert reported[:-1] == [f"line {n}: {expected[n]}" for n in sorted(expected) if n != last]
    assert reported[-1] == f"line {last} (file line {last + 1}): {expected[last]}"
    assert SECRET not in result.output  # no cell's value in any message
    assert result.stdout.strip() == (f"{tmp_path / 'posts.csv'}: {len(good)} posts imported ({len(good)} new, "
                                     f"0 updated), {len(expected)} rows rejected, 1 blank rows")
    posts = stored(db)
    assert set(posts) == good
    assert posts["G-multi"].text == "two\nlines #ihmisensote" and posts["G1"].likes == 3


def test_strict_refuses_the_whole_file(tmp_path: Path, db_url: str, db: Database) -> None:
    data, expected, _ = hostile_csv()
    result = tracker_import(tmp_path, db_url, data, "--strict")
    assert result.exit_code == 2, result.output
    assert [line.split(":", 1)[0].split(" (")[0] for line in error_lines(result)] == [
        f"line {n}" for n in sorted(expected)]
    assert result.stderr.splitlines()[-1].endswith(
        f"nothing imported (--strict): {len(expected)} of {max(expected) - 1} rows rejected")
    assert stored(db) == {}
    clean = HEADER + f"\ninstagram,S1,{WHEN},#ihmisensote,alice,Alice,1\n"
    assert tracker_import(tmp_path, db_url, clean, "--strict").exit_code == 0
    assert set(stored(db)) == {"S1"}


def test_an_over_long_handle_is_one_short_line_on_both_databases(tmp_path: Path, db_url: str, db: Database) -> None:
    """PostgreSQL refused it with a 6.9 kB error holding the SQL and everyone's handles."""
    handle = "h" * 300
    content = (HEADER + f"\ninstagram,L1,{WHEN},#ihmisensote,{handle},Name,1\n"
               f"instagram,L2,{WHEN},#ihmisensote,{SECRET},{SECRET},1\n")
    result = tracker_import(tmp_path, db_url, content)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"{tmp_path / 'posts.csv'}: line 2: author: 300 characters, at most 256 fit"
    assert handle not in result.output and "INSERT" not in result.output and SECRET not in result.output
    assert set(stored(db)) == {"L2"}


def test_header_problems_refuse_the_file(tmp_path: Path, db_url: str, db: Database) -> None:
    result = tracker_import(tmp_path, db_url, f"platform,id,created_at,author,notes\ninstagram,H1,{WHEN},a,x\n")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'posts.csv'}: line 1 (the header): unknown column(s) 'notes'. The columns are "
        "platform, id, created_at, text, url, author, author_name, followers, likes, shares, comments, quotes, "
        "views, language, kind, hashtags (README: Importing posts); nothing imported")
    result = tracker_import(tmp_path, db_url, b"\xff\xfeplatform\x00\n")
    assert result.exit_code == 2 and "not UTF-8 text" in result.stderr
    result = tracker_import(tmp_path, db_url, b"PK\x03\x04", name="posts.xlsx")
    assert result.exit_code == 2 and "a spreadsheet workbook; save it as 'CSV UTF-8'" in result.stderr
    assert stored(db) == {}


def test_no_control_character_reaches_the_terminal(tmp_path: Path, sqlite_url: str) -> None:
    """A file name or a header may hold escape sequences (a screen clear, a title change)."""
    name = "posts\x1b]0;owned\x07.csv"
    result = tracker_import(tmp_path, sqlite_url, HEADER + f"\ninstagram,C1,{WHEN},x,a,A,-1\n", name=name)
    assert result.exit_code == 1 and "line 2: likes: must not be negative" in result.stderr
    assert "\x1b" not in result.output and "\x07" not in result.output
    result = tracker_import(tmp_path, sqlite_url, f"platform,id,created_at,author,no\x1b[2Jtes\ninstagram,C2,{WHEN},a\n")
    assert result.exit_code == 2 and "unknown column(s) a column with an unprintable or over-long name" in result.stderr
    assert "\x1b" not in result.output and "\x07" not in result.output


def test_excel_files_semicolons_bom_and_trailing_empty_columns(tmp_path: Path, db_url: str, db: Database) -> None:
    content = ("\ufeffPlatform;ID;Created_at;Text;Author;Likes;;\n"
               "instagram;E1;2023-02-09 12:00;Hyvä #ihmisensote;soste;1\u202f234;;\n;;;;;;;\n")
    result = tracker_import(tmp_path, db_url, content)
    assert result.exit_code == 0, result.output
    post = stored(db)["E1"]
    assert post.likes == 1234
    mac = HEADER.replace(",", ";") + f"\rinstagram;E2;{WHEN};#ihmisensote;a;A;-1\rinstagram;E3;{WHEN};x;b;B;2\r"
    result = tracker_import(tmp_path, db_url, mac)  # "CSV (Macintosh)": lines end in CR alone
    assert result.exit_code == 1 and error_lines(result) == ["line 2: likes: must not be negative"]
    assert stored(db)["E3"].likes == 2
    assert post.created_at == dt.datetime(2023, 2, 9, 10, 0, tzinfo=dt.timezone.utc)  # local time without offset


# -- JSON Lines: wrong types and invalid Unicode -------------------------------------------------


def good_object(post_id: str, **extra: Any) -> dict[str, Any]:
    return {"platform": "facebook", "id": post_id, "created_at": WHEN, "author": "someone",
            "text": "Pirkanmaalla #ihmisensote", **extra}


BAD_JSON_LINES = [  # (the line as written, the message expected for it)
    (json.dumps(good_object("J1", likes=1e30)), "likes: too large (at most 9223372036854775807)"),
    (json.dumps(good_object("J2", likes=1.5)), "likes: expected a whole number"),
    (json.dumps(good_object("J3", likes=True)), "likes: expected a whole number, got true/false"),
    (json.dumps(good_object("J4", author=[SECRET])), "author: expected text, got a list"),
    (json.dumps(good_object("J5", text={"x": SECRET})), "text: expected text, got an object"),
    (json.dumps(good_object("J6", author_name=f"{SECRET}\ud800")),
     "author_name: invalid Unicode (bytes that are not UTF-8, or a lone surrogate); save the file as UTF-8"),
    (json.dumps(good_object("J7", text=f"{SECRET}\x00")), "text: contains a NUL character"),
    ('{"platform": "facebook", "id": "J8", "likes": NaN}', "created_at: missing"),
    (json.dumps(good_object("J9", followers=-1)), "followers: must not be negative"),
    (json.dumps(good_object("J10", created_at="9999-12-31T23:59:59-14:00")),
     "created_at: out of range (must lie between 2000-01-01 and tomorrow)"),
    (json.dumps(good_object("J10b", created_at="2999-12-31T23:59:59Z")), "created_at: in the future"),
    (json.dumps(good_object("J11", created_at="0001-01-01T00:00:00")),
     "created_at: out of range (must lie between 2000-01-01 and tomorrow)"),
    (json.dumps(good_object("J12", created_at="1999-12-31T23:00:00Z")), "created_at: before 2000-01-01"),
    (json.dumps(good_object("J13", notes=SECRET)), "unknown column(s) 'notes'"),
    ('{"platform": "facebook", "id": "J14", "likes": 1' + "0" * 5000 + "}", "invalid JSON: a number too long to read"),
    ("[" * 100_000, "invalid JSON: nested too deeply"),
    ("[1, 2]", "expected a JSON object ({...}), got a list"),
    (f'{{"id": "{SECRET}", ', "invalid JSON: Expecting property name enclosed in double quotes (column 17)"),
    (json.dumps(good_object("J17", kind=SECRET)), "kind: not one of original, repost, reply, quote"),
    (json.dumps(good_object("J18", url=f"javascript:{SECRET}")), "url: not an http(s) link"),
    (json.dumps(good_object("J19", hashtags=[f"{SECRET}-x"])),
     "hashtags: entry 1 is not a hashtag (letters, digits and _ only)"),
]


def test_bad_json_lines_are_reported_by_line_and_the_rest_stored(tmp_path: Path, db_url: str, db: Database) -> None:
    lines = []
    expected: dict[int, str] = {}
    for line, message in BAD_JSON_LINES:
        lines.append(line)
        expected[len(lines)] = message
        # U+2028 inside a string is valid JSON and must not split the line
        lines.append(json.dumps(good_object(f"G{len(lines) + 1}", text="a\u2028b #ihmisensote", likes=2.0),
                                ensure_ascii=False))
    result = tracker_import(tmp_path, db_url, "\n".join(lines) + "\n", name="posts.jsonl")
    assert result.exit_code == 1, result.output
    assert error_lines(result, "posts.jsonl") == [f"line {n}: {m}" for n, m in sorted(expected.items())]
    assert SECRET not in result.output
    posts = stored(db)
    assert set(posts) == {f"G{n + 1}" for n in expected}
    assert all(p.likes == 2 and p.text == "a\u2028b #ihmisensote" for p in posts.values())


def test_a_json_array_is_refused_with_what_to_do(tmp_path: Path, db_url: str) -> None:
    result = tracker_import(tmp_path, db_url, json.dumps([good_object("A1")]), name="posts.json")
    assert result.exit_code == 2
    assert "a JSON array; write one object a line (JSON Lines)" in result.stderr


# -- hashtags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "normal"), [
    ("İhmisenSote", "ihmisensote"), ("＃ihmisensote", "ihmisensote"), ("#ＩｈｍｉｓｅｎＳｏｔｅ", "ihmisensote"),
    ("#IHMISENSOTE", "ihmisensote"), ("Pa\u0308iva\u0308", "päivä"), ("Straße", "straße"),
])
def test_normalise_hashtag(typed: str, normal: str) -> None:
    assert normalise_hashtag(typed) == normal


def test_hashtags_in_text() -> None:
    text = "Kiertue ＃İhmisenSote ja #SOTE &#39; x#y #Päivä"
    assert hashtags_in_text(text) == ["ihmisensote", "sote", "päivä"]


def test_imported_hashtags_match_the_campaign(tmp_path: Path, db_url: str, db: Database) -> None:
    """Fullwidth ＃ and Turkish İ count; rows without a campaign hashtag are imported and listed."""
    content = ("platform,id,created_at,text,author,hashtags\n"
               f"instagram,T1,{WHEN},Tampereella ＃İhmisenSote,a,\n"
               f"instagram,T2,{WHEN},Tampereella,a,＃İHMISENSOTE Tampere\n"
               f"instagram,T3,{WHEN},Tampereella #muuta,a,\n"
               f"instagram,T4,{WHEN},Tampereella,a,\n")
    result = tracker_import(tmp_path, db_url, content)
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (f"{tmp_path / 'posts.csv'}: note: 2 imported rows carry none of the "
                                     "campaign's hashtags (#ihmisensote): lines 4, 5")
    posts = stored(db)
    assert posts["T1"].hashtags == ["ihmisensote"] and posts["T2"].hashtags == ["ihmisensote", "tampere"]
    assert posts["T3"].hashtags == ["muuta"] and set(posts) == {"T1", "T2", "T3", "T4"}


# -- the database's own refusal: no SQL, no values, the line named --------------------------------

FETCHED = dt.datetime(2023, 3, 1, tzinfo=dt.timezone.utc)
TAGGER_SETTINGS = parse_settings({"campaign": {"name": "P", "hashtags": ["ihmisensote"]},
                                  "tour": {"stops": [{"area": "pirkanmaa", "date": "2023-02-09"}]}}, env={})
TAGGER = Tagger(TAGGER_SETTINGS.tour.stops, TAGGER_SETTINGS.campaign.timezone, 3, 7)


def raw_post(post_id: str, handle: str = "someone", likes: int = 1) -> NormalisedPost:
    return NormalisedPost(platform="instagram", platform_id=post_id, author=Author(platform_id=handle, handle=handle),
                          text="#ihmisensote", created_at=dt.datetime(2023, 2, 9, tzinfo=dt.timezone.utc),
                          fetched_at=FETCHED, metrics=Metrics(likes=likes))


def bound_ingest(session: Any, posts: Any) -> Any:
    return ingest(session, posts, TAGGER, origin="import")


def raw_store(session: Any, posts: Any) -> Any:
    """Straight to storage, past every check before it: the values reach the database as given."""
    return store_posts(session, posts, origin="import")


def test_a_row_the_database_refuses_is_named_by_line(db: Database) -> None:
    """The net behind the row checks: values they would stop, handed to the database past the
    ingest's own clean-up. The refused rows are named by line with the error's kind only, the
    rest stored; PostgreSQL also refuses the over-long handle that SQLite keeps."""
    posts = [raw_post("R1"), raw_post("R2", likes=10**30), raw_post("R3", handle="h" * 300), raw_post("R4")]
    outcome = store_import(db, posts, [2, 3, 4, 5], raw_store)
    assert [line for line, _ in outcome.refused] == ([3] if db.dialect == "sqlite" else [3, 4])
    assert all(why.startswith("the database refused") and "h" * 20 not in why and "INSERT" not in why
               for _, why in outcome.refused)
    expected = {"R1", "R4"} | ({"R3"} if db.dialect == "sqlite" else set())
    assert set(stored(db)) == expected and outcome.count(posts) == (len(expected), 0)
    strict = store_import(db, [raw_post("R5"), raw_post("R6", likes=10**30)], [2, 3], raw_store, keep=False)
    assert strict.batch_refused and [line for line, _ in strict.refused] == [3]
    assert "R5" not in stored(db)


# -- property: anything in any format, on both databases ------------------------------------------

_ids = itertools.count()
cells = st.one_of(st.none(), st.text(max_size=30), st.text(max_size=600), st.integers(-(2**70), 2**70),
                  st.floats(allow_nan=True), st.booleans(), st.lists(st.text(max_size=5), max_size=2),
                  st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", WHEN, "2023-02-30",
                                   "\ud800", "\x00", "1 234", "-0", "instagram"]))
hostile_rows = st.dictionaries(st.sampled_from(["platform", "id", "created_at", "text", "author", "author_name",
                                                "likes", "views", "hashtags", "kind", "url"]), cells, max_size=11)
printable = st.characters(blacklist_categories=("Cs", "Cc"))
good_rows = st.fixed_dictionaries({
    "platform": st.sampled_from(["instagram", "linkedin", "facebook"]),
    "text": st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300),
    "author": st.text(printable, min_size=1, max_size=256).filter(lambda s: s.strip() and len(s.lower()) <= 512),
    "author_name": st.text(printable, max_size=512),
    "likes": st.integers(0, 2**63 - 1),
    "created_at": st.datetimes(dt.datetime(2000, 1, 2), dt.datetime(2023, 3, 1), timezones=st.just(dt.timezone.utc)),
})


def write_file(path: Path, fmt: str, rows: list[dict[str, Any]]) -> None:
    """CSV as Excel would write it (lone surrogates become bytes that are not UTF-8), or JSON Lines."""
    import csv
    import io

    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return
    columns = sorted({k for r in rows for k in r} | {"platform", "id", "created_at", "author"})
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\r\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()})
    path.write_bytes(out.getvalue().encode("utf-8", errors="surrogatepass"))


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(st.sampled_from(["csv", "jsonl"]),
       st.lists(st.one_of(hostile_rows.map(lambda r: ("hostile", r)), good_rows.map(lambda r: ("good", r))),
                min_size=1, max_size=8))
def test_any_file_imports_its_good_rows_and_names_the_bad(tmp_path: Path, db: Database, fmt: str,
                                                          drawn: list[tuple[str, dict[str, Any]]]) -> None:
    rows, good_ids = [], set()
    for kind, row in drawn:
        row = dict(row)
        if kind == "good":
            row["id"] = f"good-{next(_ids)}"
            row["created_at"] = row["created_at"].isoformat()
            good_ids.add(row["id"])
        rows.append(row)
    path = tmp_path / f"p{next(_ids)}.{fmt}"
    write_file(path, fmt, rows)
    report = read_import_file(path, TZ, fetched_at=FETCHED, campaign_hashtags=["ihmisensote"])
    first = 2 if fmt == "csv" else 1  # the CSV header is line 1
    assert report.lines == len(rows)
    assert set(report.rejected_lines) | set(report.post_lines) <= set(range(first, first + len(rows)))
    assert all(e.startswith(f"line {n}") for e, n in zip(report.errors, report.rejected_lines))
    assert len(report.posts) + len(report.errors) + report.blank == len(rows)
    assert {p.platform_id for p in report.posts} >= good_ids
    outcome = store_import(db, report.posts, report.post_lines, bound_ingest)
    assert outcome.refused == []
    in_db = stored(db)
    assert good_ids <= set(in_db)
    for kind, row in zip((k for k, _ in drawn), rows):
        if kind == "good":
            post = in_db[row["id"]]
            assert post.likes == row["likes"] and (post.text or "") == row["text"].strip()
    with db.read() as s:
        assert all(len(h or "") <= 256 for h in s.scalars(select(AuthorRow.handle)))


def test_many_bad_rows_show_the_first_fifty_and_list_all_in_the_errors_file(tmp_path: Path, sqlite_url: str) -> None:
    """A file of thousands of bad rows must not flood the terminal: the first 50 are shown, the
    count of the rest says where to find them; --errors FILE holds every one."""
    bad = [f"instagram,M{i},not a date,#ihmisensote,alice,Alice,1" for i in range(120)]
    good = [f"instagram,G{i},{WHEN},#ihmisensote,alice,Alice,1" for i in range(3)]
    content = HEADER + "\n" + "\n".join(bad + good) + "\n"
    result = tracker_import(tmp_path, sqlite_url, content)
    assert result.exit_code == 1, result.output
    shown = error_lines(result)
    assert len(shown) == 50 and shown[0].startswith("line 2: ") and shown[-1].startswith("line 51: ")
    assert "posts.csv: ... and 70 more rejected rows (--errors FILE lists them all)" in result.stderr
    listing = tmp_path / "rejected.txt"
    result = tracker_import(tmp_path, sqlite_url, content, "--errors", str(listing))
    assert result.exit_code == 1, result.output
    lines = listing.read_text(encoding="utf-8").splitlines()
    assert [line.split(":", 1)[0] for line in lines] == [f"line {n}" for n in range(2, 122)]
    assert f"posts.csv: all 120 rejected rows are listed in {listing}" in result.stderr
    assert "more rejected rows" not in result.stderr
