"""The gazetteer's word knowledge, precomputed from simplemma's dictionaries and shipped as data.

tracker/gazetteer.py asks two things of a dictionary (see its docstring for the rules):

* the lemmas of a word that matter to it: the Finnish and Swedish dictionary lemmas that are
  the stem of a built-in name (tampereella -> tampere, lahdessa -> lahti, vasas -> vasa) or a
  place word (kaupungin -> kaupunki, stads -> stad);
* the readings of any word: whether the Finnish, Swedish or English dictionary knows it
  lower-case (an everyday word: kotkassa, poreella, lappen) and capitalised as a proper noun
  (Jani, Vaasassa).

Loading simplemma's fi, sv and en dictionaries for that took ~470 MB and 5-7 s per process.
This module keeps only the answers, in tracker/data/lexicon.xz (2.3 MB, 20 MB uncompressed):

* ``lemmas``: every Finnish and Swedish dictionary word form, lower-case or capitalised, whose
  lemma is one of the built-in names' stems (``Gazetteer._stems``) or a place word
  (``_PLACE_HEADS``): ~8 200 entries, a dict in memory;
* ``common``: every lower-case fi/sv/en dictionary word form (~4.5 million);
* ``proper``: every capitalised fi/sv/en word form whose lemma is capitalised (~100 000).

The two word sets stay front-coded in memory (sorted, each word stored as the length of the
prefix it shares with the one before plus the rest, restarted every 64 words): ~20 MB, looked
up by a binary search over the blocks and a scan of one block (~20 microseconds; the
gazetteer asks only about words that are or stand next to a possible name, and caches the
answers). Only forms the tokenizer can produce are kept (letters and a ``:`` as in LUVN:n; no
digits, spaces, hyphens or apostrophes: 38 000 of 4.6 million are left out).
Loading takes about 0.15 s; nothing is loaded until the first word that needs it.

The answers are simplemma's for these questions: the same dictionary keys are probed as
``DictionaryLookupStrategy.get_lemma`` / ``exact_lemma`` probed them (checked word by word over
every form of the three dictionaries and 200 000 made-up words: one difference, the ligature
"ﬆ", whose capital is two letters). Two things are left out on purpose (see tracker/gazetteer.py):
lemmas that are no built-in name's stem (so an alias added from settings is matched as written
and by the rules, not through the dictionary), and simplemma's guesses for words its
dictionaries do not know. What those guesses found in real Finnish, possessive suffixes
(Tampereellamme, Kuopioineen), is now one of the gazetteer's rules; the rest were false friends
(lopping -> Loppi, eurasian -> Eura, multiagent -> Multia) or forms that are not Finnish.

The file is generated, never edited by hand::

    .venv/bin/python -m tracker.lexicon            # rebuild tracker/data/lexicon.xz
    .venv/bin/python -m tracker.lexicon --check    # exit 1 if it differs from a rebuild

simplemma is needed only for that; tests/test_lexicon.py rebuilds the data and compares it with
the shipped file, so a change to the names, the stem rules or simplemma cannot leave the two
silently apart. The comparison is of the uncompressed content (lzma's bytes may differ between
library versions).
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import lzma
import sys
import unicodedata
from array import array
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

FORMAT = "tracker-lexicon"
VERSION = 1
DATA_PATH = "data/lexicon.xz"
LEMMA_LANGUAGES = ("fi", "sv")
"""Languages whose lemmas the gazetteer uses (as simplemma's get_lemma did)."""
READING_LANGUAGES = ("fi", "sv", "en")
"""Languages whose readings (common word / proper noun) the gazetteer uses."""
BLOCK = 64
_SHARED_BASE = 0x20  # shared-prefix byte = 0x20 + length: never b"\n" or b"\x00"
_MAX_SHARED = 0xFF - _SHARED_BASE


# ----------------------------------------------------------------------------------------------
# Word sets: sorted, front-coded blocks
# ----------------------------------------------------------------------------------------------

def encode_words(words: Iterable[str]) -> bytes:
    """Sorted unique words as front-coded blocks: each block is records ending in b"\\n" (the
    first the whole word, the others a shared-prefix byte and the rest), blocks end in b"\\x00"."""
    out = bytearray()
    prev = b""
    k = 0
    for word in sorted(w.encode() for w in words):  # fast on sorted runs (each dictionary's)
        if word == prev:
            continue
        if k % BLOCK == 0:
            if k:
                out += b"\x00"
            out += word
        else:
            n = min(len(word), len(prev), _MAX_SHARED)  # common prefix: first differing byte
            diff = int.from_bytes(word[:n], "big") ^ int.from_bytes(prev[:n], "big")
            shared = n - (diff.bit_length() + 7) // 8
            out.append(_SHARED_BASE + shared)
            out += word[shared:]
        out += b"\n"
        prev = word
        k += 1
    return bytes(out)


class WordSet:
    """Membership in a front-coded word list (see encode_words), without decoding it whole.
    The list is blob[start:end]; the blob is shared, not copied (the payload holds all sets)."""

    __slots__ = ("_blob", "_starts", "_end", "_count")

    def __init__(self, blob: bytes | bytearray, start: int = 0, end: int | None = None) -> None:
        end = len(blob) if end is None else end
        self._blob = blob
        self._end = end
        starts = array("I", [start] if end > start else [])
        find = blob.find
        pos = find(b"\x00", start, end)
        while pos != -1:
            starts.append(pos + 1)
            pos = find(b"\x00", pos + 1, end)
        self._starts = starts
        self._count = blob.count(b"\n", start, end)

    def __len__(self) -> int:
        return self._count

    def _first(self, start: int) -> bytes | bytearray:
        return self._blob[start:self._blob.index(b"\n", start)]

    def _block(self, k: int) -> Iterator[bytes | bytearray]:
        """The words of block k, in order."""
        starts = self._starts
        end = starts[k + 1] - 1 if k + 1 < len(starts) else self._end
        records = self._blob[starts[k]:end].split(b"\n")
        prev = records[0]
        yield prev
        for record in records[1:-1]:
            prev = prev[:record[0] - _SHARED_BASE] + record[1:]
            yield prev

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str) or not self._starts:
            return False
        key = word.encode()
        k = bisect.bisect_right(self._starts, key, key=self._first) - 1
        if k < 0:
            return False
        for candidate in self._block(k):
            if candidate >= key:
                return candidate == key
        return False

    def __iter__(self) -> Iterator[str]:
        for k in range(len(self._starts)):
            for word in self._block(k):
                yield word.decode()


# ----------------------------------------------------------------------------------------------
# The lexicon
# ----------------------------------------------------------------------------------------------

class Lexicon:
    """Lemmas and readings of words; see the module docstring."""

    __slots__ = ("header", "_lemmas", "_common", "_proper")

    def __init__(self, payload: bytes | bytearray) -> None:
        header, sections = _sections(payload)
        self.header = header
        self._lemmas: dict[str, tuple[str, ...]] = {}
        start, end = sections["lemmas"]
        for line in payload[start:end].decode().splitlines():
            form, lemmas = line.split("\t")
            self._lemmas[form] = tuple(lemmas.split(" "))
        self._common = WordSet(payload, *sections["common"])
        self._proper = WordSet(payload, *sections["proper"])

    def lemmas(self, word: str) -> set[str]:
        """Lemmas (lower case) of a word, tried lower-case and capitalised, in Finnish and
        Swedish, kept only when they are a built-in name's stem or a place word."""
        lower = word.lower()
        capital = lower[:1].upper() + lower[1:]
        return {*self._lemmas.get(lower, ()), *self._lemmas.get(capital, ())}

    def readings(self, word: str) -> tuple[bool, bool]:
        """(common, proper): do the fi/sv/en dictionaries know the word lower-case, and
        capitalised with a capitalised lemma?"""
        lower = word.lower()
        capital = word[:1].upper() + word[1:].lower()
        return lower in self._common, capital in self._proper


def _sections(payload: bytes | bytearray) -> tuple[dict[str, object], dict[str, tuple[int, int]]]:
    """The JSON header line, and where each named section lies in the payload."""
    end = payload.index(b"\n")
    header = json.loads(payload[:end])
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ValueError(f"not a {FORMAT} {VERSION} file: {header!r}")
    sections: dict[str, tuple[int, int]] = {}
    pos = end + 1
    for name, size in header["sections"]:
        sections[name] = (pos, pos + size)
        pos += size
    if pos != len(payload):
        raise ValueError("lexicon payload has trailing or missing bytes")
    return header, sections


def decompress(data: bytes) -> bytearray:
    """xz data uncompressed, a megabyte at a time into one buffer: lzma.decompress would hold
    the output twice at its peak (~20 MB more)."""
    out = bytearray()
    decompressor = lzma.LZMADecompressor()
    chunk = decompressor.decompress(data, max_length=1 << 20)
    while True:
        out += chunk
        if decompressor.eof:
            return out
        if decompressor.needs_input:
            raise ValueError("truncated lexicon file")
        chunk = decompressor.decompress(b"", max_length=1 << 20)


def shipped_payload() -> bytearray:
    """The uncompressed content of the shipped tracker/data/lexicon.xz."""
    return decompress(resources.files("tracker").joinpath(DATA_PATH).read_bytes())


@functools.cache
def lexicon() -> Lexicon:
    """The shipped lexicon, loaded once per process (about 0.15 s, ~20 MB)."""
    return Lexicon(shipped_payload())


# ----------------------------------------------------------------------------------------------
# The generator (needs simplemma)
# ----------------------------------------------------------------------------------------------

def _token_like(word: str) -> bool:
    """Could the gazetteer's tokenizer produce this word (lower-cased)? Letters, ':' and the
    combining marks lower() may add; no digits, spaces, hyphens or apostrophes."""
    return word.isalpha() or bool(word) and all(
        c.isalpha() or c == ":" or unicodedata.category(c)[0] == "M" for c in word)


def _dictionary_entries(lang: str) -> Iterator[tuple[str, str]]:
    """(word form, lemma) of simplemma's dictionary for one language, loaded for this only."""
    from simplemma.strategies.dictionaries import DefaultDictionaryFactory

    mapping = DefaultDictionaryFactory(cache_max_size=1).get_dictionary(lang)
    raw = getattr(mapping, "_dict", None)  # bytes -> bytes: ten times faster than decoding
    if isinstance(raw, dict):
        for key, value in raw.items():
            yield key.decode(), value.decode()
    else:
        yield from mapping.items()


def relevant_lemmas() -> frozenset[str]:
    """The lemmas the gazetteer can use: its built-in names' stems and the place words."""
    from tracker.gazetteer import _PLACE_HEADS, Gazetteer, default_names

    return frozenset(Gazetteer(default_names())._stems) | _PLACE_HEADS


def build_payload() -> bytes:
    """The lexicon's uncompressed content, computed from simplemma's dictionaries."""
    import simplemma

    relevant = relevant_lemmas()
    lemmas: dict[str, set[str]] = {}
    common: list[str] = []  # in each dictionary's order: sorted runs, sorted fast
    proper: list[str] = []
    for lang in READING_LANGUAGES:
        for form, lemma in _dictionary_entries(lang):
            lower = form.lower()
            if not _token_like(lower):
                continue
            is_lower = form == lower
            is_capital = form == form[:1].upper() + form[1:].lower()
            if is_lower:
                common.append(form)
            if is_capital and lemma[:1].isupper():
                proper.append(form)
            if lang in LEMMA_LANGUAGES and (is_lower or is_capital) \
                    and lemma.lower() in relevant:
                lemmas.setdefault(form, set()).add(lemma.lower())
    sections = [
        ("lemmas", "".join(f"{form}\t{' '.join(sorted(found))}\n"
                           for form, found in sorted(lemmas.items())).encode()),
        ("common", encode_words(common)),
        ("proper", encode_words(proper)),
    ]
    header = {
        "format": FORMAT, "version": VERSION,
        "source": f"simplemma {simplemma.__version__}",
        "lemma_languages": list(LEMMA_LANGUAGES), "reading_languages": list(READING_LANGUAGES),
        "counts": {name: data.count(b"\n") for name, data in sections},
        "sections": [[name, len(data)] for name, data in sections],
    }
    return (json.dumps(header, sort_keys=True).encode() + b"\n"
            + b"".join(data for _, data in sections))


def compress(payload: bytes) -> bytes:
    """xz with a 1 MiB dictionary: 10 % bigger than the default 8 MiB, but the reader's
    dictionary buffer (held while loading) is 7 MB smaller at the peak."""
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 20}]
    return lzma.compress(payload, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters)


def differences(shipped: bytes | bytearray, built: bytes | bytearray) -> list[str]:
    """What differs between two payloads, briefly (empty if they are equal)."""
    if shipped == built:
        return []
    (old_header, old_at), (new_header, new_at) = _sections(shipped), _sections(built)
    old = {name: shipped[a:b] for name, (a, b) in old_at.items()}
    new = {name: built[a:b] for name, (a, b) in new_at.items()}
    out = []
    for key in sorted(set(old_header) | set(new_header)):
        if old_header.get(key) != new_header.get(key) and key != "sections":
            out.append(f"header {key}: shipped {old_header.get(key)!r}, "
                       f"built {new_header.get(key)!r}")
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        if name == "lemmas":
            a = set(old.get(name, b"").decode().splitlines())
            b = set(new.get(name, b"").decode().splitlines())
        else:
            a, b = set(WordSet(old.get(name, b""))), set(WordSet(new.get(name, b"")))
        out.append(f"{name}: {len(b - a)} entries only in the rebuild "
                   f"(e.g. {sorted(b - a)[:5]}), {len(a - b)} only in the shipped file "
                   f"(e.g. {sorted(a - b)[:5]})")
    return out or ["payloads differ"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracker.lexicon",
                                     description="Rebuild or check tracker/data/lexicon.xz "
                                                 "from simplemma's dictionaries.")
    parser.add_argument("--check", action="store_true",
                        help="compare the shipped file with a rebuild; exit 1 if they differ")
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).parent / DATA_PATH,
                        help="where to write the file (default: the package's)")
    args = parser.parse_args(argv)
    payload = build_payload()
    if args.check:
        problems = differences(shipped_payload(), payload)
        for problem in problems:
            print(problem)
        if problems:
            print("the shipped lexicon differs from a rebuild: run python -m tracker.lexicon")
            return 1
        print("the shipped lexicon matches a rebuild from", json.loads(
            payload[:payload.index(b"\n")])["source"])
        return 0
    data = compress(payload)
    args.output.write_bytes(data)
    print(f"wrote {args.output}: {len(data):,} bytes ({len(payload):,} uncompressed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
