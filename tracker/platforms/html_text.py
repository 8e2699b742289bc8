"""Post HTML (Mastodon `content`, any fediverse server's markup) -> safe plain text.

Content arrives as HTML written by servers we do not control, so it is sanitised with nh3 (an
allow-list sanitiser) before anything else looks at it: script/style bodies vanish, every
attribute (href="javascript:...", on* handlers) is dropped. Only block structure survives long
enough to become line breaks. The result is plain text; whoever renders it escapes it again.
"""

from __future__ import annotations

import html
import re

import nh3

from tracker.display_text import storable_text

# Tags kept through cleaning only so their boundaries can become line breaks.
_BLOCK_TAGS = {"p", "br", "div", "li", "ul", "ol", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6"}
# Elements whose content is never readable post text (code, embeds, fallbacks): dropped whole.
_DROPPED_WITH_CONTENT = {"script", "style", "iframe", "noscript", "template", "object"}
_PARAGRAPH_END = re.compile(r"</(?:p|blockquote|pre|ul|ol|h[1-6])>")
_LINE_END = re.compile(r"<br>|</(?:div|li)>")
_ANY_TAG = re.compile(r"<[^>]*>")
_RAW_WHITESPACE = re.compile(r"\s+")
_INLINE_SPACE = re.compile(r"[^\S\n]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(content: str | None) -> str:
    """Plain text of an HTML fragment: paragraphs and <br> become newlines, links their text.

    Mastodon wraps long link text in `<span class="invisible">` parts; all of their text is kept,
    so a shortened link comes out as the full URL (more useful than the visual ellipsis).
    """
    if not content:
        return ""
    cleaned = nh3.clean(
        storable_text(content),  # nh3 refuses lone surrogates (no UTF-8 form): U+FFFD, as at storage
        tags=_BLOCK_TAGS,
        attributes={},
        clean_content_tags=_DROPPED_WITH_CONTENT,
        strip_comments=True,
        link_rel=None,
    )
    # nh3 re-serialises, so the markup left is canonical: lower-case, attribute-free tags.
    text = _RAW_WHITESPACE.sub(" ", cleaned)  # raw newlines in HTML are just spaces
    text = _PARAGRAPH_END.sub("\n\n", text)
    text = _LINE_END.sub("\n", text)
    text = _ANY_TAG.sub("", text)
    text = html.unescape(text)
    return _normalise_whitespace(text)


def _normalise_whitespace(text: str) -> str:
    """Collapse spaces within lines, trim lines, allow at most one blank line in a row."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _MANY_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def plain_text(value: str | None) -> str:
    """Normalise text that is already plain (e.g. Mastodon `spoiler_text`): whitespace only."""
    return _normalise_whitespace(value or "")
