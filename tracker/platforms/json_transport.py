"""An httpx transport that keeps one hostile string from making a whole JSON response unreadable.

JSON may write a lone surrogate as an escape (`"\\ud800"`); no UTF-8 text can hold it. Python's
json module reads it (tracker/textsafe.py deals with it later), but the atproto client parses
with pydantic_core, which refuses the whole body ("unexpected end of hex escape"): one such post
in a Bluesky search page would fail the page, and the same page on every later run.

`SurrogateSafeTransport` wraps the real transport. A JSON response whose body holds a
surrogate escape (rare: servers send UTF-8, not escapes) is read with Python's json module and
handed on re-encoded as UTF-8, each lone surrogate replaced by U+FFFD and escaped pairs as the
character they encode; every other response passes untouched (one byte-pattern search).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_DROPPED_HEADERS = {"content-length", "content-encoding", "transfer-encoding"}


def _valid(value: Any) -> Any:
    """`value` with every string (and key) valid Unicode: lone surrogates as U+FFFD."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return value
    if isinstance(value, list):
        return [_valid(v) for v in value]
    if isinstance(value, dict):
        return {_valid(k): _valid(v) for k, v in value.items()}
    return value


def repaired_json(body: bytes) -> bytes | None:
    """The body re-encoded without lone surrogates, or None when it needs nothing (or is not
    JSON at all: then the client reports it as it would have)."""
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return json.dumps(_valid(data), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class SurrogateSafeTransport(httpx.BaseTransport):
    """`inner` (by default httpx's own HTTP transport), with JSON bodies repaired as above."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self._inner = inner if inner is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if "json" not in response.headers.get("content-type", "").lower():
            return response
        body = response.read()
        fixed = repaired_json(body)
        if fixed is None:
            return response
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _DROPPED_HEADERS]
        return httpx.Response(response.status_code, headers=headers, content=fixed, request=request,
                              extensions=response.extensions)

    def close(self) -> None:
        self._inner.close()
