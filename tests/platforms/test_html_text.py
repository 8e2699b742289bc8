"""html_to_text: post HTML from any server becomes safe, readable plain text."""

from __future__ import annotations

import html

from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.platforms.html_text import html_to_text, plain_text


def test_paragraphs_and_line_breaks_become_newlines() -> None:
    assert html_to_text("<p>one<br>two<br />three</p><p>four</p>") == "one\ntwo\nthree\n\nfour"


def test_links_become_their_visible_text_and_hashtag_links_keep_the_hash() -> None:
    content = (
        '<p>See <a href="https://ex.com/a/b" rel="nofollow noopener" target="_blank">'
        '<span class="invisible">https://</span><span class="ellipsis">ex.com/a</span>'
        '<span class="invisible">/b</span></a> '
        '<a href="https://m.example/tags/Tour" class="mention hashtag" rel="tag">#<span>Tour</span></a> '
        '<span class="h-card"><a href="https://m.example/@bob" class="u-url mention">@<span>bob</span></a></span></p>'
    )
    assert html_to_text(content) == "See https://ex.com/a/b #Tour @bob"


def test_script_and_style_content_is_removed_entirely() -> None:
    content = "<p>before<script>alert('x')</script><style>p { color: red }</style>after</p>"
    assert html_to_text(content) == "beforeafter"


def test_javascript_links_and_event_handlers_leave_only_text() -> None:
    content = '<p><a href="javascript:alert(1)" onclick="evil()">click</a><img src=x onerror=alert(1)></p>'
    assert html_to_text(content) == "click"


def test_entities_are_decoded_to_plain_text() -> None:
    content = "<p>Fish &amp; chips &lt;3 &quot;yum&quot; caf&eacute; &#128512; &nbsp;end</p>"
    assert html_to_text(content) == 'Fish & chips <3 "yum" café 😀 end'


def test_escaped_markup_stays_text_and_is_not_reinterpreted() -> None:
    assert html_to_text("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>") == "<script>alert(1)</script>"


def test_whitespace_is_normalised() -> None:
    content = "<p>  lots   of\n\tspace  </p>\n\n<p></p><p></p><p>next</p>"
    assert html_to_text(content) == "lots of space\n\nnext"


def test_lists_and_quotes_keep_line_structure() -> None:
    content = "<p>Stops:</p><ul><li>Leeds</li><li>York</li></ul><blockquote><p>quoted</p></blockquote>"
    assert html_to_text(content) == "Stops:\n\nLeeds\nYork\n\nquoted"


def test_empty_and_none_give_empty_string() -> None:
    assert html_to_text("") == ""
    assert html_to_text(None) == ""
    assert html_to_text("<p></p>") == ""


def test_comments_and_unknown_tags_are_dropped() -> None:
    assert html_to_text("<p>a<!-- secret --><custom-tag>b</custom-tag><iframe src=x>c</iframe></p>") == "ab"


def test_plain_text_only_normalises_whitespace() -> None:
    assert plain_text("  CW:  <b>spoilers</b> \r\n here ") == "CW: <b>spoilers</b>\nhere"


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)


@settings(max_examples=150, deadline=None)
@given(_text)
def test_escaped_text_round_trips(text: str) -> None:
    """Any plain text, escaped into a paragraph, comes back with only whitespace normalised."""
    assert html_to_text(f"<p>{html.escape(text)}</p>") == plain_text(" ".join(text.split()))


@settings(max_examples=150, deadline=None)
@given(_text, _text)
def test_script_bodies_never_leak(before: str, payload: str) -> None:
    marker = "ZZMARKERZZ"
    result = html_to_text(f"<p>{html.escape(before)}<script>{marker}{html.escape(payload)}</script></p>")
    assert marker not in result
