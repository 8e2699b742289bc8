"""The shipped lexicon (tracker/data/lexicon.xz): equal to a rebuild from simplemma, what it
answers, its word-set format, and that tagging no longer loads simplemma's dictionaries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tracker.gazetteer import Gazetteer, is_place_head, lemmas, readings
from tracker.lexicon import WordSet, encode_words, lexicon

REPO = Path(__file__).resolve().parent.parent


# --- the data cannot drift from its generator --------------------------------------------------

@pytest.mark.slow
def test_shipped_lexicon_equals_a_rebuild_from_simplemma() -> None:
    """Rebuilds from simplemma's fi, sv and en dictionaries (~15-25 s, ~900 MB, in a child
    process) and compares with the shipped file, uncompressed. Failing after a change to the
    names, the stem rules or simplemma: run `python -m tracker.lexicon` and commit the file."""
    result = subprocess.run([sys.executable, "-m", "tracker.lexicon", "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches a rebuild" in result.stdout


def test_header_names_its_source() -> None:
    header = lexicon().header
    assert str(header["source"]).startswith("simplemma ")
    counts = header["counts"]
    assert isinstance(counts, dict)
    assert counts["common"] > 4_000_000 and counts["proper"] > 50_000
    assert 1_000 < counts["lemmas"] < 50_000  # the built-in names' forms only


# --- what it answers ---------------------------------------------------------------------------

@pytest.mark.parametrize("word, common, proper", [
    ("kotkassa", True, True),      # in eagle(s): an everyday word
    ("lahdessa", True, True),
    ("poreella", True, False),
    ("lappen", True, False),       # Swedish: the note
    ("vaasassa", False, True),     # only the town
    ("jani", True, True),
    ("energia", True, False),
    ("xqzzyx", False, False),
])
def test_readings(word: str, common: bool, proper: bool) -> None:
    assert readings(word) == (common, proper)
    assert readings(word.capitalize()) == (common, proper)


@pytest.mark.parametrize("word, lemma", [
    ("lahdessa", "lahti"), ("tampereella", "tampere"), ("turussa", "turku"),
    ("helsingfors", "helsingfors"), ("kaupungin", "kaupunki"), ("stads", "stad"),
])
def test_lemmas_of_names_and_place_words(word: str, lemma: str) -> None:
    assert lemma in lemmas(word)
    assert lemma in lemmas(word.capitalize())


def test_lemmas_that_are_no_name_are_left_out() -> None:
    assert lemmas("talossa") == set()  # talo
    assert lemmas("kissoille") == set()  # kissa
    assert lemmas("poreella") == {"pore"}  # pore is a stem of Pori (Porella) and stays


@pytest.mark.parametrize("word", ["kaupungin", "kunnan", "seudulla", "stads", "kommunen"])
def test_place_heads(word: str) -> None:
    assert is_place_head(word)


# --- what simplemma's guesses used to find -----------------------------------------------------

@pytest.fixture(scope="module")
def gaz() -> Gazetteer:
    return Gazetteer.default()


@pytest.mark.parametrize("text, expected", [
    ("Täällä Tampereellamme on kivaa", ["pirkanmaa"]),
    ("Olimme Oulussani", ["pohjois-pohjanmaa"]),
    ("tervetuloa Pirkanmaallemme", ["pirkanmaa"]),
    ("Vaasassaan", ["pohjanmaa"]),
    ("Kävimme Kuopioineen", ["pohjois-savo"]),
    ("Helsingissämme ja Espoossammekin", ["helsinki", "lansi-uusimaa"]),
    ("Kiitos Pirkanmaan hyvinvointialueellamme", ["pirkanmaa"]),
    ("espoolaisemme", ["lansi-uusimaa"]),
])
def test_possessive_suffixes(gaz: Gazetteer, text: str, expected: list[str]) -> None:
    assert gaz.find_areas(text) == expected


@pytest.mark.parametrize("text", [
    "We crossed the Eurasian steppe",   # simplemma guessed eurasian -> Eura
    "A Multiagent system",              # -> Multia
    "Stop Lopping trees",               # -> Loppi
    "Dear Kemister friends",            # -> Kemi
])
def test_false_friends_of_the_guesses_are_gone(gaz: Gazetteer, text: str) -> None:
    assert gaz.find_areas(text) == []


def test_aliases_outside_the_lexicon_match_as_written_and_by_the_rules() -> None:
    gaz = Gazetteer.default({"pohjois-pohjanmaa": ["Qstock", "#qstockfest"]})
    assert gaz.find_areas("Tänään Qstockissa!") == ["pohjois-pohjanmaa"]
    assert gaz.find_areas("huomenna qstockiin") == ["pohjois-pohjanmaa"]
    assert gaz.find_areas("#Qstockfest2023") == ["pohjois-pohjanmaa"]
    assert gaz.find_areas("Nähdään Qstockfestillä") == ["pohjois-pohjanmaa"]


# --- word sets ---------------------------------------------------------------------------------

WORDS = ["a", "aa", "aaa", "ab", "abc", "b", "kotka", "kotkan", "kotkassa", "lahti", "lahdessa",
         "ä", "äiti", "å", "öljy", "über", "luvn:n"] + [f"sana{'x' * k}" for k in range(150)]


def test_word_set_answers_for_every_word_and_nothing_else() -> None:
    words = WordSet(encode_words(WORDS + WORDS[:5]))  # duplicates collapse
    assert len(words) == len(WORDS)
    assert sorted(words) == sorted(WORDS)
    for word in WORDS:
        assert word in words
    for word in ["", "0", "aaaa", "ac", "kotk", "kotkassaa", "lahdes", "sana" + "x" * 150,
                 "zzz", "ää", "Kotka", "luvn"]:
        assert word not in words


def test_word_set_shares_its_blob() -> None:
    blob = b"header" + encode_words(["x", "y"]) + encode_words(["z"])
    first = WordSet(blob, 6, 6 + len(encode_words(["x", "y"])))
    assert "x" in first and "y" in first and "z" not in first
    assert len(WordSet(b"")) == 0 and "x" not in WordSet(b"")


def test_word_set_keeps_long_shared_prefixes() -> None:
    long = "k" * 300
    words = WordSet(encode_words([long + "a", long + "b", long]))
    assert long + "b" in words and long in words and long + "c" not in words


# --- tagging does not load simplemma -----------------------------------------------------------

def test_tagging_loads_neither_simplemma_nor_much_memory() -> None:
    """A fresh process tags the labelled posts (lemmas, readings and person checks all run):
    simplemma is never imported, and the peak stays far below the ~560 MB its dictionaries
    took. The peak is VmHWM, which starts afresh at exec; ru_maxrss would start at this
    (pytest) process's RSS at fork time."""
    script = textwrap.dedent("""
        import json, sys, time
        start = time.perf_counter()
        from tracker.gazetteer import Gazetteer
        gaz = Gazetteer.default()
        found = 0
        with open("tests/data/labelled_posts.jsonl", encoding="utf-8") as f:
            for line in f:
                found += len(gaz.find_areas(json.loads(line)["text"]))
        for text in ["Kotkassa oli kivaa", "Jani Lahti puhui", "Kotkan kaupunki",
                     "Tervetuloa Kotkaan", "kylpy poreella", "Kiitos Lahti Energia"]:
            found += len(gaz.find_areas(text))
        try:
            with open("/proc/self/status", encoding="ascii") as status:
                hwm = [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
        except OSError:
            hwm = []
        print(json.dumps({"found": found, "simplemma": "simplemma" in sys.modules,
                          "seconds": time.perf_counter() - start,
                          "peak_mb": hwm[0] * 1024 / 1e6 if hwm else None}))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["found"] > 250
    assert report["simplemma"] is False
    if report["peak_mb"] is None:
        pytest.skip("no /proc/self/status here: peak memory not checked")
    assert report["peak_mb"] < 150, report
