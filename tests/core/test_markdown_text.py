"""core.markdown.text: what a user typed reads as typed inside Markdown, never formatted or fetched."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from core.markdown import text

_MD = MarkdownIt("commonmark").enable("table").enable("strikethrough")
ATTACKS = [
    "![](http://evil.example/px.png)",
    "[the clinic's new login](http://evil.example/login)",
    ":red[**Urgent: call the admin on 555-0100**]",
    "**bold** _it_ `code` ~~gone~~ <img src=x onerror=alert(1)>",
    "# A heading\n1. a list\n- another\n> quote",
    "$x^2$ and :material/warning: and :smile:",
    "a\\*b\\",
]


def _rendered(source: str) -> str:
    return _MD.render(source)


@pytest.mark.parametrize("typed", ATTACKS)
def test_an_attack_renders_as_the_typed_characters_in_one_paragraph(typed: str) -> None:
    html = _rendered(text(typed))
    for tag in ("<img", "<a ", "<strong", "<em", "<code", "<del", "<h1", "<ol", "<ul", "<blockquote", "<table"):
        assert tag not in html, (typed, html)
    shown = MarkdownIt("commonmark").parseInline(text(typed))[0].children
    literal = "".join(t.content if t.type == "text" else "\n" for t in shown).replace("\u2060", "")
    assert literal == typed.replace("\n", "\n")


def test_links_by_their_text_alone_are_broken_invisibly() -> None:
    assert "://" not in text("see http://evil.example") and "www." not in text("www.evil.example")
    assert text("see http://evil.example").replace("\u2060", "").replace("\\", "") == "see http://evil.example"


def test_plain_words_are_unchanged_and_none_is_empty() -> None:
    assert text("Asked how the work together feels") == "Asked how the work together feels"
    assert text(None) == ""


@given(st.text(alphabet=string.printable, max_size=60))
def test_any_printable_text_comes_back_as_typed(typed: str) -> None:
    tokens = MarkdownIt("commonmark").parseInline(text(typed))[0].children or []
    literal = "".join(t.content if t.type == "text" else "\n" for t in tokens
                      if t.type in ("text", "softbreak", "hardbreak"))
    assert all(t.type in ("text", "softbreak", "hardbreak") for t in tokens), [t.type for t in tokens]
    # CommonMark folds line breaks and the blanks around them; the characters themselves survive
    assert literal.replace("\u2060", "").split() == typed.split()
