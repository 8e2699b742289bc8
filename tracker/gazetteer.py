"""Which of the 22 areas a post talks about: a gazetteer of names and a fast matcher.

Names known for each area (tracker.areas plus tracker/data/municipalities.csv):
the Finnish region name (Pirkanmaa), the county's full Finnish and Swedish names
(Pirkanmaan hyvinvointialue, Birkalands välfärdsområde), the Swedish and English region names
(Birkaland, Southwest Finland, Lapland), brands (Pirha, Siun sote, Oma Häme...), every
municipality in Finnish and Swedish, and extra aliases from settings (a venue, a local hashtag).

How a word is recognised (all rules are general, none is written for one name):

* Finnish inflects names with stem changes (Lahti -> Lahdessa, Turku -> Turussa, Uusimaa ->
  Uudellamaalla). Each word is looked up three ways, best first: as written, through the
  Finnish and Swedish dictionaries (simplemma's, precomputed into tracker/data/lexicon.xz by
  tracker.lexicon: the word forms whose lemma is a built-in name's stem), and through
  rule-based stemming. The dictionaries know the big names but miss many small ones and brands
  (Pirhan, Varhalla, Siun soten, Uudessakaupungissa), so the rules are a real fallback, not a
  nicety: the word loses a clitic, a possessive suffix (Tampereellamme, Oulussani, -ineen),
  a case ending (singular, plural, illative, Swedish genitive -s) and the -lainen derivation;
  each name gets the stems it can show up with (final -i -> -e, -si -> -de, -nen -> -se/-s,
  -e -> -ee, -s -> -kse/-de, -as -> strong -aa, -un -> -ume, plural -t, weak consonant grade
  kk/k, pp/p, tt/t, k/-, p/v, t/d, nk/ng, mp/mm, lt/ll, nt/nn, rt/rr, ht/hd). A word matches a
  name when one of its stripped forms equals one of the name's stems. Two-part names whose parts
  agree in case (Uudessa|kaupungissa) are also split at the repeated ending.
* Multi-word names (Siun sote, Etelä-Pohjanmaan hyvinvointialue, Södra Österbottens
  välfärdsområde) match word by word, each word inflected or not; hyphens join words, other
  punctuation breaks a name. They also match written together (#siunsote, Keskisuomi).
* The longest name wins at each position: Etelä-Pohjanmaa is etela-pohjanmaa only, not also
  pohjanmaa. "Suomi", "Uusimaa", "Häme", "Savo", "Karjala" alone and "Länsi-Suomi" are no
  single area, so they name none.
* Hashtags are split at camel case, digits and underscores (#SiunSote, #Pirkanmaalla2023) and
  also tried written together and without diacritics (#Jyvaskyla). #ihmisensote names nothing.
* Ambiguous names are also everyday words, first names, surnames or companies (AMBIGUOUS below:
  lahti "bay", kotka "eagle", kolari "crash", Salo and Soini surnames, Kemi "chemistry" in
  Swedish, eloisa "lively", Nokia). Capitals are the only cue that tells the town from the
  word, so such a name counts only
  - in a hashtag (#lahti), or followed by a place word (Salon kaupunki, Iin kunta), or as a
    lower-case -lainen word (lahtelaiset: people of Lahti, never of a bay);
  - or capitalised in the middle of a sentence (kävimme Lahdessa), but not next to another
    capitalised word that is a name (Jani Lahti, Salla Virtanen: a person);
  - or capitalised at the start of a sentence only when the dictionaries know that word form
    lower-case as nothing else: "Vaasassa ..." and "Raahessa ..." count, "Kotkassa ..." and
    "Lahdessa ..." (eagle, bay) do not. Otherwise a lower-case ambiguous name never counts.
  Words that only the rules tie to a name while the dictionaries know them as another everyday
  word (poreella = pore + lla, not Pori; kiteellä = kide, not Kitee; soitella, not Soite;
  Swedish lappen, not Lappi) are treated as ambiguous in the same way.
* Aliases added from settings (Gazetteer.with_aliases: a venue, a local hashtag) match as
  written, inflected by the rules above and without diacritics in hashtags, but not through
  the dictionaries: the shipped lexicon holds the lemmas of the built-in names' forms only (and
  of the place words). So an alias is missed in a form whose stem change the rules do not know,
  and an inflected form that the dictionaries know as another everyday word (pajassa, for an
  alias "Paja") is matched by the rules as such (TIER_RULES_COMMON) and needs the cues an
  ambiguous name needs, where a dictionary lemma would have made it a plain match. Readings
  (everyday word, proper noun) cover every word, aliases included. Changing the built-in names
  or the stem rules means regenerating the lexicon (python -m tracker.lexicon);
  tests/test_lexicon.py fails until then.
* URLs, bare domains (satasote.fi/uutiset), e-mail addresses and @mentions are skipped: a
  handle is an account name (often a person's, like @MattiSalo), not a statement about a
  place, and its words would be guesses. Emoji count as punctuation: they separate words
  (Tampere🎉Oulu) but never start a sentence.

Speed: every distinct word is analysed once (a per-word cache); words whose first letters start
no name are rejected before any dictionary lookup, so tagging a post costs one regex split and
a dict lookup per word. The lexicon loads in about 0.15 s and takes ~20 MB, once per process, at
the first word that needs it (Gazetteer.warm_up() does it up front); simplemma itself is not
imported at run time.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import unicodedata
from itertools import compress, count
from operator import attrgetter, methodcaller
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from tracker.areas import AREAS, unknown_area_message
from tracker.lexicon import lexicon

# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

EXTRA_NAMES: tuple[tuple[str, str], ...] = (
    ("Finland Proper", "varsinais-suomi"),
    ("Tavastia Proper", "kanta-hame"),
    ("Päijänne Tavastia", "paijat-hame"),
    ("Kymi Valley", "kymenlaakso"),
    ("Eksote", "etela-karjala"),
    ("Ekhva", "etela-karjala"),
    ("Kymenhva", "kymenlaakso"),
    ("Satasote", "satakunta"),
    ("Helsingin kaupunki", "helsinki"),
    ("Helsingfors stad", "helsinki"),
)
"""Names not in tracker.areas: old English names, former or web brands."""

AMBIGUOUS: frozenset[str] = frozenset(
    """
    aura eloisa hanko ii ingå kaavi kannus kemi kolari kotka kurikka lahti lappo laukaa liperi
    lieto luoto multia perho rusko salo satakunta sauvo somero varkaus vasa veteli vieremä virrat
    inari kaarina lovisa salla simo vanda gustavs soini tervo rautavaara laitila hattula
    nokia outokumpu lapua sievi
    pori raahe vaasa pello muhos sotkamo
    """.split()
)
"""Names that are also everyday words, first names, surnames or companies (lower case).

Found by running every word form of simplemma's Finnish, Swedish and English dictionaries
through the matcher (aura, hanko "pitchfork", kolari "crash", lahti "bay", satakunta "about a
hundred", varkaus "theft", vasa "calf", Swedish ingå and kemi...), plus common first names and
surnames, companies (Nokia, Outokumpu, Lapua) and names flagged as risky in review (Pori,
Raahe, Vaasa, Pello, Muhos, Sotkamo). When they count: see the module docstring."""


@dataclass(frozen=True, slots=True)
class Name:
    """One way of naming an area."""

    text: str
    area_id: str
    ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class Match:
    """A name found in a post: which area, which name, and the words as written."""

    area_id: str
    name: str
    surface: str


def load_municipalities() -> list[tuple[str, str, str]]:
    """(name_fi, name_sv, area_id) rows of tracker/data/municipalities.csv."""
    raw = resources.files("tracker").joinpath("data/municipalities.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(raw)))
    return [(row["name_fi"].strip(), (row["name_sv"] or "").strip(), row["area_id"].strip())
            for row in rows]


@functools.cache
def default_names() -> tuple[Name, ...]:
    """Every built-in name: areas table, extra names, municipalities."""
    texts: list[tuple[str, str]] = []
    for area in AREAS.values():
        texts += [(t, area.id) for t in (area.name_fi, area.name_sv, area.name_en,
                                         area.county_fi, area.county_sv, *area.brands)]
    texts += list(EXTRA_NAMES)
    for name_fi, name_sv, area_id in load_municipalities():
        texts += [(name_fi, area_id)] + ([(name_sv, area_id)] if name_sv else [])
    seen: set[tuple[str, str]] = set()
    names = []
    for text, area_id in texts:
        key = (text.lower(), area_id)
        if text and key not in seen:
            seen.add(key)
            names.append(Name(text, area_id, text.lower() in AMBIGUOUS))
    return tuple(names)


# ----------------------------------------------------------------------------------------------
# Finnish morphology: name stems (forward) and word stripping (backward)
# ----------------------------------------------------------------------------------------------

_VOWELS = frozenset("aeiouyäöå")
_WEAK = (("kk", "k"), ("pp", "p"), ("tt", "t"), ("nk", "ng"), ("mp", "mm"), ("lt", "ll"),
         ("nt", "nn"), ("rt", "rr"), ("ht", "hd"), ("lk", "l"), ("rk", "r"), ("hk", "h"),
         ("lp", "lv"), ("rp", "rv"))
_WEAK_SINGLE = {"k": "", "p": "v", "t": "d"}
_STRONG = (("ng", "nk"), ("mm", "mp"), ("ll", "lt"), ("nn", "nt"), ("rr", "rt"), ("hd", "ht"),
           ("lv", "lp"), ("rv", "rp"))
_STRONG_SINGLE = {"k": "kk", "p": "pp", "t": "tt", "d": "t", "v": "p"}

_CLITICS = ("kin", "kaan", "kään", "ko", "kö", "pa", "pä", "han", "hän")
_POSSESSIVES = ("ni", "si", "mme", "nne", "nsa", "nsä")  # and -Vn: Tampereellaan, -ineen
_ENDINGS = tuple(sorted({
    # singular cases
    "n", "ssa", "ssä", "sta", "stä", "lla", "llä", "lta", "ltä", "lle", "na", "nä", "ksi",
    "tta", "ttä", "a", "ä", "ta", "tä", "ne",
    # plural cases (after the stem; the plural i/j is removed separately)
    "t", "issa", "issä", "ista", "istä", "illa", "illä", "ilta", "iltä", "ille", "ina", "inä",
    "iksi", "ihin", "iin", "ien", "ten", "iden", "itten", "jen", "ja", "jä", "ita", "itä",
    "ia", "iä", "in",
    # Swedish genitive
    "s",
}, key=len, reverse=True))
_AGREEING = ("ssa", "ssä", "sta", "stä", "lla", "llä", "lta", "ltä", "lle", "n", "na", "nä")
_DERIVATIONS = ("lainen", "läinen", "laise", "läise", "lais", "läis")
_PLACE_HEADS = frozenset("""kaupunki kunta seutu seutukunta keskusta kaupunginosa kirkonkylä
    stad kommun city town municipality""".split())


def _split_final_vowel(stem: str) -> tuple[str, str, str] | None:
    """head, consonant cluster, single final vowel; None if the stem does not end C+V."""
    if len(stem) < 3 or stem[-1] not in _VOWELS or stem[-2] in _VOWELS:
        return None
    i = len(stem) - 1
    while i > 0 and stem[i - 1] not in _VOWELS:
        i -= 1
    return stem[:i], stem[i:-1], stem[-1]


def weak_grade(stem: str) -> str | None:
    """The weak grade of a stem ending consonant(s)+vowel (turku -> turu), else None."""
    parts = _split_final_vowel(stem)
    if parts is None:
        return None
    head, cluster, vowel = parts
    for strong, weak in _WEAK:
        if cluster.endswith(strong):
            return head + cluster[: -len(strong)] + weak + vowel
    if len(cluster) == 1 and cluster in _WEAK_SINGLE and head and head[-1] in _VOWELS:
        return head + _WEAK_SINGLE[cluster] + vowel
    return None


def strong_grades(stem: str) -> set[str]:
    """Possible strong grades of a weak stem (pihtipuda -> pihtiputa): overgenerates."""
    parts = _split_final_vowel(stem)
    out: set[str] = set()
    if parts is None:
        return out
    head, cluster, vowel = parts
    for weak, strong in _STRONG:
        if cluster.endswith(weak):
            out.add(head + cluster[: -len(weak)] + strong + vowel)
    if cluster[-1:] in _STRONG_SINGLE:
        out.add(head + cluster[:-1] + _STRONG_SINGLE[cluster[-1]] + vowel)
    if len(cluster) == 1 and cluster in "lrnh":  # k lost after a consonant: turu -> turku
        out.add(head + cluster + "k" + vowel)
    return out


def name_stems(word: str) -> set[str]:
    """The forms a name word can take before a case ending (lower case), itself included."""
    w = word.lower()
    stems = {w}
    if w.endswith("i"):
        stems.add(w[:-1] + "e")                      # Lahti -> Lahte-, Rovaniemi -> Rovanieme-
    if w.endswith("si"):
        stems |= {w[:-2] + "de", w[:-2] + "te"}      # Orivesi -> Oriveden
    if w.endswith("e"):
        stems.add(w + "e")                           # Tampere -> Tampereella
        stems |= {s + "e" for s in strong_grades(w)}  # Pohde -> Pohteen
    if w.endswith("nen"):
        stems |= {w[:-3] + "se", w[:-3] + "s"}       # Kauniainen -> Kauniaisten, -isissa
    if len(w) > 3 and w[-1] == "s" and w[-2] in _VOWELS:
        stems.add(w[:-1] + "kse")                    # Nurmes -> Nurmeksessa
        if w[-2] in "uyo":
            stems.add(w[:-1] + "de")                 # Varkaus -> Varkaudessa
        if w[-2] in "aä":
            stems |= {s + w[-2] for s in strong_grades(w[:-1])}  # Pihtipudas -> Pihtiputaalla
    if len(w) > 3 and w[-1] == "n" and w[-2] in _VOWELS:
        stems |= {s + "me" for s in strong_grades(w[:-1]) | {w[:-1]}}  # Punkalaidun -> -laitume-
    if len(w) > 3 and w[-1] == "t" and w[-2] in _VOWELS:  # plural names: Virrat
        base = w[:-1]
        stems |= {base} | strong_grades(base)
        if base[-1] in "aä":
            stems.add(base[:-1] + ("o" if base[-1] == "a" else "ö"))
    for stem in list(stems):
        weak = weak_grade(stem)
        if weak:
            stems.add(weak)
    return stems


def _strip_once(word: str) -> set[str]:
    """A word without one case ending (or illative), with and without a plural i/j."""
    out = {word}
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 2:
            out.add(word[: -len(ending)])
    if len(word) >= 4 and word[-1] == "n" and word[-2] == word[-3] and word[-2] in _VOWELS:
        out.add(word[:-2])                                         # Turkuun, Lahteen
    if len(word) >= 6 and word[-4:] in ("seen", "siin"):
        out.add(word[:-4])                                         # Espooseen
    if len(word) >= 4 and word[-3] == "h" and word[-2] in _VOWELS and word[-1] == "n":
        out.add(word[:-3])                                         # Joensuuhun, Iihin
    for stem in list(out):
        if len(stem) > 3 and stem[-1] in "ij" and stem != word:
            out.add(stem[:-1])                                     # Virroilla -> virro
    return out


def _without_possessive(word: str) -> set[str]:
    """A word without a possessive suffix: Tampereellamme -> tampereella, Pirkanmaallaan ->
    pirkanmaalla, hyvinvointialueensa -> hyvinvointialuee, Kuopioineen -> kuopioin."""
    out = {word[: -len(suffix)] for suffix in _POSSESSIVES
           if word.endswith(suffix) and len(word) - len(suffix) >= 3}
    if len(word) >= 5 and word[-1] == "n" and word[-2] == word[-3] and word[-2] in _VOWELS:
        out.add(word[:-2])                                         # -Vn: -ssaan, -lleen
    return out


def _left_part_bases(left: str) -> set[str]:
    """Base forms of an agreeing first part (uude -> uusi)."""
    out = {left}
    if left.endswith(("de", "te")):
        out.add(left[:-2] + "si")
    if left.endswith("e"):
        out.add(left[:-1] + "i")
    return out


def inflection_candidates(word: str) -> set[str]:
    """The forms a (lower-case) word may have without its endings; validated by the caller."""
    bases = {word}
    for clitic in _CLITICS:
        if word.endswith(clitic) and len(word) - len(clitic) >= 3:
            bases.add(word[: -len(clitic)])
    for base in list(bases):  # a possessive suffix comes before a clitic
        bases |= _without_possessive(base)
    if ":" in word:  # LUVN:n, Pirha:lla
        bases.add(word.split(":", 1)[0])
    out: set[str] = set()
    for base in bases:
        out |= _strip_once(base)
        for ending in _AGREEING:  # Uudessa|kaupungissa, Uuden|maan
            if not base.endswith(ending):
                continue
            inner = base[: -len(ending)]
            start = inner.find(ending, 2)
            while start != -1 and len(inner) - start - len(ending) >= 2:
                right = inner[start + len(ending):]
                out |= {left + right for left in _left_part_bases(inner[:start])}
                start = inner.find(ending, start + 1)
    return out


def demonym_bases(forms: Iterable[str]) -> set[str]:
    """tamperelais -> tampere: the place a -lainen word (already without endings) is from."""
    return {form[: -len(suffix)] for form in forms for suffix in _DERIVATIONS
            if form.endswith(suffix) and len(form) - len(suffix) >= 2}


def strip_candidates(word: str) -> set[str]:
    """Every form the rules can strip a (lower-case) word to; validated by the caller."""
    forms = inflection_candidates(word)
    return forms | demonym_bases(forms)


def lemmas(word: str) -> set[str]:
    """The Finnish and Swedish dictionary lemmas of a word (lower case), tried lower-case and
    capitalised, that are a built-in name's stem or a place word (tracker.lexicon)."""
    return lexicon().lemmas(word)


@functools.lru_cache(maxsize=1 << 16)
def readings(word: str) -> tuple[bool, bool]:
    """(common, proper): do the fi/sv/en dictionaries know the word lower-case (an everyday
    word: kotkassa, poreella, lappen) and capitalised as a proper noun (Vaasassa, Jani)?"""
    return lexicon().readings(word)


@functools.lru_cache(maxsize=1 << 14)
def is_place_head(word: str) -> bool:
    """kaupunki, kunta, seutu, stad, town...: a word that makes the one before it a place."""
    return word in _PLACE_HEADS or bool(lemmas(word) & _PLACE_HEADS)


def fold(text: str) -> str:
    """Lower case without diacritics (ä -> a, å -> a), as in #Jyvaskyla."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# ----------------------------------------------------------------------------------------------
# Tokenising
# ----------------------------------------------------------------------------------------------

_TLDS = r"(?:fi|com|org|net|se|eu|io|info|social|app|me|ly|co|gov|edu|ax|dev)\b"
_DOMAIN_HINT = re.compile(r"\." + _TLDS, re.IGNORECASE)
_DOMAIN_RE = re.compile(r"\w\." + _TLDS, re.IGNORECASE)
_SPACES_RE = re.compile(r"(\s+)")
_LETTER = r"[^\W\d_\u00b2\u00b3\u00b9\u00bc-\u00be]"  # any letter (not ², ½...)
_LATIN_LETTER = r"[A-Za-z\u00aa\u00b5\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]"  # up to U+024F
_SPLIT_RE = re.compile(rf"({_LETTER}+(?::{_LETTER}{{1,4}}(?!{_LETTER}))?)")  # words; LUVN:n is one
_SPLIT_LATIN_RE = re.compile(  # twice as fast; enough unless the text has other scripts
    rf"({_LATIN_LETTER}+(?::{_LATIN_LETTER}{{1,4}}(?!{_LATIN_LETTER}))?)")
_BEYOND_LATIN_RE = re.compile(r"[^\x00-\u024f]")
_TAG_GLUE_RE = re.compile(r"[\d_]+")  # digits and _ inside a hashtag: #pirha_kiertue, #Pirha2023
_BREAK_RE = re.compile(r"[^ \t\u00a0\-\u2010\u2011]")
_SENTENCE_END_RE = re.compile(r"[.!?…:;\n\r•]")
_WORD_RE = re.compile(r"[^\W\d_]+(?::[^\W\d_]+)?")


@functools.lru_cache(maxsize=1 << 14)
def split_hashtag(tag: str) -> tuple[str, ...]:
    """#SiunSote -> ("Siun", "Sote"); #LUVNKiertue -> ("LUVN", "Kiertue"); digits, _ split too."""
    parts: list[str] = []
    for chunk in re.findall(r"[^\W\d_]+", tag):
        start = 0
        for i in range(1, len(chunk)):
            prev, cur = chunk[i - 1], chunk[i]
            nxt = chunk[i + 1] if i + 1 < len(chunk) else ""
            if (prev.islower() and cur.isupper()) or (
                prev.isupper() and cur.isupper() and nxt.islower()
            ):
                parts.append(chunk[start:i])
                start = i
        parts.append(chunk[start:])
    return tuple(parts)


def _is_link(chunk: str) -> bool:
    """A URL, bare domain (satasote.fi/x), e-mail address or @mention: no words of the post."""
    return "@" in chunk or "://" in chunk or chunk[:4].lower() == "www." or (
        "." in chunk and _DOMAIN_RE.search(chunk) is not None)


def blank_links(text: str) -> str:
    """Replace each space-separated chunk that is a link or mention by a break (\\x00),
    keeping a sentence end after it. Cheap substring tests first: most posts have none."""
    if not ("@" in text or "://" in text or "www." in text or _DOMAIN_HINT.search(text)):
        return text
    parts = _SPACES_RE.split(text)
    for k in range(0, len(parts), 2):
        chunk = parts[k]
        if _is_link(chunk):
            parts[k] = "\x00" + chunk[len(chunk.rstrip(".!?…:;")):]
    return "".join(parts)


def split_words(text: str) -> tuple[list[str], list[str]]:
    """(words, gaps): gaps[k] is the text before words[k]; links and mentions blanked out."""
    text = blank_links(text)
    pattern = _SPLIT_LATIN_RE
    if not text.isascii() and any(c.isalnum() for c in _BEYOND_LATIN_RE.findall(text)):
        pattern = _SPLIT_RE  # Cyrillic, Greek, Sámi...: emoji alone do not need it
    parts = pattern.split(text)
    return parts[1::2], parts[0::2]


_ENDS_WITH_HASH = methodcaller("endswith", "#")
_NOT_GLUE = frozenset(" \n\t.,!?#")  # quick no before the regex: most hashtags end so


def find_hashtags(words: list[str], gaps: list[str]) -> dict[int, tuple[str, int]]:
    """First word index -> (hashtag text, words it spans) for each hashtag in the text: a word
    after a '#' that does not itself follow a letter or digit (so not C#, not abc#def)."""
    tags: dict[int, tuple[str, int]] = {}
    n = len(words)
    for k in compress(count(), map(_ENDS_WITH_HASH, gaps)):
        gap = gaps[k]
        if k >= n or (k > 0 and len(gap) == 1) or (len(gap) > 1 and (gap[-2].isalnum()
                                                                     or gap[-2] == "_")):
            continue
        end = k + 1
        while end < n and gaps[end][:1] not in _NOT_GLUE and _TAG_GLUE_RE.fullmatch(gaps[end]):
            end += 1
        tag = words[k] if end == k + 1 else "".join(
            gaps[j] + words[j] if j > k else words[j] for j in range(k, end))
        tags[k] = (tag, end - k)
    return tags


class _TextRun:
    """Words of a post's text, with their context worked out only where a name may be."""

    hashtag = False

    def __init__(self, words: list[str], gaps: list[str], hits: list[_Hits],
                 tags: dict[int, tuple[str, int]]):
        self.words = words
        self.gaps = gaps
        self.hits = hits
        # words inside hashtags are not text: they break names
        self.tagged = {j for k, (_, span) in tags.items() for j in range(k, k + span)}

    def __len__(self) -> int:
        return len(self.words)

    def original(self, j: int) -> str:
        return self.words[j]

    def linked(self, j: int) -> bool:
        """Joined to the word before by spaces or hyphens only (may continue a name)."""
        if j == 0 or j in self.tagged or j - 1 in self.tagged:
            return False
        gap = self.gaps[j]
        return gap == " " or _BREAK_RE.search(gap) is None

    def initial(self, j: int) -> bool:
        """First word of a sentence: its capital says nothing."""
        return j == 0 or _SENTENCE_END_RE.search(self.gaps[j]) is not None

    def capitalised(self, j: int) -> bool:
        """Title case, not all capitals (II, SOTE are acronyms or shouting, not names)."""
        word = self.words[j]
        return word[:1].isupper() and not word.isupper()


class _TagRun:
    """The camel-case words of one hashtag: always linked, never ambiguous."""

    hashtag = True

    def __init__(self, parts: Sequence[str], hits: list[_Hits]):
        self.parts = parts
        self.hits = hits

    def __len__(self) -> int:
        return len(self.parts)

    def original(self, j: int) -> str:
        return self.parts[j]

    def linked(self, j: int) -> bool:
        return j > 0

    def initial(self, j: int) -> bool:
        return False

    def capitalised(self, j: int) -> bool:
        return True


_Run = _TextRun | _TagRun
_Found = tuple[int, Sequence[str], int, int]
"""A name found: (name index, the words it was found among, first word, words used)."""


# ----------------------------------------------------------------------------------------------
# The gazetteer
# ----------------------------------------------------------------------------------------------

_Hit = tuple[int, int, int]
"""(name index, word position in the name or -1 for the name written as one word, tier)."""


NEEDS_CONTEXT, NO_START = -1, -2
_HIT_CACHE_LIMIT = 1 << 18


class _Hits(tuple):  # type: ignore[type-arg]
    """A word's hits, best tier first. `simple` is the name to take without looking at the
    context (only one-word, unambiguous names can start here); NEEDS_CONTEXT if a name may start
    here but it depends on the words around; NO_START if no name starts here."""

    simple = NEEDS_CONTEXT
    can_start = True


_NO_HITS = _Hits()
_NO_HITS.simple = NO_START
_NO_HITS.can_start = False
_CAN_START = attrgetter("can_start")

TIER_EXACT, TIER_LEMMA, TIER_DEMONYM, TIER_RULES, TIER_RULES_COMMON, TIER_FOLDED = range(6)
"""How a word matched, best first. TIER_DEMONYM: a -lainen word (lahtelaiset: people of Lahti,
never of a bay). TIER_RULES_COMMON: by rules, but the dictionaries know the word as another
everyday word (poreella = pore + lla, not Pori), so it is treated as ambiguous."""


class Gazetteer:
    """Names of the areas and a matcher over post text; build once, share, call often."""

    def __init__(self, names: Iterable[Name]) -> None:
        self.names: tuple[Name, ...] = tuple(names)
        for name in self.names:
            if name.area_id not in AREAS:
                raise KeyError(unknown_area_message(name.area_id))
        self._words: list[tuple[str, ...]] = []
        self._exact: dict[str, list[tuple[int, int]]] = {}
        self._stems: dict[str, list[tuple[int, int]]] = {}
        self._folded: dict[str, list[tuple[int, int]]] = {}
        self._prefixes: set[str] = set()
        for index, name in enumerate(self.names):
            words = tuple(_WORD_RE.findall(name.text.lower()))
            self._words.append(words)
            for position, word in enumerate(words):
                self._add(index, position, word)
            if len(words) > 1:  # written together: #siunsote, Keskisuomi
                self._add(index, -1, "".join(words))
        self._lengths = [len(words) for words in self._words]
        self._ambiguous = [name.ambiguous for name in self.names]
        self._area_of = [name.area_id for name in self.names]
        self._hit_cache: dict[str, _Hits] = {}  # word -> hits; a plain dict is the fastest get
        self._word_hits = functools.lru_cache(maxsize=1 << 18)(self._analyse)
        self._tag_word_hits = functools.lru_cache(maxsize=1 << 16)(self._analyse_tag_word)
        self._tag_matches = functools.lru_cache(maxsize=1 << 14)(self._match_tag_uncached)

    def _add(self, index: int, position: int, word: str) -> None:
        self._exact.setdefault(word, []).append((index, position))
        for stem in name_stems(word):
            self._stems.setdefault(stem, []).append((index, position))
            folded = fold(stem)
            self._folded.setdefault(folded, []).append((index, position))
            self._prefixes |= {stem[:3], folded[:3]}
        for k in range(3, len(word) - 2):  # agreeing first parts change too: Uusi -> Uude|n
            left = word[:k]
            if left.endswith("si"):
                self._prefixes |= {(left[:-2] + "de")[:3], (left[:-2] + "te")[:3]}
            elif left.endswith("i"):
                self._prefixes.add((left[:-1] + "e")[:3])

    @classmethod
    def default(cls, extra_aliases: Mapping[str, Iterable[str]] | None = None) -> Gazetteer:
        """The built-in names plus extra aliases (area id -> names or hashtags)."""
        return _default_gazetteer().with_aliases(extra_aliases or {})

    def with_aliases(self, extra_aliases: Mapping[str, Iterable[str]]) -> Gazetteer:
        """A new gazetteer with more names ('#tag' aliases match as words and hashtags)."""
        extra = [Name(text, area_id)
                 for area_id, aliases in extra_aliases.items()
                 for alias in ([aliases] if isinstance(aliases, str) else aliases)
                 if (text := alias.strip().lstrip("#").strip()) and _WORD_RE.search(text)]
        if not extra:
            return self
        return Gazetteer(self.names + tuple(extra))

    def warm_up(self) -> None:
        """Load the lexicon now (about 0.15 s) rather than at the first post."""
        lexicon()

    # --- one word ----------------------------------------------------------------------------

    @staticmethod
    def _collect(index: dict[str, list[tuple[int, int]]], forms: Iterable[str], tier: int,
                 hits: dict[tuple[int, int], int]) -> None:
        for form in forms:
            for key in index.get(form, ()):
                if key not in hits:
                    hits[key] = tier

    def _analyse(self, word: str) -> _Hits:
        """Names a lower-case word can be part of, best tier first; cached per word."""
        if word[:3] not in self._prefixes and word[:2] not in self._prefixes:
            return _NO_HITS
        hits: dict[tuple[int, int], int] = {}
        self._collect(self._exact, (word,), TIER_EXACT, hits)
        self._collect(self._stems, lemmas(word), TIER_LEMMA, hits)
        forms = inflection_candidates(word)
        self._collect(self._stems, demonym_bases(forms), TIER_DEMONYM, hits)
        by_rules: dict[tuple[int, int], int] = {}
        self._collect(self._stems, forms, TIER_RULES, by_rules)
        new = by_rules.keys() - hits.keys()
        if new:
            tier = TIER_RULES_COMMON if readings(word)[0] else TIER_RULES
            for key in new:
                hits[key] = tier
        return self._hits(hits)

    def _analyse_tag_word(self, word: str) -> _Hits:
        """Like _analyse, and also without diacritics (#Jyvaskylassa)."""
        hits = {(i, p): t for i, p, t in self._word_hits(word)}
        folded = fold(word)
        if folded[:3] in self._prefixes or folded[:2] in self._prefixes:
            self._collect(self._folded, strip_candidates(folded), TIER_FOLDED, hits)
        return self._hits(hits)

    def _hits(self, found: dict[tuple[int, int], int]) -> _Hits:
        """Sorted hits, with the one-word shortcut worked out once per word."""
        if not found:
            return _NO_HITS
        hits = _Hits(sorted(((i, p, t) for (i, p), t in found.items()), key=lambda h: (h[2], h[0])))
        starts = [(t, i) for i, p, t in hits if p == -1 or p == 0]
        if not starts:
            hits.simple = NO_START
            hits.can_start = False
        elif all(p == -1 or self._lengths[i] == 1 for i, p, _ in hits if p <= 0):
            tier, index = min(starts)
            if not self._ambiguous[index] and tier != TIER_RULES_COMMON:
                hits.simple = index
        return hits

    # --- a post ------------------------------------------------------------------------------

    def find_areas(self, text: str, hashtags: Iterable[str] = ()) -> list[str]:
        """Area ids named in the text or hashtags, unique, in order of first appearance."""
        areas: list[str] = []
        area_of = self._area_of
        for index, _, _, _ in self._find(text, hashtags):
            if area_of[index] not in areas:
                areas.append(area_of[index])
        return areas

    def find_matches(self, text: str, hashtags: Iterable[str] = ()) -> list[Match]:
        """Every name found, in order of appearance; given hashtags missing from the text last."""
        return [Match(self.names[index].area_id, self.names[index].text,
                      " ".join(words[i:i + length]))
                for index, words, i, length in self._find(text, hashtags)]

    def _find(self, text: str, hashtags: Iterable[str]) -> list[_Found]:
        """(name index, words, first word, words used) of each name found."""
        if not text.isascii():
            text = unicodedata.normalize("NFC", text)
        words, gaps = split_words(text)
        hits = self._hits_of(words)
        starts: Iterable[int] = compress(count(), map(_CAN_START, hits))
        tags = find_hashtags(words, gaps) if "#" in text else {}
        if tags:
            starts = sorted(set(starts).union(tags))
        found: list[_Found] = []
        seen_tags: set[str] = set()
        run: _TextRun | None = None  # built only when a name needs its context
        free = 0  # first word not used by a name or hashtag already found
        for i in starts:
            if i < free:
                continue
            if i in tags:
                tag, span = tags[i]
                found += self._match_tag(tag, seen_tags)
                free = i + span
                continue
            simple = hits[i].simple
            if simple >= 0:
                best: tuple[int, int] | None = (simple, 1)
            else:
                run = run or _TextRun(words, gaps, hits, tags)
                best = self._best_at(run, i)
            if best is not None:
                found.append((best[0], words, i, best[1]))
                free = i + best[1]
        for tag in hashtags or ():  # stored posts may have None
            if str(tag).lstrip("#").lower() not in seen_tags:
                found += self._match_tag(str(tag), seen_tags)
        return found

    def _hits_of(self, words: list[str]) -> list[_Hits]:
        """Each word's hits, from the per-word cache (emptied when it grows past its limit)."""
        lowered = list(map(str.lower, words))
        cache = self._hit_cache
        hits = list(map(cache.get, lowered))
        if None in hits:
            if len(cache) > _HIT_CACHE_LIMIT:
                cache.clear()
            for k, hit in enumerate(hits):
                if hit is None:
                    hits[k] = cache[lowered[k]] = self._word_hits(lowered[k])
        return hits  # type: ignore[return-value]

    def _match_tag(self, tag: str, seen: set[str]) -> list[_Found]:
        """A hashtag, once per post (the text's and the given list often repeat each other)."""
        tag = tag.lstrip("#")
        key = tag.lower()
        if key in seen:
            return []
        seen.add(key)
        return self._tag_matches(tag)

    def _match_tag_uncached(self, tag: str) -> list[_Found]:
        """Its camel-case words, else the whole tag as one word (#siunsote); no context needed."""
        parts = split_hashtag(unicodedata.normalize("NFC", tag) if not tag.isascii() else tag)
        if not parts:
            return []
        found = self._match_words(_TagRun(parts, [self._tag_word_hits(p.lower()) for p in parts]))
        if found or len(parts) == 1:
            return found
        whole = "".join(parts).lower()
        return self._match_words(_TagRun((whole,), [self._tag_word_hits(whole)]))

    def _match_words(self, run: _TagRun) -> list[_Found]:
        """Longest acceptable name first, left to right."""
        found: list[_Found] = []
        i = 0
        while i < len(run):
            best = self._best_at(run, i)
            if best is None:
                i += 1
                continue
            found.append((best[0], run.parts, i, best[1]))
            i += best[1]
        return found

    def _best_at(self, run: _Run, i: int) -> tuple[int, int] | None:
        """(name index, words used) of the best acceptable name starting at word i."""
        hits = run.hits
        simple = hits[i].simple
        if simple >= 0:
            return simple, 1
        if simple == NO_START:
            return None
        lengths = self._lengths
        options: list[tuple[int, int, int]] = []  # (-length, worst tier, name index)
        for index, position, tier in hits[i]:
            if position == -1 or (position == 0 and lengths[index] == 1):
                options.append((-1, tier, index))
            elif position == 0:
                length = lengths[index]
                worst = tier
                for k in range(1, length):
                    j = i + k
                    if j >= len(run) or not run.linked(j):
                        break
                    tier_k = next((t for n, p, t in hits[j] if n == index and p == k), None)
                    if tier_k is None:
                        break
                    worst = max(worst, tier_k)
                else:
                    options.append((-length, worst, index))
        if len(options) > 1:
            options.sort()
        for neg_length, tier, index in options:
            if self._acceptable(run, i, index, -neg_length, tier):
                return index, -neg_length
        return None

    def _acceptable(self, run: _Run, i: int, index: int, length: int, tier: int) -> bool:
        """Ambiguous names need a hashtag or a telling capital and no person-name neighbour."""
        risky = self._ambiguous[index] or (length == 1 and tier == TIER_RULES_COMMON)
        if not risky or run.hashtag:
            return True
        capitalised = run.capitalised(i)
        if tier == TIER_DEMONYM and not capitalised:
            return True  # lahtelaiset: people of Lahti, never of a bay
        after = i + length
        if after < len(run) and run.linked(after) and is_place_head(run.original(after).lower()):
            return True  # Salon kaupunki, Iin kunta, Lahden seudulla
        if not capitalised:
            return False
        if run.initial(i) and readings(run.original(i).lower())[0]:
            return False  # "Kotkassa ..." starting a sentence: eagle or town, can't tell
        if run.linked(i) and self._person_like(run, i - 1):
            return False  # Jani Lahti, Jani Lahden
        if tier == TIER_EXACT and after < len(run) and run.linked(after) \
                and self._person_like(run, after):
            return False  # Salla Virtanen
        return True

    @staticmethod
    def _person_like(run: _Run, j: int) -> bool:
        """A capitalised word that is no place: a known proper noun, or unknown mid-sentence."""
        if not run.capitalised(j) or any(p <= 0 for _, p, _ in run.hits[j]):
            return False
        common, proper = readings(run.original(j).lower())
        return proper or (not common and not run.initial(j))


@functools.cache
def _default_gazetteer() -> Gazetteer:
    return Gazetteer(default_names())
