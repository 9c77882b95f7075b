"""Showing network text safely (chatclient.display, spec 8.5), colours, JSON lines."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatclient import (
    Disconnected,
    FileDiscarded,
    FileIncoming,
    FileProgress,
    FileSaved,
    FileSent,
    MessageReceived,
    NickAccepted,
    NickRefused,
    NoticeReceived,
    UserList,
)
from chatclient.client import ClientEvent
from chatclient.display import (
    STALLED_AFTER,
    escape,
    escape_fragments,
    event_fragments,
    event_json,
    human_rate,
    human_size,
    nick_color,
    plain,
    progress_text,
)

HOSTILE = [
    "\x1b[2J\x1b[H",  # clear the screen, home the cursor
    "\x1b]0;pwned\x07",  # set the window title
    "\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\",  # a hyperlink
    "\x9b31m",  # C1 CSI: red on terminals that honour 8-bit controls
    "\x1bP+q\x1b\\",  # DCS: ask the terminal to answer
    "over\rwrite",  # carriage return: hide the start of the line
    "back\x08\x08space",
    "\x7f\x00\x07",
    "gpj\u202eexe.jpg",  # bidi override
    "line\u2028para\u2029",
]


def raw_controls(text: str) -> set[str]:
    """Characters in ``text`` that a terminal would act on."""
    return {
        c
        for c in text
        if (unicodedata.category(c) in ("Cc", "Zl", "Zp") and c not in "\n")
        or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
    }


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text", "plain text"),
        ("ção 李 🙂", "ção 李 🙂"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("\x9b31m", "\\x9b31m"),
        ("a\rb", "a\\x0db"),
        ("a\nb", "a\\x0ab"),  # a nick or a file name keeps no line feed
        ("\u202eabc", "\\u202eabc"),
        ("x\u2028y", "x\\u2028y"),
        ("\U000f0000", "\\U000f0000"),  # private use
    ],
)
def test_escape(text: str, shown: str) -> None:
    assert escape(text) == shown


def test_multiline_keeps_line_feeds_and_expands_tabs() -> None:
    assert escape("a\nb\tc\x1b", multiline=True) == "a\nb    c\\x1b"


def test_escapes_have_their_own_style() -> None:
    assert escape_fragments("a\x1bb", "bold") == [
        ("bold", "a"),
        ("bold class:escape", "\\x1b"),
        ("bold", "b"),
    ]
    assert escape_fragments("") == []


@given(st.text())
def test_nothing_raw_ever_comes_out(text: str) -> None:
    assert raw_controls(escape(text)) == set()
    assert raw_controls(escape(text, multiline=True)) == set()


def test_printable_text_is_unchanged() -> None:
    for text in ("hello", "João", "ﬁ", "emoji 👍🏽", "tab-free"):
        assert escape(text) == text


def hostile_events() -> list[ClientEvent]:
    events: list[ClientEvent] = []
    for bad in HOSTILE:
        events += [
            MessageReceived(sender=bad[:9], text=bad),
            NoticeReceived(text=bad),
            UserList(nicks=(bad[:9], "ok")),
            NickAccepted(old="a", new=bad[:9]),
            NickRefused(nick=bad[:9]),
            FileIncoming(sender=bad[:9], name=bad, size=3),
            FileProgress(direction="in", name=bad, done=1, size=3, elapsed=0.5),
            FileSaved(sender=bad[:9], name=bad, size=3, path="/tmp/" + bad),
            FileDiscarded(sender=bad[:9], name=bad, reason=bad),
            FileSent(name=bad, size=3),
            Disconnected(reason=bad, expected=False),
        ]
    return events


@pytest.mark.parametrize("event", hostile_events(), ids=lambda e: type(e).__name__)
def test_every_event_is_shown_safely(event: ClientEvent) -> None:
    shown = plain(event_fragments(event))
    assert raw_controls(shown) == set(), shown
    line = event_json(event, when=0.0)
    assert line.isascii() and "\n" not in line
    assert raw_controls(line) == set()
    record = json.loads(line)  # programs still get the exact strings
    for key, value in record.items():
        if key not in ("event", "time"):
            expected = getattr(event, key)
            assert value == (list(expected) if isinstance(expected, tuple) else expected)


def test_event_lines() -> None:
    assert plain(event_fragments(MessageReceived(sender="bob", text="hi\nthere"))) == (
        "<bob> hi\n    there"
    )
    assert plain(event_fragments(NoticeReceived(text="bob joined"))) == "-- bob joined"
    assert plain(event_fragments(UserList(nicks=("ana", "bob")))) == "* 2 online: ana, bob"
    assert plain(event_fragments(FileSaved(sender="bob", name=".x", size=2048, path="/d/x"))) == (
        '* saved ".x" from bob (2.0 KiB) as /d/x'
    )
    assert plain(event_fragments(FileIncoming(sender="bob", name="   ", size=1))) == (
        '* bob is sending "   " (1 B)'
    )


def test_event_json() -> None:
    line = event_json(UserList(nicks=("ana", "João")), when=1.5)
    assert json.loads(line) == {"event": "users", "time": 1.5, "nicks": ["ana", "João"]}
    assert "\\u00e3" in line  # ASCII only


def test_nick_colors_are_stable_and_follow_nick_equality() -> None:
    assert nick_color("ana") == nick_color("ANA") == nick_color("Ana")  # spec 2.8.4
    assert nick_color("ﬁ") == nick_color("fi")
    assert nick_color("ana").startswith("#") and len(nick_color("ana")) == 7
    assert len({nick_color(f"user{i}") for i in range(100)}) > 6  # nicks differ in colour


def test_sizes_and_progress() -> None:
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(5 * 1024**3) == "5.0 GiB"
    assert human_rate(0, 0) == "-"
    assert human_rate(2048, 2.0) == "1.0 KiB/s"
    assert progress_text(1 << 20, 4 << 20, 0.5) == "1.0 MiB of 4.0 MiB (25%), 2.0 MiB/s"
    assert progress_text(0, 0, 0) == "0 B of 0 B (100%), -"
    # A transfer that stopped moving says so instead of showing a slowly falling average.
    assert (
        progress_text(1 << 20, 4 << 20, 10.0, idle=1.0) == "1.0 MiB of 4.0 MiB (25%), 102.4 KiB/s"
    )
    assert progress_text(1 << 20, 4 << 20, 10.0, idle=STALLED_AFTER) == (
        f"1.0 MiB of 4.0 MiB (25%), stalled for {int(STALLED_AFTER)} s"
    )
    assert "stalled" not in progress_text(4, 4, 10.0, idle=60.0)  # complete: never stalled
