"""Tests of chatwire._text: nick validity and equality (with spec/vectors/nicks.json), file
names, and cutting long text (spec 3.1.6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chatwire as cw
from chatwire._text import utf8_len
from tests.vectors import load

NICKS = load("nicks.json")


@pytest.mark.parametrize("case", NICKS["valid"], ids=lambda c: repr(c["nick"]))
def test_valid_nick_vectors(case) -> None:
    assert cw.nick_error(case["nick"]) is None
    assert cw.is_valid_nick(case["nick"])


@pytest.mark.parametrize("case", NICKS["invalid"], ids=lambda c: repr(c["nick"]))
def test_invalid_nick_vectors(case) -> None:
    assert isinstance(cw.nick_error(case["nick"]), str)
    assert not cw.is_valid_nick(case["nick"])


@pytest.mark.parametrize("pair", NICKS["equal"], ids=repr)
def test_equal_nick_vectors(pair) -> None:
    assert cw.nick_key(pair[0]) == cw.nick_key(pair[1])


@pytest.mark.parametrize("pair", NICKS["different"], ids=repr)
def test_different_nick_vectors(pair) -> None:
    assert cw.nick_key(pair[0]) != cw.nick_key(pair[1])


def test_nick_errors_say_why() -> None:
    assert "empty" in cw.nick_error("")  # type: ignore[operator]
    assert "9 bytes" in cw.nick_error("abcdefghij")  # type: ignore[operator]
    assert "' '" in cw.nick_error("a b")  # type: ignore[operator]
    assert "UTF-8" in cw.nick_error("\ud800")  # type: ignore[operator]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a.txt", True),
        (".bashrc", True),
        ("é" * 127, True),
        ("n" * 255, True),
        ("n" * 256, False),
        ("", False),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("a\\b", False),
        ("a\x1bb", False),
        ("a\x7fb", False),
        ("a\x85b", False),
        ("gpj\u202eexe", False),
        ("a\u2066b", False),
        ("\ud800", False),
    ],
)
def test_file_name_rules(name, ok) -> None:
    assert (cw.file_name_error(name) is None) is ok


@given(text=st.text(max_size=300), limit=st.integers(4, 40))
def test_split_text_pieces_fit_and_join_back(text, limit) -> None:
    pieces = cw.split_text(text, limit)
    assert "".join(pieces) == text
    assert all(utf8_len(p) <= limit for p in pieces)
    assert all(pieces) or pieces == [""]


@given(text=st.text(alphabet="ab \né", max_size=200), limit=st.integers(4, 30))
def test_split_text_cuts_as_late_as_the_spec_allows(text, limit) -> None:
    # Every piece but the last was cut: it ends with a line feed or space and holds no later
    # one within the limit; or, if it has none, it fills the limit up to a whole character.
    pieces = cw.split_text(text, limit)
    for i, piece in enumerate(pieces[:-1]):
        # What the cut could have taken: the rest of the text up to the limit, whole characters.
        window = "".join(pieces[i:]).encode("utf-8")[:limit]
        window = window.decode("utf-8", errors="ignore").encode("utf-8")
        last = max(window.rfind(b"\n"), window.rfind(b" "))
        if last >= 0:
            assert utf8_len(piece) == last + 1
        else:
            assert utf8_len(piece) == len(window)


def test_split_text_cuts_after_the_last_line_feed_or_space() -> None:
    # spec 3.1.6: "after the last line feed or space of a piece": whichever comes later.
    assert cw.split_text("aaa bbb\nccc ddd", 12) == ["aaa bbb\nccc ", "ddd"]
    assert cw.split_text("aaa bbb ccc\nddd", 12) == ["aaa bbb ccc\n", "ddd"]
    assert cw.split_text("aaaa\nbbbbbbbbbb", 10) == ["aaaa\n", "bbbbbbbbbb"]
    assert cw.split_text("aaaa bbbb cccc", 10) == ["aaaa bbbb ", "cccc"]
    assert cw.split_text("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    assert cw.split_text("é" * 5, 5) == ["éé", "éé", "é"]  # never inside a character
    assert cw.split_text("", 10) == [""]
    assert len(cw.split_text("a" * 20_000)) == 3


def test_split_text_needs_room_for_one_character() -> None:
    with pytest.raises(ValueError):
        cw.split_text("abc", 3)


def test_split_text_refuses_text_without_a_utf8_form() -> None:
    # A line read with surrogateescape from a non-UTF-8 terminal holds lone surrogates.
    with pytest.raises(cw.LocalProtocolError) as info:
        cw.split_text("caf\udce9", 10)
    assert info.value.section == "2.8.2"
