"""Secrets removed from any text that is logged, printed or stored, in every form they travel in.

A secret rarely comes back as itself. An SMTP server refusing `AUTH PLAIN` may quote the
argument, which is base64 of "\\0user\\0password"; `AUTH LOGIN` sends the password base64'd on
its own; a server error may quote a request URL with the secret percent-encoded, or JSON or HTML
with it escaped. `redact(text, secrets)` replaces all of these with `***`:

- the secret as it is, and with any of its characters percent-encoded (either hex case, `+`
  for a space), HTML-escaped, or backslash-escaped as JSON and repr() write them;
- base64 (standard or URL-safe alphabet, padded or not, even wrapped over lines) of any text
  that contains the secret. The base64 of a substring depends on its offset modulo 3, so for
  each of the three alignments the characters that depend only on the secret's bytes are
  searched for; the whole base64 word around a match is replaced (it holds the secret, and in
  AUTH PLAIN the user name with it).

Secrets shorter than MIN_LENGTH are not searched for (they would match ordinary words).
Every `tracker.settings.Secrets` registers the values it holds, so `redact(text)` without an
explicit list removes every secret this process has read from its environment.
"""

from __future__ import annotations

import base64
import functools
import re
import threading
from collections.abc import Iterable

from pydantic import SecretStr

MASK = "***"
MIN_LENGTH = 4
"""Shorter secrets are not searched for: they would match ordinary words."""

_B64_CHAR = re.compile("[A-Za-z0-9+/_-]")
_B64_SAME = {"+": "[+-]", "-": "[+-]", "/": "[/_]", "_": "[/_]"}  # standard and URL-safe alphabets
_FOLD = r"(?:\r?\n[ \t]?)?"  # base64 wrapped over lines (MIME: 76 characters a line)
_HTML = {"&": ("&amp;", "&#38;", "&#x26;"), "<": ("&lt;", "&#60;", "&#x3c;"), ">": ("&gt;", "&#62;", "&#x3e;"),
         '"': ("&quot;", "&#34;", "&#x22;"), "'": ("&#39;", "&#x27;", "&apos;")}

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_registered: set[str] = set()
_lock = threading.Lock()


def register(values: Iterable[str]) -> None:
    """Remember secrets read by this process, for `redact(text)` without a list."""
    with _lock:
        _registered.update(v for v in values if v and len(v) >= MIN_LENGTH)


def registered() -> tuple[str, ...]:
    with _lock:
        return tuple(sorted(_registered))


def _char(ch: str) -> str:
    """A regex for one character of a secret, as it may appear encoded (escapes tried first: a
    backslash-escaped backslash is two characters, not the first of them)."""
    forms: list[str] = []
    data = ch.encode("utf-8", "surrogatepass")
    forms.append("(?i:" + "".join(f"%{b:02x}" for b in data) + ")")
    if ch == " ":
        forms.append(r"\+")
    forms += [re.escape(e) for e in _HTML.get(ch, ())]
    if ch in "\"\\/'":
        forms.append(re.escape("\\" + ch))
    if ch in _SHORT_ESCAPES:
        forms.append(re.escape(_SHORT_ESCAPES[ch]))
    if (not ch.isascii() or not ch.isprintable()) and ord(ch) <= 0xFFFF:  # JSON's and repr()'s escapes
        forms.append(f"(?i:\\\\u{ord(ch):04x})")
        if ord(ch) <= 0xFF:
            forms.append(f"(?i:\\\\x{ord(ch):02x})")
    forms.append(re.escape(ch))
    return "(?:" + "|".join(dict.fromkeys(forms)) + ")"


def _plain(secret: str) -> str:
    return "".join(_char(ch) for ch in secret)


def base64_cores(secret: str) -> list[str]:
    """For each offset modulo 3, the base64 characters that depend only on the secret's bytes
    (they appear in the base64 of any text holding the secret at such an offset)."""
    data = secret.encode("utf-8", "surrogatepass")
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode("ascii").rstrip("=")
        skip = (0, 2, 3)[shift]  # characters that hold bits of the preceding bytes
        end = len(encoded) - (1 if (shift + len(data)) % 3 else 0)  # the last one mixes in what follows
        core = encoded[skip:end]
        if len(core) >= MIN_LENGTH:
            cores.append(core)
    return cores


def _base64(core: str) -> str:
    return _FOLD.join(_B64_SAME.get(c, re.escape(c)) for c in core)


@functools.lru_cache(maxsize=64)
def _patterns(secrets: tuple[str, ...]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """(base64 forms, plain and escaped forms) of these secrets, longest secrets first."""
    ordered = sorted(secrets, key=len, reverse=True)
    encoded = [_base64(core) for secret in ordered for core in base64_cores(secret)]
    plain = [_plain(secret) for secret in ordered]
    return (re.compile("|".join(encoded)) if encoded else None,
            re.compile("|".join(plain)) if plain else None)


def _word(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen [start, end) to the whole base64 word around it, its padding included."""
    while start > 0 and _B64_CHAR.match(text[start - 1]):
        start -= 1
    while end < len(text) and (_B64_CHAR.match(text[end]) or text[end] == "="):
        end += 1
    return start, end


def _values(secrets: Iterable[str | SecretStr | None] | None) -> tuple[str, ...]:
    if secrets is None:
        return registered()
    out = set()
    for secret in secrets:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value and len(value) >= MIN_LENGTH:
            out.add(value)
    return tuple(sorted(out))


def redact(text: str, secrets: Iterable[str | SecretStr | None] | None = None) -> str:
    """`text` with every form of each secret replaced by '***' (None: the registered secrets)."""
    if not text:
        return text
    encoded, plain = _patterns(_values(secrets))
    if encoded is not None:
        spans = [_word(text, *m.span()) for m in encoded.finditer(text)]
        for start, end in reversed(_merged(spans)):
            text = text[:start] + MASK + text[end:]
    return plain.sub(MASK, text) if plain is not None else text


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out
