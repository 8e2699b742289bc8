"""Settings problems as one line each that never repeats a secret.

A password pasted unquoted into settings.toml (`password = hunter2`) is a TOML syntax error on
the secret's own line, and a secret-like key with a quoted value is refused: neither message may
repeat the value, wherever it goes (terminal, journal, ticket). The TOML error names the line,
the key (when it is a known setting or a secret-like one) and the problem, and repeats the text
only of a known, not secret-like key whose value is a date, a time, a number or a boolean.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from tracker.errors import SettingsError

_SECRET_WORDS = ("password", "passwd", "passphrase", "token", "secret", "apikey", "bearer", "credential",
                 "private")


def is_secret_key(name: str) -> bool:
    """A key whose value would be a secret (password, token, secret, key ...): never read from
    the file, and its value never repeated in a message."""
    low = name.lower().strip().strip("\"'")
    parts = re.split(r"[^a-z0-9]+", low)
    return any(word in low for word in _SECRET_WORDS) or "key" in parts or "pw" in parts or "pwd" in parts


Variables = Mapping[tuple[str, ...], str]
"""Table -> the environment variable that holds its secret, e.g. ('email',) -> TRACKER_SMTP_PASSWORD."""


def describe_toml_error(exc: tomllib.TOMLDecodeError, text: str, known: frozenset[str], variables: Variables) -> str:
    """Line number, key and problem, never a value that could be a secret.

    A password pasted unquoted (`password = hunter2`) is a syntax error; its line must not be
    repeated. The line's text is shown only when its key is a known, not secret-like setting
    and its value looks like a date, a time or a number (`date = 2023-02-30`); otherwise only
    the key (when it is a known one) and the problem.
    """
    message = str(exc)
    match = re.search(r"\s*\(at line (\d+), column \d+\)", message)
    problem = _quiet_problem(re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message))
    if not match:
        return f"invalid TOML: {problem}"
    number = int(match.group(1))
    lines = text.splitlines()
    line = lines[number - 1].strip() if 1 <= number <= len(lines) else ""
    invisible = sorted({f"U+{ord(ch):04X}" for ch in line if ch != "\t" and unicodedata.category(ch) in ("Cc", "Cf")})
    if invisible:  # e.g. a byte order mark pasted mid-file, a zero-width space: named, not shown
        problem += f"; the line holds an invisible character {', '.join(invisible)}: delete it"
    key, value = _toml_key(line, known)
    if key is None:
        return f"line {number}: invalid TOML: {problem} (the line is not repeated here: it may hold a secret)"
    if is_secret_key(key):
        return (f"line {number}: {key}: invalid TOML: {problem}; the value is not shown: secrets are not read "
                f"from the settings file, {secret_variable((*_table_of(lines, number), key), variables)}")
    if value is not None and _HARMLESS_VALUE.match(value):
        return f"line {number} `{key} = {value}`: invalid TOML: {problem}"
    return f"line {number}: {key}: invalid TOML: {problem}" + (" (check the quotes: text goes in \"...\")"
                                                              if value and value[0] not in "\"'[{" else "")


_HARMLESS_VALUE = re.compile(r"^[0-9][0-9T:.+\-Z ]*$|^(true|false)$")
"""Values a TOML error may repeat: dates, times, numbers, booleans (never text)."""
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(line: str, known: frozenset[str]) -> tuple[str | None, str | None]:
    """(key, value) of a `key = value` line or (`[table]`, None) of a header, when every part of
    the key is a known setting or a secret-like key; else (None, None): the text may be a secret."""
    if line.startswith("["):  # a table header: only names, shown when they are all known ones
        parts = [p.strip() for p in line.strip("[] ").split(".")]
        return (line, None) if all(p in known for p in parts) else (None, None)
    key, sep, value = line.partition("=")
    parts = [p.strip().strip("\"'") for p in key.split(".")]
    if not sep or not all(_BARE_KEY.match(p) for p in parts):
        return None, None
    if all(p in known for p in parts) or any(is_secret_key(p) for p in parts):
        return ".".join(parts), value.strip() or None
    return None, None


def _table_of(lines: list[str], number: int) -> tuple[str, ...]:
    """The table (`[email]` -> ('email',)) that line `number` belongs to."""
    for line in reversed(lines[:number - 1]):
        header = re.match(r"^\s*\[\[?\s*([A-Za-z0-9_.\- ]+?)\s*\]", line)
        if header:
            return tuple(p.strip() for p in header.group(1).split("."))
    return ()


def secret_variable(where: tuple[str, ...], variables: Variables) -> str:
    """What to do instead of the secret at `where` (table path and key): the environment variable
    of the most specific entry of `variables` (a key, else its table) where there is one."""
    matches = [section for section in variables if where[:len(section)] == section]
    variable = variables[max(matches, key=len)] if matches else None
    return (f"set the environment variable {variable} instead" if variable
            else "secrets come from environment variables only (see README, Environment)")


def _quiet_problem(problem: str) -> str:
    """tomllib's problem without a quoted letter or digit of the value (other characters, such as
    an invisible one, are named by their code point)."""
    def name(found: re.Match[str]) -> str:
        char = found.group(2)
        return found.group(1) + ("" if char.isalnum() else f" U+{ord(char):04X}")
    return re.sub(r"(invalid character|Illegal character) '(.)'", name, problem)


def refuse_secrets(raw: Mapping[str, Any], label: str, variables: Variables, path: tuple[str, ...] = ()) -> None:
    """A secret-like key anywhere in the file is an error naming the variable to use (never its value)."""
    for key, value in raw.items():
        where = (*path, str(key))
        if is_secret_key(str(key)):
            raise SettingsError(f"{label}: {'.'.join(where)}: secrets are not read from the settings file; "
                                f"{secret_variable(where, variables)}")
        if isinstance(value, Mapping):
            refuse_secrets(value, label, variables, where)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    refuse_secrets(item, label, variables, where)


def location(loc: tuple[Any, ...]) -> str:
    """('tour','stops',3,'area') -> 'tour.stops[4].area' (stops counted from 1, as in the file)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def one_line(problems: list[str]) -> str:
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        where = location(loc) or "settings"
        kind = error["type"]
        if kind == "extra_forbidden":
            what = "unknown key"
        elif kind == "missing":
            what = "missing (required)"
        elif kind == "value_error":
            what = str(error.get("ctx", {}).get("error", error["msg"]))
        else:
            what = f"{error['msg'][0].lower()}{error['msg'][1:]}"
            secret = any(isinstance(p, str) and is_secret_key(p) for p in loc)
            if "input" in error and not isinstance(error["input"], (dict, list)) and not secret:
                got = repr(error["input"])
                what += f", got {got if len(got) <= 60 else got[:57] + '...'}"
        problems.append(f"{where}: {what}")
    return problems
